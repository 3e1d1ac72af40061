"""Which catalogue strings are natural sentences worth speaking: pure functions, one rule each.

A synthetic corpus is only as good as its transcripts. Whisper will be scored on these texts, so
anything espeak-ng would read differently from how it is written (digits, placeholders, markup, URLs,
foreign script) or that is not in the language at all (untranslated English) is dropped.
"""

from __future__ import annotations

import re
import unicodedata

MIN_WORDS, MAX_WORDS = 4, 25

# The writing system of each language we build; a sentence must use only letters of it.
SCRIPTS: dict[str, str] = {
    **dict.fromkeys(["sl", "lv", "sq", "eu", "lt", "et", "cy", "is", "en", "cs"], "LATIN"),
    **dict.fromkeys(["be", "mk", "kk", "ru", "uk", "bg", "sr"], "CYRILLIC"),
    "ka": "GEORGIAN",
    "mr": "DEVANAGARI",
    "hi": "DEVANAGARI",
    "ne": "DEVANAGARI",
    "gu": "GUJARATI",
    "pa": "GURMUKHI",
    "si": "SINHALA",
    "hy": "ARMENIAN",
    "ta": "TAMIL",
}

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


def letters_in_script(text: str, script: str) -> bool:
    """True when every letter (and combining mark) belongs to `script`, e.g. 'LATIN', 'CYRILLIC'."""
    for ch in text:
        category = unicodedata.category(ch)
        if category[0] == "L" or category in ("Mn", "Mc"):
            name = unicodedata.name(ch, "")
            if category in ("Mn", "Mc") and script == "LATIN" and name.startswith("COMBINING"):
                continue  # decomposed accents on Latin letters
            if not name.startswith(script):
                return False
    return True


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
    if not text[0].isupper() and text[0].isalpha() and SCRIPTS.get(language) in ("LATIN", "CYRILLIC"):
        return "starts lower-case (a fragment)"
    if any(ch.isdigit() for ch in text):
        return "digits"
    if any(ch in _FORBIDDEN for ch in text):
        return "placeholder or markup"
    if "…" in text or "..." in text:
        return "ellipsis"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "So") for ch in text):
        return "control or symbol character"
    script = SCRIPTS.get(language)
    if script is None:
        raise ValueError(f"no script known for language {language!r}; add it to SCRIPTS")
    if not letters_in_script(text, script):
        return "script mismatch"
    if language != "en":
        if english_key(text) in english:
            return "untranslated English"
        ratio = english_ratio(text)
        if script == "LATIN" and ratio >= 0.2 and sum(w.casefold() in _ENGLISH_MARKERS for w in words) >= 2:
            return "untranslated English"
    return None
