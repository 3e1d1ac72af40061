"""SpecAugment-style masking for tiny training sets, on whatever the training step feeds the model.

transformers' Whisper masks log-mel input only (`apply_spec_augment`), which a run with a cached encoder
never passes. Here the same two masks apply to each of the three inputs a step can have:
- log-mel features (B, mels, 3000), 10 ms frames: time spans and mel-bin bands, SpecAugment proper;
- the frozen encoder bottom's cached hidden states (B, 1500, D) when only upper layers adapt;
- the frozen encoder's cached outputs (B, 1500, D) when only the decoder adapts: a time-masked frame is
  one the cross-attention cannot read, the decoder's view of a dropped stretch of audio, and a masked
  channel band is a structured dropout on what the decoder reads.
Spans fall within each utterance's own audio (not Whisper's 30 s padding), masked values are 0 (what
transformers uses), and the masks are drawn from a generator seeded by the run's seed and step, so a
resumed run draws the same masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

FEATURE_FRAME_SECONDS = 0.01  # Whisper's log-mel hop
ENCODER_FRAME_SECONDS = 0.02  # the encoder's stride-2 output frames
LOG_MEL_FRAMES = 3000  # 30 s of log-mel frames (hidden states have 1500 frames and D channels)


def mask_generator(seed: int, step: int, process: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + process)


def _spans(length: int, share: float, width: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """About `share` of `length` positions as spans of `width` (fewer where spans overlap)."""
    if share <= 0 or length <= 0:
        return []
    width = max(1, min(width, length))
    expected = share * length / width
    count = int(expected) + int(torch.rand((), generator=generator).item() < expected - int(expected))
    starts = torch.randint(0, length - width + 1, (count,), generator=generator).tolist()
    return [(s, s + width) for s in starts]


def mask_batch(
    x: torch.Tensor,
    time_axis: int,
    frame_seconds: float,
    durations: Sequence[float],
    time_share: float,
    time_ms: float,
    feature_share: float,
    feature_width: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """A masked copy of a (B, ., .) batch; `time_axis` is 1 or 2, the other non-batch axis the channels."""
    if time_share <= 0 and feature_share <= 0:
        return x
    out = x.clone()
    frames, channels = x.shape[time_axis], x.shape[3 - time_axis]
    width = max(1, round(time_ms / 1000 / frame_seconds))
    for b, seconds in enumerate(durations):
        valid = min(frames, math.ceil(seconds / frame_seconds)) if seconds > 0 else frames
        for start, end in _spans(valid, time_share, width, generator):
            if time_axis == 1:
                out[b, start:end, :] = 0
            else:
                out[b, :, start:end] = 0
        for start, end in _spans(channels, feature_share, feature_width, generator):
            if time_axis == 1:
                out[b, :valid, start:end] = 0
            else:
                out[b, start:end, :valid] = 0
    return out


def augment_inputs(inputs: dict, durations: Sequence[float], aug, generator: torch.Generator) -> None:
    """Replace a training step's model input by its masked copy: cached encoder outputs, the frozen
    bottom's cached states or log-mel features (told apart as the encoder's prefix entry does, by shape:
    features are (B, mels, 3000), hidden states (B, 1500, D)). `aug` is the run's AugmentConfig."""
    if "encoder_outputs" in inputs:
        key, tensor = "encoder_outputs", inputs["encoder_outputs"][0]
    else:
        key, tensor = "input_features", inputs["input_features"]
    features = key == "input_features" and tensor.shape[-1] == LOG_MEL_FRAMES
    time_axis, frame = (2, FEATURE_FRAME_SECONDS) if features else (1, ENCODER_FRAME_SECONDS)
    masked = mask_batch(tensor, time_axis, frame, durations, aug.time_mask_share, aug.time_mask_ms,
                        aug.feature_mask_share, aug.feature_mask_width, generator)  # fmt: skip
    inputs[key] = (masked,) if key == "encoder_outputs" else masked
