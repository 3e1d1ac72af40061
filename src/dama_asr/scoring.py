"""Text normalisers and error rates (WER/CER), pure functions over strings.

Whisper's BasicTextNormalizer turns every Unicode mark (category M) into a space, which splits
words in Indic, Georgian-with-marks and other scripts; the script-safe normaliser keeps marks.
The lenient normaliser also forgives what a listener would not call an error: "1" for "one"
(numbers spelled out by `num2words` where it knows the language) and one letter written two ways.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import jiwer
from num2words import CONVERTER_CLASSES, num2words
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from dama_asr.errors import DamaError

_whisper_basic = BasicTextNormalizer()
_BRACKETS = re.compile(r"[<\[][^>\]]*[>\]]|\([^)]*\)")
_SPACES = re.compile(r"\s+")
# A run of digits (any script's: \d is Unicode), with thousands groups joined by . , ' or a thin or
# no-break space ("1,000", "1.000", "10 000"); a decimal part is left as a second number.
_NUMBER = re.compile(r"\d+(?:[.,'\u00a0\u2009\u202f]\d{3})*(?!\d)")
# One letter under two code points that NFKC keeps apart (keyboard layouts, legacy encodings). After
# casefold, so lower case only. The modifier apostrophe is a letter (Lm) where ' is punctuation.
_LETTER_VARIANTS = str.maketrans(
    {
        "\u015f": "\u0219",  # s with cedilla -> with comma below (Romanian)
        "\u0163": "\u021b",  # t with cedilla -> with comma below (Romanian)
        "\u064a": "\u06cc",  # Arabic yeh -> Farsi yeh (Persian, Urdu typed on Arabic layouts)
        "\u0643": "\u06a9",  # Arabic kaf -> keheh
        "\u02bc": "'",  # modifier letter apostrophe (Ukrainian, Hausa, ...) -> apostrophe
    }
)
# Whisper codes whose num2words code differs.
_NUM2WORDS_ALIASES = {"kk": "kz", "nb": "no", "nn": "no", "iw": "he"}


def raw_text(text: str, language: str | None = None) -> str:
    """Only whitespace collapsed: the strictest view."""
    return _SPACES.sub(" ", text).strip()


def whisper_basic(text: str, language: str | None = None) -> str:
    """OpenAI Whisper's BasicTextNormalizer (lower-case, drop brackets, symbols, punctuation and marks)."""
    return _whisper_basic(text)


