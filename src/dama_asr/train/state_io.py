"""Training state (optimizer, scheduler, RNG) as safetensors + JSON: nothing on disk can run code.

`torch.save` writes pickles, and unpickling a file runs whatever the file says: a forged `rng.pt` with
a recomputed checksum manifest ran a shell command on `dama train --resume`. A checksum manifest gives
integrity, not authenticity, so the format itself must be inert. Here any nested state of dicts,
lists, tuples, numbers, strings, None, tensors and numpy arrays is split into

    <name>.safetensors   every tensor/array, under a key that says where it sat
    <name>.json          the rest of the tree, with {"__tensor__": key} where a tensor sat

and put back together on load. Tuples, non-finite floats and numpy arrays are tagged so that they come
back as what they were (random.setstate needs tuples; Adam's state may hold inf).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dama_asr.errors import DamaError


class StateFileError(DamaError):
    """A state file pair that cannot be read back; the message names the file."""


def _flatten(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(value, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(value))
        return {"__ndarray__": path}
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) for k in value):
            raise TypeError(f"{path}: only str or int keys can be saved, got {list(value)[:3]}")
        # JSON keys are strings; int keys (optimizer state is keyed by parameter index) are tagged.
        return {"__dict__": [[k, _flatten(v, f"{path}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}  # 'inf', '-inf', 'nan': strict JSON has no literal for them
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return _flatten(value.item(), path, tensors)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{path}: cannot save a {type(value).__name__} as training state")


def _unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_unflatten(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return tensors[node["__tensor__"]]
    if "__ndarray__" in node:
        return tensors[node["__ndarray__"]].numpy()
    if "__tuple__" in node:
        return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
    if "__float__" in node:
        return float(node["__float__"])
    if "__dict__" in node:
        return {k: _unflatten(v, tensors) for k, v in node["__dict__"]}
    raise ValueError(f"unexpected node {sorted(node)[:3]}")


def save_state(value: Any, folder: Path, name: str) -> list[Path]:
    """Write `name.safetensors` and `name.json` into `folder`; returns both paths."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(value, name, tensors)
    tensor_path, json_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    save_file(tensors, str(tensor_path))
    json_path.write_text(json.dumps(tree, allow_nan=False), encoding="utf-8")
    return [tensor_path, json_path]


def load_state(folder: Path, name: str) -> Any:
    """The value `save_state` wrote; StateFileError naming the file if either half is unreadable."""
    tensor_path, json_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError) as err:
        raise StateFileError(f"{tensor_path}: not readable as safetensors ({err})") from None
    try:
        return _unflatten(json.loads(json_path.read_text(encoding="utf-8")), tensors)
    except (OSError, ValueError, KeyError) as err:
        raise StateFileError(f"{json_path}: not a valid state file ({err})") from None
