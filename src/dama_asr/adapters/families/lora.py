"""LoRA (Hu et al. 2021) and LoRA-FA (Zhang et al. 2023: A frozen at its random init, B trains).

`LoraFamily` is the shared base of every peft-LoRA method here (PiSSA, MiLoRA, DoRA, DAMA): a plan of
per-layer ranks, alphas, inits and trained factors, executed by `methods.apply_lora_plan`. A family
overrides what it decides per layer (`decoder_layer`, `encoder_layer`) and how a layer starts
(`initialise`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dama_asr.adapters.config import AdapterConfig, AdapterConfigError
from dama_asr.adapters.plan import INIT_DEFAULT, LayerChoice, ModulePlan, check_ranks, rows_for
from dama_asr.adapters.registry import MethodSpec, register

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from torch import nn
    from transformers import WhisperConfig, WhisperForConditionalGeneration


def uniform_rank(spec: MethodSpec, cfg: AdapterConfig) -> dict[str, Any]:
    """A uniform-rank method's resolution: r is required, and under alpha_policy "ratio" the alpha
    used is alpha_ratio * r (stored, so a saved config shows the adapter's lora_alpha)."""
    if cfg.r is not None and not isinstance(cfg.r, int):
        raise TypeError(f"r must be an integer, got {cfg.r!r}")  # from_dict names it a wrong type
    if cfg.r is None or cfg.r < 1:
        raise AdapterConfigError(f"r: method {spec.name} needs a rank r >= 1, got {cfg.r}")
    return {"alpha": ratio_alpha(cfg, cfg.r)}


def ratio_alpha(cfg: AdapterConfig, rank: int | None) -> float | None:
    """The alpha stored for one uniform rank (None: it differs per layer); fixed alphas stay as given."""
    if cfg.alpha_policy == "fixed":
        if cfg.alpha is None:
            raise AdapterConfigError("alpha: alpha_policy 'fixed' needs a number, got none")
        return cfg.alpha
    return None if rank is None else float(cfg.alpha_ratio * rank)


class LoraFamily(MethodSpec):
    """Uniform-rank LoRA on every targeted linear; subclasses change the per-layer decisions."""

    family = "lora"
    init = INIT_DEFAULT
    train_a = True
    dora = False
    requires_rank = True

    def resolve(self, cfg: AdapterConfig) -> dict[str, Any]:
        return uniform_rank(self, cfg)

    def decoder_layer(self, cfg: AdapterConfig, layer: int, depth: int) -> LayerChoice:
        return LayerChoice(cfg.r, cfg.alpha_for(cfg.r), self.init, self.train_a, dora=self.dora)

    def encoder_layer(self, cfg: AdapterConfig, layer: int, depth: int) -> LayerChoice:
        return self.decoder_layer(cfg, layer, depth)

    def plan(self, config: WhisperConfig, cfg: AdapterConfig) -> list[ModulePlan]:
        rows = rows_for(config, cfg, "decoder", lambda layer, depth: self.decoder_layer(cfg, layer, depth))
        if cfg.encoder:
            rows += rows_for(
                config, cfg, "encoder", lambda layer, depth: self.encoder_layer(cfg, layer, depth)
            )
        return check_ranks(rows)

    def trained_names(self, row: ModulePlan) -> set[str]:
        names = {"lora_A.default.weight"} if row.train_a else set()
        names |= {"lora_B.default.weight"} if row.train_b else set()
        return names | ({"lora_magnitude_vector.default.weight"} if row.dora else set())

    def initialise(self, layer: nn.Module, row: ModulePlan) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Start one peft LoRA layer (under no_grad); return (A0, B0) if the base weight was changed."""
        return None  # peft's own: kaiming-uniform A, zero B

    def apply(self, model: WhisperForConditionalGeneration, cfg: AdapterConfig) -> nn.Module:
        from dama_asr.adapters.methods import apply_lora_plan

        return apply_lora_plan(model, self.plan(model.config, cfg), cfg, self.initialise)


class Lora(LoraFamily):
    """Plain LoRA. It may start from saved LoRAs (`AdapterConfig.extra["start"]`: LoRA-Whisper's warm
    start and LoRA MoE, `dama_asr.adapters.lora_start`); without that, from peft's own init."""

    name = "lora"
    label = "LoRA"
    colour = "#1f77b4"
    order = 10
    summary = "LoRA: a trainable low-rank update B A (rank r) on each targeted linear."

    def resolve(self, cfg: AdapterConfig) -> dict[str, Any]:
        resolved = super().resolve(cfg)
        _start_of(cfg)  # validates extra["start"]
        return resolved

    def trainable_parameters(self, config: WhisperConfig, cfg: AdapterConfig) -> int:
        start, rows = _start_of(cfg), self.plan(config, cfg)
        if start is None:
            return sum(row.trainable_parameters for row in rows)
        return start.trainable_parameters(rows)

    def apply(self, model: WhisperForConditionalGeneration, cfg: AdapterConfig) -> nn.Module:
        peft_model = super().apply(model, cfg)
        start = _start_of(cfg)
        if start is not None:
            start.apply(peft_model, self.plan(model.config, cfg))
        return peft_model

    def save(self, model: nn.Module, cfg: AdapterConfig, folder: Path) -> None:
        from dama_asr.adapters.lora_start import save_stacked

        if not save_stacked(model, folder):  # a mixture start saves as the plain LoRA it equals
            super().save(model, cfg, folder)


def _start_of(cfg: AdapterConfig):
    """The config's `LoraStart`, or None; imported only when a config asks for one (it needs torch)."""
    if "start" not in cfg.extra:
        return None
    from dama_asr.adapters.lora_start import LoraStart

    return LoraStart.of(cfg)


class LoraFA(LoraFamily):
    name = "lora-fa"
    label = "LoRA-FA"
    colour = "#17becf"
    order = 11
    summary = "LoRA-FA: LoRA with A frozen at its random init; only B trains (half the optimizer state)."
    train_a = False


register(Lora())
register(LoraFA())
