"""Audio -> Whisper's log-mel input: one path for training, the encoder cache, decoding and probing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dama_asr.data.audio import SAMPLE_RATE, load_audio
from dama_asr.data.manifest import Utterance


def log_mel(feature_extractor, audios: Sequence[np.ndarray]) -> torch.Tensor:
    """16 kHz mono arrays -> (B, n_mels, 3000): each padded (or cut) to Whisper's 30 s window."""
    return feature_extractor(list(audios), sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features


def log_mel_items(feature_extractor, items: Sequence[Utterance]) -> torch.Tensor:
    """The same for manifest items, read from their audio files: (B, n_mels, 3000)."""
    return log_mel(feature_extractor, [load_audio(item.audio) for item in items])
