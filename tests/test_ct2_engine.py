"""`dama transcribe --engine ct2|faster-whisper` on a `dama export --format ct2` folder."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from dama_asr.backbone.loading import load_backbone
from dama_asr.cli import main
from dama_asr.data.audio import load_audio
from dama_asr.features.log_mel import log_mel
from dama_asr.inference.ct2_engine import (
    DEPLOY_HINT,
    EXPORT_INDEX,
    Ct2EngineError,
    Ct2Whisper,
    resolve_model_folder,
)
from dama_asr.inference.decoding import DecodingOptions, transcribe
from dama_asr.testing import tone, write_tone

# tests/export's factory and the reference its CTranslate2 test compares with (greedy steps on the
# merged model); pytest puts tests/ on sys.path.
from export.factories import PROMPT_CY, save
from export.test_ct2 import hf_greedy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, dama_home):
    """(merged transformers folder, CTranslate2 folder) of one random LoRA for cy."""
    from dama_asr.export import export_adapter

    tmp = tmp_path_factory.mktemp("ct2-engine")
    folder, _ = save(tmp)
    export_adapter(folder, tmp / "hf", "hf", model="tiny-random")
    export_adapter(folder, tmp / "ct2", "ct2", model="tiny-random")
    return tmp / "hf", tmp / "ct2"


def test_greedy_tokens_equal_the_merged_transformers_models(exported):
    hf_dir, ct2_dir = exported
    audio = tone(1.0, 300)
    (got,) = Ct2Whisper(ct2_dir).transcribe([audio], DecodingOptions(language="cy"))
    merged = load_backbone(str(hf_dir), precision="no")
    features = log_mel(merged.processor.feature_extractor, [audio])
    assert list(got.tokens) == hf_greedy(merged.model, features, PROMPT_CY, len(got.tokens))[0]
    # `dama transcribe`'s transformers path on the merged model: the random model never ends, so both
    # stop at the clip's cap, which counts what the model wrote (not the 4 prompt tokens): the same tokens.
    (ref,) = transcribe(merged, [audio], DecodingOptions(language="cy"))
    assert len(ref.tokens) >= 12 and got.tokens == ref.tokens
    assert got.hit_token_cap and ref.hit_token_cap and got.language == ref.language == "cy"


def test_a_long_file_is_decoded_in_30_s_windows(exported):
    model = Ct2Whisper(exported[1])
    audio = tone(35.0, 500)
    options = DecodingOptions(language="cy", timestamps="model")
    (got,) = model.transcribe([audio], options)
    pieces = model.transcribe([audio[: 30 * 16000], audio[30 * 16000 :]], options)
    assert got.long_form and got.timestamps == "window" and not got.stalled
    assert got.tokens == pieces[0].tokens + pieces[1].tokens
    assert [(s.start, s.end) for s in got.segments] == [(0.0, 30.0), (30.0, 35.0)]
    assert "".join(s.text for s in got.segments).strip() == got.text == f"{pieces[0].text} {pieces[1].text}"


def test_the_cli_writes_the_same_formats(exported, tmp_path, capsys):
    audio = write_tone(tmp_path / "a.wav")
    args = ["transcribe", str(audio), "--engine", "ct2", "--ct2-model", str(exported[1]), "--format", "json"]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    (direct,) = Ct2Whisper(exported[1]).transcribe([load_audio(audio)], DecodingOptions(language="cy"))
    assert record["language"] == "cy"  # the export's own language (dama_export.json)
    assert record["text"] == direct.text and record["timestamps"] == "window"
    assert record["segments"] == [{"start": 0.0, "end": 1.0, "text": direct.text}]
    assert main([*args[:-1], "srt"]) == 0
    assert capsys.readouterr().out == f"1\n00:00:00,000 --> 00:00:01,000\n{direct.text}\n"


def test_language_is_detected_when_neither_given_nor_recorded(exported, tmp_path):
    bare = shutil.copytree(exported[1], tmp_path / "bare")
    (bare / "dama_export.json").unlink()
    folder, language = resolve_model_folder(bare, None)
    assert folder == bare and language is None
    model = Ct2Whisper(bare)
    (got,) = model.transcribe([tone(1.0)], DecodingOptions())
    assert got.language in model.languages and len(model.languages) == 99


def test_an_exported_set_picks_its_languages_folder(exported, tmp_path):
    from dama_asr.export.api import EXPORT_INDEX as WRITTEN

    assert EXPORT_INDEX == WRITTEN
    root = tmp_path / "set"
    shutil.copytree(exported[1], root / "cy")
    index = {"export_format": "ct2", "languages": {"cy": {"folder": "cy", "method": "lora"}}}
    (root / EXPORT_INDEX).write_text(json.dumps(index))
    assert resolve_model_folder(root, "Welsh") == (root / "cy", "cy")
    with pytest.raises(Ct2EngineError, match=r"one model per language \(cy\); give --language"):
        resolve_model_folder(root, None)
    with pytest.raises(Ct2EngineError, match="has no 'en' model; it holds cy"):
        resolve_model_folder(root, "en")
    (root / EXPORT_INDEX).write_text(json.dumps({**index, "export_format": "hf"}))
    with pytest.raises(Ct2EngineError, match="in format 'hf'"):
        resolve_model_folder(root, "cy")
    with pytest.raises(Ct2EngineError, match="not a CTranslate2 model folder"):
        resolve_model_folder(tmp_path, "cy")


def test_faster_whisper_missing_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # import faster_whisper raises ImportError
    args = [
        "transcribe",
        str(tmp_path / "unread.wav"),
        "--engine",
        "faster-whisper",
        "--ct2-model",
        str(tmp_path),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"error: --engine faster-whisper needs faster-whisper: {DEPLOY_HINT}\n"  # before any audio
    assert 'deploy = ["faster-whisper' in (ROOT / "pyproject.toml").read_text()


def test_engine_flag_combinations_are_refused(tmp_path, capsys):
    audio = str(write_tone(tmp_path / "a.wav"))
    assert main(["transcribe", audio, "--engine", "ct2"]) == 2
    assert "give --ct2-model DIR" in capsys.readouterr().err
    assert main(["transcribe", audio, "--ct2-model", str(tmp_path)]) == 2
    assert "give --engine ct2" in capsys.readouterr().err
    assert main(["transcribe", audio, "--engine", "ct2", "--ct2-model", ".", "--adapter", "x"]) == 2
    assert "export it with `dama export --format ct2`" in capsys.readouterr().err
