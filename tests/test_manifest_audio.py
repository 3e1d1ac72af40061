import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dama_asr.data.audio import AudioError, load_audio
from dama_asr.data.manifest import ManifestError, Utterance, read_manifest, write_manifest
from dama_asr.testing import tone, write_tone


def test_resamples_and_downmixes(tmp_path):
    path = write_tone(tmp_path / "st.wav", seconds=1.0, rate=44100, channels=2)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) <= 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b"RIFF0000WAVEjunk" * 10), "cannot decode audio"),
        (lambda p: sf.write(str(p), np.zeros((0,), np.float32), 16000), "holds no samples"),
        (lambda p: sf.write(str(p), tone(31.0), 16000), "longer than Whisper's 30 s window"),
    ],
)
def test_bad_audio_names_the_file(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path)
    assert "bad.wav" in str(info.value)


def test_manifest_round_trip_with_relative_paths(tmp_path):
    audio = write_tone(tmp_path / "corpus" / "a.wav")
    items = [
        Utterance(
            id="a",
            audio=str(audio),
            text="bore da",
            language="cy",
            duration=1.0,
            speaker="s1",
            extra={"gender": "f"},
        )
    ]
    path = write_manifest(tmp_path / "corpus" / "m.jsonl", items)
    assert '"audio": "a.wav"' in path.read_text()
    moved = tmp_path / "moved"
    (tmp_path / "corpus").rename(moved)
    [back] = read_manifest(moved / "m.jsonl")
    assert back.audio == str(moved / "a.wav") and back.extra == {"gender": "f"} and back.speaker == "s1"


def test_manifest_errors_name_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav", "text": "x", "language": "cy"}\n{"audio": "b.wav"}\n')
    with pytest.raises(ManifestError, match="m.jsonl:2: missing field\\(s\\) text, language"):
        read_manifest(path)
    path.write_text('{"audio": "a.wav", "text": "x", "language": "cy"}\n' * 2)
    with pytest.raises(ManifestError, match="duplicate id 'a'"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.jsonl")
    path.write_text('{"audio": "a.wav", "text": "x", "language": "cy", "duration": "long"}\n')
    with pytest.raises(ManifestError, match="m.jsonl:1: a field has the wrong type"):
        read_manifest(path)


def test_paths_outside_the_manifest_folder_are_stored_absolute(tmp_path, monkeypatch):
    # Paths as this process opens them (relative to the current folder) never reach the file as such:
    # the reader resolves relative paths against the manifest's folder.
    monkeypatch.chdir(tmp_path)
    write_tone(Path("clips/a.wav"))
    write_tone(Path("out/inside.wav"))
    items = [
        Utterance("a", "clips/a.wav", "bore da", "cy", 1.0),
        Utterance("b", "out/inside.wav", "nos da", "cy", 1.0),
    ]
    path = write_manifest(Path("out/m.jsonl"), items)
    stored = [json.loads(line)["audio"] for line in path.read_text().splitlines()]
    assert stored == [str(tmp_path / "clips" / "a.wav"), "inside.wav"]
    absolute = write_manifest(Path("out/abs.jsonl"), items, relative=False)
    assert all(Path(json.loads(line)["audio"]).is_absolute() for line in absolute.read_text().splitlines())
    monkeypatch.chdir(tmp_path / "clips")
    for manifest in (tmp_path / "out" / "m.jsonl", tmp_path / "out" / "abs.jsonl"):
        assert all(Path(u.audio).is_file() for u in read_manifest(manifest))
