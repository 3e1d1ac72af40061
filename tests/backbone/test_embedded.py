"""The embedded Whisper-base: conversion fidelity against CTranslate2, tokenizer repair, cache safety."""

import json
import shutil

import numpy as np
import pytest
import torch

from dama_asr.backbone import embedded
from dama_asr.backbone.configs import meta_model
from dama_asr.data.audio import load_audio
from dama_asr.data.espeak import synthesize
from dama_asr.inference.decoding import DecodingOptions, transcribe
from dama_asr.scoring import whisper_basic, word_errors

SENTENCE = "The quick brown fox jumps over the lazy dog."
PROMPT = [50258, 50259, 50359, 50363]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>


@pytest.fixture(scope="module")
def english_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "fox.wav"
    return load_audio(synthesize(SENTENCE, path, voice="en", speed=150))


@pytest.fixture(scope="module")
def ct2_whisper(tmp_path_factory):
    ctranslate2 = pytest.importorskip("ctranslate2")
    folder = tmp_path_factory.mktemp("ct2")
    embedded.join_model_bin(folder / "model.bin")
    _, _, meta = embedded.ctranslate2_sources()
    for name in ("config.json", "vocabulary.txt"):
        shutil.copy(meta / name, folder / name)
    return ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")


def test_conversion_matches_ctranslate2_tokens_logits_and_language(whisper_base, ct2_whisper, english_clip):
    import ctranslate2

    features = whisper_base.processor.feature_extractor(
        [english_clip], sampling_rate=16000, return_tensors="np"
    ).input_features
    view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features))
    ct2 = ct2_whisper.generate(view, [PROMPT], beam_size=1, return_logits_vocab=True)[0]
    ct2_tokens = ct2.sequences_ids[0]

    ours = transcribe(whisper_base, [english_clip], DecodingOptions(language="en"))[0]
    assert list(ours.tokens) == ct2_tokens

    # Teacher-force our decoder on the same tokens; compare every step's logits where CT2 did not suppress.
    with torch.no_grad():
        logits = whisper_base.model(
            input_features=torch.from_numpy(features), decoder_input_ids=torch.tensor([PROMPT + ct2_tokens])
        ).logits[0, len(PROMPT) - 1 : -1]  # (steps, vocab)
    ct2_logits = np.stack([np.array(step) for step in ct2.logits[0]])[: len(ct2_tokens)]
    finite = ct2_logits > -1e30  # CT2 marks suppressed tokens with -FLT_MAX
    assert finite.mean() > 0.9
    assert np.abs(logits.numpy()[finite] - ct2_logits[finite]).max() < 1e-3

    ct2_langs = dict(ct2_whisper.detect_language(view)[0])
    with torch.no_grad():
        enc = whisper_base.model.model.encoder(torch.from_numpy(features))
        step = whisper_base.model(encoder_outputs=enc, decoder_input_ids=torch.tensor([[50258]])).logits[
            0, -1
        ]
    lang_ids = whisper_base.model.generation_config.lang_to_id
    probs = torch.softmax(step[list(lang_ids.values())], dim=-1)
    ours_langs = dict(zip(lang_ids, probs.tolist(), strict=True))
    for token in ("<|en|>", "<|cy|>", "<|de|>"):
        assert abs(ours_langs[token] - ct2_langs[token]) < 1e-3


def test_tokenizer_is_repaired(whisper_base):
    tokenizer = whisper_base.processor.tokenizer
    saved = json.loads((embedded.embedded_model_dir() / "tokenizer.json").read_text())
    assert len(saved["model"]["merges"]) == 50_000
    assert tokenizer(" the", add_special_tokens=False).input_ids == [264]
    assert len(tokenizer) == 51865
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == 50364
    assert tokenizer.convert_tokens_to_ids("<|30.00|>") == 51864
    # labels round-trip through the forced prompt
    tokenizer.set_prefix_tokens(language="cy", task="transcribe")
    ids = tokenizer("Bore da").input_ids
    assert ids[:4] == [50258, 50297, 50359, 50363] and ids[-1] == 50257
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Bore da"


def test_generation_config_carries_languages_and_task(whisper_base):
    gen = whisper_base.model.generation_config
    assert len(gen.lang_to_id) == 99 and gen.lang_to_id["<|cy|>"] == 50297
    assert gen.task == "transcribe" and gen.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert gen.no_timestamps_token_id == 50363 and gen.prev_sot_token_id == 50361
    assert gen.alignment_heads and gen.begin_suppress_tokens == [220, 50257]


def test_parameter_count_matches_known_config(whisper_base):
    n = sum(p.numel() for p in whisper_base.model.parameters())
    assert n == 72_593_920
    assert sum(p.numel() for p in meta_model("whisper-base").parameters()) == n


def test_embedded_model_transcribes_english(whisper_base, english_clip):
    out = transcribe(whisper_base, [english_clip], DecodingOptions(language="en"))[0]
    errors = word_errors(whisper_basic(SENTENCE), whisper_basic(out.text))
    assert errors.rate <= 0.25, out.text
    assert not out.suspicious


def test_half_written_cache_is_rebuilt_not_used(dama_home, embedded_dir, tmp_path):
    home = tmp_path / "home"
    partial = embedded.embedded_model_dir(home)
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")  # a crash left this behind: no COMPLETE marker
    assert not embedded._is_complete(partial)
    # a complete folder is detected as such and reused without conversion
    shutil.copytree(embedded_dir, partial, dirs_exist_ok=True)
    assert embedded._is_complete(partial)
    (partial / embedded.MARKER).write_text(json.dumps({"conversion_version": -1}))
    assert not embedded._is_complete(partial), "an older conversion must not be trusted"
