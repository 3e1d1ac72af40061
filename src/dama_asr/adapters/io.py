"""Save and load adapters as standard artefacts: a peft adapter folder (or a full model folder).

Each method's spec writes and reads its weights (`MethodSpec.save` / `load`; residual inits are
saved as an equivalent plain LoRA, see `families/svd_residual.py`); this module adds what every
folder has. `adapter_config.json` names the base model portably (`openai/whisper-base` for the
embedded model, not the local folder it was converted into); `dama_adapter.json` keeps our own
record: the method, the resolved adapter config, the model string the user gave, the local folder
and the per-layer ranks the config resolved to; `README.md` is a filled-in model card (`card.py`).

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

from peft import PeftModel
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import WhisperForConditionalGeneration

from dama_asr.adapters.card import local_base_record, model_card, portable_base_name
from dama_asr.adapters.config import AdapterConfig
from dama_asr.adapters.methods import base_model_of, merge_adapter
from dama_asr.adapters.plan import resolved_plan
from dama_asr.adapters.registry import UnknownMethodError, get_method
from dama_asr.atomic import atomic_dir, atomic_write_text
from dama_asr.backbone.loading import Backbone
from dama_asr.errors import DamaError
from dama_asr.integrity import IntegrityError, read_json_object, verify_manifest, write_manifest
from dama_asr.quiet import peft_quietly

log = logging.getLogger(__name__)

DAMA_META = "dama_adapter.json"
CHECKSUMS = "checksums.json"
CHECKSUMS_FORMAT = "dama-adapter"
FIX_HINT = "re-export the adapter, retrain it, or copy the folder again from where it was saved"


class AdapterLoadError(DamaError, ValueError):
    """An adapter folder that cannot be loaded; the message names the folder or file."""


class AdapterIntegrityError(AdapterLoadError, IntegrityError):
    """A file of an adapter folder that was damaged after saving (truncated, corrupt, not JSON)."""


def _portable_peft_config(folder: Path, base_name: str) -> None:
    """Name the base portably in adapter_config.json (peft wrote the local path the weights came from)."""
    path = folder / "adapter_config.json"
    if not path.is_file():
        return
    config = read_json(path)
    config["base_model_name_or_path"] = base_name or None
    if isinstance(config.get("target_modules"), list):  # peft writes a set: sorted, the bytes repeat
        config["target_modules"] = sorted(config["target_modules"])
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True, allow_nan=False))


def save_adapter(
    model: nn.Module,
    cfg: AdapterConfig,
    out_dir: str | Path,
    base_model: str = "",
    card: dict | None = None,
    base_fingerprint: str | None = None,
) -> Path:
    """Write the adapter (or the full model) atomically, plus dama_adapter.json, a model card and checksums.

    base_model: the model string the user gave (`whisper-base`, a hub id, a folder). card: what the
    caller knows about the run for README.md (language, train_hours, dev_wer, test_wer, dataset, ...).
    base_fingerprint: `sets.base_fingerprint` of the base as loaded, before any adapter (PiSSA, MiLoRA
    and DAMA's SVD inits change the base weights, so it cannot be taken from `model` here); recorded
    so that `dama export` can refuse another base by its weights, not only by its name.
    """
    out_dir = Path(out_dir)
    spec = get_method(cfg.method)
    whisper = base_model_of(model)
    local = local_base_record(whisper)
    base_name = portable_base_name(base_model, local["path"])
    resolved = resolved_plan(whisper.config, cfg)
    with atomic_dir(out_dir) as scratch:
        spec.save(model, cfg, scratch)
        _portable_peft_config(scratch, base_name)
        text = model_card(spec, cfg, base_name, resolved["trainable_parameters"], card)
        atomic_write_text(scratch / "README.md", text)  # replaces peft's blank template
        meta = {"method": cfg.method, "adapter_config": cfg.to_dict(), "base_model": base_model,
                "base_model_id": base_name, "base_model_local": local, "resolved": resolved}  # fmt: skip
        if base_fingerprint is not None:
            meta["base_fingerprint"] = base_fingerprint
        atomic_write_text(scratch / DAMA_META, json.dumps(meta, indent=2, allow_nan=False))
        write_manifest(scratch, CHECKSUMS, CHECKSUMS_FORMAT)  # last: it describes every file above
    return out_dir


def read_json(path: Path) -> dict:
    """A JSON object of an adapter folder; a missing file is a load error, a damaged one an integrity error."""
    if not path.is_file():
        raise AdapterLoadError(f"{path}: missing; {FIX_HINT}")
    return read_json_object(path, AdapterIntegrityError, FIX_HINT)


def read_adapter_meta(folder: str | Path) -> dict:
    """dama_adapter.json (method, adapter config, base model), {} for a plain peft folder."""
    path = Path(folder) / DAMA_META
    if not path.is_file():
        return {}
    return read_json(path)


def verify_adapter(folder: str | Path) -> bool:
    """Check `folder` against its checksums.json; False (and a log line) when it predates them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterLoadError(f"{folder}: no such adapter folder")
    if verify_manifest(folder, CHECKSUMS, CHECKSUMS_FORMAT, AdapterIntegrityError, FIX_HINT):
        return True
    log.info("%s has no %s (saved before dama wrote one); loading it unverified", folder, CHECKSUMS)
    return False


def check_safetensors(path: Path) -> None:
    """Parse the header, so a truncated or foreign file is named here, not deep in peft."""
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as err:
        raise AdapterIntegrityError(f"{path}: not a readable safetensors file ({err}); {FIX_HINT}") from None


def adapted_backbone(backbone: Backbone, folder: str | Path, merge: bool = False) -> Backbone:
    """`backbone` with a `dama train` output folder (`best/`, `final/`) applied, ready for inference.

    merge: fold a peft adapter into the weights (a plain Whisper, e.g. for probing). Frozen weights are
    then held in the backbone's compute dtype (bf16 under `auto` on hardware with native bf16).
    """
    model = load_adapted(backbone.model, folder)
    if merge:
        spec = _saved_method(Path(folder))
        model = spec.merge(model) if spec is not None else merge_adapter(model)
    model = model.to(backbone.device)
    return Backbone(
        model, backbone.processor, f"{backbone.name}+{folder}", backbone.precision
    ).ready_for_inference()


def _saved_method(folder: Path):
    """The spec of the method that saved `folder` (None for a plain peft folder)."""
    method = read_adapter_meta(folder).get("method")
    if method is None:
        return None
    try:
        return get_method(method)
    except UnknownMethodError:
        raise AdapterLoadError(
            f"{folder}: saved by method {method!r}, which this dama does not know; update dama-asr"
        ) from None


def load_adapted(base: WhisperForConditionalGeneration, folder: str | Path) -> nn.Module:
    """Load what `save_adapter` wrote onto a fresh base model (for inference), verified first."""
    folder = Path(folder)
    verify_adapter(folder)
    spec = _saved_method(folder)
    return spec.load(base, folder) if spec is not None else load_peft_folder(base, folder)


def load_peft_folder(base: WhisperForConditionalGeneration, folder: Path) -> nn.Module:
    """A peft adapter folder (ours or anyone's) on `base`, each file checked before peft reads it."""
    config = folder / "adapter_config.json"
    if not config.is_file():
        raise AdapterLoadError(
            f"{folder} holds no adapter (no adapter_config.json); pass a `dama train` output folder"
        )
    read_json(config)
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
    check_safetensors(weights)
    try:
        with peft_quietly():
            return PeftModel.from_pretrained(base, folder)
    except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise AdapterLoadError(
            f"{folder}: cannot apply the adapter to this base model ({type(err).__name__}: {err}); "
            "check --model is the model the adapter was trained on"
        ) from err


def escape_free(pattern: str) -> str:
    """Module name from an escaped rank_pattern key (for display)."""
    return re.sub(r"\\(.)", r"\1", pattern)
