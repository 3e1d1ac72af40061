"""Factories for tests and examples: a tiny random Whisper with the real tokenizer, tiny audio, tiny manifests.

The tiny model keeps Whisper's real 51,865-token vocabulary, language tokens and generation config,
so every code path that forces a language, builds labels or decodes runs exactly as on the real
model; only the widths are tiny (seconds per test on a CPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from dama_asr.backbone.tiny import TINY_DIMS, real_tokenizer, tiny_whisper, tiny_whisper_config
from dama_asr.data.audio import SAMPLE_RATE
from dama_asr.data.manifest import Utterance, write_manifest

# Re-exported: tests build the tiny model from here, next to the tiny audio and manifests.
__all__ = ["TINY_DIMS", "real_tokenizer", "save_tiny_whisper", "tiny_manifest", "tiny_whisper", "tiny_whisper_config",
           "tone", "write_tone"]  # fmt: skip


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
