"""`tiny-random`: a randomly initialised Whisper with the real tokenizer and generation config.

A built-in model name (`--model tiny-random`) for smoke runs and the test suite: Whisper's real
51,865-token vocabulary, language tokens and generation config, so every code path that forces a
language, builds labels or decodes runs exactly as on the real model; only the widths are tiny.
"""

from __future__ import annotations

import functools
import json

import torch
from transformers import (
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

TINY_DIMS = {"d_model": 16, "layers": 2, "heads": 2}


@functools.lru_cache(maxsize=1)
def _embedded_metadata() -> tuple[dict, dict]:
    from dama_asr.backbone.embedded import ctranslate2_sources

    _, _, meta_dir = ctranslate2_sources()
    ct2_config = json.loads((meta_dir / "config.json").read_text())
    tokenizer_json = json.loads((meta_dir / "tokenizer.json").read_text(encoding="utf-8"))
    return ct2_config, tokenizer_json


def real_tokenizer() -> WhisperTokenizer:
    """Whisper's multilingual tokenizer (repaired), built from the embedded package in ~0.2 s."""
    from dama_asr.backbone.tokenizer_fix import build_whisper_tokenizer

    return build_whisper_tokenizer(_embedded_metadata()[1])


def tiny_whisper_config(
    d_model: int = 16, layers: int = 2, heads: int = 2, num_mel_bins: int = 80
) -> WhisperConfig:
    from dama_asr.backbone.configs import WhisperDims

    config = WhisperDims(d_model, layers, heads, num_mel_bins=num_mel_bins).to_config()
    config.encoder_ffn_dim = config.decoder_ffn_dim = 2 * d_model
    return config


def tiny_whisper(seed: int = 0, **dims) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """A randomly initialised Whisper with real vocabulary and generation config."""
    from dama_asr.backbone.convert_ct2 import generation_config_for

    config = tiny_whisper_config(**{**TINY_DIMS, **dims})
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    tokenizer = real_tokenizer()
    lang_tokens = {tokenizer.convert_tokens_to_ids(t): t for t in tokenizer.all_special_tokens}
    model.generation_config = generation_config_for(config, _embedded_metadata()[0], lang_tokens)
    # A random model never emits EOT; keep generation short so tests stay fast.
    model.generation_config.max_length = 24
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer)
    model.eval()
    return model, processor
