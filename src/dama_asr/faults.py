"""Crash points: where the crash tests kill a `dama` process, on purpose, to prove nothing is lost.

`DAMA_CRASH_AT="step@7"` makes the 7th `crash_point("step")` of the process send itself SIGKILL (no
cleanup, no `finally`, like the OOM killer or a pulled plug); several points may be listed, separated
by commas. Without the variable a crash point is one dictionary lookup. The points are named where
work could be lost: mid-step, during a checkpoint write, while the encoder cache is built, during
the dev evaluation, mid-line in the training log.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from functools import cache

ENV = "DAMA_CRASH_AT"
_hits: Counter[str] = Counter()


@cache
def _planned(spec: str) -> dict[str, int]:
    plan = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition("@")
        plan[name] = int(count or 1)
    return plan


def crash_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    plan = _planned(spec)
    if name not in plan:
        return
    _hits[name] += 1
    if _hits[name] == plan[name]:
        os.kill(os.getpid(), signal.SIGKILL)
