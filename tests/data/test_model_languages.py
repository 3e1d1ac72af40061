"""Languages checked against the chosen model's own set, not Whisper's full list (yue is large-v3 only)."""

from __future__ import annotations

import json

import pytest

from dama_asr.cli import main
from dama_asr.data.importers import import_common_voice
from dama_asr.data.importers.testing import write_audio, write_common_voice_tree
from dama_asr.data.manifest import Utterance, write_manifest
from dama_asr.data.validate import ValidationOptions, validate_items
from dama_asr.languages import (
    ModelLanguagesError,
    model_languages_offline,
    nearest_language,
    size_languages,
)
from dama_asr.testing import save_tiny_whisper

CANTONESE = "早晨，今日天氣好好。"


@pytest.fixture(scope="module")
def mixed_manifest(tmp_path_factory):
    """One Welsh and one Cantonese utterance, real audio."""
    folder = tmp_path_factory.mktemp("mixed")
    items = [
        Utterance(id="cy-1", audio=str(write_audio(folder / "cy.wav", 1.0)), text="Bore da.", language="cy"),
        Utterance(id="hk-1", audio=str(write_audio(folder / "hk.wav", 1.0)), text=CANTONESE, language="yue"),
    ]
    return write_manifest(folder / "manifest.jsonl", items)


def test_standard_sizes_know_yue_only_from_large_v3():
    base, v3 = size_languages("whisper-base"), size_languages("openai/whisper-large-v3")
    assert "yue" not in base and "zh" in base and len(base) == 99
    assert "yue" in v3 and len(v3) == 100
    assert "yue" in size_languages("openai/whisper-large-v3-turbo")
    assert size_languages("openai/whisper-small.en") == frozenset({"en"})
    assert size_languages("someone/whisper-base-cy") is None
    assert nearest_language("yue", base) == "zh" and nearest_language("yue", {"en"}) is None


def test_languages_are_read_from_a_folder_without_loading_weights(tmp_path):
    folder = save_tiny_whisper(tmp_path / "model")
    found = model_languages_offline(str(folder))
    assert found.codes == size_languages("whisper-base") and found.source.endswith("generation_config.json")
    # A fine-tuned model that lists fewer languages is checked against its own list.
    config = json.loads((folder / "generation_config.json").read_text())
    config["lang_to_id"] = {"<|cy|>": 50297, "<|en|>": 50259}
    (folder / "generation_config.json").write_text(json.dumps(config))
    assert model_languages_offline(str(folder)).codes == frozenset({"cy", "en"})
    (folder / "generation_config.json").write_text("{not json")
    with pytest.raises(ModelLanguagesError, match="generation_config.json: not valid JSON"):
        model_languages_offline(str(folder))
    # Unknown offline (not cached, not a standard size): no codes, and a reason to print.
    unknown = model_languages_offline("someone/not-cached-model")
    assert unknown.codes is None and "offline" in unknown.source


def test_validation_rejects_a_language_the_model_lacks_and_suggests_the_nearest(mixed_manifest):
    from dama_asr.data.manifest import read_manifest

    items = read_manifest(mixed_manifest)
    base = ValidationOptions(languages=size_languages("whisper-base"), model="whisper-base")
    report = validate_items(items, base, progress=False)
    assert [u.id for u in report.good] == ["cy-1"]
    assert report.counts["unsupported_language"] == 1
    (example,) = report.examples["unsupported_language"]
    assert example.startswith("hk-1: language 'yue' is not one of whisper-base's 99 languages")
    assert "whisper-large-v3" in example and "label it 'zh'" in example
    v3 = ValidationOptions(languages=size_languages("whisper-large-v3"), model="openai/whisper-large-v3")
    assert len(validate_items(items, v3, progress=False).good) == 2


def test_data_check_uses_the_model_given(mixed_manifest, capsys):
    assert main(["data", "check", str(mixed_manifest)]) == 2  # default: the embedded whisper-base
    captured = capsys.readouterr()
    assert "unsupported_language" in captured.out and "hk-1: language 'yue'" in captured.out
    assert "1 item(s) failed validation" in captured.err
    assert main(["data", "check", str(mixed_manifest), "--model", "openai/whisper-large-v3"]) == 0
    assert "2 good" in capsys.readouterr().out
    # A model whose languages cannot be read offline: the full list, and a note saying so.
    assert main(["data", "check", str(mixed_manifest), "--model", "someone/not-cached-model"]) == 0
    assert "note: cannot read the languages of 'someone/not-cached-model' offline" in capsys.readouterr().out


def test_common_voice_zh_hk_import_warns_that_yue_needs_large_v3(tmp_path):
    rows = {"train": [("spk", "hk_1.mp3", CANTONESE, 1.0)], "dev": [], "test": []}
    locale = write_common_voice_tree(tmp_path / "zh-HK", rows)
    printed: list[str] = []
    result = import_common_voice(locale, tmp_path / "out", echo=printed.append)
    assert [u.language for u in result.items] == ["yue"]
    warnings = [line for line in printed if line.startswith("warning:")]
    assert warnings == [
        "warning: 1 utterance(s) are labelled 'yue', which only whisper-large-v3 has a token for: "
        "train them with --model openai/whisper-large-v3, or label them 'zh' to train an earlier model"
    ]
