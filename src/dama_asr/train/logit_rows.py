"""Project only the decoder positions that carry a label onto the vocabulary.

Whisper's output projection maps every decoder position to 51,865 logits, and the cross-entropy then
discards the padded positions and the forced prompt. On a CPU the (B, T, 51865) logits, their float32
copy, the log-softmax and its backward are a large part of a cached training step; projecting only the
labelled rows makes all of them proportional to the tokens that count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def logits_at(head: nn.Module, rows: torch.Tensor) -> Iterator[None]:
    """While active, `head` (Whisper's proj_out) sees only hidden[rows]: logits come out (N, V), not (B, T, V).

    rows: (B, T) bool, True where the label is not ignored. The hook is removed on exit, also on error.
    """

    def select(_module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]  # (B, T, D)
        return (hidden[rows], *args[1:])  # (N, D)

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()
