"""Projecting only labelled rows gives the same loss and gradients as the full (B, T, V) logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dama_asr.testing import tiny_whisper
from dama_asr.train.data import IGNORE_INDEX
from dama_asr.train.logit_rows import logits_at


def _loss_and_grads(model, inputs, labels, rows_only: bool):
    model.zero_grad()
    if rows_only:
        rows = labels != IGNORE_INDEX
        with logits_at(model.proj_out, rows):
            logits = model(**inputs).logits
        assert logits.shape == (int(rows.sum()), model.config.vocab_size)
        loss = nn.functional.cross_entropy(logits, labels[rows], reduction="sum")
    else:
        logits = model(**inputs).logits
        loss = nn.functional.cross_entropy(
            logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_labelled_rows_only_match_full_logits_and_the_hook_goes_away():
    model, _ = tiny_whisper(seed=0)
    torch.manual_seed(0)
    features = torch.randn(2, model.config.num_mel_bins, 3000)
    ids = torch.randint(0, 1000, (2, 7))
    labels = ids.clone()
    labels[0, :3] = IGNORE_INDEX  # prompt
    labels[1, 4:] = IGNORE_INDEX  # padding
    inputs = {"input_features": features, "decoder_input_ids": ids}
    full_loss, full_grads = _loss_and_grads(model, inputs, labels, rows_only=False)
    rows_loss, rows_grads = _loss_and_grads(model, inputs, labels, rows_only=True)
    assert rows_loss == pytest.approx(full_loss.item(), rel=1e-5)
    assert full_grads.keys() == rows_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(rows_grads[name], full_grads[name], rtol=1e-4, atol=1e-6)
    assert model(**inputs).logits.shape == (2, 7, model.config.vocab_size)  # hook removed


def test_the_hook_is_removed_on_error():
    model, _ = tiny_whisper(seed=0)
    with pytest.raises(RuntimeError), logits_at(model.proj_out, torch.ones(1, 3, dtype=torch.bool)):
        raise RuntimeError("boom")
    assert not model.proj_out._forward_pre_hooks
