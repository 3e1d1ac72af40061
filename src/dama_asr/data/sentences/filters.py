"""Which catalogue strings are natural sentences worth speaking: pure functions, one rule each.

A synthetic corpus is only as good as its transcripts. Whisper will be scored on these texts, so
anything espeak-ng would read differently from how it is written (digits, placeholders, markup, URLs,
foreign script) or that is not in the language at all (untranslated English) is dropped.
"""

from __future__ import annotations

import re
import unicodedata

from dama_asr.data.scripts import primary_scripts, written_in_primary_script

MIN_WORDS, MAX_WORDS = 4, 25

# The languages whose catalogues and filters have been checked by hand (a new one needs a look at
# what its catalogues hold first). Their scripts come from the one table, `scripts.EXPECTED_SCRIPTS`.
SYNTH_LANGUAGES = frozenset(
    "sl lv sq eu lt et cy is en cs be mk kk ru uk bg sr ka mr hi ne gu pa si hy ta".split()
)
# Scripts with capital letters, where a sentence starting lower-case is a fragment.
_CASED = frozenset({"Latin", "Cyrillic"})

# Sentence ends; the danda ends sentences in Devanagari and Gujarati text.
_FINAL = (".", "!", "?", "।", "։")
# Characters that mark a UI string, not speech: placeholders (%S, {$n}, $1), access keys (&File),
# entities (&amp;), markup, paths and URLs, shortcuts, code. Parentheses and quotes around UI terms
# are tolerated by espeak but make poor references, so they go too.
_FORBIDDEN = set('%{}$&<>\\/_@#|=[]*~^+()"`«»„“”')
# Distinctly English function words: none is a common word in the languages we build (Slovenian `in`
# and `to`, Welsh `a`/`i`, ... are deliberately absent).
_ENGLISH_MARKERS = frozenset(
    "the and of is are this that with for you your be not can will it was has have from by an or which "
    "would should please when if these there what does been were their they we our".split()
)
_SPLIT_AFTER = re.compile(r"(?<=[.!?।])\s+")


def normalise_space(text: str) -> str:
    # Non-breaking and thin spaces are common in catalogues (French-style punctuation, numbers).
    return " ".join(text.replace("\u00a0", " ").replace("\u202f", " ").split())


def split_sentences(text: str) -> list[str]:
    """Split a catalogue value into sentence candidates: at newlines, and after a sentence end that is
    followed by a capital (so abbreviations such as Lithuanian `el. pašto` do not split)."""
    out: list[str] = []
    for line in text.splitlines():
        line = normalise_space(line)
        if not line:
            continue
        start = 0
        for match in _SPLIT_AFTER.finditer(line):
            nxt = line[match.end() : match.end() + 1]
            # Georgian has no capitals in running text, so any letter may start its next sentence.
            caseless = not nxt.islower() or unicodedata.name(nxt, "").startswith("GEORGIAN")
            if nxt.isalpha() and caseless:
                out.append(line[start : match.start()])
                start = match.end()
        out.append(line[start:])
    return [s for s in out if s]


def english_key(text: str) -> str:
    """The form used to compare a candidate with English source strings."""
    return normalise_space(text).casefold()


def english_ratio(text: str) -> float:
    words = re.findall(r"[^\W\d_]+", text.casefold())
    if not words:
        return 0.0
    return sum(w in _ENGLISH_MARKERS for w in words) / len(words)


def rejection_reason(
    text: str, language: str, english: set[str] | frozenset[str] = frozenset()
) -> str | None:
    """Why `text` is not a usable sentence in `language`, or None if it is.

    `english`: keys (`english_key`) of the English source strings, to catch untranslated entries.
    """
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return "word count"
    if not text.endswith(_FINAL) or text.endswith(("..", "…")):
        return "no sentence-final punctuation"
    scripts = primary_scripts(language)
    if not text[0].isupper() and text[0].isalpha() and scripts <= _CASED:
        return "starts lower-case (a fragment)"
    if any(ch.isdigit() for ch in text):
        return "digits"
    if any(ch in _FORBIDDEN for ch in text):
        return "placeholder or markup"
    if "…" in text or "..." in text:
        return "ellipsis"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "So") for ch in text):
        return "control or symbol character"
    if not written_in_primary_script(text, language):
        return "script mismatch"
    if language != "en":
        if english_key(text) in english:
            return "untranslated English"
        ratio = english_ratio(text)
        if (
            scripts == {"Latin"}
            and ratio >= 0.2
            and sum(w.casefold() in _ENGLISH_MARKERS for w in words) >= 2
        ):
            return "untranslated English"
    return None
