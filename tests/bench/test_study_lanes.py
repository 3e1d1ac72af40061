"""Several processes running one study: cells claimed by lock, shared out, and scored strictly."""

from __future__ import annotations

import json
import subprocess
import sys

from dama_asr.cli import main
from dama_asr.testing import tiny_manifest

from .study_factory import TEXTS, tiny_study_config, write_study

HOLD = (
    "import sys\nfrom dama_asr.locks import FolderLock\n"
    "FolderLock(sys.argv[1], 'study cell').acquire()\nprint('held', flush=True)\nsys.stdin.read()\n"
)


def _study_with_a_broken_test_clip(tmp_path, **changes):
    config = tiny_study_config(tmp_path)
    test = tiny_manifest(tmp_path / "test", n=3, texts=TEXTS[:3])
    (test.parent / "audio" / "utt2.wav").write_bytes(b"not a wav file")
    config["corpora"]["toy"]["test"] = str(test)
    config.pop("extra_cells")
    return write_study(tmp_path, {**config, **changes})


def test_an_unscorable_test_clip_stops_the_study_by_default(tmp_path, capsys):
    path = _study_with_a_broken_test_clip(tmp_path)
    work = tmp_path / "work"
    assert main(["bench", str(path), "--work-dir", str(work)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max_skipped" in err and str(tmp_path / "test") in err
    assert "unreadable audio" in err and "utt2" in err
    # Stopped at the zero-shot evaluation, before any training.
    assert not (path.parent / "cells" / "baseline__toy.json").exists() and not (work / "runs").exists()


def test_a_cell_held_by_another_process_is_left_to_it(tmp_path, capsys):
    path = _study_with_a_broken_test_clip(tmp_path, max_skipped=1)
    work = tmp_path / "work"
    busy = "toy__lora__0.001h__seed0"
    # The other lane, a separate live process, holds the LoRA cell.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(work / "locks" / busy)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["bench", str(path), "--work-dir", str(work)]) == 0
        out = capsys.readouterr().out
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert "left to another process (host " in out and f"pid {holder.pid}," in out
    summary = next(line for line in out.splitlines() if line.startswith("study tiny-study:"))
    assert "1 of 2 selected cell(s) finished; 1 left to another process: toy__lora__0.001h__seed0" in summary
    cells = path.parent / "cells"
    assert not (cells / f"{busy}.json").exists() and not (work / "runs" / busy).exists()
    # The free cell ran (its trainer's run-folder lock and the cell lock do not collide) and recorded
    # the clip it could not score.
    result = json.loads((cells / "toy__dama__0.001h__seed0.json").read_text())
    assert result["test"]["items_total"] == 3 and result["test"]["utterances"] == 2
    assert result["test"]["skipped"]["total"] == 1 and result["test"]["skipped"]["max_skipped"] == 1
    assert json.loads((cells / "baseline__toy.json").read_text())["skipped"]["total"] == 1
    assert not (work / "locks" / "toy__dama__0.001h__seed0" / ".lock").exists(), "cell lock not released"
