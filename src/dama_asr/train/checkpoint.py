"""Atomic training checkpoints that can be verified before resuming.

    <run>/checkpoints/step-00000120/
        trainable.safetensors   every parameter with requires_grad, by name
        optimizer.{safetensors,json}  scheduler.{safetensors,json}
        rng.{safetensors,json}  the RNG states of every process (python, numpy, torch, cuda), by rank
        state.json              epoch, step, position in the epoch's batch order, best dev WER, history,
                                world size and global batch (checked on resume)
        checkpoint.json         written last: size and sha256 of every file above

Nothing in a checkpoint is a pickle (see `dama_asr.train.state_io`): resuming a forged checkpoint
cannot run code. A checkpoint folder appears in one rename (dama_asr.atomic.atomic_dir), so it is
complete or absent; checkpoint.json catches what happens afterwards (a truncated copy, a file edited
by hand).
"""

from __future__ import annotations

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
from dama_asr.faults import crash_point
from dama_asr.integrity import read_manifest, verify_files, write_manifest
from dama_asr.train.state_io import StateFileError, load_state, save_state

log = logging.getLogger(__name__)

MANIFEST = "checkpoint.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin")
FORMAT = "dama-train-checkpoint"


class CheckpointError(DamaError, RuntimeError):
    """No usable checkpoint; the message says which ones were tried and why they failed."""


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    """This process's RNG states, in types `state_io` saves without pickling."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": keys,
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"], npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: dict,
    rng_states: list[dict] | None = None,
) -> Path:
    """Write one checkpoint atomically (call on the main process only).

    `rng_states`: every process's `rng_state()`, by rank (gathered by the caller); default: this one's.
    """
    with atomic_dir(folder) as scratch:
        save_file(trainable_state(model), str(scratch / "trainable.safetensors"))
        crash_point("checkpoint-write")
        save_state(optimizer.state_dict(), scratch, "optimizer")
        save_state(scheduler.state_dict(), scratch, "scheduler")
        save_state({"ranks": rng_states or [rng_state()]}, scratch, "rng")
        atomic_write_text(scratch / "state.json", json.dumps(state, indent=2, allow_nan=False))
        write_manifest(scratch, MANIFEST, FORMAT)
        crash_point("checkpoint-rename")
    return folder


def verify_checkpoint(folder: Path) -> dict:
    """The checkpoint's state.json, or CheckpointError saying what is wrong with it."""
    files = read_manifest(folder, MANIFEST, FORMAT, CheckpointError)
    if files is None:
        raise CheckpointError(f"{folder}: no {MANIFEST} (incomplete checkpoint)")
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        # Older versions wrote torch.save pickles; loading one can run arbitrary code, whoever wrote it.
        raise CheckpointError(
            f"{folder}: holds {', '.join(pickles)}, a pickle, which dama no longer loads (unpickling a file "
            "can run code; this one may be from an older dama or forged). Delete this checkpoint folder to "
            "resume from an earlier one, or start the run again"
        )
    verify_files(folder, files, CheckpointError)
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


def load_checkpoint(
    folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, rank: int = 0
) -> None:
    """Restore weights, optimizer, scheduler and this rank's RNG states (after `verify_checkpoint`)."""
    weights = load_file(str(folder / "trainable.safetensors"))
    params = dict(model.named_parameters())
    wrong = sorted(set(weights) ^ {n for n, p in params.items() if p.requires_grad})
    if wrong:
        raise CheckpointError(f"{folder}: trainable parameters differ from this run's model, e.g. {wrong[0]}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    try:
        optimizer.load_state_dict(load_state(folder, "optimizer"))
        scheduler.load_state_dict(load_state(folder, "scheduler"))
        ranks = load_state(folder, "rng")["ranks"]
    except StateFileError as err:
        raise CheckpointError(str(err)) from None
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"{folder}: optimizer or scheduler state does not fit this run ({err})"
        ) from None
    if rank >= len(ranks):
        raise CheckpointError(f"{folder}: holds RNG states for {len(ranks)} process(es), not for rank {rank}")
    set_rng_state(ranks[rank])


def prune_checkpoints(checkpoint_dir: Path, keep: int) -> None:
    for folder in list_checkpoints(checkpoint_dir)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)
