"""SVD initialisers, pure functions of a weight matrix W (out x in)."""

from __future__ import annotations

import torch


def _svd(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # float64 so that the trailing (smallest) singular vectors are accurate, whatever W's dtype.
    u, s, vh = torch.linalg.svd(weight.detach().to(torch.float64), full_matrices=False)
    return u, s, vh  # (out, k), (k,), (k, in); s descending


def trailing_basis(weight: torch.Tensor, rank: int) -> torch.Tensor:
    """DAMA middle-layer A: the `rank` right singular vectors with the smallest singular values, (rank, in)."""
    _, _, vh = _svd(weight)
    return vh[-rank:].to(weight.dtype).contiguous()


def residual_factors(
    weight: torch.Tensor, rank: int, scaling: float, minor: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PiSSA (principal triplets) or MiLoRA (minor triplets) factors, as peft's PiSSA does it.

    Returns A (rank, in), B (out, rank) and the residual W - scaling * B A, so that the adapted
    layer's output equals the original at initialisation.
    """
    u, s, vh = _svd(weight)
    idx = slice(-rank, None) if minor else slice(0, rank)
    sr = s[idx] / scaling
    a = torch.diag(sr.sqrt()) @ vh[idx]
    b = u[:, idx] @ torch.diag(sr.sqrt())
    residual = weight.detach().to(torch.float64) - scaling * b @ a
    return a.to(weight.dtype), b.to(weight.dtype), residual.to(weight.dtype)
