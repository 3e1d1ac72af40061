"""DAMA's depth-aware rank schedule: pure functions of layer index and depth (README; `dama plan --method dama` shows it).

Layers are numbered 1..L. l_early = floor(theta1 L), l_late = floor(theta2 L).
Early ramp (1 <= l <= l_early): r_high down to r_low; middle (l_early < l < l_late): r_low with a
frozen trailing-singular-vector basis; late ramp (l_late <= l <= L): r_low up to r_high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Zone(str, Enum):
    EARLY = "early"
    MIDDLE = "middle"
    LATE = "late"


@dataclass(frozen=True)
class LayerRank:
    layer: int  # 1-based
    zone: Zone
    rank: int


def boundaries(depth: int, theta1: float, theta2: float) -> tuple[int, int]:
    return math.floor(theta1 * depth), math.floor(theta2 * depth)


def _round_half_up(x: float) -> int:
    # Python's round() rounds halves to even (20.5 -> 20); the schedule means "nearest", halves up.
    return math.floor(x + 0.5)


def dama_rank(layer: int, depth: int, r_high: int, r_low: int, theta1: float, theta2: float) -> LayerRank:
    if not 1 <= layer <= depth:
        raise ValueError(f"layer must be in 1..{depth}, got {layer}")
    l_early, l_late = boundaries(depth, theta1, theta2)
    span = r_high - r_low
    if layer <= l_early:
        # a one-layer ramp has no slope: it sits at r_high
        frac = (layer - 1) / (l_early - 1) if l_early > 1 else 0.0
        return LayerRank(layer, Zone.EARLY, _round_half_up(r_high - frac * span))
    if layer < l_late:
        return LayerRank(layer, Zone.MIDDLE, r_low)
    frac = (layer - l_late) / (depth - l_late) if depth > l_late else 1.0
    return LayerRank(layer, Zone.LATE, _round_half_up(r_low + frac * span))


def dama_schedule(
    depth: int, r_high: int = 32, r_low: int = 8, theta1: float = 0.3, theta2: float = 0.7
) -> list[LayerRank]:
    return [dama_rank(layer, depth, r_high, r_low, theta1, theta2) for layer in range(1, depth + 1)]


def mean_rank(schedule: list[LayerRank]) -> int:
    """The uniform rank with the same total rank as a schedule (for the no-schedule ablation)."""
    return max(1, _round_half_up(sum(s.rank for s in schedule) / len(schedule)))
