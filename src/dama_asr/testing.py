"""Factories for tests and examples: a tiny random Whisper with the real tokenizer, tiny audio, tiny manifests.

The tiny model keeps Whisper's real 51,865-token vocabulary, language tokens and generation config,
so every code path that forces a language, builds labels or decodes runs exactly as on the real
model; only the widths are tiny (seconds per test on a CPU).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from transformers import (
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

from dama_asr.data.audio import SAMPLE_RATE
from dama_asr.data.manifest import Utterance, write_manifest

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


def save_tiny_whisper(folder: str | Path, seed: int = 0, **dims) -> Path:
    folder = Path(folder)
    model, processor = tiny_whisper(seed, **dims)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tone(
    seconds: float = 1.0, freq: float = 440.0, rate: int = SAMPLE_RATE, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """A tone with a little noise, shape (T,) or (T, C)."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.shape)
    wave = wave.astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def write_tone(
    path: str | Path, seconds: float = 1.0, rate: int = SAMPLE_RATE, channels: int = 1, freq: float = 440.0
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, freq, rate, channels), rate)
    return path


def tiny_manifest(
    folder: str | Path, n: int = 4, language: str = "cy", texts: list[str] | None = None
) -> Path:
    """n short tone clips with transcripts in `folder`, and `folder/manifest.jsonl` describing them."""
    folder = Path(folder)
    texts = texts or [f"bore da rhif {i}" for i in range(n)]
    items = []
    for i, text in enumerate(texts):
        seconds = 0.5 + 0.25 * i
        audio = write_tone(folder / "audio" / f"utt{i}.wav", seconds=seconds, freq=300 + 50 * i)
        items.append(
            Utterance(
                id=f"utt{i}",
                audio=str(audio),
                text=text,
                language=language,
                duration=seconds,
                speaker=f"spk{i % 2}",
            )
        )
    return write_manifest(folder / "manifest.jsonl", items)
