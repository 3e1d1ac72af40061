"""Atomic training checkpoints that can be verified before resuming.

    <run>/checkpoints/step-00000120/
        trainable.safetensors   every parameter with requires_grad, by name
        optimizer.pt  scheduler.pt  rng.pt
        state.json              epoch, step, position in the epoch's batch order, best dev WER, history
        checkpoint.json         written last: size and sha256 of every file above

A checkpoint folder appears in one rename (dama_asr.atomic.atomic_dir), so it is complete or absent;
checkpoint.json catches what happens afterwards (a truncated copy, a file edited by hand).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dama_asr.atomic import atomic_dir, atomic_write_text
from dama_asr.errors import DamaError

log = logging.getLogger(__name__)

MANIFEST = "checkpoint.json"
FORMAT = "dama-train-checkpoint"


class CheckpointError(DamaError, RuntimeError):
    """No usable checkpoint; the message says which ones were tried and why they failed."""


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(
    folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, state: dict
) -> Path:
    """Write one checkpoint atomically (call on the main process only)."""
    with atomic_dir(folder) as scratch:
        save_file(trainable_state(model), str(scratch / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), scratch / "optimizer.pt")
        torch.save(scheduler.state_dict(), scratch / "scheduler.pt")
        torch.save(rng_state(), scratch / "rng.pt")
        atomic_write_text(scratch / "state.json", json.dumps(state, indent=2))
        files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(scratch.iterdir())}
        atomic_write_text(scratch / MANIFEST, json.dumps({"format": FORMAT, "files": files}, indent=2))
    return folder


def verify_checkpoint(folder: Path) -> dict:
    """The checkpoint's state.json, or CheckpointError saying what is wrong with it."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {MANIFEST} (incomplete checkpoint)") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{folder}/{MANIFEST}: not valid JSON ({err.msg})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{folder}: {MANIFEST} is not a dama checkpoint manifest")
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder}: {name} is missing")
        if path.stat().st_size != expected["bytes"]:
            raise CheckpointError(
                f"{folder}: {name} is {path.stat().st_size} bytes, expected {expected['bytes']} (truncated?)"
            )
        if _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"{folder}: {name} does not match its checksum (corrupt)")
    try:
        return json.loads((folder / "state.json").read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{folder}/state.json: not valid JSON ({err.msg})") from None


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Checkpoint folders, oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    return sorted(p for p in checkpoint_dir.glob("step-*") if p.is_dir() and not p.name.endswith(".partial"))


def latest_good_checkpoint(checkpoint_dir: Path) -> tuple[Path, dict]:
    """The newest checkpoint that verifies; warns about each newer one that does not."""
    problems = []
    for folder in reversed(list_checkpoints(checkpoint_dir)):
        try:
            state = verify_checkpoint(folder)
        except CheckpointError as err:
            problems.append(str(err))
            log.warning("checkpoint %s is unusable (%s); trying the previous one", folder.name, err)
            continue
        if problems:
            log.warning("resuming from the previous good checkpoint %s", folder)
        return folder, state
    if problems:
        raise CheckpointError("no usable checkpoint: " + "; ".join(problems))
    raise CheckpointError(f"no checkpoint under {checkpoint_dir}: nothing to resume")


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> None:
    """Restore weights, optimizer, scheduler and RNG states (after `verify_checkpoint`)."""
    weights = load_file(str(folder / "trainable.safetensors"))
    params = dict(model.named_parameters())
    wrong = sorted(set(weights) ^ {n for n, p in params.items() if p.requires_grad})
    if wrong:
        raise CheckpointError(f"{folder}: trainable parameters differ from this run's model, e.g. {wrong[0]}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    set_rng_state(torch.load(folder / "rng.pt", weights_only=False))


def prune_checkpoints(checkpoint_dir: Path, keep: int) -> None:
    for folder in list_checkpoints(checkpoint_dir)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)
