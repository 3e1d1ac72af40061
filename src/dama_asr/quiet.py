"""Silence exactly the third-party warnings a user can do nothing about, where we trigger them."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def peft_quietly() -> Iterator[None]:
    """peft's PeftModel reads transformers' deprecated `is_gradient_checkpointing`: a FutureWarning on
    every adapter we build or load (peft 0.21 with transformers 5). Only that warning is silenced, and
    only around our own peft calls, so library users and the CLI see everything else."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield
