import pytest

from dama_asr.evaluate import EvaluationError, ScoredUtterance, summarise
from dama_asr.scoring import (
    ErrorCounts,
    UndefinedRateError,
    char_errors,
    compression_ratio,
    has_repetition_loop,
    script_safe,
    whisper_basic,
    word_errors,
)


def test_word_errors_hand_computed():
    # "sat"->"sit" is one substitution, the second "the" is deleted: 2 errors over 6 words.
    e = word_errors("the cat sat on the mat", "the cat sit on mat")
    assert (e.substitutions, e.deletions, e.insertions, e.reference_length) == (1, 1, 0, 6)
    assert e.rate == pytest.approx(2 / 6)
    # insertions can push WER over 100%
    assert word_errors("hello", "hello hello hello").rate == pytest.approx(2.0)
    assert word_errors("a b c", "").rate == 1.0


def test_char_errors_hand_computed():
    # kitten -> sitting: k->s, e->i, +g = 3 edits over 6 characters
    assert char_errors("kitten", "sitting").rate == pytest.approx(0.5)
    assert char_errors("ab cd", "ab cd").rate == 0.0
    assert char_errors("ab cd", "abcd").deletions == 1  # the space counts


def test_corpus_rate_is_total_errors_over_total_length():
    total = word_errors("a b c d", "a b c x") + word_errors("e f", "")
    assert total == ErrorCounts(1, 2, 0, 6) and total.rate == pytest.approx(0.5)


def test_a_rate_over_an_empty_reference_is_an_error_not_inf_or_zero():
    # inf was written to result JSON as `Infinity` (invalid JSON); 0 would read as a perfect score.
    with pytest.raises(UndefinedRateError, match="reference is empty"):
        _ = ErrorCounts(0, 0, 1, 0).rate
    with pytest.raises(UndefinedRateError):
        _ = word_errors("", "").rate
    with pytest.raises(EvaluationError, match="no scored utterances"):
        summarise([])


def test_script_safe_keeps_combining_marks_whisper_does_not():
    hindi = "नमस्ते दुनिया।"  # virama and vowel signs are combining marks
    assert script_safe(hindi) == "नमस्ते दुनिया"
    assert whisper_basic(hindi) != "नमस्ते दुनिया"  # BasicTextNormalizer splits the words at marks
    assert script_safe("Bore da, Cymru! [music]") == "bore da cymru"
    assert script_safe("Ąžuolas — ŽALIAS?") == "ąžuolas žalias"


def test_summary_per_language_and_normalisers():
    scored = [
        ScoredUtterance("1", "cy", "Bore da.", "bore da", 0.0, 0.0, False),
        ScoredUtterance("2", "cy", "Nos da", "nos ta", 0.5, 0.2, False),
        ScoredUtterance("3", "lt", "Labas rytas", "labas labas labas labas", 1.5, 1.0, True),
    ]
    s = summarise(scored, worst=2)
    cy = s["by_language"]["cy"]
    assert cy["whisper"]["wer"] == pytest.approx(1 / 4)
    assert cy["raw"]["wer"] == pytest.approx(4 / 4)  # case and punctuation count when raw
    assert s["by_language"]["all"]["utterances"] == 3 and s["by_language"]["all"]["suspicious"] == 1
    assert [u["id"] for u in s["worst"]] == ["3", "2"]


def test_repetition_detectors():
    assert has_repetition_loop([1, 2, 3] + [7, 8] * 4)
    assert not has_repetition_loop([1, 2, 3, 4, 5, 6, 7, 8])
    assert compression_ratio("gweith i'n " * 30) > 2.4
    assert compression_ratio("The quick brown fox jumps over the lazy dog.") < 2.4
