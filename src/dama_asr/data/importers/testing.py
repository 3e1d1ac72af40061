"""Factories for tests and examples: tiny corpora in the real Common Voice and FLEURS layouts.

The files are real: Common Voice clips are 48 kHz MP3 (as released), FLEURS clips 16 kHz wav, the
TSVs carry the releases' exact columns. Only the audio content is synthetic (tones).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

# Common Voice TSV headers: releases up to 15.0, and from 16.0 on (sentence_id, sentence_domain, variant).
CV_COLUMNS_OLD = (
    "client_id",
    "path",
    "sentence",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "locale",
    "segment",
)
CV_COLUMNS_NEW = (
    "client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
    "age", "gender", "accents", "variant", "locale", "segment",
)  # fmt: skip


def tone_samples(
    seconds: float, rate: int, freq: float = 220.0, channels: int = 1, amplitude: float = 0.3
) -> np.ndarray:
    """A tone, shape (T,) or (T, C)."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def write_audio(
    path: Path,
    seconds: float,
    rate: int = 16_000,
    channels: int = 1,
    freq: float = 220.0,
    amplitude: float = 0.3,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "MP3" if path.suffix.lower() == ".mp3" else None
    sf.write(str(path), tone_samples(seconds, rate, freq, channels, amplitude), rate, format=fmt)
    return path


def write_common_voice_tree(
    locale_dir: Path,
    rows: dict[str, list[tuple[str, str, str, float]]],
    new_columns: bool = True,
) -> Path:
    """`rows`: split -> (client_id, clip name, sentence, seconds); seconds <= 0 writes no clip.

    The locale is the folder's name (as in `cv-corpus-17.0/cy/`). Clips listed in several splits
    (validated.tsv repeats train/dev/test) are written once.
    """
    locale = locale_dir.name
    columns = CV_COLUMNS_NEW if new_columns else CV_COLUMNS_OLD
    for split, entries in rows.items():
        lines = ["\t".join(columns)]
        for i, (client, clip, sentence, seconds) in enumerate(entries):
            clip_path = locale_dir / "clips" / clip
            if seconds > 0 and not clip_path.exists():
                write_audio(clip_path, seconds, rate=48_000, freq=200 + 37 * (i % 9))
            values = {
                "client_id": client, "path": clip, "sentence": sentence, "sentence_id": f"s{zlib.crc32(sentence.encode())}",
                "sentence_domain": "", "up_votes": "2", "down_votes": "0", "age": "thirties", "gender": "female",
                "accents": "", "variant": "", "locale": locale, "segment": "",
            }  # fmt: skip
            lines.append("\t".join(values[c] for c in columns))
        (locale_dir / f"{split}.tsv").parent.mkdir(parents=True, exist_ok=True)
        (locale_dir / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (locale_dir / "clips").mkdir(parents=True, exist_ok=True)
    return locale_dir


def write_fleurs_tree(lang_dir: Path, rows: dict[str, list[tuple[str, str, str, float]]]) -> Path:
    """`rows`: split -> (sentence id, file name, raw transcription, seconds); seconds <= 0 writes no file.

    Writes `<lang_dir>/audio/<split>/<file>` at 16 kHz and `<lang_dir>/<split>.tsv` without header.
    """
    for split, entries in rows.items():
        lines = []
        for i, (sentence_id, file_name, raw, seconds) in enumerate(entries):
            audio = lang_dir / "audio" / split / file_name
            if seconds > 0:
                write_audio(audio, seconds, rate=16_000, freq=180 + 41 * (i % 7))
            normalised = raw.lower().strip(".?!")
            chars = "|".join(normalised.replace(" ", "|")) + "|"
            gender = "FEMALE" if i % 2 else "MALE"
            lines.append(
                "\t".join(
                    [sentence_id, file_name, raw, normalised, chars, str(round(seconds * 16_000)), gender]
                )
            )
        (lang_dir / "audio" / split).mkdir(parents=True, exist_ok=True)
        (lang_dir / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lang_dir
