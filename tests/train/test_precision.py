"""Precision `auto`: what it resolves to, the fallback line, frozen weights held in bf16, a bf16 run that
keeps its trainable weights in float32, and caches that never mix precisions."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dama_asr.adapters import AdapterConfig, apply_adapter
from dama_asr.features.encoder_cache import whisper_fingerprint
from dama_asr.precision import (
    NO_NATIVE_BF16_ENV,
    PrecisionError,
    cpu_bf16_units,
    hold_frozen_weights,
    native_bf16,
    resolve_precision,
)
from dama_asr.testing import tiny_whisper


def test_auto_follows_the_hardware_and_forced_choices_win(monkeypatch):
    expected = "bf16" if cpu_bf16_units() else "no"
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("no", "cpu") == "no" and resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(PrecisionError, match="precision: one of auto, no, bf16, fp16"):
        resolve_precision("fp8", "cpu")


def test_a_cpu_without_native_bf16_falls_back_to_float32_with_one_line(monkeypatch, caplog):
    monkeypatch.setenv(NO_NATIVE_BF16_ENV, "1")
    assert not native_bf16("cpu") and cpu_bf16_units() == ()
    with caplog.at_level(logging.WARNING, logger="dama_asr.precision"):
        assert resolve_precision("auto", "cpu") == "no"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no native bfloat16; computing in float32" in lines[0]


def test_frozen_matmul_weights_are_held_in_bf16_and_adapter_factors_stay_float32():
    model = apply_adapter(tiny_whisper(seed=0)[0], AdapterConfig(method="dama", r_high=4, r_low=2))
    assert hold_frozen_weights(model, "no") == 0
    held = hold_frozen_weights(model, "bf16")
    assert held > 0
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert all(dtypes[n] == torch.float32 for n in dtypes if "lora_" in n)  # trained or frozen (BPP) factors
    assert dtypes["base_model.model.model.decoder.layers.0.fc1.base_layer.weight"] == torch.bfloat16
    assert dtypes["base_model.model.model.encoder.conv1.weight"] == torch.bfloat16
    assert all(dtypes[n] == torch.float32 for n in dtypes if "layer_norm" in n)


def test_the_encoder_fingerprint_separates_precisions_but_not_held_weights():
    model, processor = tiny_whisper(seed=0)
    fe = processor.feature_extractor
    fp32, bf16 = whisper_fingerprint(model, fe, "no"), whisper_fingerprint(model, fe, "bf16")
    assert fp32 != bf16
    model.requires_grad_(False)
    hold_frozen_weights(model, "bf16")
    assert whisper_fingerprint(model, fe, "bf16") == bf16  # the same cache whether or not weights are held


def test_a_bf16_run_trains_float32_adapters_and_records_its_precision(make_config, tmp_path: Path):
    summary = train_with(make_config, tmp_path, "bf16")
    assert summary["precision"] == "bf16" and summary["precision_requested"] == "bf16"
    losses = [h["train_loss"] for h in summary["epochs"]]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    weights = load_file(str(tmp_path / "bf16" / "final" / "adapter_model.safetensors"))
    assert weights and all(w.dtype == torch.float32 for w in weights.values())


def test_auto_without_native_bf16_trains_in_float32(make_config, tmp_path: Path, monkeypatch):
    monkeypatch.setenv(NO_NATIVE_BF16_ENV, "1")
    summary = train_with(make_config, tmp_path, "auto")
    assert summary["precision"] == "no" and summary["precision_requested"] == "auto"


def train_with(make_config, tmp_path: Path, precision: str) -> dict:
    from dama_asr.train import train

    return train(make_config(output_dir=str(tmp_path / precision), precision=precision, optim={"epochs": 3}))
