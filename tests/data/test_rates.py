"""Transcripts that cannot be their audio's: characters per second far from the language's typical rate."""

from __future__ import annotations

import re
from pathlib import Path

from dama_asr.cli import main
from dama_asr.data.importers.testing import write_audio
from dama_asr.data.manifest import Utterance, read_manifest, write_manifest
from dama_asr.data.rates import implausible_rates, spoken_chars
from dama_asr.data.validate import validate_manifest

WORDS = "bore da pawb mae hi yn braf heddiw diolch yn fawr iawn nos da cariad".split()


def welsh(letters: int) -> str:
    """A Welsh-looking transcript of exactly `letters` letters."""
    words, count, i = [], 0, 0
    while count < letters:
        words.append(WORDS[i % len(WORDS)][: letters - count])
        count += len(words[-1])
        i += 1
    return " ".join(words).capitalize() + "."


def _manifest(folder: Path, clips: list[tuple[str, float, str, str]]) -> Path:
    """(id, seconds of real audio, transcript, language) -> a manifest with durations measured later."""
    items = [
        Utterance(id=i, audio=str(write_audio(folder / "audio" / f"{i}.wav", s, freq=200 + 10 * n)), text=t, language=lang)
        for n, (i, s, t, lang) in enumerate(clips)
    ]  # fmt: skip
    return write_manifest(folder / "manifest.jsonl", items)


def _normal_clips(n: int = 14) -> list[tuple[str, float, str, str]]:
    """Welsh read at 5.5-7.5 letters per second, 1.5 to 4.1 s long."""
    clips = []
    for i in range(n):
        seconds = 1.5 + 0.2 * i
        clips.append((f"ok{i}", seconds, welsh(round(seconds * (5.5 + (i % 5) * 0.5))), "cy"))
    return clips


MISMATCHED = [
    ("paragraph", 0.8, welsh(150), "cy"),  # ~188 letters/s: a paragraph for a 0.8 s clip
    ("fast", 2.0, welsh(30), "cy"),  # 15 letters/s against a typical 7
    ("one_word", 20.0, "Helo.", "cy"),  # 20 s of audio, one word
]


def test_implausible_rates_are_warnings_naming_item_rate_and_typical_rate(tmp_path, capsys):
    manifest = _manifest(tmp_path, _normal_clips() + MISMATCHED)
    assert main(["data", "check", str(manifest)]) == 0  # a warning, not a failed check
    out = capsys.readouterr().out
    assert "kept, with a warning:" in out and "implausible_rate" in out
    report = validate_manifest(manifest, progress=False)
    warned = {item.id: problem.message for item, problem in report.warned}
    assert set(warned) == {"paragraph", "fast", "one_word"}
    assert len(report.good) == 17 and report.ok
    assert warned["paragraph"].startswith("too fast: 150 characters in 0.80 s = 187.5/s")
    assert warned["fast"].startswith("too fast: 30 characters in 2.00 s = 15.0/s")
    assert warned["one_word"].startswith("too slow: 4 characters in 20.00 s = 0.2/s")
    typical = float(re.search(r"'cy' \(Latin\) is typically ([\d.]+)/s", warned["fast"]).group(1))
    assert 6.0 <= typical <= 7.0  # the language's own median rate, not moved by the three


def test_drop_implausible_writes_the_rest(tmp_path, capsys):
    manifest = _manifest(tmp_path / "corpus", _normal_clips() + MISMATCHED)
    clean = tmp_path / "clean.jsonl"
    assert main(["data", "check", str(manifest), "--drop-implausible", "--out", str(clean)]) == 0
    assert "17 good" in capsys.readouterr().out
    kept = {u.id for u in read_manifest(clean)}
    assert kept == {f"ok{i}" for i in range(14)}
    assert main(["data", "check", str(manifest), "--drop-implausible"]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_tiny_manifest_is_held_to_absolute_bounds(tmp_path):
    manifest = _manifest(
        tmp_path, [("ok", 1.5, welsh(10), "cy"), MISMATCHED[0], MISMATCHED[2], ("short_ok", 0.6, "Ie.", "cy")]
    )
    report = validate_manifest(manifest, progress=False)
    warned = {item.id: problem.message for item, problem in report.warned}
    assert set(warned) == {"paragraph", "one_word"}
    assert "too few items to measure" in warned["paragraph"]


def test_each_language_and_script_has_its_own_typical_rate():
    # Han characters are syllables: 4 per second is normal for zh and would be slow for Welsh letters.
    items = [Utterance(f"cy{i}", "x.wav", welsh(36), "cy", duration=3.0 + 0.1 * (i % 4)) for i in range(12)]
    items += [
        Utterance(f"zh{i}", "x.wav", "今天天气很好我们去公园", "zh", duration=2.6 + 0.1 * (i % 4))
        for i in range(12)
    ]
    items += [
        Utterance(f"sr{i}", "x.wav", "Добро јутро свима", "sr", duration=1.5 + 0.1 * (i % 3))
        for i in range(4)
    ]
    items += [Utterance("sr_latin", "x.wav", "Dobro jutro svima", "sr", duration=1.6)]
    assert implausible_rates(items) == {}
    # The same Han transcript labelled Welsh-length audio, and a Welsh one read far too fast, are caught.
    odd = [
        Utterance("zh_long", "x.wav", "今天", "zh", duration=12.0),
        Utterance("cy_fast", "x.wav", welsh(90), "cy", 3.0),
    ]
    assert set(implausible_rates(items + odd)) == {"zh_long", "cy_fast"}


def test_a_few_outliers_do_not_move_the_typical_rate():
    # A quarter of the items are far off: the median and MAD of the rest still decide.
    items = [Utterance(f"ok{i}", "x.wav", welsh(30), "cy", duration=4.0 + 0.2 * (i % 5)) for i in range(15)]
    items += [Utterance(f"bad{i}", "x.wav", welsh(150), "cy", duration=1.0) for i in range(5)]
    assert set(implausible_rates(items)) == {f"bad{i}" for i in range(5)}
    assert spoken_chars("Bore da, 2 o'r gloch!") == 14  # letters and digits only
