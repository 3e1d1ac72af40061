"""Saved adapters on the tiny random Whisper (`--model tiny-random`), with random factors so they
change the output; nothing is trained."""

from __future__ import annotations

from pathlib import Path

import torch

from dama_asr.adapters import AdapterConfig, apply_adapter, save_adapter
from dama_asr.testing import tiny_whisper

PROMPT_CY = [50258, 50297, 50359, 50363]  # <|startoftranscript|> <|cy|> <|transcribe|> <|notimestamps|>


def features(n: int = 3, seed: int = 0) -> torch.Tensor:
    """(n, 80, 3000) log-mel-like frames, each item at its own scale so the items differ."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.3, 2.0, n).view(n, 1, 1)
    return scale * torch.randn(n, 80, 3000, generator=g)


def logits(model, feats: torch.Tensor | None = None) -> torch.Tensor:
    feats = features() if feats is None else feats
    tokens = torch.tensor([[*PROMPT_CY, 400, 401, 402]] * feats.shape[0])
    model.eval()
    with torch.no_grad():
        return model(input_features=feats, decoder_input_ids=tokens).logits


def adapted_model(method: str = "lora", seed: int = 1, r: int = 4):
    """The tiny-random base with `method` applied (encoder too) and its trainable factors perturbed."""
    cfg = AdapterConfig(method=method, r=r, encoder=True)
    model = apply_adapter(tiny_whisper()[0], cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.5 * torch.randn(p.shape, generator=g))
    return cfg, model.eval()


def save(tmp_path: Path, method: str = "lora", language: str = "cy", seed: int = 1, name: str = "best"):
    """(folder, adapted model): the adapter saved as `dama train` saves it, its card naming `language`."""
    cfg, model = adapted_model(method, seed)
    folder = save_adapter(model, cfg, tmp_path / name, base_model="tiny-random", card={"language": language})
    return folder, model
