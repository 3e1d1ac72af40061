"""Saved Hugging Face datasets. Row conversion runs everywhere; loading needs the optional `datasets`."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import soundfile as sf

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
