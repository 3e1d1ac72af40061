"""Scoring with reused encoder outputs: same transcripts, and the encoder runs once per utterance."""

from __future__ import annotations

import torch

from dama_asr.data.audio import load_audio
from dama_asr.data.manifest import read_manifest
from dama_asr.evaluate import evaluate_items
from dama_asr.features.encoder_cache import EncoderCache, whisper_fingerprint
from dama_asr.inference.decoding import DecodingOptions, transcribe
from dama_asr.testing import tiny_manifest


class EncoderCalls:
    """Counts utterances passed through the encoder (a forward hook; the model itself is real)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.utterances = 0
        self.handle = encoder.register_forward_hook(self._count)

    def _count(self, module, inputs, output) -> None:
        self.utterances += output.last_hidden_state.shape[0]


def test_given_encoder_outputs_decode_exactly_like_audio(tiny_backbone, tmp_path):
    items = read_manifest(tiny_manifest(tmp_path, n=3))
    audios = [load_audio(u.audio) for u in items]
    model = tiny_backbone.model
    features = tiny_backbone.processor.feature_extractor(audios, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        hidden = model.model.encoder(features.input_features).last_hidden_state
    options = DecodingOptions(batch_size=2)
    plain = transcribe(tiny_backbone, audios, options, languages=["cy"] * 3)
    given = transcribe(
        tiny_backbone,
        audios,
        options,
        languages=["cy"] * 3,
        encoder_outputs=lambda positions: hidden[list(positions)],
    )
    assert [t.tokens for t in given] == [t.tokens for t in plain]


def test_reused_encoder_outputs_encode_once_and_score_the_same(tiny_backbone, tmp_path):
    items = read_manifest(tiny_manifest(tmp_path, n=4))
    calls = EncoderCalls(tiny_backbone.model.model.encoder)
    try:
        fresh = evaluate_items(tiny_backbone, items, DecodingOptions(batch_size=2))
        after_fresh = calls.utterances
        first = evaluate_items(
            tiny_backbone, items, DecodingOptions(batch_size=2), reuse_encoder_outputs=True
        )
        after_first = calls.utterances
        second = evaluate_items(
            tiny_backbone, items, DecodingOptions(batch_size=2), reuse_encoder_outputs=True
        )
    finally:
        calls.handle.remove()
    assert after_fresh == 4
    assert after_first - after_fresh == 4  # filled the cache
    assert calls.utterances == after_first  # the second scoring ran no encoder at all
    fe = tiny_backbone.processor.feature_extractor
    cache = EncoderCache(whisper_fingerprint(tiny_backbone.model, fe, tiny_backbone.precision))
    assert len(cache) >= 4
    hyps = [[u["hypothesis"] for u in r["utterances"]] for r in (fresh, first, second)]
    assert hyps[1] == hyps[2]
    # float16 storage may flip a near-tie of the random tiny model; almost every hypothesis must agree
    agree = sum(a == b for a, b in zip(hyps[0], hyps[1], strict=True))
    assert agree >= 3
