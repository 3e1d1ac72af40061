"""The crash suite: SIGKILL `dama train` at 11 points across one run, `--resume` after each, and get
the adapter an uninterrupted run gets, bit for bit, with the same per-step loss curve.

Subprocesses on the tiny random model, CPU, float32, one thread (so both sides compute the same sums
in the same order). The kills come from `dama_asr.faults` crash points (DAMA_CRASH_AT), so each lands
at a known place: during the encoder-cache build, mid-step, mid-line in the log, during a checkpoint
write and just before its rename, right after a checkpoint, during the dev evaluation, while saving
best/, and between final/ and summary.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from dama_asr.train.metrics_log import read_log

# Each kill happens in a fresh process that resumed from the previous kill's last checkpoint; the
# counters are per process (`step@3` = the third step this process runs).
# 8 steps (2 epochs x 4), a checkpoint after every step; the comments say where each kill lands.
KILLS = [
    "encoder-cache@2",  # first run, before any checkpoint: --resume starts over
    "step@3",  # mid-step 3 (checkpoint 2 kept)
    "log-write@2",  # mid-line of step 4's log record (resumes from 3)
    "dev-eval@1",  # epoch 1's dev evaluation
    "best-save@1",  # just before best/ is written
    "checkpoint-write@1",  # half-way through epoch 1's checkpoint
    "checkpoint-rename@2",  # step 5's checkpoint complete, not yet renamed into place
    "after-checkpoint@2",  # step 6's checkpoint in place, older ones not yet pruned
    "step@1",  # mid-step 7
    "dev-eval@1",  # epoch 2's dev evaluation
    "final-save@1",  # final/ written, summary.json not yet
]


def _command(train_manifest: Path, out: Path, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "dama_asr.cli", "train", "--model", "tiny-random", "--train", str(train_manifest),
               "--dev", str(train_manifest), "--max-dev", "2", "--set", "eval.batch_size=2", "--method", "lora",
               "--r", "4", "--epochs", "2", "--batch-size", "2", "--lr", "1e-2", "--set", "optim.warmup_steps=1",
               "--set", "checkpoint_every=1", "--precision", "no", "--no-progress", "--out", str(out)]  # fmt: skip
    return [*command, "--resume"] if resume else command


def _run(command: list[str], home: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAMA_HOME": str(home), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "DAMA_ALLOCATOR": "system"}  # fmt: skip
    env.pop("DAMA_CRASH_AT", None)
    if crash_at:
        env["DAMA_CRASH_AT"] = crash_at
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_log(run / "train_log.jsonl")]


def test_killed_at_eleven_points_and_resumed_equals_one_uninterrupted_run(
    tiny_train: Path, tmp_path: Path
) -> None:
    straight = tmp_path / "straight"
    done = _run(_command(tiny_train, straight, resume=False), tmp_path / "home-straight")
    assert done.returncode == 0, done.stderr[-3000:]

    chain = tmp_path / "killed"
    home = tmp_path / "home-killed"  # its own encoder cache, so the first kill lands in a real build
    for number, point in enumerate(KILLS):
        done = _run(_command(tiny_train, chain, resume=number > 0), home, crash_at=point)
        assert done.returncode == -9, (
            f"kill {number} ({point}) did not happen: rc {done.returncode}\n{done.stderr[-3000:]}"
        )
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not (chain / "summary.json").exists()
    done = _run(_command(tiny_train, chain, resume=True), home)
    assert done.returncode == 0, done.stderr[-3000:]

    assert _losses(chain) == _losses(straight)  # exactly: the same floats at the same steps
    assert len(_losses(chain)) == 8
    for folder in ("final", "best"):
        a = load_file(str(straight / folder / "adapter_model.safetensors"))
        b = load_file(str(chain / folder / "adapter_model.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].equal(b[key]), f"{folder}/{key} differs"
    one, two = (json.loads((run / "summary.json").read_text()) for run in (straight, chain))
    assert [e["train_loss"] for e in one["epochs"]] == [e["train_loss"] for e in two["epochs"]]
    assert [e["dev_wer"] for e in one["epochs"]] == [e["dev_wer"] for e in two["epochs"]]
    assert not list(chain.rglob("*.partial")) and not (chain / ".lock").exists()


@pytest.mark.parametrize("point", ["checkpoint-rename@1"])
def test_a_killed_run_is_not_reported_as_running(tiny_train: Path, tmp_path: Path, point: str) -> None:
    """The lock a SIGKILLed run leaves behind is taken over by the resume (same host, dead pid)."""
    out = tmp_path / "run"
    done = _run(_command(tiny_train, out, resume=False), tmp_path / "home", crash_at=point)
    assert done.returncode == -9 and (out / ".lock").exists()
    done = _run(_command(tiny_train, out, resume=True), tmp_path / "home")
    assert done.returncode == 0, done.stderr[-3000:]
