"""Helpers shared by the offline corpus builders: sentence-disjoint splits and atomic wav writes."""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from dama_asr.data.manifest import SPLITS, Utterance


def sentence_key(text: str) -> str:
    """Two transcripts are the same sentence if they match ignoring case, punctuation and spacing."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def sentence_disjoint_split(
    items: Sequence[Utterance], seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[Utterance]]:
    """Split by sentence: every recording of one sentence lands in the same split.

    `fractions` (train, dev, test) are shares of total duration (of item count when durations are 0).
    Sentences are shuffled by `seed`; test is filled first, then dev, so the held-out splits reach their
    share and train takes the rest. Items keep their order within a split and get `split` set.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions: need three non-negative shares summing to 1, got {fractions}")
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(sentence_key(item.text), []).append(index)
    keys = sorted(groups)
    random.Random(f"split-{seed}").shuffle(keys)

    def weight(index: int) -> float:
        return items[index].duration if any(item.duration for item in items) else 1.0

    total = sum(weight(i) for i in range(len(items)))
    targets = {"test": fractions[2] * total, "dev": fractions[1] * total}
    assigned: dict[int, str] = {}
    filled = {"test": 0.0, "dev": 0.0}
    for key in keys:
        split = next((s for s in ("test", "dev") if filled[s] < targets[s]), "train")
        for index in groups[key]:
            assigned[index] = split
            if split != "train":
                filled[split] += weight(index)
    out: dict[str, list[Utterance]] = {split: [] for split in SPLITS}
    for index, item in enumerate(items):
        out[assigned[index]].append(replace(item, split=assigned[index]))
    return out


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
