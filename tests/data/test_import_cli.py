"""`dama data check | import | subset | split` through the real command line entry point."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dama_asr.cli import main
from dama_asr.data.importers.testing import write_audio, write_common_voice_tree, write_fleurs_tree
from dama_asr.data.manifest import read_manifest
from dama_asr.data.subset import overlaps


@pytest.fixture(scope="module")
def cv_dir(tmp_path_factory):
    """Common Voice Welsh: 60 clips of 1-3 s from 6 speakers in train, 2 in dev and test each."""
    rows = {
        "train": [
            (f"spk{i % 30 % 6}", f"cv_{i}.mp3", f"Brawddeg rhif {i % 30}.", 1.0 + (i % 5) * 0.5)
            for i in range(60)
        ],
        "dev": [("spk_dev", "cv_dev.mp3", "Bore da.", 1.0), ("spk_dev", "cv_bad.mp3", "", 1.0)],
        "test": [("spk_test", "cv_test.mp3", "Nos da.", 1.0)],
    }
    return write_common_voice_tree(tmp_path_factory.mktemp("cv") / "cy", rows)


def test_import_common_voice_prints_summary_and_hours(cv_dir, tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["data", "import", "common-voice", str(cv_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "checked 63 item(s): 62 good" in printed and "empty_transcript" in printed
    assert "train    cy" in printed and "dev      cy" in printed
    assert {p.name for p in out.iterdir()} >= {"manifest.jsonl", "train.jsonl", "dev.jsonl", "test.jsonl"}
    assert len(read_manifest(out / "train.jsonl")) == 60


def test_check_exit_codes_and_clean_output(cv_dir, tmp_path, capsys):
    main(["data", "import", "common-voice", str(cv_dir), "--out", str(tmp_path / "cv")])
    good = tmp_path / "cv" / "manifest.jsonl"
    assert main(["data", "check", str(good)]) == 0
    assert "62 good" in capsys.readouterr().out
    lines = good.read_text().splitlines()
    record = json.loads(lines[0])
    lines.append(json.dumps({**record, "text": "gamarjoba", "language": "ka", "id": "wrong_script"}))
    lines.append(json.dumps({**record, "id": "gone", "audio": "/nowhere/x.wav", "duration": 0}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    clean = tmp_path / "clean.jsonl"
    assert main(["data", "check", str(bad), "--out", str(clean)]) == 2
    captured = capsys.readouterr()
    assert "script_mismatch" in captured.out and "missing_audio" in captured.out
    assert "2 item(s) failed validation" in captured.err
    assert len(read_manifest(clean)) == 62


def test_import_fleurs_and_folder(tmp_path, capsys):
    write_fleurs_tree(tmp_path / "fleurs" / "ka_ge", {"test": [("1", "1.wav", "გმადლობთ.", 1.0)]})
    write_fleurs_tree(tmp_path / "fleurs" / "lt_lt", {"test": [("2", "2.wav", "Ačiū.", 1.0)]})
    assert (
        main(
            [
                "data",
                "import",
                "fleurs",
                str(tmp_path / "fleurs"),
                "--language",
                "ka",
                "--out",
                str(tmp_path / "f"),
            ]
        )
        == 0
    )
    assert [u.id for u in read_manifest(tmp_path / "f" / "test.jsonl")] == ["ka_ge_1"]
    assert "test     ka" in capsys.readouterr().out

    write_audio(tmp_path / "wavs" / "a.wav", 1.0)
    (tmp_path / "t.csv").write_text("file,text,speaker\na.wav,Bore da.,me\n", encoding="utf-8")
    argv = [
        "data",
        "import",
        "folder",
        str(tmp_path / "wavs"),
        "--transcripts",
        str(tmp_path / "t.csv"),
        "--language",
        "cy",
    ]
    assert main([*argv, "--out", str(tmp_path / "d")]) == 0
    assert [(u.id, u.speaker, u.language) for u in read_manifest(tmp_path / "d" / "manifest.jsonl")] == [
        ("a", "me", "cy")
    ]


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    write_common_voice_tree(
        tmp_path / "fy-NL", {"train": [("a", "x.mp3", "Goeie.", 1.0)], "dev": [], "test": []}
    )
    assert (
        main(["data", "import", "common-voice", str(tmp_path / "fy-NL"), "--out", str(tmp_path / "o")]) == 2
    )
    assert "'fy-NL' is not one of Whisper's languages" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "none.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    if importlib.util.find_spec("datasets") is None:
        assert (
            main(["data", "import", "hf", str(tmp_path), "--language", "cy", "--out", str(tmp_path / "h")])
            == 2
        )
        assert "pip install datasets" in capsys.readouterr().err


def test_subset_and_split(cv_dir, tmp_path, capsys):
    main(["data", "import", "common-voice", str(cv_dir), "--out", str(tmp_path / "cv")])
    manifest = str(tmp_path / "cv" / "manifest.jsonl")
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    assert (
        main(
            [
                "data",
                "subset",
                manifest,
                "--hours",
                "0.01",
                "--seed",
                "3",
                "--split",
                "train",
                "--out",
                str(small),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "budget 0.01 h, seed 3" in printed
    assert (
        main(
            [
                "data",
                "subset",
                manifest,
                "--hours",
                "0.02",
                "--seed",
                "3",
                "--split",
                "train",
                "--out",
                str(large),
            ]
        )
        == 0
    )
    small_items, large_items = read_manifest(small), read_manifest(large)
    assert {u.id for u in small_items} < {u.id for u in large_items}
    assert sum(u.duration for u in small_items) <= 36 and all(u.split == "train" for u in large_items)

    out_dir = tmp_path / "split"
    assert (
        main(
            [
                "data",
                "split",
                str(large),
                "--by",
                "both",
                "--dev",
                "0.2",
                "--test",
                "0.2",
                "--out-dir",
                str(out_dir),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "shared between splits: 0 speaker(s), 0 sentence(s)" in printed
    splits = {name: read_manifest(out_dir / f"{name}.jsonl") for name in ("train", "dev", "test")}
    assert all(splits.values()) and overlaps(splits) == {"speaker": set(), "sentence": set()}
    assert sum(map(len, splits.values())) == len(large_items)


def test_subset_split_and_check_outputs_in_other_folders_keep_their_audio(tmp_path, monkeypatch, capsys):
    # Run from the folder above data/: the manifest read gives paths relative to here, not to the new files.
    monkeypatch.chdir(tmp_path)
    rows = {"train": [(f"spk{i % 4}", f"c{i}.mp3", f"Brawddeg rhif {i}.", 1.0 + i % 3) for i in range(20)]}
    write_common_voice_tree(Path("data/cy"), rows)  # audio inside the corpus folder: stored relative
    assert main(["data", "import", "common-voice", "data/cy", "--splits", "train", "--out", "data"]) == 0
    assert '"audio": "cy/clips/c0.mp3"' in Path("data/manifest.jsonl").read_text()
    outputs = ["subsets/small.jsonl", "fixed/all.jsonl", "splits/train.jsonl", "splits/test.jsonl"]
    assert main(["data", "subset", "data/manifest.jsonl", "--hours", "0.005", "--out", outputs[0]]) == 0
    assert main(["data", "check", "data/manifest.jsonl", "--out", outputs[1]]) == 0
    assert main(["data", "split", "data/manifest.jsonl", "--by", "sentence", "--out-dir", "splits"]) == 0
    monkeypatch.chdir(tmp_path / "data")
    for path in outputs:
        assert main(["data", "check", str(tmp_path / path)]) == 0, capsys.readouterr().out


def test_split_help_says_hours_and_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["data", "split", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "fractions of the total hours of audio unless --by-count or --hours" in text
    assert "(default: 0.1)" in text and "(default: speaker)" in text and "(default: 0)" in text
    assert "--by-count" in text


def test_split_by_count(tmp_path):
    # Five long clips and fifteen short ones: a tenth of the utterances is not a tenth of the hours.
    rows = {
        "train": [(f"spk{i}", f"c{i}.mp3", f"Brawddeg rhif {i}.", 6.0 if i < 5 else 1.0) for i in range(20)]
    }
    write_common_voice_tree(tmp_path / "cv" / "cy", rows)
    main(
        [
            "data",
            "import",
            "common-voice",
            str(tmp_path / "cv" / "cy"),
            "--splits",
            "train",
            "--out",
            str(tmp_path / "d"),
        ]
    )
    args = [
        "data",
        "split",
        str(tmp_path / "d" / "manifest.jsonl"),
        "--by",
        "sentence",
        "--dev",
        "0.2",
        "--test",
        "0.1",
    ]
    assert main([*args, "--by-count", "--out-dir", str(tmp_path / "n")]) == 0
    assert len(read_manifest(tmp_path / "n" / "test.jsonl")) == 2
    assert len(read_manifest(tmp_path / "n" / "dev.jsonl")) == 4
    with pytest.raises(SystemExit):  # the shares are of one thing or the other
        main([*args, "--by-count", "--hours", "--out-dir", str(tmp_path / "x")])
