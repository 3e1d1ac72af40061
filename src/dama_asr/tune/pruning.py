"""Stopping hopeless trials early: the median stopping rule (Golovin et al., "Google Vizier", KDD 2017).

A trial is stopped after epoch e (e >= `after`) when its best dev WER so far is worse, by more than
`margin` (relative), than the median of the finished trials' best dev WER so far at epoch e (a trial that
finished before epoch e counts with its final best). Finished means trained to its own stop; pruned
trials do not count, their curves end where they were cut.

Why: a converged trial of an encoder-adapting row costs over an hour on a CPU, and a learning rate 3x
off is usually visibly behind after a few epochs. Why a margin and a minimum epoch: a smaller learning
rate starts slower and may still win, and dev WER on 100 utterances jumps by several points from one
epoch to the next, so a trial is cut only when it is clearly behind, and never before `after` epochs.
A pruned trial can never be chosen: a finished one was better at the same epoch and ends no worse.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dama_asr.train.loop import Pruner


def best_so_far(history: Sequence[dict]) -> list[float | None]:
    """The running minimum of a run's dev WER, epoch by epoch (None until the first scored epoch)."""
    out: list[float | None] = []
    best = None
    for h in history:
        wer = h.get("dev_score", h.get("dev_wer"))  # what the run chose by (eval.select_by)
        if wer is not None and (best is None or wer < best):
            best = wer
        out.append(best)
    return out


def median_stopping_rule(finished: Sequence[Sequence[dict]], after: int, margin: float) -> Pruner | None:
    """A pruner comparing a run with the finished runs' histories, or None (nothing to compare with,
    or `after` 0: pruning off)."""
    curves = [c for c in (best_so_far(h) for h in finished) if c and c[-1] is not None]
    if after < 1 or not curves:
        return None

    def prune(history: list[dict]) -> str | None:
        epoch = len(history)
        mine = best_so_far(history)[-1] if history else None
        if epoch < after or mine is None:
            return None
        theirs = [v for v in (c[min(epoch, len(c)) - 1] for c in curves) if v is not None]
        if not theirs:
            return None
        median = statistics.median(theirs)
        if mine > median * (1 + margin):
            return (f"best dev WER {mine:.1%} after {epoch} epochs, more than {margin:.0%} above the "
                    f"finished trials' median {median:.1%} at that epoch")  # fmt: skip
        return None

    return prune
