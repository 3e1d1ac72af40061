"""Pure functions over features and accuracy curves: the cross-validated probe and the theta suggestion."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dama_asr.errors import DamaError

DEFAULT_THETAS = (0.3, 0.7)


class ProbeError(DamaError, ValueError):
    """Input that cannot be probed; the message says what is missing."""


@dataclass(frozen=True)
class FoldScores:
    mean: float
    std: float
    folds: tuple[float, ...]


def check_label_counts(counts: dict[str, int], folds: int, skipped: str = "") -> None:
    """Raise ProbeError unless >= 2 languages each have >= `folds` utterances (one per fold at least)."""
    listed = ", ".join(f"{lang} {n}" for lang, n in sorted(counts.items())) or "none"
    tail = f" ({skipped})" if skipped else ""
    if folds < 2:
        raise ProbeError(f"--folds must be >= 2, got {folds}")
    if len(counts) < 2:
        raise ProbeError(
            f"language-ID probing needs >= 2 languages; usable utterances per language: {listed}{tail}"
        )
    short = {lang: n for lang, n in counts.items() if n < folds}
    if short:
        few = ", ".join(f"{lang} {n}" for lang, n in sorted(short.items()))
        raise ProbeError(
            f"{folds}-fold cross-validation needs >= {folds} usable utterances per language; too few in: "
            f"{few} (all counts: {listed}){tail}. Add utterances, drop those languages or lower --folds"
        )


def cross_validate(features: np.ndarray, labels: Sequence[str], folds: int = 5, seed: int = 0) -> FoldScores:
    """Accuracy of a standardised multinomial logistic regression, stratified k-fold.

    features: (N, D); labels: N class names. Fold assignment depends only on `seed`, so every layer is
    scored on the same splits.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    check_label_counts(dict(Counter(labels.tolist())), folds)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = []
    for train, test in splitter.split(features, labels):
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        with warnings.catch_warnings():
            # Separable data makes lbfgs run to max_iter; the accuracy is what we report, not the weights.
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(features[train], labels[train])
        scores.append(float(np.mean(classifier.predict(features[test]) == labels[test])))
    return FoldScores(mean=float(np.mean(scores)), std=float(np.std(scores)), folds=tuple(scores))


@dataclass(frozen=True)
class ThetaSuggestion:
    """theta1 < theta2 in [0, 1] as fractions of decoder depth L: l_early = floor(theta1 L) etc."""

    theta1: float
    theta2: float
    l_early: int
    l_late: int
    num_layers: int
    fallback: bool
    reason: str


def _theta_for(layer: int, num_layers: int) -> float:
    """layer / L, nudged up where float rounding would make floor(theta * L) land one layer short."""
    theta = layer / num_layers
    while math.floor(theta * num_layers) < layer:
        theta = math.nextafter(theta, 2.0)
    return theta


def default_thetas(num_layers: int, reason: str) -> ThetaSuggestion:
    t1, t2 = DEFAULT_THETAS
    return ThetaSuggestion(
        theta1=t1,
        theta2=t2,
        l_early=math.floor(t1 * num_layers),
        l_late=math.floor(t2 * num_layers),
        num_layers=num_layers,
        fallback=True,
        reason=f"{reason}; using the defaults theta1={t1}, theta2={t2}",
    )


def suggest_thetas(
    accuracy: Sequence[float],
    std: Sequence[float] | None = None,
    level: float = 0.5,
    min_depth: float = 0.02,
) -> ThetaSuggestion:
    """DAMA's theta1/theta2 from a decoder accuracy curve (index 0 = embeddings, 1..L = layers).

    Only layers 1..L count (layer 0 gets no adapter). With b = the curve's minimum (the valley bottom,
    ties spanning [m1, m2]) and top_left = max a(1..m1), top_right = max a(m2..L):
    - the valley must be deeper than `min_depth` on both sides and deeper than the fold std at its
      bottom, otherwise the curve is flat (or monotonic) and the defaults 0.3/0.7 are returned;
    - l_early = the last layer of the run starting at the left peak that stays >= b + level *
      (top_left - b): where accuracy leaves the early plateau (by more than `level` of the drop);
    - l_late = the first layer of the run ending at the right peak that stays >= b + level *
      (top_right - b): where it re-enters the late plateau;
    - theta = l / L, so DAMA's floor(theta1 L) and floor(theta2 L) give back exactly these layers.
    On the paper's large-v2 curve (~100% on layers 1-5 and 28-32, ~93% at 17) `level` 0.5 gives
    about 0.34 / 0.72, close to its 0.3 / 0.7.
    """
    acc = np.asarray(accuracy, dtype=float)[1:]  # layers 1..L
    num_layers = len(acc)
    if num_layers < 3:
        return default_thetas(num_layers, f"{num_layers} decoder layer(s) cannot form a valley")
    bottom = float(acc.min())
    lows = np.flatnonzero(np.isclose(acc, bottom, atol=1e-9))
    m1, m2 = int(lows[0]), int(lows[-1])
    top_left, top_right = float(acc[: m1 + 1].max()), float(acc[m2:].max())
    depth = min(top_left, top_right) - bottom
    noise = float(np.asarray(std, dtype=float)[1:][m1]) if std is not None else 0.0
    if float(acc.max()) == bottom:
        return default_thetas(num_layers, f"flat decoder curve: every layer scores {bottom:.3f}")
    if depth < max(min_depth, noise):
        where = f"layer {m1 + 1}" if m1 == m2 else f"layers {m1 + 1}-{m2 + 1}"
        return default_thetas(
            num_layers,
            f"no valley: the decoder curve dips only {depth:.3f} below its lower side at {where} "
            f"(needs > {max(min_depth, noise):.3f}, the larger of min_depth and the fold std there)",
        )
    cut_left = bottom + level * (top_left - bottom)
    early = int(np.flatnonzero(acc[: m1 + 1] == top_left)[-1])  # the left peak (0-based)
    while early + 1 < m1 and acc[early + 1] >= cut_left:
        early += 1
    cut_right = bottom + level * (top_right - bottom)
    late = m2 + int(np.flatnonzero(acc[m2:] == top_right)[0])  # the right peak (0-based)
    while late - 1 > m2 and acc[late - 1] >= cut_right:
        late -= 1
    l_early, l_late = early + 1, late + 1  # 1-based layer numbers
    return ThetaSuggestion(
        theta1=_theta_for(l_early, num_layers),
        theta2=_theta_for(l_late, num_layers),
        l_early=l_early,
        l_late=l_late,
        num_layers=num_layers,
        fallback=False,
        reason=(
            f"valley bottom {bottom:.3f} at layer {m1 + 1}; early plateau {top_left:.3f} left after layer "
            f"{l_early}, late plateau {top_right:.3f} re-entered at layer {l_late} "
            f"(crossing {level:.0%} of the way back up on each side)"
        ),
    )
