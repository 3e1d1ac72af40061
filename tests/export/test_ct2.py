"""--format ct2: CTranslate2's greedy tokens equal the merged transformers model's; int8 runs."""

from __future__ import annotations

import json

import ctranslate2
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from dama_asr.export import ExportError, export_adapter
from dama_asr.testing import tiny_whisper

from .factories import PROMPT_CY, features

STEPS = 12


def hf_greedy(model, feats: torch.Tensor, prompt: list[int], steps: int) -> list[list[int]]:
    """Greedy tokens after `prompt`, with the suppressions CTranslate2 applies by default (the config's
    suppress_ids every step, suppress_ids_begin on the first), stopping at <|endoftext|>."""
    gen = model.generation_config
    tokens = torch.tensor([prompt] * feats.shape[0])
    with torch.no_grad():
        encoded = model.model.encoder(feats).last_hidden_state
        for step in range(steps):
            last = model(encoder_outputs=(encoded,), decoder_input_ids=tokens).logits[:, -1]
            last[:, gen.suppress_tokens] = -float("inf")
            if step == 0:
                last[:, gen.begin_suppress_tokens] = -float("inf")
            tokens = torch.cat([tokens, last.argmax(-1, keepdim=True)], dim=1)
    out = []
    for row in tokens[:, len(prompt) :].tolist():
        out.append(row[: row.index(gen.eos_token_id)] if gen.eos_token_id in row else row)
    return out


def ct2_greedy(folder, feats: torch.Tensor, prompt: list[int], compute_type: str = "float32"):
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=compute_type)
    view = ctranslate2.StorageView.from_array(feats.numpy())
    results = model.generate(view, [prompt] * feats.shape[0], beam_size=1, max_length=2 * STEPS)
    return [r.sequences_ids[0] for r in results]  # max_length=2n gives n tokens here


def test_ct2_greedy_tokens_equal_the_merged_models(lora, tmp_path):
    folder, _ = lora
    export_adapter(folder, tmp_path / "hf", "hf", model="tiny-random")
    export_adapter(folder, tmp_path / "ct2", "ct2", model="tiny-random")
    merged = WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    feats = features(4)
    expected = hf_greedy(merged, feats, PROMPT_CY, STEPS)
    got = ct2_greedy(tmp_path / "ct2", feats, PROMPT_CY)
    assert got == expected
    assert all(len(row) == STEPS for row in got)
    assert len({tuple(row) for row in got}) > 1, "the inputs should not all decode alike"


def test_the_ct2_folder_has_tokenizer_preprocessor_and_the_generation_settings(lora, tmp_path):
    folder, _ = lora
    out = tmp_path / "ct2"
    summary = export_adapter(folder, out, "ct2", model="tiny-random")
    assert {"model.bin", "tokenizer.json", "preprocessor_config.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / "preprocessor_config.json").read_text())["feature_size"] == 80
    assert len(json.loads((out / "tokenizer.json").read_text())["model"]["merges"]) == 50_000
    config = json.loads((out / "config.json").read_text())
    base = tiny_whisper()[0].generation_config  # the reference: the base's own settings
    assert (
        config["suppress_ids"] == base.suppress_tokens
        and config["suppress_ids_begin"] == base.begin_suppress_tokens
    )
    assert config["lang_ids"] == sorted(base.lang_to_id.values()) and len(config["lang_ids"]) == 99
    assert config["alignment_heads"] == [list(h) for h in base.alignment_heads]
    assert summary["members"]["cy"]["ct2_config"]["suppress_ids"] == len(base.suppress_tokens)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # staging folders are gone


def test_int8_converts_and_runs(lora, tmp_path):
    folder, _ = lora
    summary = export_adapter(folder, tmp_path / "int8", "ct2", model="tiny-random", quantization="int8")
    assert summary["quantization"] == "int8"
    rows = ct2_greedy(tmp_path / "int8", features(2), PROMPT_CY, compute_type="int8")
    assert len(rows) == 2 and all(rows)
    assert (tmp_path / "int8" / "model.bin").stat().st_size < 0.5 * _float32_size(folder, tmp_path)


def _float32_size(folder, tmp_path) -> int:
    export_adapter(folder, tmp_path / "f32", "ct2", model="tiny-random")
    return (tmp_path / "f32" / "model.bin").stat().st_size


def test_quantization_is_refused_for_hf_and_peft(lora, tmp_path):
    folder, _ = lora
    for fmt in ("hf", "peft"):
        with pytest.raises(ExportError, match="--quantization int8: only for --format ct2"):
            export_adapter(folder, tmp_path / fmt, fmt, model="tiny-random", quantization="int8")
