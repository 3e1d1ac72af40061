"""PiSSA (Meng et al. 2024: principal singular triplets) and MiLoRA (Wang et al. 2024: minor ones).

Both start A, B from an SVD of W and keep the residual W - s B A as the frozen base, so the output
is unchanged at init. To stay loadable with plain `PeftModel.from_pretrained` on the ORIGINAL base,
they are saved as the equivalent rank-2r LoRA:
    W_res + s B A = W + s' [B, -B0] [A; A0]   with s' = s (alpha doubled with the rank),
since W_res = W - s B0 A0. This is peft's own PiSSA-to-LoRA conversion, done for any residual init.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from dama_asr.adapters.config import AdapterConfig
from dama_asr.adapters.families.lora import LoraFamily
from dama_asr.adapters.plan import INIT_MILORA, INIT_PISSA, ModulePlan
from dama_asr.adapters.registry import register

if TYPE_CHECKING:
    import torch
    from torch import nn


class SvdResidual(LoraFamily):
    family = "svd_residual"
    minor = False  # which end of the spectrum A and B take

    def initialise(self, layer: nn.Module, row: ModulePlan) -> tuple[torch.Tensor, torch.Tensor]:
        from dama_asr.adapters.methods import ADAPTER_NAME, lora_factors
        from dama_asr.adapters.svd import residual_factors

        lora_a, lora_b, base = lora_factors(layer)
        a, b, residual = residual_factors(base, row.rank, layer.scaling[ADAPTER_NAME], minor=self.minor)
        lora_a.copy_(a)
        lora_b.copy_(b)
        base.copy_(residual)
        return a.clone(), b.clone()

    def save(self, model: nn.Module, cfg: AdapterConfig, folder: Path) -> None:
        from dama_asr.adapters.methods import INITIAL_FACTORS_ATTR

        initial = getattr(model, INITIAL_FACTORS_ATTR, None)
        if initial:
            residual_as_lora(model, initial, folder)
        else:  # a model loaded back from such a folder is already a plain LoRA on the original base
            model.save_pretrained(folder)


def residual_as_lora(model: nn.Module, initial: dict, out_dir: Path) -> None:
    """Write the rank-2r plain-LoRA equivalent of a residual-init adapter (module doc)."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from dama_asr.adapters.methods import ADAPTER_NAME
    from dama_asr.atomic import atomic_write_text

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


class Pissa(SvdResidual):
    name = "pissa"
    label = "PiSSA"
    colour = "#9467bd"
    order = 20
    summary = "PiSSA: LoRA started from W's principal singular triplets, the residual frozen."
    init = INIT_PISSA


class Milora(SvdResidual):
    name = "milora"
    label = "MiLoRA"
    colour = "#8c564b"
    order = 21
    summary = "MiLoRA: LoRA started from W's minor singular triplets, the residual frozen."
    init = INIT_MILORA
    minor = True


register(Pissa())
register(Milora())
