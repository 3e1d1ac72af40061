"""`dama train` under `accelerate launch` with 2 CPU processes (gloo) equals 1 process at the same global batch.

Note: in accelerate 1.15 `accelerate launch --cpu --num_processes 2` starts ONE process (its simple
launcher); `--multi_gpu` is what starts torchrun, and on a machine without GPUs the processes run on
the CPU with the gloo backend.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dama_asr.allocator import tcmalloc_path
from dama_asr.train import train
from dama_asr.train.metrics_log import read_log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(make_config, tiny_train: Path, tmp_path: Path) -> None:
    # float32 on both sides: the test is about exact loss normalisation, which bf16 rounding would blur.
    common = {"dev": str(tiny_train), "eval": {"max_utterances": 2, "batch_size": 2}, "optim": {"epochs": 2},
              "precision": "no"}  # fmt: skip
    single = make_config(
        output_dir=str(tmp_path / "single"), **{**common, "optim": {"epochs": 2, "batch_size": 4}}
    )
    train(single)

    out = tmp_path / "double"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(_free_port())]  # fmt: skip
    command = [*launcher, "-m", "dama_asr.cli", "train", "--model", "tiny-random", "--train", str(tiny_train),
               "--dev", str(tiny_train), "--max-dev", "2", "--set", "eval.batch_size=2", "--method", "lora",
               "--r", "4", "--epochs", "2", "--batch-size", "2", "--lr", "1e-2", "--set", "optim.warmup_steps=1", "--precision", "no",
               "--no-progress", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("finished: lora") == 1  # only the main process prints

    summary_two = read_log(out / "train_log.jsonl")
    assert len(summary_two) == 4  # 2 steps x 2 epochs, written once, by the main process only
    assert len(list((out / "tensorboard").iterdir())) == 1
    one = [r["loss"] for r in read_log(single.run_dir / "train_log.jsonl")]
    two = [r["loss"] for r in summary_two]
    assert two == pytest.approx(one, rel=1e-4)
    wa = load_file(str(single.run_dir / "final" / "adapter_model.safetensors"))
    wb = load_file(str(out / "final" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5)
    dev_one = [r["dev_wer"] for r in read_log(single.run_dir / "train_log.jsonl", kind="eval")]
    dev_two = [r["dev_wer"] for r in read_log(out / "train_log.jsonl", kind="eval")]
    assert len(dev_two) == 2 and dev_two == pytest.approx(dev_one)
    # `python -m dama_asr.cli` re-executes itself on tcmalloc where the machine has it.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["allocator"] == ("tcmalloc" if tcmalloc_path() else "system")
    assert summary["precision"] == "no" and summary["precision_requested"] == "no"
    # Every rank's RNG is in the checkpoint, and the world size it was trained with.
    from dama_asr.train.checkpoint import list_checkpoints
    from dama_asr.train.state_io import load_state

    last = list_checkpoints(out / "checkpoints")[-1]
    assert len(load_state(last, "rng")["ranks"]) == 2
    state = json.loads((last / "state.json").read_text())
    assert state["world_size"] == 2 and state["global_batch"] == 4
