"""Learning-rate schedules: linear warmup, then linear or cosine decay, a constant rate, or `plateau`.

Our own rather than transformers' `get_scheduler`, for two reasons:
- transformers' warmup starts at lr 0 (`step / warmup`), so the first optimizer step does nothing; here
  step s of w warmup steps runs at lr x (s + 1) / (w + 1) and the last decay step stays above 0;
- `plateau` (the default) does not know the run's length in advance: after warmup the rate stays constant
  until an epoch fails to improve dev WER, then it is multiplied by `plateau_factor`; the run stops after
  `eval.patience` such epochs in a row (the loop decides), so training runs until it has converged, and
  `optim.epochs` is only a cap.

The schedule is a `LambdaLR` whose lambda is a callable object: torch saves and restores its attributes
(`scale` among them) with the scheduler's state, so `--resume` continues a decayed plateau run exactly.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("plateau", "linear", "cosine", "constant")


class ScheduleFactor:
    """The multiplier of the base learning rate at optimizer step `step` (0-based)."""

    def __init__(self, kind: str, warmup: int, total: int) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"schedule: one of {', '.join(SCHEDULES)}, got {kind!r}")
        self.kind, self.warmup, self.total = kind, int(warmup), max(int(total), 1)
        self.scale = 1.0  # plateau's decay so far (1 until an epoch fails to improve)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1) * self.scale
        if self.kind in ("plateau", "constant"):
            return self.scale
        span = max(self.total - self.warmup, 1)
        progress = min((step - self.warmup) / span, 1.0)
        if self.kind == "linear":
            # The last step (progress (span - 1) / span) still trains, at lr / span.
            return max(1.0 - progress, 0.0) * self.scale
        return 0.5 * (1.0 + math.cos(math.pi * progress)) * self.scale


def make_schedule(
    optimizer: torch.optim.Optimizer, kind: str, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    factors = [ScheduleFactor(kind, warmup, total) for _ in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def decay_on_plateau(scheduler: torch.optim.lr_scheduler.LambdaLR, factor: float) -> float | None:
    """Multiply a plateau schedule's rate by `factor`, effective from the next optimizer step; returns
    the new learning rate of the first group, or None for another kind of schedule (left alone)."""
    factors = getattr(scheduler, "lr_lambdas", [])
    if not factors or not all(isinstance(f, ScheduleFactor) and f.kind == "plateau" for f in factors):
        return None
    step = scheduler.last_epoch  # the index of the next optimizer step
    for group, base_lr, f in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, factors, strict=True):
        f.scale *= factor
        group["lr"] = base_lr * f(step)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
    return scheduler._last_lr[0]
