"""The transformers Whisper inside whatever wraps it (a peft model, or nothing)."""

from __future__ import annotations

from torch import nn


def base_model_of(model: nn.Module) -> nn.Module:
    """The WhisperForConditionalGeneration inside a PeftModel (or the model itself).

    Duck-typed on peft's `get_base_model` so that this layer does not import peft.
    """
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model
