"""Validation: every bad-input class is counted with examples, good items are kept, nothing raises."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dama_asr.data.importers.testing import write_audio
from dama_asr.data.manifest import Utterance
from dama_asr.data.validate import ValidationOptions, inspect_audio, validate_items, validate_manifest


def _bad_corpus(folder: Path) -> tuple[list[dict], dict[str, str]]:
    """Manifest records covering every problem class; returns them and the expected kind per id."""
    rng = np.random.default_rng(0)
    a = folder / "audio"
    write_audio(a / "good.wav", 1.0)
    write_audio(a / "stereo.wav", 1.5, rate=44_100, channels=2)
    write_audio(a / "narrow.wav", 2.0, rate=8_000)
    write_audio(a / "good.mp3", 1.0, rate=48_000)
    write_audio(a / "long.wav", 31.0, rate=8_000)
    write_audio(a / "silent.wav", 1.0, amplitude=0.0)
    sf.write(str(a / "empty.wav"), np.zeros(0, np.float32), 16_000)
    (a / "zero_bytes.wav").write_bytes(b"")
    (a / "corrupt.wav").write_bytes(rng.bytes(4000))
    (a / "corrupt.mp3").write_bytes(rng.bytes(4000))
    nan = np.full(16_000, np.nan, np.float32)
    sf.write(str(a / "nan.wav"), nan, 16_000, subtype="FLOAT")
    full = write_audio(a / "full.mp3", 3.0, rate=48_000).read_bytes()
    (a / "truncated.mp3").write_bytes(full[: len(full) // 3])

    def rec(id_, audio, text="bore da", language="cy", **kw):
        return {"id": id_, "audio": f"audio/{audio}", "text": text, "language": language, **kw}

    records = [
        rec("good", "good.wav", duration=1.0),
        rec("stereo", "stereo.wav"),  # duration missing: filled; stereo and 44.1 kHz: notes
        rec("narrow", "narrow.wav", duration=5.0),  # wrong duration: corrected
        rec("mp3", "good.mp3", language="Welsh"),  # a language name: renamed to cy
        rec("missing", "nowhere.wav"),
        rec("corrupt_wav", "corrupt.wav"),
        rec("corrupt_mp3", "corrupt.mp3"),
        rec("nan", "nan.wav"),
        rec("truncated", "truncated.mp3"),
        rec("empty", "empty.wav"),
        rec("zero_bytes", "zero_bytes.wav"),
        rec("silent", "silent.wav"),
        rec("long", "long.wav"),
        rec("no_text", "good.wav", text="  "),
        rec("punct_only", "good.wav", text="…?!"),
        rec("latin_ka", "good.wav", text="gamarjoba", language="ka"),
        rec("cyrillic_lt", "good.wav", text="Доброе утро", language="lt"),
        rec("good", "narrow.wav"),  # duplicate id
        rec("klingon", "good.wav", language="xx"),
    ]
    expected = {
        "missing": "missing_audio",
        "corrupt_wav": "unreadable_audio",
        "corrupt_mp3": "unreadable_audio",
        "nan": "unreadable_audio",
        "truncated": "unreadable_audio",
        "empty": "empty_audio",
        "zero_bytes": "empty_audio",
        "silent": "silent_audio",
        "long": "too_long",
        "no_text": "empty_transcript",
        "punct_only": "empty_transcript",
        "latin_ka": "script_mismatch",
        "cyrillic_lt": "script_mismatch",
        "klingon": "unknown_language",
    }
    return records, expected


@pytest.fixture(scope="module")
def bad_manifest(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("bad")
    records, expected = _bad_corpus(folder)
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    lines.insert(3, "{not json")
    lines.insert(5, json.dumps({"id": "no_audio_field", "text": "x", "language": "cy"}))
    lines.insert(6, json.dumps({"id": "bad_duration", "audio": "x.wav", "text": "x", "language": "cy",
                                "duration": "long"}))  # fmt: skip
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "manifest.jsonl", expected


def test_every_problem_class_is_counted_and_good_items_kept(bad_manifest):
    path, expected = bad_manifest
    report = validate_manifest(path, progress=False)
    assert [u.id for u in report.good] == ["good", "stereo", "narrow", "mp3"]
    rejected = {problem.item_id: problem.kind for item, problem in report.bad if item is not None}
    assert rejected == {**expected, "good": "duplicate_id"}
    assert report.counts["malformed_line"] == 3
    assert report.counts["unreadable_audio"] == 4 and report.counts["script_mismatch"] == 2
    assert report.total == 19 + 3 and len(report.bad) == 18
    assert report.errors == 18 and not report.ok
    # notes on kept items
    assert report.counts["multichannel"] == 1 and report.counts["resampled"] == 3
    assert report.counts["duration_filled"] == 2 and report.counts["duration_corrected"] == 1
    assert report.counts["language_renamed"] == 1
    good = {u.id: u for u in report.good}
    assert good["stereo"].duration == pytest.approx(1.5, abs=0.01)
    assert good["narrow"].duration == pytest.approx(2.0, abs=0.01)
    assert good["mp3"].language == "cy" and good["mp3"].duration == pytest.approx(1.0, abs=0.1)


def test_summary_names_each_class_with_first_examples(bad_manifest):
    path, _ = bad_manifest
    report = validate_manifest(path, progress=False)
    text = report.summary()
    assert "4 good" in text and "18 rejected" in text
    for kind in (
        "missing_audio",
        "silent_audio",
        "too_long",
        "script_mismatch",
        "duplicate_id",
        "multichannel",
    ):
        assert kind in text
    assert "latin_ka:" in text and "nowhere.wav" in text
    assert len(report.examples["unreadable_audio"]) == 3  # first examples only
    assert report.to_dict()["counts"]["empty_audio"] == 2


def test_headers_only_mode_skips_decoding_but_not_the_cheap_checks(bad_manifest):
    path, _ = bad_manifest
    report = validate_manifest(path, ValidationOptions(decode=False), progress=False)
    kept = {u.id for u in report.good}
    assert {"silent", "truncated", "nan"} <= kept  # only decoding finds these
    assert report.counts["too_long"] == 1 and report.counts["missing_audio"] == 1


def test_multichannel_can_be_rejected(tmp_path):
    audio = write_audio(tmp_path / "s.wav", 1.0, channels=2)
    items = [Utterance("s", str(audio), "bore da", "cy")]
    kept = validate_items(items, progress=False)
    assert kept.counts["multichannel"] == 1 and len(kept.good) == 1
    strict = validate_items(items, ValidationOptions(reject_multichannel=True), progress=False)
    assert strict.counts["multichannel_rejected"] == 1 and strict.good == []


def test_inspect_audio_reports_rate_channels_duration(tmp_path):
    facts = inspect_audio(write_audio(tmp_path / "a.wav", 2.5, rate=22_050, channels=2))
    assert (facts.sample_rate, facts.channels) == (22_050, 2)
    assert facts.duration == pytest.approx(2.5, abs=1e-3)
