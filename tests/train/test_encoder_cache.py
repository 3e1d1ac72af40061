"""The encoder-output cache: float16 shards on disk, hits across runs and methods, same loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from dama_asr.backbone.loading import load_backbone
from dama_asr.data.manifest import read_manifest
from dama_asr.features.encoder_cache import (
    EncoderCache,
    cached_encoder_outputs,
    utterance_key,
    whisper_fingerprint,
)
from dama_asr.testing import tiny_manifest, tiny_whisper
from dama_asr.train import train
from dama_asr.train.metrics_log import read_log


def test_fingerprint_follows_the_encoder_weights() -> None:
    model, processor = tiny_whisper(seed=0)
    fe = processor.feature_extractor
    assert whisper_fingerprint(model, fe) == whisper_fingerprint(tiny_whisper(seed=0)[0], fe)
    assert whisper_fingerprint(model, fe) != whisper_fingerprint(tiny_whisper(seed=1)[0], fe)
    before = whisper_fingerprint(model, fe)
    with torch.no_grad():
        model.model.decoder.layers[0].fc1.weight.add_(1.0)  # the decoder does not matter
    assert whisper_fingerprint(model, fe) == before


def test_key_changes_when_the_audio_file_changes(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path, n=1)
    audio = next((tmp_path / "audio").iterdir())
    key = utterance_key(audio)
    assert utterance_key(audio) == key
    audio.write_bytes(audio.read_bytes() + b"\0\0")
    assert utterance_key(audio) != key and manifest.is_file()


def test_cache_is_built_once_then_hit_by_other_runs_and_methods(make_config, tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path / "fresh", n=4)
    first = train(make_config(train=str(manifest), output_dir=str(tmp_path / "a"), optim={"epochs": 2}))
    assert first["encoder_cache"] and first["encoder_cache_encoded"] == 4
    second = train(
        make_config(
            train=str(manifest),
            output_dir=str(tmp_path / "b"),
            adapter={"method": "dama", "r_high": 8, "r_low": 2},
        )
    )
    assert second["encoder_cache_encoded"] == 0
    backbone = load_backbone("tiny-random")
    fe = backbone.processor.feature_extractor
    cache = EncoderCache(whisper_fingerprint(backbone.model, fe, first["precision"]))
    shards = list(cache.dir.glob("shard-*.safetensors"))
    assert shards
    with safe_open(str(shards[0]), framework="pt") as f:
        tensor = f.get_tensor(next(iter(f.keys())))
    assert tensor.dtype == torch.float16 and tensor.shape == (1500, backbone.model.config.d_model)


def test_encoder_adapter_turns_the_cache_off(make_config, tmp_path: Path) -> None:
    summary = train(make_config(adapter={"method": "lora", "r": 4, "encoder": True}, stop_after_steps=1))
    assert not summary["encoder_cache"]


def test_same_losses_with_and_without_the_cache(make_config, tmp_path: Path) -> None:
    cached = make_config(output_dir=str(tmp_path / "cached"), stop_after_steps=3)
    direct = make_config(output_dir=str(tmp_path / "direct"), stop_after_steps=3, encoder_cache=False)
    assert not train(direct)["encoder_cache"] and train(cached)["encoder_cache"]
    a = [r["loss"] for r in read_log(cached.run_dir / "train_log.jsonl")]
    b = [r["loss"] for r in read_log(direct.run_dir / "train_log.jsonl")]
    assert a == pytest.approx(b, rel=1e-3)  # float16 storage of the encoder outputs


def test_an_empty_cache_passed_in_is_the_one_filled(tiny_backbone, tmp_path: Path) -> None:
    items = read_manifest(tiny_manifest(tmp_path / "corpus", n=2))
    fe = tiny_backbone.processor.feature_extractor
    cache = EncoderCache(whisper_fingerprint(tiny_backbone.model, fe), root=tmp_path / "cache")
    lookup = cached_encoder_outputs(tiny_backbone, items, cache=cache)  # empty, hence falsy
    assert len(cache) == 2 and len(list(cache.dir.glob("shard-*.safetensors"))) == 1
    assert lookup([1, 0]).shape == (2, 1500, tiny_backbone.model.config.d_model)
