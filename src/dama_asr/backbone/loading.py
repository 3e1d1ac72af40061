"""`load_backbone`: one entry point for built-in names, local folders and hub ids."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from dama_asr.backbone.configs import KNOWN_SIZES
from dama_asr.errors import DamaError
from dama_asr.languages import model_languages
from dama_asr.precision import autocast, hold_frozen_weights, resolve_precision

log = logging.getLogger(__name__)

EMBEDDED = "whisper-base"
TINY_RANDOM = "tiny-random"
BUILTIN_NAMES = (EMBEDDED, TINY_RANDOM)


class BackboneError(DamaError, RuntimeError):
    pass


@dataclass
class Backbone:
    """A Whisper (perhaps wrapped by peft), its processor, and the precision its forward passes run in.

    precision is a resolved one ('no' = float32, 'bf16', 'fp16'; see `dama_asr.precision`): every
    forward pass over the model (decoding, encoding for caches, probing) runs under `autocast()`.
    """

    model: WhisperForConditionalGeneration
    processor: WhisperProcessor
    name: str
    precision: str = "no"
    # True when `model` holds one named adapter per language (an adapter set): decoding then routes
    # each utterance to its language's adapter (dama_asr.inference.routing).
    routes_by_language: bool = False

    def autocast(self):
        return autocast(self.precision, self.device)

    def ready_for_inference(self) -> Backbone:
        """Freeze every weight and hold the matmul weights in the compute dtype (once, not per call)."""
        self.model.requires_grad_(False)
        self.model.eval()
        hold_frozen_weights(self.model, self.precision)
        return self

    @property
    def languages(self) -> set[str]:
        return model_languages(self.model.generation_config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_model_dir(name_or_path: str) -> str:
    """Built-in name -> prepared local folder; local folder -> itself; anything else -> hub id."""
    if name_or_path == EMBEDDED:
        from dama_asr.backbone.embedded import prepare_embedded_whisper_base

        return str(prepare_embedded_whisper_base())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BackboneError(f"{path} is not a transformers model folder (no config.json)")
        return str(path)
    if "/" not in name_or_path or name_or_path.startswith((".", "/", "~")):
        sizes = ", ".join(f"openai/{s}" for s in KNOWN_SIZES)
        raise BackboneError(
            f"unknown model {name_or_path!r}: not a built-in name ({', '.join(BUILTIN_NAMES)}), "
            f"not an existing folder, not a hub id such as {sizes}"
        )
    return name_or_path


def _from_pretrained(source: str, dtype: torch.dtype) -> tuple:
    try:
        model = WhisperForConditionalGeneration.from_pretrained(source, dtype=dtype)
        processor = WhisperProcessor.from_pretrained(source)
    except OSError as err:
        if Path(source).exists():
            raise BackboneError(f"cannot load the model folder {source}: {err}") from err
        raise BackboneError(
            f"cannot fetch {source!r} from the Hugging Face hub (no network, or no such model). "
            f"On a machine with network run `hf download {source} --local-dir DIR`, copy DIR here "
            "and pass --model DIR; or use the built-in offline model: --model whisper-base"
        ) from err
    return model, processor


def load_backbone(
    name_or_path: str = EMBEDDED,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    precision: str = "auto",
) -> Backbone:
    """Load Whisper and its processor, weights in `dtype` (float32: adapters initialise from them).

    `name_or_path`: `whisper-base` (embedded, offline), `tiny-random` (tests), a local transformers
    folder, or a hub id such as `openai/whisper-large-v2`. `precision` ('auto', 'no', 'bf16', 'fp16')
    is resolved for `device`; call `ready_for_inference()` once any adapter is on.
    """
    if name_or_path == TINY_RANDOM:
        from dama_asr.backbone.tiny import tiny_whisper

        model, processor = tiny_whisper()
    else:
        model, processor = _from_pretrained(resolve_model_dir(name_or_path), dtype)
    model.to(device)
    model.eval()
    return Backbone(model, processor, name_or_path, resolve_precision(precision, device))
