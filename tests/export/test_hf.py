"""--format hf: a merged float32 transformers folder that equals the adapted model and forces its language."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from dama_asr.adapters import get_method
from dama_asr.export import ExportError, export_adapter
from dama_asr.testing import tiny_whisper

from .factories import features, logits, save


def test_merged_logits_equal_the_adapted_model_and_generate_forces_the_language(lora, tmp_path):
    folder, adapted = lora
    summary = export_adapter(folder, tmp_path / "hf", "hf", model="tiny-random")
    out = tmp_path / "hf"
    merged = WhisperForConditionalGeneration.from_pretrained(out)
    assert merged.dtype == torch.float32
    diff = (logits(merged) - logits(adapted)).abs().max().item()
    assert diff <= 1e-4, diff
    check = summary["members"]["cy"]["merge_check"]
    assert (
        check["max_abs_diff"] <= 1e-4
        and json.loads((out / "dama_export.json").read_text())["merge_check"] == check
    )
    # No language argument: the saved generation config forces <|cy|> and <|transcribe|>.
    with torch.no_grad():
        ids = merged.generate(features(2), max_new_tokens=3, return_dict_in_generate=True).sequences
    lang_to_id = merged.generation_config.lang_to_id
    assert ids[:, 1].tolist() == [lang_to_id["<|cy|>"]] * 2
    assert ids[:, 2].tolist() == [merged.generation_config.task_to_id["transcribe"]] * 2


def test_the_generation_config_keeps_the_bases_suppressions_heads_and_language_ids(lora, tmp_path):
    folder, _ = lora
    export_adapter(folder, tmp_path / "hf", "hf", model="tiny-random")
    base = tiny_whisper()[0].generation_config
    saved = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert saved["language"] == "cy" and saved["task"] == "transcribe"
    assert saved["suppress_tokens"] == base.suppress_tokens and saved["suppress_tokens"]
    assert saved["begin_suppress_tokens"] == base.begin_suppress_tokens
    assert saved["alignment_heads"] == [list(h) for h in base.alignment_heads]
    assert saved["lang_to_id"] == base.lang_to_id and len(saved["lang_to_id"]) == 99


def test_the_folder_holds_our_tokenizer_and_both_processor_files(lora, tmp_path):
    folder, _ = lora
    out = tmp_path / "hf"
    export_adapter(folder, out, "hf", model="tiny-random")
    assert len(json.loads((out / "tokenizer.json").read_text())["model"]["merges"]) == 50_000  # repaired
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["feature_size"] == 80 and pre["feature_extractor_type"] == "WhisperFeatureExtractor"
    assert "mel_filters" not in pre and (out / "processor_config.json").is_file()
    processor = WhisperProcessor.from_pretrained(out)
    assert processor.tokenizer.encode(" the", add_special_tokens=False) == [264]
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "transformers" and front["language"] == ["cy"]
    assert front["base_model"] == "tiny-random" and "lora" in front["tags"]


def test_a_broken_merge_is_refused_and_nothing_is_written(lora, tmp_path, monkeypatch):
    folder, _ = lora
    monkeypatch.setattr(get_method("lora"), "merge", lambda model: model.unload())  # drops the adapter
    with pytest.raises(ExportError, match="differ from the adapted model's.*nothing written"):
        export_adapter(folder, tmp_path / "hf", "hf", model="tiny-random")
    assert not (tmp_path / "hf").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf")]  # no scratch left behind


@pytest.mark.parametrize("method", ["dora", "pissa", "full"])
def test_other_methods_merge_to_the_adapted_model(method, tmp_path):
    folder, adapted = save(tmp_path, method)
    export_adapter(folder, tmp_path / "hf", "hf", model="tiny-random")
    merged = WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf")
    torch.testing.assert_close(logits(merged), logits(adapted), atol=1e-4, rtol=0)
