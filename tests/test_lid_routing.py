"""Routing an adapter set by Whisper's own language detection (`inference.lid`).

A tiny random Whisper detects arbitrary languages, so these test the mechanics: the distribution, its
restriction to candidates, that detection runs the base model, and that a detected route decodes as the
detected language's adapter alone. One slow test checks real detection with the embedded Whisper-base.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from dama_asr.adapters.sets import AdapterSet, AdapterSetError, adapter_set_backbone
from dama_asr.backbone.loading import Backbone, load_backbone
from dama_asr.cli import main
from dama_asr.data.audio import load_audio
from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.evaluate import EvaluationError, evaluate_items
from dama_asr.features.log_mel import log_mel
from dama_asr.inference.decoding import DecodingOptions, transcribe
from dama_asr.inference.lid import (
    LanguageIdError,
    candidate_codes,
    detect_languages,
    language_probabilities,
    lid_summary,
    mean_language_probabilities,
)
from dama_asr.inference.routing import transcribe_detected, transcribe_set
from dama_asr.testing import tiny_manifest, tiny_whisper, tone

# Clips of different pitch and loudness: the tiny model's detection differs between some of them.
CLIPS = [
    (0.5, 200),
    (1.0, 450),
    (1.5, 900),
    (0.75, 1500),
    (2.0, 2500),
    (1.25, 3500),
    (0.6, 5000),
    (1.8, 7000),
]


def _audios():
    return [tone(seconds, freq, seed=i) for i, (seconds, freq) in enumerate(CLIPS)]


def _adapted(seed: int, base: torch.nn.Module | None = None) -> PeftModel:
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc1", "fc2"])
    model = get_peft_model(base if base is not None else tiny_whisper()[0], config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # random factors: each adapter changes the logits, its own way
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory) -> Path:
    adapter_set = AdapterSet.for_base(tiny_whisper()[0], "tiny-random")
    adapter_set.add("cy", _adapted(1))
    adapter_set.add("en", _adapted(2))
    return adapter_set.save(tmp_path_factory.mktemp("lid") / "set")


def _routed(set_dir: Path, languages: list[str] | None = None) -> Backbone:
    # A fresh base each time: peft injects its layers into the model it is given.
    return adapter_set_backbone(load_backbone("tiny-random", precision="no"), set_dir, languages)


def test_probabilities_are_a_distribution_and_candidates_renormalise_it(tiny_backbone, tmp_path):
    audios = _audios()
    codes, probs = language_probabilities(tiny_backbone, audios, batch_size=3)
    lang_to_id = tiny_backbone.model.generation_config.lang_to_id
    assert codes[:3] == ["en", "zh", "de"] and len(codes) == len(lang_to_id) == 99  # Whisper's token order
    assert probs.shape == (len(audios), 99) and probs.dtype == torch.float32
    assert torch.allclose(probs.sum(dim=1), torch.ones(len(audios)), atol=1e-5)
    # The argmax is transformers' own detect_language on the same features.
    features = log_mel(tiny_backbone.processor.feature_extractor, audios)  # (N, 80, 3000)
    ids = tiny_backbone.model.detect_language(input_features=features).tolist()
    by_id = {v: k.strip("<|>") for k, v in lang_to_id.items()}
    assert detect_languages(tiny_backbone, audios) == [by_id[i] for i in ids]

    candidates = ["Welsh", "en", "ka", "en"]  # names accepted, duplicates dropped
    sub_codes, sub = language_probabilities(tiny_backbone, audios, candidates, batch_size=8)
    assert sub_codes == ["cy", "en", "ka"]
    assert torch.allclose(sub.sum(dim=1), torch.ones(len(audios)), atol=1e-5)
    picked = probs[:, [codes.index(c) for c in sub_codes]]
    assert torch.allclose(sub, picked / picked.sum(dim=1, keepdim=True), rtol=1e-4, atol=1e-7)
    assert detect_languages(tiny_backbone, audios, candidates) == [sub_codes[i] for i in picked.argmax(1)]

    # Features, arrays and manifest items are the same input; features beyond 30 s are cut to it.
    long = torch.cat([features, features], dim=-1)  # (N, 80, 6000)
    assert torch.allclose(language_probabilities(tiny_backbone, long, candidates)[1], sub, atol=1e-6)
    items = read_manifest(tiny_manifest(tmp_path / "m", n=3))
    from_items = language_probabilities(tiny_backbone, items, candidates)[1]
    from_audio = language_probabilities(tiny_backbone, [load_audio(u.audio) for u in items], candidates)[1]
    assert torch.equal(from_items, from_audio)


def test_mean_probabilities_rank_the_candidates_most_probable_first(tiny_backbone):
    audios = _audios()
    ranking = mean_language_probabilities(tiny_backbone, audios, ["cy", "en", "ka", "lt"])
    values = list(ranking.values())
    assert sorted(ranking) == ["cy", "en", "ka", "lt"] and values == sorted(values, reverse=True)
    _, probs = language_probabilities(tiny_backbone, audios, ["cy", "en", "ka", "lt"])
    means = dict(zip(["cy", "en", "ka", "lt"], probs.mean(dim=0).tolist(), strict=True))
    assert ranking == pytest.approx(means) and sum(values) == pytest.approx(1.0)
    with pytest.raises(LanguageIdError, match="no utterances"):
        mean_language_probabilities(tiny_backbone, [])


def test_detection_runs_the_base_model_with_every_adapter_off(tiny_backbone, set_dir):
    audios = _audios()
    routed = _routed(set_dir)
    model = routed.model
    assert model.active_adapter == "cy"
    grads = [p.requires_grad for p in model.parameters()]
    codes, with_set = language_probabilities(routed, audios, ["cy", "en"])
    assert [p.requires_grad for p in model.parameters()] == grads  # peft's re-enable marks them trainable
    _, plain = language_probabilities(tiny_backbone, audios, ["cy", "en"])
    assert torch.allclose(with_set, plain, atol=1e-6)
    # The active adapter would have changed the distribution...
    features = log_mel(routed.processor.feature_extractor, audios)
    ids = [model.generation_config.lang_to_id[f"<|{c}|>"] for c in codes]
    sot = torch.full((len(audios), 1), model.generation_config.decoder_start_token_id)
    with torch.no_grad():
        adapted = model(input_features=features, decoder_input_ids=sot).logits[:, -1, ids].softmax(-1)
    assert not torch.allclose(adapted, plain, atol=1e-3)
    # ...and is on again afterwards.
    with torch.no_grad():
        again = model(input_features=features, decoder_input_ids=sot).logits[:, -1, ids].softmax(-1)
    assert torch.equal(adapted, again) and model.active_adapter == "cy"


def _discerning_base(folder: Path) -> Path:
    """A tiny Whisper whose first token depends on the audio: the plain tiny model's encoder output is
    nearly the same for every clip (its positional embedding swamps the convolutions) and its logits
    nearly flat, so its detection never changes. Larger convolutions, cross-attention and token
    embeddings (tied to the output projection) make it tell some clips apart."""
    model, processor = tiny_whisper()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("model.encoder.conv") and name.endswith("weight"):
                p.mul_(100)
            elif "encoder_attn." in name and name.endswith(("v_proj.weight", "out_proj.weight")):
                p.mul_(100)
            elif name == "model.decoder.embed_tokens.weight":
                p.mul_(50)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _varied_audios():
    return [
        tone(0.5, 200),
        tone(1.5, 900, seed=2),
        tone(0.75, 1500, seed=3),
        tone(5.0, 300),
        tone(12.0, 1000),
    ]


@pytest.fixture(scope="module")
def discerning(tmp_path_factory) -> tuple[Path, list[str], Path]:
    """(base folder, the two languages it tells apart best on `_varied_audios`, a set of them)."""
    folder = tmp_path_factory.mktemp("discerning")
    base = load_backbone(str(_discerning_base(folder / "base")), precision="no")
    codes, probs = language_probabilities(base, _varied_audios())
    logp = probs.log()  # (N, 99)
    best = (0.0, ["", ""])
    for a, b in itertools.combinations(range(len(codes)), 2):
        margin = logp[:, a] - logp[:, b]  # (N,)
        if min((margin > 0).sum(), (margin < 0).sum()) >= 2:  # each language wins at least twice
            best = max(best, (margin.abs().min().item(), [codes[a], codes[b]]))
    assert best[0] > 0.05, best  # far from a tie: the same detections on any CPU
    pair = best[1]
    adapter_set = AdapterSet.for_base(base.model, "tiny-discerning")
    for seed, code in enumerate(pair, 1):
        adapter_set.add(code, _adapted(seed, base=load_backbone(str(folder / "base")).model))
    return folder / "base", pair, adapter_set.save(folder / "set")


def test_a_detected_route_decodes_each_clip_as_its_detected_languages_adapter_alone(discerning):
    base_dir, pair, set_dir = discerning
    audios = _varied_audios()
    routed = adapter_set_backbone(load_backbone(str(base_dir), precision="no"), set_dir)
    detected = detect_languages(routed, audios, pair)
    assert set(detected) == set(pair), detected  # both adapters are used, so routing is exercised
    options = DecodingOptions(batch_size=2)
    out = transcribe_detected(routed, audios, options)
    assert [t.language for t in out] == detected
    for language in pair:
        alone = adapter_set_backbone(load_backbone(str(base_dir), precision="no"), set_dir, [language])
        idx = [i for i, lang in enumerate(detected) if lang == language]
        expected = transcribe(alone, [audios[i] for i in idx], options, languages=[language] * len(idx))
        assert [out[i].tokens for i in idx] == [t.tokens for t in expected]
    # The route matters: every clip through one adapter decodes some of them differently.
    one = adapter_set_backbone(load_backbone(str(base_dir), precision="no"), set_dir, [pair[0]])
    assert [t.tokens for t in transcribe(one, audios, options, languages=detected)] != [t.tokens for t in out]


def _mixed_manifest(tmp_path: Path) -> Path:
    """2 Welsh, 2 English and 1 Georgian clip (Georgian: a language the set has no adapter for)."""
    parts = []
    for code, texts in (
        ("cy", ["bore da", "nos da"]),
        ("en", ["good morning", "thank you"]),
        ("ka", ["გამარჯობა"]),
    ):
        items = read_manifest(tiny_manifest(tmp_path / code, language=code, texts=texts))
        parts += [type(u)(**{**u.__dict__, "id": f"{code}-{u.id}"}) for u in items]
    return write_manifest(tmp_path / "mixed.jsonl", parts)


def test_eval_by_whisper_lid_records_accuracy_and_confusion_of_its_detections(
    set_dir, tmp_path, caplog, capsys
):
    manifest = _mixed_manifest(tmp_path)
    out = tmp_path / "lid.json"
    args = ["eval", "--model", "tiny-random", "--precision", "no", "--adapter-set", str(set_dir),
            "--manifest", str(manifest), "--out", str(out)]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--route", "whisper-lid"]) == 0
    result = json.loads(out.read_text())
    routing, utterances = result["routing"], result["utterances"]
    assert routing["route"] == "whisper-lid" and routing["languages"] == ["cy", "en"]
    detected = [u["detected_language"] for u in utterances]
    assert set(detected) <= {"cy", "en"} and detected == [u["decoded_language"] for u in utterances]
    # The confusion and accuracy are those of the per-utterance detections; WER stays by true language.
    confusion: dict = {}
    for u in utterances:
        row = confusion.setdefault(u["language"], {})
        row[u["detected_language"]] = row.get(u["detected_language"], 0) + 1
    assert routing["confusion"] == {t: dict(sorted(r.items())) for t, r in sorted(confusion.items())}
    in_set = [u for u in utterances if u["language"] in ("cy", "en")]
    correct = sum(u["language"] == u["detected_language"] for u in in_set)
    assert (routing["utterances"], routing["correct"]) == (4, correct)
    assert routing["accuracy"] == pytest.approx(correct / 4)
    assert routing["outside_set"] == {"utterances": 1, "languages": {"ka": 1}}
    assert set(result["by_language"]) == {"cy", "en", "ka", "all"}
    assert result["decoding"]["language_source"] == "detected"
    assert "1 utterance(s) in languages the adapter set has no adapter for (ka 1)" in caplog.text
    assert f"language-ID accuracy {correct / 4:.1%} ({correct} of 4;" in capsys.readouterr().out
    # Each hypothesis is what the given route decodes when given the detected languages.
    routed = _routed(set_dir)
    audios = [load_audio(u.audio) for u in read_manifest(manifest)]
    given, record = transcribe_set(routed, audios, detected, DecodingOptions())
    assert [t.text for t in given] == [u["hypothesis"] for u in utterances] and record["route"] == "given"


def test_the_given_route_refuses_a_language_outside_the_set_naming_it_and_the_set(set_dir, tmp_path):
    items = read_manifest(_mixed_manifest(tmp_path))
    routed = _routed(set_dir)
    with pytest.raises(AdapterSetError) as err:
        evaluate_items(routed, items, manifest=tmp_path / "mixed.jsonl")
    message = str(err.value)
    assert "1 utterance(s) in ka (first: 'ka-utt0')" in message and str(set_dir) in message
    assert "it holds cy, en" in message and "--route whisper-lid" in message
    with pytest.raises(EvaluationError, match="route 'nearest': one of given, whisper-lid"):
        evaluate_items(routed, items, route="nearest")
    with pytest.raises(EvaluationError, match=r"load a set \(--adapter-set\)"):
        evaluate_items(load_backbone("tiny-random", precision="no"), items, route="whisper-lid")


def test_transcribe_without_a_language_routes_a_set_by_detection(set_dir, tmp_path, capsys):
    wav = Path(read_manifest(tiny_manifest(tmp_path, n=1))[0].audio)
    args = [
        "transcribe",
        str(wav),
        "--model",
        "tiny-random",
        "--precision",
        "no",
        "--adapter-set",
        str(set_dir),
    ]
    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    note = "note: no --language: each file goes to the adapter of the language Whisper detects among "
    assert note + "the set's (cy, en)" in captured.err
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert line["language"] == detect_languages(_routed(set_dir), [load_audio(wav)], ["cy", "en"])[0]
    assert main([*args, "--language", "en", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["language"] == "en"


def test_unknown_candidates_name_the_code_and_the_fix(tiny_backbone):
    with pytest.raises(
        LanguageIdError, match=r"candidate 'xx' is not a Whisper language; pass Whisper codes"
    ):
        candidate_codes(tiny_backbone, ["cy", "xx"])
    with pytest.raises(
        LanguageIdError, match=r"candidate 'yue'.*only whisper-large-v3 has it.*label it 'zh'"
    ):
        language_probabilities(tiny_backbone, [tone(0.5)], ["yue"])
    with pytest.raises(LanguageIdError, match="no candidate languages"):
        detect_languages(tiny_backbone, [tone(0.5)], [])
    assert candidate_codes(tiny_backbone, "cy") == ["cy"]  # one code, not its letters


def test_lid_summary_counts_languages_outside_the_candidates_apart():
    summary = lid_summary(["cy", "cy", "en", "ka"], ["cy", "en", "en", "en"], ["cy", "en"])
    assert summary["accuracy"] == pytest.approx(2 / 3)
    assert (summary["utterances"], summary["correct"]) == (3, 2)
    assert summary["confusion"] == {"cy": {"cy": 1, "en": 1}, "en": {"en": 1}, "ka": {"en": 1}}
    assert summary["outside_set"] == {"utterances": 1, "languages": {"ka": 1}}
    assert lid_summary(["ka"], ["en"], ["cy", "en"])["accuracy"] is None


@pytest.mark.slow
def test_the_embedded_whisper_base_detects_english_speech():
    home = Path.home() / ".cache" / "dama-asr"  # the user's cache: conftest points DAMA_HOME elsewhere
    model_dir, corpus = home / "models" / "whisper-base", home / "corpora" / "synth" / "en" / "test.jsonl"
    if not (model_dir / "COMPLETE.json").is_file() or not corpus.is_file():
        pytest.skip("needs the converted whisper-base and the synthetic English corpus in ~/.cache/dama-asr")
    items = read_manifest(corpus)[:6]
    backbone = load_backbone(str(model_dir), precision="no")
    assert detect_languages(backbone, items) == ["en"] * len(items)
    ranking = mean_language_probabilities(backbone, items, ["cy", "en", "ka", "lt", "sl"])
    assert next(iter(ranking)) == "en" and ranking["en"] > 0.5


def test_raw_audio_is_detected_under_bf16_autocast_too() -> None:
    """The log-mel of raw arrays is computed outside autocast (numpy cannot hold bf16)."""
    fp32 = load_backbone("tiny-random", precision="no")
    bf16 = load_backbone("tiny-random", precision="bf16")
    audios = [tone(1.0, 300.0), tone(1.5, 500.0)]
    codes, probs = language_probabilities(bf16, audios, ["cy", "en", "de"])
    _, reference = language_probabilities(fp32, audios, ["cy", "en", "de"])
    assert codes == ["cy", "en", "de"] and probs.dtype == torch.float32
    assert torch.allclose(probs.sum(-1), torch.ones(2)) and torch.allclose(probs, reference, atol=0.05)
