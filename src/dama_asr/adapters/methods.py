"""Execute an adapter on an unmodified transformers Whisper, with peft doing the wrapping.

`apply_adapter` hands the config to its method's spec. The LoRA families share `apply_lora_plan`:
peft builds the LoRA layers (per-module ranks and alphas through rank_pattern/alpha_pattern, DoRA
through use_dora) and the family's `initialise` hook adds what peft lacks (DAMA's trailing-SVD basis,
PiSSA/MiLoRA residual inits); A and B then train exactly as the plan says.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import WhisperForConditionalGeneration

from dama_asr.adapters.config import AdapterConfig
from dama_asr.adapters.plan import ModulePlan
from dama_asr.adapters.registry import get_method
from dama_asr.backbone.unwrap import base_model_of  # noqa: F401  (re-exported: adapters.base_model_of)
from dama_asr.quiet import peft_quietly

ADAPTER_NAME = "default"
# Attribute on the PeftModel holding {module name: (A0, B0)} of residual inits, for saving.
INITIAL_FACTORS_ATTR = "_dama_initial_factors"

# (peft LoRA layer, its plan) -> the initial (A0, B0) when the init moved the base weight, else None.
Initialiser = Callable[[nn.Module, ModulePlan], "tuple[torch.Tensor, torch.Tensor] | None"]


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


def apply_lora_plan(
    model: WhisperForConditionalGeneration,
    plans: list[ModulePlan],
    cfg: AdapterConfig,
    initialise: Initialiser,
) -> PeftModel:
    """Wrap the planned linears in peft LoRA layers, initialise them, and freeze what the plan freezes."""
    with peft_quietly():
        peft_model = get_peft_model(model, lora_config_for(plans, cfg), adapter_name=ADAPTER_NAME)
    initial = {}
    for plan in plans:
        layer = peft_model.base_model.model.get_submodule(plan.name)
        with torch.no_grad():
            factors = initialise(layer, plan)
        if factors is not None:
            initial[plan.name] = factors
        layer.lora_A[ADAPTER_NAME].weight.requires_grad_(plan.train_a)
        layer.lora_B[ADAPTER_NAME].weight.requires_grad_(plan.train_b)
    setattr(peft_model, INITIAL_FACTORS_ATTR, initial)
    return peft_model


def lora_factors(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (r, in), B (out, r) and the base weight W (out, in) of a peft LoRA layer."""
    return layer.lora_A[ADAPTER_NAME].weight, layer.lora_B[ADAPTER_NAME].weight, layer.get_base_layer().weight


def apply_adapter(model: WhisperForConditionalGeneration, cfg: AdapterConfig) -> nn.Module:
    """Return the model ready to train under `cfg`: a PeftModel, or the model itself for `full`.

    Exactly the parameters the plan says train have requires_grad; everything else is frozen.
    """
    return get_method(cfg.method).apply(model, cfg)


def merge_adapter(model: nn.Module) -> WhisperForConditionalGeneration:
    """Fold a peft adapter into the weights; a plain Whisper passes through."""
    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
