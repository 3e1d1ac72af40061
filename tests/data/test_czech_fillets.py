"""Czech Fish Fillets corpus: pairing clips with dialogue lines on a tiny tree in the packages' layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dama_asr.data.czech_fillets import GAME_DIR, build_czech_fillets, parse_dialogs
from dama_asr.data.manifest import Utterance, read_manifest
from dama_asr.data.subset import sentence_key, split_items

CITY_CS = """
dialogId("vit-hs-vitejteA", "font_statue", "Welcome to the most beautiful city under the sun.")
dialogStr("Vítejte v nejkrásnějším městě pod sluncem.")


dialogId("vit-m-hlava", "font_small", "What a head (of stone)!")
dialogStr("To je ale \\"hlava\\".")

dialogId("vit-v-hlava", "font_big", "Yes, a head.")
dialogStr("Vítejte v nejkrásnějším městě pod sluncem!")

dialogId("vit-v-nic", "font_big", "")
dialogStr("")

dialogId("vit-v-tiche", "font_big", "Silence.")
dialogStr("Tady je úplné ticho.")

dialogId("vit-x-nenahrano", "font_small", "Never recorded.")
dialogStr("Tahle věta nemá nahrávku.")

-- Lasersound
dialogId("laser", "", "")
"""
BORE_CS = """
dialogId("bore-m-nuda", "font_small", "I am bored.")
dialogStr("Já se nudím.")
"""
BOREJOKES_LUA = 'dialogLoad("script/share/bore_", "sound/share/borejokes/")\n'


def _tone(seconds: float, rate: int = 22050, amplitude: float = 0.3, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_tree(root: Path) -> tuple[Path, Path]:
    """`fillets-ng-data` and `fillets-ng-data-cs` as unpacked by dpkg-deb, with one clip per problem."""
    data, voices = root / "data", root / "voices"
    script = data / GAME_DIR / "script"
    (script / "city").mkdir(parents=True)
    (script / "city" / "dialogs_cs.lua").write_text(CITY_CS, encoding="utf-8")
    (script / "city" / "dialogs_en.lua").write_text('dialogId("vit-m-hlava", "font_small", "x")\n')
    (script / "city2").mkdir()
    (script / "city2" / "dialogs_cs.lua").write_text(CITY_CS.split("\n\n\n")[0], encoding="utf-8")
    (script / "share").mkdir()
    (script / "share" / "bore_dialogs_cs.lua").write_text(BORE_CS, encoding="utf-8")
    (script / "share" / "borejokes.lua").write_text(BOREJOKES_LUA)
    sound = voices / GAME_DIR / "sound"
    clips = {
        "city/cs/vit-hs-vitejteA": _tone(1.0, freq=200),
        "city/cs/vit-m-hlava": _tone(0.8, freq=300),
        "city/cs/vit-v-hlava": _tone(1.2, freq=250),
        "city/cs/vit-v-nic": _tone(0.5, freq=260),  # counting aloud: empty transcript
        "city/cs/vit-v-tiche": np.zeros(22050, dtype=np.float32),  # silent
        "city/cs/vit-z-sirotek": _tone(0.5, freq=270),  # no dialogue line anywhere
        "share/borejokes/cs/bore-m-nuda": _tone(0.9, freq=280),
    }
    for name, samples in clips.items():
        path = sound / f"{name}.ogg"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, samples, 22050, format="OGG", subtype="VORBIS")
    # The same recording shipped in a second level, byte for byte, as the real package does.
    (sound / "city2" / "cs").mkdir(parents=True)
    (sound / "city2/cs/vit-hs-vitejteA.ogg").write_bytes((sound / "city/cs/vit-hs-vitejteA.ogg").read_bytes())
    return data, voices


def test_parse_dialogs_reads_ids_speakers_and_czech_text():
    lines = parse_dialogs(CITY_CS, "script/city/dialogs_cs.lua")
    by_name = {line.name: line for line in lines}
    assert by_name["vit-hs-vitejteA"].text == "Vítejte v nejkrásnějším městě pod sluncem."
    assert (
        by_name["vit-m-hlava"].text == 'To je ale "hlava".'
    )  # parentheses in the English text do not stop it
    assert by_name["vit-m-hlava"].font == "font_small"
    assert by_name["vit-v-nic"].text == "" and by_name["laser"].text == ""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("fillets")
    data, voices = make_tree(root)
    report = build_czech_fillets(root / "out", data_root=data, voices_root=voices)
    return root / "out", report, (data, voices)


def test_pairing_reports_every_problem(built):
    _, report, _ = built
    assert report.audio_files == 8
    assert report.unmatched_audio == ["city/cs/vit-z-sirotek.ogg"]
    assert report.unmatched_text == ["city/vit-x-nenahrano"]
    assert report.skipped.counts == {"empty transcript": 1, "silent audio": 1, "duplicate recording": 1}
    assert "empty transcript: 1" in report.summary()


def test_manifests_are_16k_sentence_disjoint_and_complete(built):
    out, report, _ = built
    items = {split: read_manifest(out / f"{split}.jsonl") for split in ("train", "dev", "test")}
    kept = [u for split_items in items.values() for u in split_items]
    assert sorted(u.id for u in kept) == [
        "fillets-cs-city-vit-hs-vitejteA", "fillets-cs-city-vit-m-hlava", "fillets-cs-city-vit-v-hlava",
        "fillets-cs-share-borejokes-bore-m-nuda"]  # fmt: skip
    keys = {split: {sentence_key(u.text) for u in v} for split, v in items.items()}
    assert not (keys["train"] & keys["dev"] or keys["train"] & keys["test"] or keys["dev"] & keys["test"])
    # The two clips of one sentence (different punctuation) share a split.
    split_of = {u.id: u.split for u in kept}
    assert split_of["fillets-cs-city-vit-hs-vitejteA"] == split_of["fillets-cs-city-vit-v-hlava"]
    for u in kept:
        info = sf.info(u.audio)
        assert (info.samplerate, info.channels) == (16000, 1)
        assert (
            u.language == "cs" and u.speaker.startswith("fillets-font_") and u.source == "fillets-ng-data-cs"
        )


def test_rerun_reuses_converted_clips(built):
    out, _, (data, voices) = built
    wavs = sorted((out / "wav").glob("*.wav"))
    stamps = [p.stat().st_mtime_ns for p in wavs]
    report = build_czech_fillets(out, data_root=data, voices_root=voices)
    assert [p.stat().st_mtime_ns for p in sorted((out / "wav").glob("*.wav"))] == stamps
    assert sum(len(v) for v in report.splits.values()) == 4


def _sentence_split(items, seed):
    return split_items(items, by="sentence", dev=0.1, test=0.1, seed=seed, overshoot=True).splits


def test_sentence_disjoint_split_reaches_shares_by_duration():
    items = [Utterance(id=f"u{i}", audio="x.wav", text=f"věta číslo {i % 50}", language="cs", duration=1.0 + i % 3)
             for i in range(200)]  # fmt: skip
    splits = _sentence_split(items, seed=1)
    total = sum(u.duration for u in items)
    for split, share in (("dev", 0.1), ("test", 0.1)):
        got = sum(u.duration for u in splits[split]) / total
        assert share <= got < share + 0.05
    assert sum(len(v) for v in splits.values()) == 200
    assert splits == _sentence_split(items, seed=1) and splits != _sentence_split(items, seed=2)


@pytest.mark.slow
def test_real_packages_give_over_one_and_a_half_hours(tmp_path):
    report = build_czech_fillets(tmp_path)
    hours = sum(u.duration for v in report.splits.values() for u in v) / 3600
    assert hours >= 1.5 and len(report.unmatched_audio) < 10
