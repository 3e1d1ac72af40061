"""Sentence extraction: catalogue readers on small files in the real formats, and each filter rule."""

from __future__ import annotations

import struct

import pytest

from dama_asr.data.sentences import filter_strings
from dama_asr.data.sentences.catalogues import parse_ftl, parse_mallard, parse_mo, parse_properties, parse_qm
from dama_asr.data.sentences.filters import english_key, rejection_reason, split_sentences


def write_mo(path, entries: dict[str, str]) -> None:
    """A GNU .mo file as msgfmt writes it: header, two sorted string tables, then the strings."""
    keys = sorted(entries)
    ids, strs = b"", b""
    offsets = []
    for key in keys:
        kb, vb = key.encode(), entries[key].encode()
        offsets.append((len(ids), len(kb), len(strs), len(vb)))
        ids += kb + b"\0"
        strs += vb + b"\0"
    start = 7 * 4 + 16 * len(keys)
    orig = b"".join(struct.pack("<2I", klen, start + koff) for koff, klen, _, _ in offsets)
    trans = b"".join(struct.pack("<2I", vlen, start + len(ids) + voff) for _, _, voff, vlen in offsets)
    header = struct.pack("<7I", 0x950412DE, 0, len(keys), 28, 28 + 8 * len(keys), 0, 0)
    path.write_bytes(header + orig + trans + ids + strs)


def test_parse_mo_reads_translations_plurals_and_context(tmp_path):
    mo = tmp_path / "lt.mo"
    write_mo(
        mo,
        {
            "": "Content-Type: text/plain; charset=UTF-8\n",
            "Open the file.": "Atverkite failą.",
            "menu\x04Quit": "Baigti",
            "one file\x00%d files": "vienas failas\x00%d failai",
        },
    )
    entries = parse_mo(mo.read_bytes())
    assert entries == {"Open the file.": "Atverkite failą.", "Quit": "Baigti", "one file": "vienas failas"}
    with pytest.raises(ValueError, match="not a gettext"):
        parse_mo(b"\0" * 40)


def test_parse_ftl_multiline_attributes_and_comments():
    ftl = (
        "# comment\n"
        "welcome = Sveiki atvykę į naršyklę.\n"
        "long-text =\n"
        "    Pirma eilutė čia.\n"
        "    Antra eilutė ten.\n"
        "button = Gerai\n"
        "    .title = Paspauskite mygtuką, kad tęstumėte.\n"
        "-brand = Firefox\n"
    )
    entries = parse_ftl(ftl)
    assert entries["welcome"] == "Sveiki atvykę į naršyklę."
    assert entries["long-text"] == "Pirma eilutė čia.\nAntra eilutė ten."
    assert entries["button.title"] == "Paspauskite mygtuką, kad tęstumėte."
    assert entries["-brand"] == "Firefox"


def test_parse_properties_escapes_and_continuations():
    text = "# c\n! c\nkey1 = Pirmas sakinys.\\nAntras sakinys.\nkey2 = Ilgas \\\n    tęsinys \\u0105.\n"
    assert parse_properties(text) == {"key1": "Pirmas sakinys.\nAntras sakinys.", "key2": "Ilgas tęsinys ą."}