def script_safe(text: str, language: str | None = None) -> str:
    """Lower-case, drop bracketed spans, punctuation and symbols, keep combining marks (NFC)."""
    text = _BRACKETS.sub(" ", unicodedata.normalize("NFC", text).casefold())
    kept = (" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return raw_text(unicodedata.normalize("NFC", "".join(kept)))


@functools.cache
def number_words_language(language: str | None) -> str | None:
    """num2words' code for an utterance's language ('cy', 'Welsh', 'pt-BR'), or None where it has none."""
    if not language:
        return None
    from dama_asr.languages import UnknownLanguageError, normalise_language

    key = language.strip().replace("-", "_")
    try:
        key = normalise_language(key)  # names and <|xx|> tokens to Whisper's code
    except UnknownLanguageError:
        pass
    for code in (key, key.split("_")[0].lower()):
        code = _NUM2WORDS_ALIASES.get(code, code)
        if code in CONVERTER_CLASSES:
            return code
    return None


def _spell_number(digits: str, lang: str) -> str:
    value = re.sub(r"\D", "", digits)
    # "007" or a phone number is read digit by digit, not as a quantity.
    parts = list(value) if len(value) > 1 and value.startswith("0") else [value]
    try:
        return " ".join(num2words(int(part), lang=lang) for part in parts)
    except Exception:  # a converter's own limit (huge numbers, say): keep the digits
        return digits


def lenient(text: str, language: str | None = None) -> str:
    """Script-safe, after folding compatibility variants (NFKC: ligatures, full-width and superscript
    forms), one letter's two encodings, and numbers to words in `language` where num2words has it
    (elsewhere digits stay digits: `number_words_language` says which)."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_LETTER_VARIANTS)
    lang = number_words_language(language)
    if lang is not None:
        text = _NUMBER.sub(lambda m: f" {_spell_number(m.group(), lang)} ", text)
    return script_safe(text)


# name -> normaliser(text, language): every evaluation reports each of them, raw included.
NORMALISERS: dict[str, Callable[..., str]] = {
    "raw": raw_text,
    "whisper": whisper_basic,
    "script_safe": script_safe,
    "lenient": lenient,
}


class UndefinedRateError(DamaError, ValueError):
    """An error rate over an empty reference: neither 0 nor infinity is a true answer."""


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations against a reference; rates are errors / reference length."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        # 0 would read as perfect and inf is not valid JSON; an empty reference is the caller's to skip.
        if self.reference_length == 0:
            raise UndefinedRateError(
                f"error rate undefined: the reference is empty ({self.errors} error(s) over 0 words or "
                "characters); leave such items out of scoring (evaluation skips them as "
                "'reference empty after normalisation')"
            )
        return self.errors / self.reference_length

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )


def word_errors(reference: str, hypothesis: str) -> ErrorCounts:
    ref_words = reference.split()
    if not hypothesis.split():
        return ErrorCounts(deletions=len(ref_words), reference_length=len(ref_words))
    out = jiwer.process_words(reference, hypothesis)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, len(ref_words))


def char_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Character edits, spaces counted as characters (as jiwer's CER and the papers do)."""
    if not hypothesis:
        return ErrorCounts(deletions=len(reference), reference_length=len(reference))
    out = jiwer.process_characters(reference, hypothesis)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, len(reference))


# Runaway detectors. Rates are per second of audio: fast speech stays under ~20 letters per second in
# every script we measured (Welsh, English, Czech, Georgian, Lithuanian, Slovene: at most 19; abugida
# vowel signs are marks, not counted), so 25 is more than any speech holds. Byte-level tokens are no
# such measure: Georgian takes 31 tokens per second of speech where English takes 3.5.
MAX_LETTERS_PER_SECOND = 25.0
# A clip of one syllable can be spelt with several letters ("strengths" in 0.3 s): a short word more.
SHORT_CLIP_ALLOWANCE_LETTERS = 6
LOOP_COMPRESSION_RATIO = 2.4


def compression_ratio(text: str) -> float:
    """Whisper's loop detector: repetitive text compresses well (> 2.4 means a likely loop)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def has_repetition_loop(tokens: list[int], min_repeats: int = 4, max_period: int = 12) -> bool:
    """True when the sequence ends in a period-p pattern repeated at least `min_repeats` times."""
    n = len(tokens)
    for period in range(1, max_period + 1):
        span = period * min_repeats
        if span > n:
            break
        tail = tokens[n - span :]
        if all(tail[i] == tail[i % period] for i in range(span)):
            return True
    return False


def letter_count(text: str) -> int:
    """Letters and digits (NFC), the script-neutral length of a transcript: marks, spaces and
    punctuation are left out, so an abugida syllable or a precomposed accent counts once."""
    return sum(unicodedata.category(c)[0] in "LN" for c in unicodedata.normalize("NFC", text))


def max_letters_for(seconds: float) -> int:
    """The most letters `seconds` of speech can hold (see MAX_LETTERS_PER_SECOND)."""
    return math.floor(MAX_LETTERS_PER_SECOND * seconds) + SHORT_CLIP_ALLOWANCE_LETTERS


def too_long_for_audio(text: str, seconds: float) -> bool:
    """More letters than `seconds` of speech can hold: text the model made up (a 0.4 s clip read as
    "thank you for watching"). An unknown duration (0) is never too short."""
    return seconds > 0 and letter_count(text) > max_letters_for(seconds)
