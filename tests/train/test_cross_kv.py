"""The stored cross-attention K/V: same outputs and gradients as recomputing them, restored modules,
a budget that is honoured, and a whole run that trains the same adapter with and without it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dama_asr.adapters import AdapterConfig, apply_adapter
from dama_asr.features.cross_kv import CrossKV, can_cache
from dama_asr.testing import tiny_whisper
from dama_asr.train import train


def _inputs(model, batch: int = 3):
    torch.manual_seed(0)
    hidden = torch.randn(batch, model.config.max_source_positions, model.config.d_model)  # (B, S, D)
    ids = torch.randint(0, 1000, (batch, 5))
    return hidden, ids


def _loss(model, hidden, ids):
    model.zero_grad()
    logits = model(encoder_outputs=(hidden,), decoder_input_ids=ids).logits
    loss = logits.float().pow(2).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def test_injected_kv_gives_the_same_logits_and_gradients_and_restores_the_modules():
    whisper, _ = tiny_whisper(seed=0)
    model = apply_adapter(whisper, AdapterConfig(method="lora", r=4))  # LoRA on cross-attention k/v too
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)  # B = 0 at init would hide a missing low-rank delta
    hidden, ids = _inputs(whisper)
    expected_logits, expected_grads = _loss(model, hidden, ids)
    kv = CrossKV(whisper, budget=2**40, dtype=torch.float32)
    before = [
        (m.encoder_attn.k_proj.base_layer, m.encoder_attn.v_proj.base_layer)
        for m in whisper.model.decoder.layers
    ]
    keys = ["a", "b", "c"]
    assert kv.fill(keys, hidden) == 3 and len(kv) == 3
    with kv.inject(kv.batch(keys, hidden)):
        logits, grads = _loss(model, hidden, ids)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-6)
    assert grads.keys() == expected_grads.keys() and any("encoder_attn.k_proj.lora_A" in n for n in grads)
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-4, atol=1e-7)
    after = [
        (m.encoder_attn.k_proj.base_layer, m.encoder_attn.v_proj.base_layer)
        for m in whisper.model.decoder.layers
    ]
    assert all(
        a is b
        for pair_a, pair_b in zip(before, after, strict=True)
        for a, b in zip(pair_a, pair_b, strict=True)
    )
    with pytest.raises(RuntimeError, match="does not fit"), kv.inject(kv.batch(keys[:2], hidden[:2])):
        model(encoder_outputs=(hidden,), decoder_input_ids=ids)  # a batch of 3 against stored rows of 2


def test_the_budget_bounds_what_is_stored_and_the_rest_is_recomputed():
    whisper, _ = tiny_whisper(seed=0)
    whisper.requires_grad_(False)
    hidden, _ = _inputs(whisper)
    per = 2 * whisper.config.decoder_layers * hidden.shape[1] * hidden.shape[2] * 4
    kv = CrossKV(whisper, budget=int(1.5 * per), dtype=torch.float32)
    assert kv.fill(["a", "b", "c"], hidden) == 1 and kv.used == per and kv.full
    full = CrossKV(whisper, budget=2**40, dtype=torch.float32)
    full.fill(["a", "b", "c"], hidden)
    torch.testing.assert_close(
        kv.batch(["c", "a", "b"], hidden[[2, 0, 1]]), full.batch(["c", "a", "b"], hidden[[2, 0, 1]])
    )


def test_only_frozen_plain_projections_are_cached():
    whisper, _ = tiny_whisper(seed=0)
    assert not can_cache(apply_adapter(whisper, AdapterConfig(method="full")))  # the decoder trains
    assert can_cache(apply_adapter(tiny_whisper(seed=0)[0], AdapterConfig(method="dama", r_high=4, r_low=2)))
    assert not can_cache(apply_adapter(tiny_whisper(seed=0)[0], AdapterConfig(method="dora", r=4)))


def test_a_run_trains_the_same_adapter_with_and_without_stored_kv(make_config, tmp_path: Path):
    runs = {}
    for gib in (-1.0, 0.0):
        out = tmp_path / f"kv{gib:g}"
        summary = train(make_config(output_dir=str(out), precision="no", cross_kv_cache_gib=gib))
        runs[gib] = (summary, load_file(str(out / "final" / "adapter_model.safetensors")))
    assert runs[-1.0][0]["cross_kv_cached_utterances"] == runs[-1.0][0]["train_utterances"] > 0
    assert runs[0.0][0]["cross_kv_cached_utterances"] == 0
    with_kv, without = runs[-1.0][1], runs[0.0][1]
    for key in without:
        torch.testing.assert_close(with_kv[key], without[key], rtol=1e-4, atol=1e-6)
