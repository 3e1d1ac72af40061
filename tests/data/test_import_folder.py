"""Generic folder import: audio files plus a TSV or CSV of transcripts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dama_asr.cli import main
from dama_asr.data.importers import import_folder
from dama_asr.data.importers.testing import write_audio
from dama_asr.data.manifest import ManifestError, read_manifest
from dama_asr.languages import UnknownLanguageError


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("folder") / "wavs"
    write_audio(folder / "a.wav", 1.0)
    write_audio(folder / "b.flac", 1.5, rate=22_050)
    write_audio(folder / "sub" / "a.wav", 0.5, rate=8_000, channels=2)  # same stem, other folder
    write_audio(folder / "c.wav", 1.0)
    return folder


def test_tsv_with_language_and_speaker_columns(audio_dir, tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text(
        "path\tsentence\tlanguage\tspeaker\n"
        "a.wav\tLabas rytas.\tlt\tp1\n"
        'b.flac\tGood "morning"\tLithuanian\tp2\n'  # a language name is mapped to its code
        "sub/a.wav\tSveiki.\tlt\tp1\n"
        "c.wav\tHallo\tqq\tp3\n"  # unknown language
        "a.wav\tLabas rytas.\tlt\tp1\n"  # listed twice: duplicate id
        "gone.wav\tAčiū.\tlt\tp1\n",
        encoding="utf-8",
    )
    result = import_folder(audio_dir, tsv, tmp_path / "out", echo=None)
    items = {u.id: u for u in read_manifest(result.manifest)}
    assert set(items) == {"a", "b", "sub_a"}
    assert items["b"].text == 'Good "morning"' and items["b"].language == "lt"
    assert items["sub_a"].speaker == "p1" and items["sub_a"].duration == pytest.approx(0.5, abs=0.01)
    assert items["a"].source == "folder" and items["a"].split == ""
    counts = result.report.counts
    assert (counts["unknown_language"], counts["duplicate_id"], counts["missing_audio"]) == (1, 1, 1)
    assert counts["multichannel"] == 1
    # the manifest lies outside the audio folder: paths are absolute and resolve
    assert all(u.audio.startswith(str(audio_dir)) for u in items.values())


def test_csv_with_fixed_language_quoted_commas_and_split(audio_dir, tmp_path):
    csv_file = tmp_path / "t.csv"
    csv_file.write_text(
        'file,transcript,split\na.wav,"Bore da, bawb.",train\nc.wav,Nos da.,test\nb.flac,,train\n',
        encoding="utf-8",
    )
    result = import_folder(audio_dir, csv_file, tmp_path / "out", language="cy", echo=None)
    items = {u.id: u for u in result.items}
    assert items["a"].text == "Bore da, bawb." and items["a"].language == "cy"
    assert (items["a"].split, items["c"].split) == ("train", "test")
    assert result.report.counts["empty_transcript"] == 1
    assert set(result.split_manifests) == {"train", "test"}


def test_table_errors_are_clear(audio_dir, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("file\twords\na.wav\tBore da\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="no transcript column; name one of: text, transcript"):
        import_folder(audio_dir, bad, tmp_path / "out", language="cy", echo=None)
    ok = tmp_path / "ok.tsv"
    ok.write_text("file\ttext\na.wav\tBore da\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="no language column; pass --language"):
        import_folder(audio_dir, ok, tmp_path / "out", echo=None)
    with pytest.raises(UnknownLanguageError, match="valid Whisper codes"):
        import_folder(audio_dir, ok, tmp_path / "out", language="welshish", echo=None)
    assert not (tmp_path / "out").exists()


def test_all_bad_leaves_earlier_manifest_untouched(audio_dir, tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("file\ttext\na.wav\tBore da\n", encoding="utf-8")
    first = import_folder(audio_dir, good, tmp_path / "out", language="cy", echo=None)
    before = first.manifest.read_text()
    bad = tmp_path / "bad.tsv"
    bad.write_text("file\ttext\nmissing.wav\tBore da\na.wav\tgamarjoba\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="no usable utterances out of 2"):
        import_folder(audio_dir, bad, tmp_path / "out", language="ka", echo=None)
    assert first.manifest.read_text() == before
    assert [
        p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")
    ] == []  # no temp files left


def test_relative_paths_from_a_parent_folder_survive_check(tmp_path, monkeypatch):
    # `dama data import folder clips/audio ... --out data` run from the folder above clips/ and data/.
    monkeypatch.chdir(tmp_path)
    write_audio(Path("clips/audio/x.ogg"), 1.0)
    write_audio(Path("clips/audio/y.wav"), 1.2)
    Path("clips/t.tsv").write_text("file\ttext\nx.ogg\tBore da.\ny.wav\tNos da.\n", encoding="utf-8")
    args = ["data", "import", "folder", "clips/audio", "--transcripts", "clips/t.tsv", "--language", "cy"]
    assert main([*args, "--out", "data"]) == 0
    assert main(["data", "check", "data/manifest.jsonl"]) == 0
    monkeypatch.chdir(tmp_path / "clips")  # and from anywhere else
    assert main(["data", "check", str(tmp_path / "data" / "manifest.jsonl")]) == 0


def test_the_progress_bar_counts_what_the_summary_counts(audio_dir, tmp_path, capsys):
    tsv = tmp_path / "t.tsv"
    # 2 good, 1 empty transcript and 1 duplicate (settled before any audio opens), 1 row without a file
    tsv.write_text(
        "file\ttext\na.wav\tBore da.\nc.wav\t\nb.flac\tNos da.\na.wav\tEto.\n\tHwyl.\n", encoding="utf-8"
    )
    result = import_folder(audio_dir, tsv, tmp_path / "out", language="cy", echo=print)
    captured = capsys.readouterr()
    assert result.report.total == 5 and "checked 5 item(s): 2 good" in captured.out
    shown = [(int(n), int(total)) for n, total in re.findall(r"(\d+)/(\d+) \[", captured.err)]
    assert shown and {total for _, total in shown} == {5} and shown[-1] == (5, 5)
