import numpy as np
import pytest
import torch

from dama_asr.inference.decoding import (
    MAX_NEW_TOKENS,
    SUSPICIOUS_REASONS,
    DecodingOptions,
    _decode_long,
    long_form_window_budget,
    max_new_tokens_for,
    transcribe,
)
from dama_asr.languages import UnknownLanguageError, normalise_language
from dama_asr.scoring import too_long_for_audio
from dama_asr.testing import tone


def test_token_cap_grows_with_duration_and_is_bounded():
    assert max_new_tokens_for(0.1) == 16
    assert max_new_tokens_for(4.0) == 100
    assert max_new_tokens_for(30.0) == MAX_NEW_TOKENS


def test_batched_transcription_keeps_input_order(tiny_backbone):
    audios = [tone(2.0, 300), tone(0.5, 500), tone(1.0, 700)]
    batched = transcribe(tiny_backbone, audios, DecodingOptions(language="cy", batch_size=2))
    single = [transcribe(tiny_backbone, [a], DecodingOptions(language="cy"))[0] for a in audios]
    assert [t.tokens for t in batched] == [t.tokens for t in single]
    assert all(t.language == "cy" for t in batched)


def test_language_is_forced_in_the_prompt(tiny_backbone):
    # A random model's first token depends on the prompt: different forced languages, different outputs.
    audio = [tone(1.0)]
    outs = {
        lang: transcribe(tiny_backbone, audio, DecodingOptions(language=lang))[0].tokens
        for lang in ("cy", "ka", "en")
    }
    assert len(set(outs.values())) > 1


def test_detected_language_when_not_forced(tiny_backbone):
    out = transcribe(tiny_backbone, [tone(1.0)], DecodingOptions(language=None))[0]
    assert out.language in tiny_backbone.languages


def test_unknown_language_lists_valid_codes(tiny_backbone):
    with pytest.raises(UnknownLanguageError, match="valid Whisper codes are: af, am, ar"):
        transcribe(tiny_backbone, [tone(0.5)], DecodingOptions(language="xx"))
    assert normalise_language("Welsh") == "cy" and normalise_language("<|lt|>") == "lt"


def test_options_are_validated():
    with pytest.raises(ValueError, match="task"):
        DecodingOptions(task="summarise")
    with pytest.raises(ValueError, match="--beam-size"):
        DecodingOptions(beam_size=0)


def test_beam_search_runs(tiny_backbone):
    out = transcribe(
        tiny_backbone, [np.zeros(16000, np.float32)], DecodingOptions(language="en", beam_size=2)
    )
    assert len(out) == 1 and isinstance(out[0].text, str)


def _sequential_long_form_tokens(backbone, audio, language):
    """Content tokens of transformers' documented long-form recipe, run directly."""
    processor, model = backbone.processor, backbone.model
    feats = processor.feature_extractor(
        [audio], sampling_rate=16000, return_tensors="pt", truncation=False, padding="longest",
        return_attention_mask=True,
    )  # fmt: skip
    with torch.no_grad():
        out = model.generate(
            input_features=feats.input_features, attention_mask=feats.attention_mask, language=[language],
            task="transcribe", max_new_tokens=model.generation_config.max_length - 4, return_timestamps=True,
        )  # fmt: skip
    first_special = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return tuple(t for t in out[0].tolist() if t < first_special)


def test_a_clip_over_30_s_is_decoded_long_form_and_short_ones_as_before(tiny_backbone):
    short, long = [tone(1.0, 300), tone(2.0, 500)], tone(40.0, 700)
    out = transcribe(tiny_backbone, [short[0], long, short[1]], DecodingOptions(language="cy", batch_size=2))
    assert [t.long_form for t in out] == [False, True, False]
    alone = transcribe(tiny_backbone, short, DecodingOptions(language="cy", batch_size=2))
    assert [out[0].tokens, out[2].tokens] == [t.tokens for t in alone]
    # The whole clip is read by Whisper's sequential long-form algorithm, not cut to its first 30 s.
    assert out[1].tokens == _sequential_long_form_tokens(tiny_backbone, long, "cy")
    assert out[1].text and not out[1].stalled


def test_long_form_detects_the_language_when_not_forced(tiny_backbone):
    out = transcribe(tiny_backbone, [tone(35.0)], DecodingOptions(language=None))[0]
    assert out.long_form and out.language in tiny_backbone.languages


def test_stalled_long_form_falls_back_to_fixed_windows(tiny_backbone):
    # A model that seeks a few frames per window would decode thousands of windows; the budget stops it.
    assert long_form_window_budget(40.0) == 10 and long_form_window_budget(600.0) == 82
    audio = tone(40.0, 700)
    out = _decode_long(tiny_backbone, audio, "cy", DecodingOptions(), max_windows=1)
    pieces = transcribe(
        tiny_backbone, [audio[: 30 * 16000], audio[30 * 16000 :]], DecodingOptions(language="cy")
    )
    assert out.stalled and out.long_form and out.suspicious
    assert out.tokens == pieces[0].tokens + pieces[1].tokens
    assert out.text == f"{pieces[0].text} {pieces[1].text}"


def test_every_transcript_knows_its_duration_and_names_why_it_is_suspicious(tiny_backbone):
    outs = transcribe(tiny_backbone, [tone(0.36, 300), tone(2.0, 500)], DecodingOptions(language="cy"))
    assert [t.seconds for t in outs] == [pytest.approx(0.36), pytest.approx(2.0)]
    for t in outs:
        assert set(t.suspicious_reasons) <= set(SUSPICIOUS_REASONS)
        assert t.suspicious == bool(t.suspicious_reasons)
        assert ("runaway" in t.suspicious_reasons) == t.hit_token_cap
        assert ("too long for its audio" in t.suspicious_reasons) == too_long_for_audio(t.text, t.seconds)
    # The random model babbles: on a third of a second that is more than any speech holds.
    assert "too long for its audio" in outs[0].suspicious_reasons
