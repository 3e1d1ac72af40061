"""Layer-wise language-ID probing: features, classifier, theta suggestion, result files, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dama_asr.data.manifest import Utterance, write_manifest
from dama_asr.probe import (
    ProbeError,
    ProbeInput,
    ProbeOptions,
    check_label_counts,
    cross_validate,
    extract_features,
    load_probe,
    plot_probe,
    prompt_ids,
    run_probe,
    save_probe,
    suggest_thetas,
)
from dama_asr.probe.features import encoder_frames, transcript_ids
from dama_asr.testing import tone, write_tone

SOT, TRANSCRIBE, NO_TIMESTAMPS, CY = 50258, 50359, 50363, 50258 + 1 + 69  # <|cy|> is language #69


def _input(backbone, text: str, seconds: float, seed: int = 0) -> ProbeInput:
    tokenizer = backbone.processor.tokenizer
    return ProbeInput(
        audio=tone(seconds, freq=300 + 100 * seed, seed=seed),
        prompt=tuple(prompt_ids(tokenizer, None)),
        text=tuple(transcript_ids(tokenizer, text, 400)),
    )


# ---- prompts and features -------------------------------------------------------------------------


def test_prompt_ids_neutral_has_no_language_token_and_restores_tokenizer(tiny_backbone):
    tokenizer = tiny_backbone.processor.tokenizer
    before = (tokenizer.language, tokenizer.task, tokenizer.predict_timestamps)
    assert prompt_ids(tokenizer, None) == [SOT, TRANSCRIBE, NO_TIMESTAMPS]
    forced = prompt_ids(tokenizer, "cy")
    assert forced == [SOT, tokenizer.convert_tokens_to_ids("<|cy|>"), TRANSCRIBE, NO_TIMESTAMPS]
    assert (tokenizer.language, tokenizer.task, tokenizer.predict_timestamps) == before


def test_feature_shapes_and_encoder_frames(tiny_backbone):
    inputs = [_input(tiny_backbone, "bore da", 0.5), _input(tiny_backbone, "good morning to you all", 1.0, 1)]
    features = extract_features(tiny_backbone, inputs, batch_size=2)
    layers = tiny_backbone.model.config.decoder_layers + 1
    d_model = tiny_backbone.model.config.d_model
    assert features.decoder.shape == (layers, 2, d_model)
    assert features.encoder.shape == (tiny_backbone.model.config.encoder_layers + 1, 2, d_model)
    assert np.isfinite(features.decoder).all() and np.isfinite(features.encoder).all()
    assert encoder_frames(16_000, 1500) == 50  # Whisper: 50 encoder frames per second
    assert encoder_frames(16_001, 1500) == 51 and encoder_frames(1, 1500) == 1
    assert encoder_frames(30 * 16_000, 1500) == 1500
    only_encoder = extract_features(tiny_backbone, inputs, decoder=False)
    assert only_encoder.decoder is None
    np.testing.assert_allclose(only_encoder.encoder, features.encoder, atol=1e-5)


def test_pooling_sees_only_transcript_tokens_and_audio_frames(tiny_backbone):
    short = _input(tiny_backbone, "bore da", 0.5)
    long = _input(tiny_backbone, "a much longer transcript that forces padding in the batch", 2.0, 1)
    alone = extract_features(tiny_backbone, [short], batch_size=1)
    padded = extract_features(tiny_backbone, [short, long], batch_size=2)
    # Padding (decoder tokens, encoder frames past the audio) changes nothing for the short utterance.
    np.testing.assert_allclose(padded.decoder[:, 0], alone.decoder[:, 0], atol=1e-5)
    np.testing.assert_allclose(padded.encoder[:, 0], alone.encoder[:, 0], atol=1e-5)

    # Direct check: the pooled vector is the mean over exactly the transcript positions.
    model, processor = tiny_backbone.model, tiny_backbone.processor
    mel = processor.feature_extractor([short.audio], sampling_rate=16_000, return_tensors="pt").input_features
    ids = torch.tensor([short.prompt + short.text])
    with torch.no_grad():
        out = model.model(input_features=mel, decoder_input_ids=ids, output_hidden_states=True)
    p = len(short.prompt)
    for layer, hidden in enumerate(out.decoder_hidden_states):  # (1, T, D)
        np.testing.assert_allclose(alone.decoder[layer, 0], hidden[0, p:].mean(0).numpy(), atol=1e-5)
    frames = encoder_frames(len(short.audio), 1500)
    for layer, hidden in enumerate(out.encoder_hidden_states):  # (1, 1500, D)
        np.testing.assert_allclose(alone.encoder[layer, 0], hidden[0, :frames].mean(0).numpy(), atol=1e-5)


# ---- the classifier -------------------------------------------------------------------------------


def test_cross_validate_separable_features_score_one():
    rng = np.random.default_rng(0)
    labels = np.repeat(["cy", "en", "lt"], 30)
    centres = {"cy": 0.0, "en": 4.0, "lt": -4.0}
    features = rng.standard_normal((90, 8)) * 0.3
    features[:, 0] += [centres[lab] for lab in labels]
    scores = cross_validate(features, labels.tolist(), folds=5, seed=0)
    assert scores.mean == pytest.approx(1.0) and scores.std == pytest.approx(0.0)
    assert len(scores.folds) == 5


def test_cross_validate_random_labels_score_near_chance():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((240, 16))
    labels = rng.permutation(np.repeat(["a", "b", "c"], 80)).tolist()
    scores = cross_validate(features, labels, folds=4, seed=0)
    assert 0.15 < scores.mean < 0.5  # chance is 1/3
    assert cross_validate(features, labels, folds=4, seed=0) == scores  # deterministic for a seed


def test_too_few_utterances_error_names_the_counts():
    with pytest.raises(ProbeError, match=r"needs >= 5 usable utterances per language.*cy 3") as err:
        check_label_counts({"cy": 3, "en": 40}, folds=5, skipped="skipped 2 unreadable audio")
    assert "en 40" in str(err.value) and "skipped 2 unreadable audio" in str(err.value)
    with pytest.raises(ProbeError, match=r">= 2 languages.*cy 12"):
        check_label_counts({"cy": 12}, folds=5)


# ---- the theta suggestion -------------------------------------------------------------------------


def test_thetas_from_u_shaped_curve():
    # layer 0 (embeddings), then 10 layers: plateau, valley at 5-6, plateau again
    curve = [1.0, 1.0, 1.0, 0.98, 0.9, 0.8, 0.8, 0.88, 0.97, 1.0, 1.0]
    s = suggest_thetas(curve)
    assert not s.fallback
    # cut = 0.8 + 0.5 * 0.2 = 0.9: layers 1-4 stay at/above it; from layer 8 on it is back above.
    assert (s.l_early, s.l_late, s.num_layers) == (4, 8, 10)
    assert 0 <= s.theta1 < s.theta2 <= 1
    assert math.floor(s.theta1 * 10) == 4 and math.floor(s.theta2 * 10) == 8
    assert s.theta1 == pytest.approx(0.4) and s.theta2 == pytest.approx(0.8)


def test_thetas_match_papers_curve_roughly():
    # Whisper large-v2 as the paper reports: ~100% on layers 1-5 and 28-32, ~93% around 17.
    layers = np.arange(1, 33)
    acc = np.where(layers <= 5, 1.0, np.where(layers <= 17, 1.0 - 0.07 * (layers - 5) / 12, 0.0))
    acc = np.where(layers > 17, np.minimum(1.0, 0.93 + 0.07 * (layers - 17) / 11), acc)
    s = suggest_thetas([1.0, *acc])
    assert (s.l_early, s.l_late) == (11, 23)
    assert s.theta1 == pytest.approx(0.34, abs=0.01) and s.theta2 == pytest.approx(0.72, abs=0.01)


@pytest.mark.parametrize(
    "curve, why",
    [
        ([1.0] * 7, "flat decoder curve"),
        ([1.0, 0.995, 1.0, 0.99, 1.0, 0.995, 1.0], "no valley"),  # within min_depth
        ([1.0, 1.0, 0.95, 0.9, 0.85, 0.8, 0.75], "no valley"),  # monotonic: no late plateau
        ([1.0, 1.0, 0.5], "cannot form a valley"),
    ],
)
def test_flat_or_monotonic_curve_falls_back_to_defaults(curve, why):
    s = suggest_thetas(curve)
    assert s.fallback and (s.theta1, s.theta2) == (0.3, 0.7)
    assert why in s.reason and "defaults" in s.reason


def test_valley_within_fold_noise_falls_back():
    curve = [1.0, 1.0, 0.95, 0.9, 0.95, 1.0, 1.0]
    assert not suggest_thetas(curve).fallback
    assert suggest_thetas(curve, std=[0.0, 0.0, 0.1, 0.15, 0.1, 0.0, 0.0]).fallback


@pytest.mark.parametrize("num_layers", [3, 6, 7, 12, 24, 32, 100])
def test_theta_floor_round_trips_for_every_layer(num_layers):
    from dama_asr.probe.curve import _theta_for

    for layer in range(num_layers + 1):
        assert math.floor(_theta_for(layer, num_layers) * num_layers) == layer


# ---- end to end -----------------------------------------------------------------------------------


def _two_language_manifest(folder: Path, per_language: int = 4) -> Path:
    items = []
    words = {"cy": "bore da ffrind annwyl", "en": "good morning dear friend"}
    for li, (lang, text) in enumerate(words.items()):
        for i in range(per_language):
            seconds = 0.5 + 0.25 * i
            audio = write_tone(folder / f"{lang}{i}.wav", seconds=seconds, freq=250 + 400 * li + 30 * i)
            items.append(Utterance(f"{lang}{i}", str(audio), f"{text} {i}", lang, seconds))
    (folder / "broken.wav").write_bytes(b"not audio")
    items.append(Utterance("broken", str(folder / "broken.wav"), "bore da", "cy", 1.0))
    items.append(Utterance("silent", str(folder / "cy0.wav"), "   ", "cy", 1.0))
    return write_manifest(folder / "manifest.jsonl", items)


def test_run_probe_end_to_end_writes_json_and_png(tiny_backbone, tmp_path):
    from dama_asr.data.manifest import read_manifest

    items = read_manifest(_two_language_manifest(tmp_path))
    result = run_probe(tiny_backbone, items, ProbeOptions(folds=2, batch_size=3), progress=False)
    assert result.languages == {"cy": 4, "en": 4}
    assert result.skipped == {"unreadable_audio": 1, "empty_text": 1}
    assert result.chance == pytest.approx(0.5)
    layers = tiny_backbone.model.config.decoder_layers + 1
    for curve in (result.decoder, result.encoder):
        assert curve.layers == tuple(range(layers)) and len(curve.mean) == len(curve.std) == layers
        assert all(0.0 <= m <= 1.0 for m in curve.mean)
    assert result.suggestion.fallback  # 2 layers cannot show a valley
    assert result.settings["prompt"] == "neutral"
    assert result.settings["prompt_tokens"] == ["<|startoftranscript|>", "<|transcribe|>", "<|notimestamps|>"]

    json_path = save_probe(result, tmp_path / "out" / "probe.json")
    png_path = plot_probe(result, tmp_path / "out" / "probe.png")
    assert load_probe(json_path) == result
    assert load_probe(json_path).thetas == (0.3, 0.7)
    assert json.loads(json_path.read_text())["format"] == "dama-probe"
    with Image.open(png_path) as image:
        image.verify()
    with Image.open(png_path) as image:
        assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 400
    assert png_path.stat().st_size > 10_000


def test_run_probe_rejects_one_language_before_any_forward_pass(tiny_backbone, tmp_path):
    audio = write_tone(tmp_path / "a.wav")
    items = [Utterance(f"u{i}", str(audio), "bore da", "cy", 1.0) for i in range(6)]
    with pytest.raises(ProbeError, match="needs >= 2 languages; usable utterances per language: cy 6"):
        run_probe(tiny_backbone, items, progress=False)


def test_load_probe_rejects_other_json(tmp_path):
    other = tmp_path / "x.json"
    other.write_text('{"wer": 1}')
    with pytest.raises(ProbeError, match="not a `dama probe` result"):
        load_probe(other)
    with pytest.raises(ProbeError, match="does not exist"):
        load_probe(tmp_path / "missing.json")


def test_cli_probe(tmp_path, capsys):
    from dama_asr.cli import main

    manifest = _two_language_manifest(tmp_path)
    out = tmp_path / "probe"
    args = ["probe", "--model", "tiny-random", "--manifest", str(manifest), "--out", str(out), "--folds", "2"]
    assert main([*args, "--layers", "decoder", "--prompt", "fixed"]) == 0
    printed = capsys.readouterr().out
    assert "decoder accuracy per layer" in printed and "default theta1=0.300 theta2=0.700" in printed
    result = load_probe(out / "probe.json")
    assert result.encoder is None and result.settings["prompt"] == "fixed"
    assert (out / "probe.png").stat().st_size > 10_000

    assert main([*args, "--folds", "5"]) == 2
    assert "too few in: cy 4, en 4" in capsys.readouterr().err


def test_probe_of_an_adapted_model_sees_the_merged_weights(tmp_path):
    """--adapter: the probed model is the adapted one, merged; the base model's weights are untouched."""
    from dama_asr.adapters import AdapterConfig, apply_adapter, save_adapter
    from dama_asr.backbone.loading import load_backbone
    from dama_asr.data.manifest import read_manifest
    from dama_asr.probe.features import extract_features
    from dama_asr.probe.run import _select
    from dama_asr.probe_commands import with_merged_adapter

    config = AdapterConfig(method="dama", r_high=4, r_low=2)
    adapted = apply_adapter(load_backbone("tiny-random", precision="no").model, config)
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # a trained-looking adapter (B starts at zero)
    adapter_dir = save_adapter(adapted, config, tmp_path / "adapter", base_model="tiny-random")
    items = read_manifest(_two_language_manifest(tmp_path))
    base = load_backbone("tiny-random", precision="no")
    inputs = _select(base, items, ProbeOptions(folds=2)).inputs
    before = extract_features(base, inputs, True, False, 4).decoder
    merged = with_merged_adapter(load_backbone("tiny-random", precision="no"), adapter_dir)
    assert not any("lora" in name for name, _ in merged.model.named_parameters())
    after = extract_features(merged, inputs, True, False, 4).decoder
    assert np.allclose(before[0], after[0])  # token embeddings are not adapted
    assert not np.allclose(before[-1], after[-1], atol=1e-3)  # the last decoder layer is
    again = extract_features(load_backbone("tiny-random", precision="no"), inputs, True, False, 4).decoder
    assert np.array_equal(before, again)


def test_decoder_probe_with_reused_encoder_outputs_matches(tiny_backbone, tmp_path):
    from dama_asr.data.manifest import read_manifest

    items = read_manifest(_two_language_manifest(tmp_path))
    plain = ProbeOptions(folds=2, layers="decoder")
    reused = ProbeOptions(folds=2, layers="decoder", reuse_encoder_outputs=True)
    a = run_probe(tiny_backbone, items, plain, progress=False)
    b = run_probe(tiny_backbone, items, reused, progress=False)  # fills the cache
    c = run_probe(tiny_backbone, items, reused, progress=False)  # reads it
    assert b.decoder == c.decoder
    # float16 encoder outputs: accuracies may move by at most one utterance of eight per layer
    assert all(abs(x - y) <= 1 / 8 + 1e-9 for x, y in zip(a.decoder.mean, b.decoder.mean, strict=True))
