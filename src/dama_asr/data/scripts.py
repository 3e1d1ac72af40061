"""Which writing system a text is in, and which ones each Whisper language is written in.

One table (`EXPECTED_SCRIPTS`), two rules over it:

- `script_mismatch` (validation, lenient): most letters of a transcript must be in one of the
  language's scripts. It rejects transcripts tagged with the wrong language (Latin text tagged `ka`,
  Cyrillic tagged `lt`): Whisper learns the language token from them, so one mislabelled corpus
  teaches it to transliterate. A quoted brand name in another script passes.
- `written_in_primary_script` (sentences for synthesis, strict): every letter and combining mark is
  in the language's first writing system, as plain characters, because espeak-ng reads them aloud
  and Whisper is scored on them.

In the lenient rule only letters count; digits, punctuation, marks and spaces belong to no script.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter

# The first word(s) of a letter's Unicode name that name its script. Hiragana and Katakana are one
# "Kana" script because Japanese mixes them freely (with Han) in a single sentence.
_NAME_PREFIX_TO_SCRIPT = {
    "LATIN": "Latin",
    "CYRILLIC": "Cyrillic",
    "GREEK": "Greek",
    "ARMENIAN": "Armenian",
    "GEORGIAN": "Georgian",
    "HEBREW": "Hebrew",
    "ARABIC": "Arabic",
    "DEVANAGARI": "Devanagari",
    "BENGALI": "Bengali",
    "GURMUKHI": "Gurmukhi",
    "GUJARATI": "Gujarati",
    "ORIYA": "Oriya",
    "TAMIL": "Tamil",
    "TELUGU": "Telugu",
    "KANNADA": "Kannada",
    "MALAYALAM": "Malayalam",
    "SINHALA": "Sinhala",
    "THAI": "Thai",
    "LAO": "Lao",
    "TIBETAN": "Tibetan",
    "MYANMAR": "Myanmar",
    "KHMER": "Khmer",
    "ETHIOPIC": "Ethiopic",
    "MONGOLIAN": "Mongolian",
    "THAANA": "Thaana",
    "CJK": "Han",
    "IDEOGRAPHIC": "Han",
    "HIRAGANA": "Kana",
    "KATAKANA": "Kana",
    "HANGUL": "Hangul",
}
# Name prefixes that are presentation forms of another script ("FULLWIDTH LATIN ...").
_SKIPPED_NAME_WORDS = {"HALFWIDTH", "FULLWIDTH", "SMALL", "CIRCLED", "PARENTHESIZED", "SQUARED"}

# Every Whisper language (tokenization_whisper.LANGUAGES) written in something other than Latin only,
# as its writing systems, the usual one first. Several languages are written in two in practice
# (Serbian, Kazakh, Uzbek, Punjabi, Sindhi): both are accepted by validation, synthetic sentences use the
# first. A writing system that mixes scripts within one sentence joins them with "+" (Japanese writes
# Han and Kana together). A language missing from this table is written in Latin.
EXPECTED_SCRIPTS: dict[str, tuple[str, ...]] = {
    "zh": ("Han",),
    "yue": ("Han",),
    "ja": ("Han+Kana",),
    "ko": ("Hangul+Han",),
    "ru": ("Cyrillic",),
    "uk": ("Cyrillic",),
    "be": ("Cyrillic",),
    "bg": ("Cyrillic",),
    "mk": ("Cyrillic",),
    "sr": ("Cyrillic", "Latin"),
    "bs": ("Latin", "Cyrillic"),
    "kk": ("Cyrillic", "Latin"),
    "uz": ("Latin", "Cyrillic"),
    "az": ("Latin", "Cyrillic", "Arabic"),
    "tk": ("Latin", "Cyrillic"),
    "mn": ("Cyrillic", "Mongolian"),
    "tg": ("Cyrillic",),
    "tt": ("Cyrillic",),
    "ba": ("Cyrillic",),
    "el": ("Greek",),
    "hy": ("Armenian",),
    "ka": ("Georgian",),
    "he": ("Hebrew",),
    "yi": ("Hebrew",),
    "ar": ("Arabic",),
    "fa": ("Arabic",),
    "ur": ("Arabic",),
    "ps": ("Arabic",),
    "sd": ("Arabic", "Devanagari"),
    "hi": ("Devanagari",),
    "mr": ("Devanagari",),
    "ne": ("Devanagari",),
    "sa": ("Devanagari",),
    "bn": ("Bengali",),
    "as": ("Bengali",),  # Assamese is written in the Bengali-Assamese script
    "pa": ("Gurmukhi", "Arabic"),  # Gurmukhi (India) or Shahmukhi (Pakistan)
    "gu": ("Gujarati",),
    "ta": ("Tamil",),
    "te": ("Telugu",),
    "kn": ("Kannada",),
    "ml": ("Malayalam",),
    "si": ("Sinhala",),
    "th": ("Thai",),
    "lo": ("Lao",),
    "bo": ("Tibetan",),
    "my": ("Myanmar",),
    "km": ("Khmer",),
    "am": ("Ethiopic",),
}
_LATIN = ("Latin",)


def _writing_systems(language: str) -> list[frozenset[str]]:
    return [frozenset(system.split("+")) for system in EXPECTED_SCRIPTS.get(language, _LATIN)]


def expected_scripts(language: str) -> frozenset[str]:
    """Every script `language` is written in."""
    return frozenset().union(*_writing_systems(language))


def primary_scripts(language: str) -> frozenset[str]:
    """The script(s) of the language's usual writing system."""
    return _writing_systems(language)[0]


