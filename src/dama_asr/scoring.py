"""Text normalisers and error rates (WER/CER), pure functions over strings.

Whisper's BasicTextNormalizer turns every Unicode mark (category M) into a space, which splits
words in Indic, Georgian-with-marks and other scripts; the script-safe normaliser keeps marks.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass

import jiwer
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from dama_asr.errors import DamaError

_whisper_basic = BasicTextNormalizer()
_BRACKETS = re.compile(r"[<\[][^>\]]*[>\]]|\([^)]*\)")
_SPACES = re.compile(r"\s+")


def raw_text(text: str) -> str:
    """Only whitespace collapsed: the strictest view."""
    return _SPACES.sub(" ", text).strip()


def whisper_basic(text: str) -> str:
    """OpenAI Whisper's BasicTextNormalizer (lower-case, drop brackets, symbols, punctuation and marks)."""
    return _whisper_basic(text)


def script_safe(text: str) -> str:
    """Lower-case, drop bracketed spans, punctuation and symbols, keep combining marks (NFC)."""
    text = _BRACKETS.sub(" ", unicodedata.normalize("NFC", text).casefold())
    kept = (" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return raw_text(unicodedata.normalize("NFC", "".join(kept)))


NORMALISERS = {"raw": raw_text, "whisper": whisper_basic, "script_safe": script_safe}


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
