"""Saved Hugging Face datasets. Row conversion runs everywhere; loading needs the optional `datasets`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dama_asr.cli import main
from dama_asr.data.importers.common import AudioNamer, FileNameClash, write_new_file
from dama_asr.data.importers.hf import import_hf, items_from_rows
from dama_asr.data.importers.testing import tone_samples, write_audio
from dama_asr.data.manifest import ManifestError, read_manifest
from dama_asr.data.validate import ValidationReport, validate_items


def test_rows_with_encoded_bytes_or_arrays_become_audio_files(tmp_path):
    encoded = write_audio(tmp_path / "src" / "x.flac", 1.0, rate=22_050).read_bytes()
    rows = [
        {
            "audio": {"bytes": encoded, "path": "x.flac"},
            "sentence": "Bore da.",
            "locale": "cy",
            "client_id": "s1",
        },
        {
            "audio": {"array": tone_samples(0.5, 8_000), "sampling_rate": 8_000, "path": None},
            "sentence": "Nos da.",
            "locale": "cy",
        },
        {"audio": {"bytes": None, "path": None}, "sentence": "Hwyl.", "locale": "cy"},  # nothing to write
        {
            "audio": {"array": tone_samples(0.5, 16_000), "sampling_rate": 16_000},
            "sentence": "Labas.",
            "locale": "zh-CN",
        },
    ]
    report = ValidationReport()
    items = list(items_from_rows(rows, "validation", tmp_path / "audio", report))
    assert [u.id for u in items] == ["validation_0000000", "validation_0000001", "validation_0000003"]
    assert items[0].audio.endswith(".flac") and items[0].speaker == "s1" and items[0].split == "dev"
    assert sf.info(items[1].audio).samplerate == 8_000
    assert items[2].language == "zh" and report.counts["malformed_line"] == 1
    checked = validate_items(items, report=report, progress=False)
    assert [u.id for u in checked.good] == ["validation_0000000", "validation_0000001"]
    assert checked.counts["script_mismatch"] == 1  # Latin text tagged zh
    assert checked.good[0].duration == pytest.approx(1.0, abs=0.01)


def test_explicit_columns_must_exist(tmp_path):
    rows = [{"audio": {"array": np.zeros(10), "sampling_rate": 16_000}, "txt": "a"}]
    with pytest.raises(ManifestError, match="no column 'words'"):
        list(items_from_rows(rows, "train", tmp_path, ValidationReport(), text_column="words", language="cy"))
    with pytest.raises(ManifestError, match="no transcript column"):
        list(items_from_rows(rows, "train", tmp_path, ValidationReport(), language="cy"))


def test_without_datasets_the_error_says_how_to_install(tmp_path):
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(ManifestError, match="pip install datasets"):
            import_hf(tmp_path, tmp_path / "out", language="cy", echo=None)
    else:  # installed: a folder that is not a saved dataset is named clearly instead
        with pytest.raises(ManifestError, match="not a dataset saved with save_to_disk"):
            import_hf(tmp_path, tmp_path / "out", language="cy", echo=None)
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_saved_dataset_dict_round_trip(tmp_path):
    datasets = pytest.importorskip("datasets")
    wav = write_audio(tmp_path / "a.wav", 1.0).read_bytes()
    # Built as a plain struct and cast to Audio: writing Audio features from bytes needs torchcodec in
    # datasets >= 4, while a cast only relabels the column, which is how such datasets look on disk.
    part = datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": wav, "path": "a.wav"}] * 2,
            "text": ["Bore da.", ""],
            "speaker_id": ["s1", "s2"],
        }
    ).cast_column("audio", datasets.Audio())
    datasets.DatasetDict({"train": part, "validation": part}).save_to_disk(str(tmp_path / "ds"))
    result = import_hf(tmp_path / "ds", tmp_path / "out", language="cy", echo=None)
    items = read_manifest(result.manifest)
    assert sorted((u.split, u.speaker, u.text) for u in items) == [
        ("dev", "s1", "Bore da."),
        ("train", "s1", "Bore da."),
    ]
    assert all(u.audio.startswith(str(tmp_path / "out" / "audio")) for u in items)
    assert result.report.counts["empty_transcript"] == 2


def _wav_bytes(tmp_path, name: str, seconds: float) -> bytes:
    return write_audio(tmp_path / "src" / name, seconds).read_bytes()


def test_ids_with_dots_or_separators_get_files_of_their_own(tmp_path):
    # Each id gets a different duration, so a file holding another item's audio shows.
    ids = ["spk1.001", "spk1.002", "a/b", "a_b", "Spk", "spk", "..", "x:y?.z"]
    rows = [
        {
            "id": uid,
            "audio": {"bytes": _wav_bytes(tmp_path, f"{i}.wav", 0.5 + 0.25 * i), "path": f"{i}.wav"},
            "text": "Bore da.",
        }
        for i, uid in enumerate(ids)
    ]
    report = ValidationReport()
    items = list(items_from_rows(rows, "train", tmp_path / "audio", report, language="cy"))
    assert [u.id for u in items] == ids
    names = [Path(u.audio).name for u in items]
    assert names[:2] == ["spk1.001.wav", "spk1.002.wav"]  # dots kept, suffix appended
    assert len({n.casefold() for n in names}) == len(ids)  # distinct even on case-insensitive disks
    folder = tmp_path / "audio" / "train"
    for i, item in enumerate(items):
        assert Path(item.audio).parent == folder  # nothing escaped the folder ('a/b', '..')
        assert sf.info(item.audio).duration == pytest.approx(0.5 + 0.25 * i, abs=0.01)
    assert "/" not in names[2] and not names[6].startswith(".")
    # The same rows name their files the same way again.
    again = list(items_from_rows(rows, "train", tmp_path / "again", ValidationReport(), language="cy"))
    assert [Path(u.audio).name for u in again] == names


def test_a_repeated_id_is_rejected_before_it_overwrites_the_first_audio(tmp_path):
    rows = [
        {"id": "utt", "audio": {"bytes": _wav_bytes(tmp_path, "a.wav", 1.0), "path": "a.wav"}, "text": "Un."},
        {
            "id": "utt",
            "audio": {"bytes": _wav_bytes(tmp_path, "b.wav", 2.0), "path": "b.wav"},
            "text": "Dau.",
        },
    ]
    report = ValidationReport()
    items = list(items_from_rows(rows, "train", tmp_path / "audio", report, language="cy"))
    assert [(u.id, u.text) for u in items] == [("utt", "Un.")]
    assert sf.info(items[0].audio).duration == pytest.approx(1.0, abs=0.01)  # its own audio, kept
    assert report.counts["duplicate_id"] == 1
    assert report.examples["duplicate_id"] == [
        "utt: id also used by row train[0]; this row (train[1]) is not imported"
    ]


def test_namer_disambiguates_and_write_new_file_never_overwrites(tmp_path):
    namer = AudioNamer()
    first, second = namer.file_name("a/b", ".wav"), namer.file_name("a_b", ".wav")
    assert first == "a_b.wav" and second.startswith("a_b-") and second.endswith(".wav")
    assert AudioNamer().file_name("a/b", ".wav") == first  # deterministic
    assert namer.file_name("X", ".wav") == "X.wav" and namer.file_name("x", ".wav").startswith("x-")
    # An id that is literally the disambiguated name of another: no third name is invented, it is refused.
    probe = AudioNamer()
    probe.file_name("a_b", ".wav")
    hashed = probe.file_name("a/b", ".wav").removesuffix(".wav")  # what a/b gets when a_b.wav is taken
    clash = AudioNamer()
    clash.file_name("a_b", ".wav")
    clash.file_name(hashed, ".wav")
    with pytest.raises(FileNameClash, match=f"'{hashed}' and 'a/b'"):
        clash.file_name("a/b", ".wav")
    target = write_new_file(tmp_path / "f.wav", b"one")
    with pytest.raises(FileNameClash, match="f.wav already exists"):
        write_new_file(target, b"two")
    assert target.read_bytes() == b"one"


def test_saved_dataset_with_dotted_ids_keeps_audio_and_text_together(tmp_path):
    datasets = pytest.importorskip("datasets")
    seconds = {"spk1.001": 1.0, "spk1.002": 2.0, "spk2.001": 1.5}
    part = datasets.Dataset.from_dict(
        {
            "id": list(seconds),
            "audio": [
                {"bytes": _wav_bytes(tmp_path, f"{k}.wav", s), "path": f"{k}.wav"} for k, s in seconds.items()
            ],
            "text": [f"Brawddeg {k}." for k in seconds],
        }
    ).cast_column("audio", datasets.Audio())
    part.save_to_disk(str(tmp_path / "ds"))
    result = import_hf(tmp_path / "ds", tmp_path / "out", language="cy", echo=None)
    items = {u.id: u for u in read_manifest(result.manifest)}
    assert set(items) == set(seconds)
    assert len({u.audio for u in items.values()}) == 3
    for uid, item in items.items():
        assert item.text == f"Brawddeg {uid}."
        assert item.duration == pytest.approx(seconds[uid], abs=0.01)


def test_relative_paths_from_a_parent_folder_survive_check(tmp_path, monkeypatch):
    # A dataset whose audio column names files on disk (relative to where the import runs).
    datasets = pytest.importorskip("datasets")
    monkeypatch.chdir(tmp_path)
    write_audio(Path("clips/a.wav"), 1.0)
    part = datasets.Dataset.from_dict({"audio": ["clips/a.wav"], "text": ["Bore da."]})
    datasets.DatasetDict({"train": part}).save_to_disk("ds")
    assert main(["data", "import", "hf", "ds", "--language", "cy", "--out", "data"]) == 0
    assert main(["data", "check", "data/manifest.jsonl"]) == 0
    monkeypatch.chdir(tmp_path / "clips")
    assert main(["data", "check", str(tmp_path / "data" / "train.jsonl")]) == 0
