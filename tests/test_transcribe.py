import numpy as np
import pytest

from dama_asr.languages import UnknownLanguageError, normalise_language
from dama_asr.testing import tone
from dama_asr.transcribe import MAX_NEW_TOKENS, DecodingOptions, max_new_tokens_for, transcribe


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
    with pytest.raises(ValueError, match="beam_size"):
        DecodingOptions(beam_size=0)


def test_beam_search_runs(tiny_backbone):
    out = transcribe(
        tiny_backbone, [np.zeros(16000, np.float32)], DecodingOptions(language="en", beam_size=2)
    )
    assert len(out) == 1 and isinstance(out[0].text, str)
