"""Checkpoints hold no pickle, a forged one is refused, and resume checks what it resumes."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dama_asr.cli import main
from dama_asr.train import train
from dama_asr.train.checkpoint import MANIFEST, list_checkpoints, rng_state, set_rng_state
from dama_asr.train.config import TrainConfigError
from dama_asr.train.metrics_log import read_log
from dama_asr.train.state_io import StateFileError, load_state, save_state


def _rewrite_manifest(folder: Path) -> None:
    """What an attacker (or a careless hand edit) does: recompute every checksum."""
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in sorted(folder.iterdir())
        if p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({"format": "dama-train-checkpoint", "files": files}))


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holds_no_pickle(make_config) -> None:
    config = make_config(stop_after_steps=2)
    train(config)
    (folder,) = list_checkpoints(config.run_dir / "checkpoints")
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.endswith((".pt", ".pkl", ".bin"))], names
    for path in folder.iterdir():
        assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"


def test_a_forged_pickle_in_a_checkpoint_is_refused_and_never_run(
    make_config, tmp_path: Path, capsys
) -> None:
    config = make_config(stop_after_steps=2)
    train(config)
    (folder,) = list_checkpoints(config.run_dir / "checkpoints")
    marker = tmp_path / "pwned"
    (folder / "rng.pt").write_bytes(pickle.dumps(_Payload(marker)))
    _rewrite_manifest(folder)
    args = ["train", "--model", "tiny-random", "--train", config.train, "--method", "lora", "--r", "4",
            "--epochs", "2", "--batch-size", "2", "--lr", "1e-2", "--set", "optim.warmup_steps=1",
            "--no-progress", "--out", str(config.run_dir), "--resume"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "rng.pt" in err and "pickle" in err and "Traceback" not in err
    assert not marker.exists(), "the forged pickle ran"


def test_state_round_trips_without_pickle(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    state["param_groups"][0]["max_norm"] = math.inf  # non-finite numbers survive, in strict JSON
    save_state(state, tmp_path, "optimizer")
    back = load_state(tmp_path, "optimizer")
    assert back["param_groups"][0]["betas"] == (0.9, 0.98) and back["param_groups"][0]["max_norm"] == math.inf
    assert set(back["state"]) == {0, 1}  # int keys stay int, as load_state_dict needs
    torch.testing.assert_close(back["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
    json.loads((tmp_path / "optimizer.json").read_text())  # strict JSON: no Infinity literal
    assert "Infinity" not in (tmp_path / "optimizer.json").read_text()

    (tmp_path / "optimizer.json").write_text("{torn")
    with pytest.raises(StateFileError, match="optimizer.json"):
        load_state(tmp_path, "optimizer")


def test_rng_state_restores_every_stream(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    save_state({"ranks": [rng_state()]}, tmp_path, "rng")
    expected = (random.random(), np.random.standard_normal(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_state(tmp_path, "rng")["ranks"][0])
    assert (random.random(), np.random.standard_normal(), torch.rand(1).item()) == expected


def test_resume_refuses_another_world_size(make_config) -> None:
    config = make_config(stop_after_steps=2)
    train(config)
    (folder,) = list_checkpoints(config.run_dir / "checkpoints")
    state = json.loads((folder / "state.json").read_text())
    assert state["world_size"] == 1 and state["global_batch"] == 2
    state["world_size"], state["global_batch"] = 2, 4  # as if trained with --num_processes 2
    (folder / "state.json").write_text(json.dumps(state))
    _rewrite_manifest(folder)
    with pytest.raises(TrainConfigError, match=r"2 process\(es\).*num_processes 2"):
        train(make_config(), resume=True)


def test_a_resumed_epoch_reports_the_loss_of_all_its_steps(make_config, tmp_path: Path) -> None:
    straight = make_config(output_dir=str(tmp_path / "straight"), optim={"epochs": 1, "batch_size": 1})
    expected = train(straight)["epochs"][0]["train_loss"]
    cut = make_config(
        output_dir=str(tmp_path / "cut"), optim={"epochs": 1, "batch_size": 1}, stop_after_steps=5
    )
    train(cut)
    resumed = train(
        make_config(output_dir=str(tmp_path / "cut"), optim={"epochs": 1, "batch_size": 1}), resume=True
    )
    assert resumed["epochs"][0]["train_loss"] == pytest.approx(expected, rel=1e-6)


def test_a_torn_last_log_line_does_not_stop_resume(make_config) -> None:
    config = make_config(stop_after_steps=2)
    train(config)
    log_path = config.run_dir / "train_log.jsonl"
    with open(log_path, "a") as f:
        f.write('{"kind": "train", "step": 3, "lo')  # killed mid-write
    summary = train(make_config(), resume=True)
    assert summary["steps"] == 8
    steps = [r["step"] for r in read_log(log_path)]
    assert steps == list(range(1, 9))


def test_a_second_train_on_the_same_folder_is_refused(make_config, capsys) -> None:
    from dama_asr.locks import FolderLock

    config = make_config()
    args = ["train", "--model", "tiny-random", "--train", config.train, "--method", "lora", "--r", "4",
            "--epochs", "1", "--no-progress", "--out", str(config.run_dir)]  # fmt: skip
    with FolderLock(config.run_dir, "training run"):  # another `dama train` at work in this folder
        assert main(args) == 2
    err = capsys.readouterr().err
    assert "already running" in err and str(config.run_dir) in err
    assert not (config.run_dir / "checkpoints").exists()  # it touched nothing
    assert main(args) == 0  # once the other is done
