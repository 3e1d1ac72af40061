"""Common Voice import on release folders with real MP3 clips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dama_asr.cli import main
from dama_asr.data.importers import import_common_voice
from dama_asr.data.importers.testing import write_common_voice_tree
from dama_asr.data.manifest import ManifestError, read_manifest
from dama_asr.languages import UnknownLanguageError

CY_ROWS = {
    "train": [
        ("spk_a", "common_voice_cy_1.mp3", "Bore da.", 1.0),
        ("spk_a", "common_voice_cy_2.mp3", 'Mae "hi" yn braf heddiw.', 1.5),  # bare quotes, as in CV
        ("spk_b", "common_voice_cy_3.mp3", "", 1.0),  # empty sentence
        ("spk_b", "common_voice_cy_4.mp3", "Ble mae'r orsaf?", 0),  # clip missing
    ],
    "dev": [("spk_c", "common_voice_cy_5.mp3", "Diolch yn fawr.", 1.2)],
    "test": [("spk_d", "common_voice_cy_6.mp3", "Nos da.", 0.8)],
    "validated": [
        ("spk_a", "common_voice_cy_1.mp3", "Bore da.", 1.0),  # also in train: imported once
        ("spk_e", "common_voice_cy_7.mp3", "Sut wyt ti?", 1.1),
    ],
}


@pytest.fixture(scope="module")
def cy_dir(tmp_path_factory):
    folder = write_common_voice_tree(tmp_path_factory.mktemp("cv") / "cy", CY_ROWS)
    (folder / "clips" / "common_voice_cy_corrupt.mp3").write_bytes(b"\xff\xfb" + bytes(range(256)) * 8)
    with open(folder / "train.tsv", "a", encoding="utf-8") as f:
        f.write("spk_b\tcommon_voice_cy_corrupt.mp3\ts1\tDa iawn.\t\t2\t0\t\t\t\t\tcy\t\n")
    return folder


def test_imports_train_dev_test_with_speakers_and_durations(cy_dir, tmp_path):
    result = import_common_voice(cy_dir, tmp_path / "out", echo=None)
    items = {u.id: u for u in read_manifest(result.manifest)}
    assert set(items) == {"common_voice_cy_1", "common_voice_cy_2", "common_voice_cy_5", "common_voice_cy_6"}
    one = items["common_voice_cy_1"]
    assert (one.text, one.language, one.speaker, one.split, one.source) == (
        "Bore da.",
        "cy",
        "spk_a",
        "train",
        "common_voice",
    )
    assert one.duration == pytest.approx(1.0, abs=0.08)  # MP3 adds encoder padding
    assert items["common_voice_cy_2"].text == 'Mae "hi" yn braf heddiw.'
    assert items["common_voice_cy_5"].split == "dev" and items["common_voice_cy_6"].split == "test"
    assert one.extra["gender"] == "female" and one.extra["locale"] == "cy"
    assert [u.id for u in read_manifest(result.split_manifests["dev"])] == ["common_voice_cy_5"]
    counts = result.report.counts
    assert (counts["empty_transcript"], counts["missing_audio"], counts["unreadable_audio"]) == (1, 1, 1)
    saved = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert saved["rejected"] == 3


def test_validated_clips_not_in_train_dev_test_get_no_split(cy_dir, tmp_path):
    result = import_common_voice(
        cy_dir, tmp_path / "out", splits=["train", "dev", "test", "validated"], echo=None
    )
    items = {u.id: u for u in result.items}
    assert items["common_voice_cy_1"].split == "train"  # first TSV wins, no duplicate
    assert items["common_voice_cy_7"].split == "" and items["common_voice_cy_7"].extra["tsv"] == "validated"
    assert len(items) == 5


def test_old_release_columns_and_locale_mapping(tmp_path):
    rows = {"train": [("x", "common_voice_sv-SE_1.mp3", "God morgon.", 1.0)], "dev": [], "test": []}
    write_common_voice_tree(tmp_path / "sv-SE", rows, new_columns=False)
    result = import_common_voice(tmp_path / "sv-SE", tmp_path / "out", echo=None)
    assert [(u.id, u.language) for u in result.items] == [("common_voice_sv-SE_1", "sv")]


def test_release_root_with_several_locales(tmp_path):
    write_common_voice_tree(
        tmp_path / "rel" / "lt", {"train": [("a", "lt1.mp3", "Labas rytas.", 1.0)], "dev": [], "test": []}
    )
    write_common_voice_tree(
        tmp_path / "rel" / "ka", {"train": [("b", "ka1.mp3", "დილა მშვიდობისა.", 1.0)], "dev": [], "test": []}
    )
    result = import_common_voice(tmp_path / "rel", tmp_path / "out", echo=None)
    assert sorted((u.id, u.language) for u in result.items) == [("ka1", "ka"), ("lt1", "lt")]


def test_locale_whisper_lacks_is_a_clear_error_and_writes_nothing(tmp_path):
    write_common_voice_tree(
        tmp_path / "ga-IE", {"train": [("a", "ga1.mp3", "Dia duit.", 1.0)], "dev": [], "test": []}
    )
    with pytest.raises(UnknownLanguageError, match="'ga-IE' is not one of Whisper's languages.*--language"):
        import_common_voice(tmp_path / "ga-IE", tmp_path / "out", echo=None)
    assert not (tmp_path / "out").exists()
    # labelled as a related language on request
    result = import_common_voice(tmp_path / "ga-IE", tmp_path / "out", language="cy", echo=None)
    assert [u.language for u in result.items] == ["cy"]


def test_missing_tsv_and_non_cv_folder_are_errors(cy_dir, tmp_path):
    with pytest.raises(
        ManifestError, match="no other.tsv; the splits present are: dev, test, train, validated"
    ):
        import_common_voice(cy_dir, tmp_path / "out", splits=["train", "other"], echo=None)
    with pytest.raises(ManifestError, match="not a Common Voice folder"):
        import_common_voice(tmp_path, tmp_path / "out", echo=None)
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_no_usable_clip_leaves_no_manifest(tmp_path):
    rows = {"train": [("a", "c1.mp3", "", 1.0), ("a", "c2.mp3", "Bore da.", 0)], "dev": [], "test": []}
    write_common_voice_tree(tmp_path / "cy", rows)
    with pytest.raises(ManifestError, match="no usable utterances out of 2"):
        import_common_voice(tmp_path / "cy", tmp_path / "out", echo=None)
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_relative_paths_from_a_parent_folder_survive_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_common_voice_tree(Path("cv/cy"), {"train": CY_ROWS["train"][:2], "test": CY_ROWS["test"]})
    assert main(["data", "import", "common-voice", "cv/cy", "--splits", "train,test", "--out", "data"]) == 0
    assert main(["data", "check", "data/manifest.jsonl"]) == 0
    assert main(["data", "check", "data/train.jsonl"]) == 0
    monkeypatch.chdir(tmp_path / "cv")
    assert main(["data", "check", str(tmp_path / "data" / "test.jsonl")]) == 0
