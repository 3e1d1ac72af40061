"""Audio in: decode, downmix to mono, resample to Whisper's 16 kHz, reject what Whisper cannot take.
Audio out: atomic 16-bit wav for the corpus builders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from dama_asr.errors import DamaError

SAMPLE_RATE = 16_000
MAX_SECONDS = 30.0  # Whisper's input window


class AudioError(DamaError, ValueError):
    """An audio file that cannot be used; the message names the file and what to do."""


def load_audio(path: str | Path, max_seconds: float | None = MAX_SECONDS) -> np.ndarray:
    """Return float32 mono samples at 16 kHz, shape (T,).

    Multi-channel audio is averaged to mono; other rates are resampled with soxr (high quality).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: cannot decode audio ({err}); convert it to wav/flac/mp3/ogg") from err
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path}: audio holds NaN or inf samples")
    if max_seconds is not None and len(mono) > max_seconds * SAMPLE_RATE:
        raise AudioError(
            f"{path}: {len(mono) / SAMPLE_RATE:.1f} s is longer than Whisper's {max_seconds:.0f} s window; "
            "segment it first"
        )
    return mono


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the header, without decoding."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: cannot read audio header ({err})") from err
    return info.frames / info.samplerate


def write_wav_atomic(path: Path, samples: np.ndarray, rate: int) -> None:
    """16-bit wav, written to a scratch file and renamed: a crash never leaves a truncated clip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".wav", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, samples, rate, subtype="PCM_16")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