def _qm_string(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + struct.pack(">I", len(payload)) + payload


def test_parse_qm_reads_source_and_translation():
    message = _qm_string(3, "Spustelėkite kamuolį.".encode("utf-16-be")) + _qm_string(
        6, b"Click on the ball."
    )
    message += _qm_string(7, b"ActivityInfo") + bytes([1])
    untranslated = bytes([3]) + struct.pack(">I", 0xFFFFFFFF) + _qm_string(6, b"Untranslated.") + bytes([1])
    messages = message + untranslated
    data = (
        bytes.fromhex("3cb86418caef9c95cd211cbf60a1bddd")
        + bytes([0x69])
        + struct.pack(">I", len(messages))
        + messages
    )
    assert parse_qm(data) == [("Click on the ball.", "Spustelėkite kamuolį.")]


def test_parse_mallard_flattens_inline_markup():
    page = (
        '<page xmlns="http://projectmallard.org/1.0/" id="x"><title>Pavadinimas</title>'
        "<p>Spustelėkite <gui>Nustatymai</gui> mygtuką\n  viršuje.</p></page>"
    )
    assert parse_mallard(page) == ["Pavadinimas", "Spustelėkite Nustatymai mygtuką viršuje."]
    assert parse_mallard("<not xml") == []


@pytest.mark.parametrize(
    ("text", "language", "reason"),
    [
        ("Atverkite failą dabar pat.", "lt", None),
        ("Mae un tap yn amgryptio'r holl draffig a i chi.", "cy", None),  # Welsh `a`, `i` are not English
        ("გაფართოება შეიზღუდა და ამორთულია.", "ka", None),
        ("Per trumpas.", "lt", "word count"),
        (" ".join(["žodis"] * 26) + ".", "lt", "word count"),
        ("Atverkite failą dabar pat", "lt", "no sentence-final punctuation"),
        ("Palaukite, kol bus įkelta...", "lt", "no sentence-final punctuation"),
        ("Atsisiųsta 5 failai iš serverio.", "lt", "digits"),
        ("Scenarijus %S nustojo veikti visiškai.", "lt", "placeholder or markup"),
        ("Priedas { $name } buvo pašalintas dabar.", "lt", "placeholder or markup"),
        ("Spauskite &amp; laikykite mygtuką ilgai.", "lt", "placeholder or markup"),
        ("Spustelėkite <b>čia</b> norėdami tęsti.", "lt", "placeholder or markup"),
        ("Firefox შეიზღუდა და ამორთულია.", "ka", "script mismatch"),
        ("Браузер Firefox не може адкрыць старонку.", "be", "script mismatch"),
        ("Scripts may only close windows that were opened by a script.", "lt", "untranslated English"),
        ("atverkite failą dabar čia.", "lt", "starts lower-case (a fragment)"),
    ],
)
def test_rejection_reasons(text, language, reason):
    assert rejection_reason(text, language) == reason


def test_untranslated_english_matched_against_the_source_strings():
    english = {english_key("Site blocked for your safety.")}
    assert rejection_reason("Site blocked for your safety.", "et", english) == "untranslated English"
    assert rejection_reason("Sait blokeeriti teie turvalisuse huvides.", "et", english) is None


def test_split_sentences_keeps_abbreviations_and_splits_lines():
    assert split_sentences("Prašom įvesti el. pašto adresą. Tada spauskite Gerai.\nKita eilutė.") == [
        "Prašom įvesti el. pašto adresą.",
        "Tada spauskite Gerai.",
        "Kita eilutė.",
    ]
    assert split_sentences("პირველი წინადადება. მეორე წინადადება.") == [
        "პირველი წინადადება.",
        "მეორე წინადადება.",
    ]


def test_filter_strings_dedupes_and_records_source_and_licence():
    raw = [
        ("Atverkite failą dabar pat.", "pkg-a", "MPL-2.0"),
        ("atverkite FAILĄ dabar pat.", "pkg-b", "GPL-3"),
        ("Atverkite failą dabar pat.", "pkg-b", "GPL-3"),
        ("Per trumpas.", "pkg-a", "MPL-2.0"),
    ]
    result = filter_strings(raw, "lt")
    assert [(s.text, s.source, s.licence) for s in result.sentences] == [
        ("Atverkite failą dabar pat.", "pkg-a", "MPL-2.0")
    ]
    assert result.rejected.counts["duplicate"] == 1 and result.rejected.counts["word count"] == 1
    assert result.rejected.examples["word count"] == ["Per trumpas."]


@pytest.mark.slow
def test_real_catalogues_give_a_thousand_welsh_sentences():
    from dama_asr.data.sentences import extract_sentences

    result = extract_sentences("cy")
    assert len(result.sentences) >= 1000
    assert all(
        s.source.startswith("firefox-esr-l10n-cy") and s.licence == "MPL-2.0" for s in result.sentences
    )


def test_sentence_rules_read_the_one_script_table():
    # Any language of the table is judged by its usual writing system; none needs a table of its own.
    assert rejection_reason("오늘은 날씨가 정말 좋습니다.", "ko") is None
    assert rejection_reason("Оvo je latinica pomiješana s ćirilicom.", "sr") == "script mismatch"
    assert rejection_reason("Ово је реченица на српском језику.", "sr") is None
