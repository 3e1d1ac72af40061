"""Caching the frozen bottom of an encoder adapted from layer k: same maths, fewer layers per step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dama_asr.adapters import AdapterConfig, AdapterConfigError, apply_adapter
from dama_asr.adapters.plan import plan_modules, trainable_parameters
from dama_asr.backbone.configs import known_config
from dama_asr.data.manifest import read_manifest
from dama_asr.features.encoder_cache import whisper_fingerprint
from dama_asr.features.encoder_prefix import (
    PrefixCacheError,
    check_prefix,
    install_prefix_entry,
    prefix_fingerprint,
    prefix_function,
    remove_prefix_entry,
    run_bottom,
)
from dama_asr.features.log_mel import log_mel_items
from dama_asr.testing import tiny_manifest, tiny_whisper
from dama_asr.train import train
from dama_asr.train.metrics_log import read_log


def _four_layer_whisper(seed: int = 0):
    return tiny_whisper(seed=seed, layers=4)


def test_bottom_then_top_is_the_whole_encoder(tmp_path: Path) -> None:
    model, processor = _four_layer_whisper()
    model.eval()
    items = read_manifest(tiny_manifest(tmp_path, n=3))
    features = log_mel_items(processor.feature_extractor, items)
    encoder = model.model.encoder
    with torch.no_grad():
        whole = encoder(features).last_hidden_state
        bottom = run_bottom(encoder, features, 2)
        install_prefix_entry(encoder, 2)
        top = encoder(bottom).last_hidden_state  # hidden states in, through the model's own entry
        through_features = encoder(features).last_hidden_state  # features still run everything
        remove_prefix_entry(encoder)
        with pytest.raises(ValueError):  # the entry is gone: hidden states are no features
            encoder(bottom)
    assert torch.allclose(top, whole, atol=1e-5) and torch.equal(through_features, whole)
    assert not torch.allclose(bottom, whole, atol=1e-2)  # the top layers did something


def test_gradients_reach_only_the_adapted_layers_through_the_entry(tmp_path: Path) -> None:
    model, processor = _four_layer_whisper()
    cfg = AdapterConfig(method="lora", r=2, encoder=True, encoder_from=3, targets=("qv",))
    peft_model = apply_adapter(model, cfg)
    items = read_manifest(tiny_manifest(tmp_path, n=2))
    bottom = prefix_function(model, processor.feature_extractor, torch.device("cpu"), "no", 2)(items)
    install_prefix_entry(model.model.encoder, 2)
    out = peft_model(input_features=bottom, decoder_input_ids=torch.tensor([[50258, 50259], [50258, 50259]]))
    out.logits.float().pow(2).mean().backward()
    named = dict(peft_model.named_parameters())
    trained = {n for n, p in named.items() if p.requires_grad}
    assert trained and all(named[n].grad is not None for n in trained)
    assert not any(".encoder.layers.0." in n or ".encoder.layers.1." in n for n in trained)
    assert any(".encoder.layers.2." in n for n in trained)


def test_the_plan_adapts_the_encoder_from_layer_k() -> None:
    config = known_config("whisper-base")
    cfg = AdapterConfig(method="lora", r=8, encoder=True, encoder_from=4, targets=("qv",))
    layers = sorted({r.layer for r in plan_modules(config, cfg) if r.side == "encoder"})
    assert layers == [4, 5, 6]
    whole = AdapterConfig(method="lora", r=8, encoder=True, targets=("qv",))
    # q and v of 3 of 6 encoder layers are left out: 3 x 2 x (512 x 8 + 8 x 512)
    assert trainable_parameters(config, whole) - trainable_parameters(config, cfg) == 3 * 2 * 2 * 512 * 8
    full = AdapterConfig(method="full", encoder=True, encoder_from=4)
    full_all = AdapterConfig(method="full", encoder=True)
    assert 0 < trainable_parameters(config, full_all) - trainable_parameters(config, full)


def test_encoder_from_is_checked_where_it_can_be() -> None:
    with pytest.raises(AdapterConfigError, match="only with encoder"):
        AdapterConfig(method="lora", r=8, encoder_from=3)
    with pytest.raises(AdapterConfigError, match="encoder_from"):
        AdapterConfig(method="lora", r=8, encoder=True, encoder_from=0)
    with pytest.raises(AdapterConfigError, match="has 6 layers"):
        plan_modules(
            known_config("whisper-base"), AdapterConfig(method="lora", r=8, encoder=True, encoder_from=7)
        )


def test_full_fine_tuning_freezes_the_bottom(tmp_path: Path) -> None:
    model, _ = _four_layer_whisper()
    apply_adapter(model, AdapterConfig(method="full", encoder=True, encoder_from=3))
    encoder = model.model.encoder
    assert not any(p.requires_grad for p in encoder.layers[1].parameters())
    assert all(p.requires_grad for p in encoder.layers[2].parameters())
    assert not encoder.conv1.weight.requires_grad and encoder.layer_norm.weight.requires_grad
    check_prefix(model, 2)  # the bottom is frozen: it may be cached
    with pytest.raises(PrefixCacheError, match="train"):
        check_prefix(model, 3)


def test_fingerprint_names_the_depth_and_ignores_the_adapted_top() -> None:
    model, processor = _four_layer_whisper()
    fe = processor.feature_extractor
    two = prefix_fingerprint(model, fe, "no", 2)
    assert two != prefix_fingerprint(model, fe, "no", 3) != whisper_fingerprint(model, fe)
    assert two != prefix_fingerprint(model, fe, "bf16", 2)
    with torch.no_grad():
        model.model.encoder.layers[3].fc1.weight.add_(1.0)  # above the bottom: the cache still holds
    assert prefix_fingerprint(model, fe, "no", 2) == two
    with torch.no_grad():
        model.model.encoder.layers[1].fc1.weight.add_(1.0)  # inside it: another cache
    assert prefix_fingerprint(model, fe, "no", 2) != two


def test_training_with_the_cached_bottom_matches_running_it(make_config, tmp_path: Path) -> None:
    """Same losses (float16 storage of the cached hidden states aside) and the same trained layers."""
    adapter = {"method": "lora", "r": 4, "encoder": True, "encoder_from": 2, "targets": ["qv"]}
    cached = make_config(output_dir=str(tmp_path / "cached"), adapter=adapter, stop_after_steps=3)
    direct = make_config(
        output_dir=str(tmp_path / "direct"), adapter=adapter, stop_after_steps=3, encoder_cache=False
    )
    a_summary, b_summary = train(cached), train(direct)
    assert a_summary["encoder_cached_layers"] == 1 and not a_summary["encoder_cache"]
    assert b_summary["encoder_cached_layers"] == 0
    assert a_summary["trainable_parameters"] == b_summary["trainable_parameters"]
    a = [r["loss"] for r in read_log(cached.run_dir / "train_log.jsonl")]
    b = [r["loss"] for r in read_log(direct.run_dir / "train_log.jsonl")]
    assert len(a) == 3 and a == pytest.approx(b, rel=1e-3)
    again = train(make_config(output_dir=str(tmp_path / "again"), adapter=adapter, dev=cached.train,
                             optim={"epochs": 1}))  # fmt: skip
    assert again["best_dev_wer"] is not None  # dev decoding passes features: the whole encoder runs
    assert again["encoder_cache_encoded"] == 0  # the bottom's cache is hit by the next run
