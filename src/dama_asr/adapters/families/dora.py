"""DoRA (Liu et al. 2024): LoRA on the direction of W plus a trainable per-output magnitude (peft's
`use_dora`)."""

from __future__ import annotations

from dama_asr.adapters.families.lora import LoraFamily
from dama_asr.adapters.registry import register


class Dora(LoraFamily):
    name = "dora"
    family = "dora"
    label = "DoRA"
    colour = "#e377c2"
    order = 30
    summary = "DoRA: weight-decomposed LoRA, a low-rank update of W's direction and a trained magnitude."
    dora = True


register(Dora())
