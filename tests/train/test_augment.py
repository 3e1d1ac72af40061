"""SpecAugment-style masks: inside each utterance's own audio, of about the share asked, reproducible by
seed and step, and applied to whichever input a step feeds (cached encoder outputs here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from dama_asr.train import TrainConfig, train
from dama_asr.train.augment import augment_inputs, mask_batch, mask_generator
from dama_asr.train.config import AugmentConfig, TrainConfigError


def test_time_masks_cover_about_the_share_asked_and_only_the_utterance_s_own_frames() -> None:
    x = torch.ones(3, 1500, 16)
    out = mask_batch(x, 1, 0.02, [10.0, 4.0, 0.0], 0.3, 200, 0.0, 4, mask_generator(0, 5, 0))
    assert torch.equal(x, torch.ones(3, 1500, 16))  # a copy: the cached tensor is untouched
    for b, valid in enumerate([500, 200, 1500]):  # 10 s, 4 s (20 ms frames); unknown duration: all
        masked = (out[b, :, 0] == 0).float()
        assert masked[valid:].sum() == 0
        assert 0.1 < masked[:valid].mean() <= 0.3 + 1e-6  # overlapping spans cover a little less
        assert torch.equal(out[b].eq(0).all(dim=1), out[b].eq(0).any(dim=1))  # whole frames, all channels
    again = mask_batch(x, 1, 0.02, [10.0, 4.0, 0.0], 0.3, 200, 0.0, 4, mask_generator(0, 5, 0))
    other = mask_batch(x, 1, 0.02, [10.0, 4.0, 0.0], 0.3, 200, 0.0, 4, mask_generator(0, 6, 0))
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_feature_masks_on_log_mel_are_mel_bands_within_the_audio() -> None:
    x = torch.ones(1, 80, 3000)
    out = mask_batch(x, 2, 0.01, [5.0], 0.0, 100, 0.25, 8, mask_generator(1, 0, 0))
    bins = out[0, :, :500].eq(0).all(dim=1)
    assert 8 <= int(bins.sum()) <= 24  # about a quarter of 80 bins, in bands of 8
    assert out[0, :, 500:].eq(1).all()  # the padding past 5 s is left as it was
    inputs = {"input_features": x.clone()}
    augment_inputs(
        inputs, [5.0], AugmentConfig(feature_mask_share=0.25, feature_mask_width=8), mask_generator(1, 0, 0)
    )
    assert torch.equal(inputs["input_features"], out)  # (B, mels, 3000): read as log-mel, masked alike


def test_a_masked_run_trains_on_other_inputs_reproducibly(make_config, tmp_path: Path) -> None:
    def losses(name: str, **augment) -> list[float]:
        config = make_config(output_dir=str(tmp_path / name), augment=augment, precision="no")
        assert config.uses_encoder_cache  # the masks apply to the cached encoder outputs
        train(config)
        log = (tmp_path / name / "train_log.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, log) if r.get("kind") == "train"]

    plain = losses("plain")
    masked = losses("masked", time_mask_share=0.5, time_mask_ms=200)
    assert masked != plain
    assert losses("masked-again", time_mask_share=0.5, time_mask_ms=200) == masked


def test_masking_is_refused_where_targets_come_from_unmasked_input(make_config) -> None:
    with pytest.raises(TrainConfigError, match="cross_kv_cache_gib"):
        make_config(augment={"time_mask_share": 0.1}, cross_kv_cache_gib=1.0)
    with pytest.raises(TrainConfigError, match="augment.time_mask_share"):
        make_config(augment={"time_mask_share": 1.5})


def test_perturbed_copies_join_the_training_set_and_the_encoder_cache(make_config, tmp_path: Path) -> None:
    config = make_config(augment={"speed_factors": [0.9, 1.1], "noise_snr_db": 20}, precision="no")
    assert config.augment.speed_factors == (0.9, 1.1) and config.augment.noise_snr_db == (20.0,)
    assert config.uses_encoder_cache
    summary = train(config)
    assert summary["train_utterances"] == 8 * 4 and summary["perturbed_copies"] == 8 * 3
    # Each copy is its own audio file, so the cache encoded it as one more utterance (the 8 originals
    # may already be cached by an earlier test of this session).
    assert summary["encoder_cache_encoded"] >= 8 * 3
    saved = TrainConfig.from_dict(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()))
    assert saved.augment == config.augment  # a recipe round trip (YAML has no tuples)


def test_bad_copy_options_name_the_augment_field(make_config) -> None:
    with pytest.raises(TrainConfigError, match="augment: speed factor 1.0"):
        make_config(augment={"speed_factors": [1.0]})
    with pytest.raises(TrainConfigError, match="augment.noise_snr_db: a list of numbers"):
        make_config(augment={"noise_snr_db": ["loud"]})