@functools.lru_cache(maxsize=4096)
def char_script(char: str) -> str | None:
    """The script of one letter ('Latin', 'Georgian', ...); None for non-letters and unnamed ones."""
    if not unicodedata.category(char).startswith("L"):
        return None
    words = unicodedata.name(char, "").replace("-", " ").split()
    while words and words[0] in _SKIPPED_NAME_WORDS:
        words = words[1:]
    if not words or words[0] == "MODIFIER":  # MODIFIER LETTER APOSTROPHE etc. are shared
        return None
    if words[0] == "MATHEMATICAL":  # 𝐀: styled Latin or Greek
        return "Greek" if "GREEK" in words else "Latin"
    return _NAME_PREFIX_TO_SCRIPT.get(words[0], "Other")


def script_counts(text: str) -> Counter[str]:
    """How many letters of `text` belong to each script."""
    return Counter(s for s in map(char_script, text) if s is not None)


def dominant_script(text: str) -> str | None:
    counts = script_counts(text)
    return counts.most_common(1)[0][0] if counts else None


def script_mismatch(text: str, language: str, min_share: float = 0.5) -> str | None:
    """Why `text` does not look like `language`, or None when it does.

    At least `min_share` of the letters must be in one of the language's scripts, so a Lithuanian
    sentence quoting a Latin-script brand in Cyrillic passes while a transliterated one does not.
    Text without letters (numbers only) is not judged here.
    """
    counts = script_counts(text)
    total = sum(counts.values())
    if total == 0:
        return None
    expected = expected_scripts(language)
    share = sum(n for script, n in counts.items() if script in expected) / total
    if share >= min_share:
        return None
    found = ", ".join(f"{script} {n}" for script, n in counts.most_common(3))
    return f"letters are {found}, but {language!r} is written in {' or '.join(sorted(expected))}"


def written_in_primary_script(text: str, language: str) -> bool:
    """True when every letter and combining mark of `text` is in the language's usual writing system.

    Strict where `char_script` is lenient: presentation forms (fullwidth, mathematical), modifier
    letters and marks of other scripts fail, since a synthesiser may read them differently or not at
    all. Combining marks named COMBINING (decomposed accents) count as Latin.
    """
    scripts = primary_scripts(language)
    for char in text:
        category = unicodedata.category(char)
        if category[0] != "L" and category not in ("Mn", "Mc"):
            continue
        first_word = unicodedata.name(char, "").split(" ", 1)[0]
        if category in ("Mn", "Mc") and first_word == "COMBINING" and "Latin" in scripts:
            continue
        if _NAME_PREFIX_TO_SCRIPT.get(first_word) not in scripts:
            return False
    return True
