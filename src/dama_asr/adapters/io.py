"""Save and load adapters as standard artefacts: a peft adapter folder (or a full model folder).

Residual inits (PiSSA, MiLoRA) change the base weights. To stay loadable with plain
`PeftModel.from_pretrained` on the ORIGINAL base, they are saved as the equivalent rank-2r LoRA:
    W_res + s B A = W + s' [B, -B0] [A; A0]   with s' = s (alpha doubled with the rank),
since W_res = W - s B0 A0. This is peft's own PiSSA-to-LoRA conversion, done for any residual init.

Every saved folder ends with `checksums.json` (size and sha256 of each file, see `dama_asr.integrity`),
which loading verifies: a truncated copy is an `AdapterIntegrityError` naming the file, not a
traceback from deep inside safetensors. PEFT ignores the extra file, so the folder stays a plain
peft adapter. Folders saved before checksums existed load unverified. Only safetensors weights are
loaded: a pickled `adapter_model.bin` or `pytorch_model.bin` could run code when unpickled.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import WhisperForConditionalGeneration

from dama_asr.adapters.config import AdapterConfig
from dama_asr.adapters.methods import ADAPTER_NAME, INITIAL_FACTORS_ATTR
from dama_asr.atomic import atomic_dir, atomic_write_text
from dama_asr.backbone.loading import Backbone
from dama_asr.errors import DamaError
from dama_asr.integrity import IntegrityError, verify_manifest, write_manifest

log = logging.getLogger(__name__)

DAMA_META = "dama_adapter.json"
CHECKSUMS = "checksums.json"
CHECKSUMS_FORMAT = "dama-adapter"
_FIX = "re-export the adapter, retrain it, or copy the folder again from where it was saved"


class AdapterLoadError(DamaError, ValueError):
    """An adapter folder that cannot be loaded; the message names the folder or file."""


class AdapterIntegrityError(AdapterLoadError, IntegrityError):
    """A file of an adapter folder that was damaged after saving (truncated, corrupt, not JSON)."""


def _residual_as_lora(model: PeftModel, initial: dict, out_dir: Path) -> None:
    state = get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME)
    for name, (a0, b0) in initial.items():
        a_key = f"base_model.model.{name}.lora_A.weight"
        b_key = f"base_model.model.{name}.lora_B.weight"
        state[a_key] = torch.cat([state[a_key], a0.to(state[a_key].dtype)], dim=0)
        state[b_key] = torch.cat([state[b_key], -b0.to(state[b_key].dtype)], dim=1)
    config = model.peft_config[ADAPTER_NAME]
    doubled = {
        "r": 2 * config.r,
        "lora_alpha": 2 * config.lora_alpha,
        "rank_pattern": {k: 2 * v for k, v in config.rank_pattern.items()},
        "alpha_pattern": {k: 2 * v for k, v in config.alpha_pattern.items()},
    }
    config_dict = config.to_dict() | doubled
    config_dict["target_modules"] = sorted(config_dict["target_modules"])
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out_dir / "adapter_config.json", json.dumps(config_dict, indent=2, default=str, allow_nan=False)
    )
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / "adapter_model.safetensors"))


def save_adapter(model: nn.Module, cfg: AdapterConfig, out_dir: str | Path, base_model: str = "") -> Path:
    """Write the adapter (or the full model) atomically, plus dama_adapter.json (method, config, base)."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as scratch:
        if cfg.method == "full":
            model.save_pretrained(scratch)
        elif getattr(model, INITIAL_FACTORS_ATTR, None):
            _residual_as_lora(model, getattr(model, INITIAL_FACTORS_ATTR), scratch)
        else:
            model.save_pretrained(scratch)
        meta = {"method": cfg.method, "adapter_config": cfg.to_dict(), "base_model": base_model}
        atomic_write_text(scratch / DAMA_META, json.dumps(meta, indent=2, allow_nan=False))
        write_manifest(scratch, CHECKSUMS, CHECKSUMS_FORMAT)  # last: it describes every file above
    return out_dir


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdapterLoadError(f"{path}: missing; {_FIX}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterIntegrityError(f"{path}: not valid JSON ({err}); {_FIX}") from None
    if not isinstance(data, dict):
        raise AdapterIntegrityError(f"{path}: holds {type(data).__name__}, not a JSON object; {_FIX}")
    return data


def read_adapter_meta(folder: str | Path) -> dict:
    """dama_adapter.json (method, adapter config, base model), {} for a plain peft folder."""
    path = Path(folder) / DAMA_META
    if not path.is_file():
        return {}
    return _read_json(path)


def verify_adapter(folder: str | Path) -> bool:
    """Check `folder` against its checksums.json; False (and a log line) when it predates them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterLoadError(f"{folder}: no such adapter folder")
    if verify_manifest(folder, CHECKSUMS, CHECKSUMS_FORMAT, AdapterIntegrityError, _FIX):
        return True
    log.info("%s has no %s (saved before dama wrote one); loading it unverified", folder, CHECKSUMS)
    return False


def _check_safetensors(path: Path) -> None:
    """Parse the header, so a truncated or foreign file is named here, not deep in peft."""
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as err:
        raise AdapterIntegrityError(f"{path}: not a readable safetensors file ({err}); {_FIX}") from None


def adapted_backbone(backbone: Backbone, folder: str | Path, merge: bool = False) -> Backbone:
    """`backbone` with a `dama train` output folder (`best/`, `final/`) applied, ready for inference.

    merge: fold a peft adapter into the weights (a plain Whisper, e.g. for probing). Frozen weights are
    then held in the backbone's compute dtype (bf16 under `auto` on hardware with native bf16).
    """
    model = load_adapted(backbone.model, folder)
    if merge and isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model = model.to(backbone.device)
    return Backbone(
        model, backbone.processor, f"{backbone.name}+{folder}", backbone.precision
    ).ready_for_inference()


def load_adapted(base: WhisperForConditionalGeneration, folder: str | Path) -> nn.Module:
    """Load what `save_adapter` wrote onto a fresh base model (for inference), verified first."""
    folder = Path(folder)
    verify_adapter(folder)
    meta = read_adapter_meta(folder)
    if meta.get("method") == "full":
        return _load_full_model(folder)
    config = folder / "adapter_config.json"
    if not config.is_file():
        raise AdapterLoadError(
            f"{folder} holds no adapter (no adapter_config.json); pass a `dama train` output folder"
        )
    _read_json(config)
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        pickled = (
            " (only adapter_model.bin, a pickle, which dama does not load)"
            if (folder / "adapter_model.bin").is_file()
            else ""
        )
        raise AdapterLoadError(
            f"{folder}: no adapter_model.safetensors{pickled}; save the adapter again with peft's safe_serialization"
        )
    _check_safetensors(weights)
    try:
        return PeftModel.from_pretrained(base, folder)
    except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise AdapterLoadError(
            f"{folder}: cannot apply the adapter to this base model ({type(err).__name__}: {err}); "
            "check --model is the model the adapter was trained on"
        ) from err


def _load_full_model(folder: Path) -> WhisperForConditionalGeneration:
    weights = sorted(folder.glob("model*.safetensors"))
    if not weights:
        raise AdapterLoadError(f"{folder}: a full-model folder without model.safetensors; {_FIX}")
    for path in weights:
        _check_safetensors(path)
    _read_json(folder / "config.json")
    try:
        return WhisperForConditionalGeneration.from_pretrained(folder, use_safetensors=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise AdapterLoadError(
            f"{folder}: cannot load the saved model ({type(err).__name__}: {err}); {_FIX}"
        ) from err


def escape_free(pattern: str) -> str:
    """Module name from an escaped rank_pattern key (for display)."""
    return re.sub(r"\\(.)", r"\1", pattern)
