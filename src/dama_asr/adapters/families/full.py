"""Full fine-tuning: every decoder weight trains (the encoder too with `encoder: true`); saved as a
whole transformers model folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dama_asr.adapters.config import AdapterConfig
from dama_asr.adapters.registry import MethodSpec, register

if TYPE_CHECKING:
    from torch import nn
    from transformers import WhisperConfig, WhisperForConditionalGeneration


class Full(MethodSpec):
    name = "full"
    family = "full"
    label = "full fine-tuning"
    colour = "#2ca02c"
    order = 0
    summary = "Full fine-tuning: every decoder weight trains."
    saves_full_model = True
    tune_axes = ("optim.lr=1e-5|3e-5|1e-4",)

    def resolve(self, cfg: AdapterConfig) -> dict[str, Any]:
        return {"r": None, "alpha": None}  # no factors, so neither a rank nor a scaling

    def trainable_parameters(self, config: WhisperConfig, cfg: AdapterConfig) -> int:
        from dama_asr.adapters.plan import full_trainable_parameters

        return full_trainable_parameters(config, cfg)

    def apply(self, model: WhisperForConditionalGeneration, cfg: AdapterConfig) -> nn.Module:
        model.requires_grad_(False)
        model.model.decoder.requires_grad_(True)
        if cfg.encoder:
            from dama_asr.adapters.plan import trainable_encoder_part

            trainable_encoder_part(model.model.encoder, cfg).requires_grad_(True)
        return model

    def load(self, base: WhisperForConditionalGeneration, folder: Path) -> nn.Module:
        from safetensors import SafetensorError
        from transformers import WhisperForConditionalGeneration

        from dama_asr.adapters.io import FIX_HINT, AdapterLoadError, check_safetensors, read_json

        weights = sorted(folder.glob("model*.safetensors"))
        if not weights:
            raise AdapterLoadError(f"{folder}: a full-model folder without model.safetensors; {FIX_HINT}")
        for path in weights:
            check_safetensors(path)
        read_json(folder / "config.json")
        try:
            return WhisperForConditionalGeneration.from_pretrained(folder, use_safetensors=True)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
            raise AdapterLoadError(
                f"{folder}: cannot load the saved model ({type(err).__name__}: {err}); {FIX_HINT}"
            ) from err

    def merge(self, model: nn.Module) -> WhisperForConditionalGeneration:
        return model  # nothing to fold: the weights are the model


register(Full())
