"""Script detection: which writing system a transcript is in, per Whisper language."""

from __future__ import annotations

import pytest
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from dama_asr.data.scripts import (
    EXPECTED_SCRIPTS,
    char_script,
    dominant_script,
    expected_scripts,
    primary_scripts,
    script_mismatch,
    written_in_primary_script,
)

# Whisper languages written (mainly) in a non-Latin script, listed by hand as a check on the table.
NON_LATIN = (
    "zh yue ja ko ru uk be bg mk sr kk mn tg tt ba el hy ka he yi ar fa ur ps sd hi mr ne sa "
    "bn as pa gu ta te kn ml si th lo bo my km am"
).split()


def test_every_non_latin_whisper_language_has_its_script():
    missing = [code for code in NON_LATIN if not expected_scripts(code) - {"Latin"}]
    assert missing == []
    assert expected_scripts("cy") == {"Latin"}  # not in the table: Latin
    assert set(EXPECTED_SCRIPTS) <= set(LANGUAGES)  # no typo'd codes in the table


@pytest.mark.parametrize(
    "language, text",
    [
        ("cy", "Bore da, sut mae?"),
        ("lt", "Labas rytas, kaip sekasi?"),
        ("cs", "Příliš žluťoučký kůň úpěl ďábelské ódy."),
        ("ka", "გამარჯობა, როგორ ხარ?"),
        ("hy", "Բարև, ինչպե՞ս ես"),
        ("ru", "Доброе утро!"),
        ("be", "Добрай раніцы, як справы?"),
        ("el", "Καλημέρα σας."),
        ("he", "בוקר טוב"),
        ("ar", "صباح الخير"),
        ("hi", "सुप्रभात, आप कैसे हैं?"),
        ("mr", "तुम्ही कसे आहात?"),
        ("gu", "સુપ્રભાત, તમે કેમ છો?"),
        ("pa", "ਸਤਿ ਸ੍ਰੀ ਅਕਾਲ"),
        ("bn", "সুপ্রভাত"),
        ("ta", "காலை வணக்கம்"),
        ("si", "සුභ උදෑසනක්"),
        ("th", "สวัสดีตอนเช้า"),
        ("zh", "早上好，你好吗？"),
        ("ja", "おはようございます、田中さん。カタカナ"),
        ("ko", "좋은 아침입니다"),
        ("am", "እንደምን አደርክ"),
        ("kk", "Қайырлы таң"),
        ("sr", "Dobro jutro"),  # Serbian in Latin is accepted as well as Cyrillic
        ("lt", "Jis dirba „Microsoft“ įmonėje ir „Google“."),  # Latin brands inside Latin: fine
        ("ru", "Он работает в Microsoft уже давно, очень давно."),  # a Latin word inside Cyrillic
        ("cy", "123 456"),  # no letters: not judged
    ],
)
def test_text_in_its_languages_script_passes(language, text):
    assert script_mismatch(text, language) is None


@pytest.mark.parametrize(
    "language, text, found",
    [
        ("ka", "gamarjoba, rogor khar?", "Latin"),  # Georgian transliterated to Latin
        ("lt", "Доброе утро, как дела?", "Cyrillic"),
        ("be", "Dobraj ranicy", "Latin"),
        ("hi", "namaste aap kaise hain", "Latin"),
        ("cy", "გამარჯობა", "Georgian"),
        ("ja", "좋은 아침입니다", "Hangul"),
        ("el", "Доброе утро", "Cyrillic"),
    ],
)
def test_text_in_another_script_is_a_mismatch(language, text, found):
    message = script_mismatch(text, language)
    assert message is not None and found in message and repr(language) in message


def test_char_script_ignores_non_letters_and_reads_presentation_forms():
    assert [char_script(c) for c in "a1 ,\u0301"] == ["Latin", None, None, None, None]
    assert char_script("Ａ") == "Latin"  # fullwidth
    assert char_script("ﾀ") == "Kana"  # halfwidth katakana
    assert char_script("ʼ") is None  # modifier apostrophe is shared by many scripts
    assert dominant_script("Хорошо, OK") == "Cyrillic"
    assert dominant_script("...") is None


@pytest.mark.parametrize(
    "language, text, lenient_ok, strict_ok",
    [
        ("sr", "Добро јутро свима.", True, True),
        ("sr", "Dobro jutro svima.", True, False),  # valid Serbian; synthetic sentences use the Cyrillic
        ("cy", "Ｂore da.", True, False),  # a fullwidth letter: the same letter to a reader, not to espeak
        ("uk", "Пʼять котів.", True, False),  # the modifier apostrophe belongs to no script
        ("cy", "Bore da i chwi.", True, True),
        ("cy", "Caf\u0301e bach.", True, True),  # a decomposed accent on a Latin letter
        ("hi", "नमस्ते दुनिया।", True, True),  # vowel signs are Devanagari marks
        ("ja", "今日はいい天気です。", True, True),  # Han and Kana together: one writing system
        ("ko", "오늘은 날씨가 좋습니다.", True, True),
        ("ka", "Firefox შეიზღუდა.", True, False),  # lenient: mostly Georgian; strict: one Latin word fails
    ],
)
def test_one_table_two_rules(language, text, lenient_ok, strict_ok):
    assert (script_mismatch(text, language) is None) == lenient_ok
    assert written_in_primary_script(text, language) == strict_ok


def test_the_first_writing_system_is_the_usual_one():
    assert primary_scripts("sr") == {"Cyrillic"} and expected_scripts("sr") == {"Cyrillic", "Latin"}
    assert primary_scripts("pa") == {"Gurmukhi"} and expected_scripts("ja") == {"Han", "Kana"}
    assert primary_scripts("cy") == {"Latin"}
