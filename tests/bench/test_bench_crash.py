"""`dama bench` SIGKILLed mid-cell and started again gives the cell an uninterrupted run gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from .study_factory import tiny_study_config, write_study

CELL = "toy__lora__0.001h__seed0"


def _bench(config: Path, work: Path, home: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAMA_HOME": str(home), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "DAMA_ALLOCATOR": "system"}  # fmt: skip
    env.pop("DAMA_CRASH_AT", None)
    if crash_at:
        env["DAMA_CRASH_AT"] = crash_at
    command = [sys.executable, "-m", "dama_asr.cli", "bench", str(config), "--work-dir", str(work),
               "--only", f"{CELL}"]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_a_study_killed_mid_cell_resumes_to_the_same_cell(tmp_path: Path) -> None:
    config = tiny_study_config(tmp_path)
    config["train"]["checkpoint_every"] = 1
    config["train"]["precision"] = "no"
    config["train"]["optim"]["batch_size"] = 1  # 3 steps: a kill at the second is mid-cell
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = write_study(tmp_path / "a", config)
    killed = write_study(tmp_path / "b", config)
    done = _bench(straight, tmp_path / "a" / "work", tmp_path / "home-a")
    assert done.returncode == 0, done.stderr[-3000:]

    done = _bench(killed, tmp_path / "b" / "work", tmp_path / "home-b", crash_at="step@2")
    assert done.returncode == -9, done.stderr[-3000:]
    assert not (killed.parent / "cells" / f"{CELL}.json").exists()
    done = _bench(killed, tmp_path / "b" / "work", tmp_path / "home-b")
    assert done.returncode == 0, done.stderr[-3000:]

    one, two = (json.loads((p.parent / "cells" / f"{CELL}.json").read_text()) for p in (straight, killed))
    assert one["test"] == two["test"] and one["train"]["dev_wer"] == two["train"]["dev_wer"]
    a = load_file(str(tmp_path / "a" / "work" / "runs" / CELL / "best" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "work" / "runs" / CELL / "best" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
