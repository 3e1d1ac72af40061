"""Which writing system a text is in, and which ones each Whisper language is written in.

Used to reject transcripts tagged with the wrong language (Latin text tagged `ka`, Cyrillic tagged
`lt`): Whisper learns the language token from them, so one mislabelled corpus teaches it to
transliterate. Only letters count; digits, punctuation, marks and spaces belong to no script.
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

_LATIN = frozenset({"Latin"})
# Every Whisper language (tokenization_whisper.LANGUAGES) written in something other than Latin only.
# Several languages are written in two scripts in practice (Serbian, Kazakh, Uzbek, Punjabi, Sindhi):
# both are accepted. A language missing from this table is expected in Latin.
EXPECTED_SCRIPTS: dict[str, frozenset[str]] = {
    "zh": frozenset({"Han"}),
    "yue": frozenset({"Han"}),
    "ja": frozenset({"Han", "Kana"}),
    "ko": frozenset({"Hangul", "Han"}),
    "ru": frozenset({"Cyrillic"}),
    "uk": frozenset({"Cyrillic"}),
    "be": frozenset({"Cyrillic"}),
    "bg": frozenset({"Cyrillic"}),
    "mk": frozenset({"Cyrillic"}),
    "sr": frozenset({"Cyrillic", "Latin"}),
    "bs": frozenset({"Latin", "Cyrillic"}),
    "kk": frozenset({"Cyrillic", "Latin"}),
    "uz": frozenset({"Latin", "Cyrillic"}),
    "az": frozenset({"Latin", "Cyrillic", "Arabic"}),
    "tk": frozenset({"Latin", "Cyrillic"}),
    "mn": frozenset({"Cyrillic", "Mongolian"}),
    "tg": frozenset({"Cyrillic"}),
    "tt": frozenset({"Cyrillic"}),
    "ba": frozenset({"Cyrillic"}),
    "el": frozenset({"Greek"}),
    "hy": frozenset({"Armenian"}),
    "ka": frozenset({"Georgian"}),
    "he": frozenset({"Hebrew"}),
    "yi": frozenset({"Hebrew"}),
    "ar": frozenset({"Arabic"}),
    "fa": frozenset({"Arabic"}),
    "ur": frozenset({"Arabic"}),
    "ps": frozenset({"Arabic"}),
    "sd": frozenset({"Arabic", "Devanagari"}),
    "hi": frozenset({"Devanagari"}),
    "mr": frozenset({"Devanagari"}),
    "ne": frozenset({"Devanagari"}),
    "sa": frozenset({"Devanagari"}),
    "bn": frozenset({"Bengali"}),
    "as": frozenset({"Bengali"}),  # Assamese is written in the Bengali-Assamese script
    "pa": frozenset({"Gurmukhi", "Arabic"}),  # Gurmukhi (India) or Shahmukhi (Pakistan)
    "gu": frozenset({"Gujarati"}),
    "ta": frozenset({"Tamil"}),
    "te": frozenset({"Telugu"}),
    "kn": frozenset({"Kannada"}),
    "ml": frozenset({"Malayalam"}),
    "si": frozenset({"Sinhala"}),
    "th": frozenset({"Thai"}),
    "lo": frozenset({"Lao"}),
    "bo": frozenset({"Tibetan"}),
    "my": frozenset({"Myanmar"}),
    "km": frozenset({"Khmer"}),
    "am": frozenset({"Ethiopic"}),
}


def expected_scripts(language: str) -> frozenset[str]:
    return EXPECTED_SCRIPTS.get(language, _LATIN)


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
