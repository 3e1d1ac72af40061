"""Execute an adapter plan on an unmodified transformers Whisper, with peft doing the wrapping.

peft builds the LoRA layers (per-module ranks and alphas through rank_pattern/alpha_pattern, DoRA
through use_dora); this module adds what peft lacks: DAMA's trailing-SVD middle layers with a frozen
basis, LoRA-FA's frozen A, and MiLoRA's minor-triplet residual init (PiSSA uses the same code path).
"""

from __future__ import annotations

import re

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import WhisperForConditionalGeneration

from dama_asr.adapters.config import AdapterConfig
from dama_asr.adapters.plan import INIT_MILORA, INIT_PISSA, INIT_TRAILING, ModulePlan, plan_modules
from dama_asr.adapters.svd import residual_factors, trailing_basis

ADAPTER_NAME = "default"
# Attribute on the PeftModel holding {module name: (A0, B0)} of residual inits, for saving.
INITIAL_FACTORS_ATTR = "_dama_initial_factors"


def lora_config_for(plans: list[ModulePlan], cfg: AdapterConfig) -> LoraConfig:
    """A plain peft LoraConfig that reproduces the plan's ranks and alphas (what users load with peft)."""
    first = plans[0]
    # Keys are regexes to peft: escape so that layers.1 never matches layers.11.
    return LoraConfig(
        r=first.rank,
        lora_alpha=first.alpha,
        target_modules=[p.name for p in plans],
        rank_pattern={re.escape(p.name): p.rank for p in plans},
        alpha_pattern={re.escape(p.name): p.alpha for p in plans},
        lora_dropout=cfg.dropout,
        use_dora=any(p.dora for p in plans),
        init_lora_weights=True,
        bias="none",
    )


def _initialise(layer: nn.Module, plan: ModulePlan) -> tuple[torch.Tensor, torch.Tensor] | None:
    lora_a = layer.lora_A[ADAPTER_NAME].weight  # (r, in)
    lora_b = layer.lora_B[ADAPTER_NAME].weight  # (out, r)
    base = layer.get_base_layer().weight  # (out, in)
    with torch.no_grad():
        if plan.init == INIT_TRAILING:
            lora_a.copy_(trailing_basis(base, plan.rank))
            lora_b.zero_()
        elif plan.init in (INIT_PISSA, INIT_MILORA):
            a, b, residual = residual_factors(
                base, plan.rank, layer.scaling[ADAPTER_NAME], minor=plan.init == INIT_MILORA
            )
            lora_a.copy_(a)
            lora_b.copy_(b)
            base.copy_(residual)
            return a.clone(), b.clone()
    return None


def apply_adapter(model: WhisperForConditionalGeneration, cfg: AdapterConfig) -> nn.Module:
    """Return the model ready to train under `cfg`: a PeftModel, or the model itself for `full`.

    Exactly the parameters the plan says train have requires_grad; everything else is frozen.
    """
    if cfg.method == "full":
        model.requires_grad_(False)
        model.model.decoder.requires_grad_(True)
        if cfg.encoder:
            model.model.encoder.requires_grad_(True)
        return model
    plans = plan_modules(model.config, cfg)
    peft_model = get_peft_model(model, lora_config_for(plans, cfg), adapter_name=ADAPTER_NAME)
    initial = {}
    for plan in plans:
        layer = peft_model.base_model.model.get_submodule(plan.name)
        factors = _initialise(layer, plan)
        if factors is not None:
            initial[plan.name] = factors
        layer.lora_A[ADAPTER_NAME].weight.requires_grad_(plan.train_a)
        layer.lora_B[ADAPTER_NAME].weight.requires_grad_(plan.train_b)
    setattr(peft_model, INITIAL_FACTORS_ATTR, initial)
    return peft_model


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def base_model_of(model: nn.Module) -> WhisperForConditionalGeneration:
    """The transformers Whisper inside (for generation config, encoder access, ...)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model
