"""Save and load adapters as standard artefacts: a peft adapter folder (or a full model folder).

Residual inits (PiSSA, MiLoRA) change the base weights. To stay loadable with plain
`PeftModel.from_pretrained` on the ORIGINAL base, they are saved as the equivalent rank-2r LoRA:
    W_res + s B A = W + s' [B, -B0] [A; A0]   with s' = s (alpha doubled with the rank),
since W_res = W - s B0 A0. This is peft's own PiSSA-to-LoRA conversion, done for any residual init.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import save_file
from torch import nn
from transformers import WhisperForConditionalGeneration

from dama_asr.adapters.config import AdapterConfig
from dama_asr.adapters.methods import ADAPTER_NAME, INITIAL_FACTORS_ATTR
from dama_asr.atomic import atomic_dir, atomic_write_text
from dama_asr.backbone.loading import Backbone

DAMA_META = "dama_adapter.json"


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
    atomic_write_text(out_dir / "adapter_config.json", json.dumps(config_dict, indent=2, default=str))
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
        atomic_write_text(scratch / DAMA_META, json.dumps(meta, indent=2))
    return out_dir


def read_adapter_meta(folder: str | Path) -> dict:
    path = Path(folder) / DAMA_META
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


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
    """Load what `save_adapter` wrote onto a fresh base model (for inference)."""
    folder = Path(folder)
    meta = read_adapter_meta(folder)
    if meta.get("method") == "full":
        return WhisperForConditionalGeneration.from_pretrained(folder)
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no adapter (no adapter_config.json)")
    return PeftModel.from_pretrained(base, folder)


def escape_free(pattern: str) -> str:
    """Module name from an escaped rank_pattern key (for display)."""
    return re.sub(r"\\(.)", r"\1", pattern)
