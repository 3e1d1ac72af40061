"""Adapter sets export one model per language plus an index; what cannot be exported is refused by name."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import WhisperForConditionalGeneration

from dama_asr.adapters import AdapterConfig, apply_adapter, save_adapter
from dama_asr.adapters.families.mole import mole_options
from dama_asr.adapters.sets import AdapterSet
from dama_asr.cli import main
from dama_asr.export import ExportError, export_adapter
from dama_asr.testing import save_tiny_whisper, tiny_whisper

from .factories import adapted_model, logits, save


@pytest.fixture
def adapter_set(tmp_path):
    """A two-language set: cy added from a saved `dama train`-style folder, en from a live PeftModel."""
    cy_folder, cy = save(tmp_path, language="cy", seed=1, name="cy-run/best")
    _, en = adapted_model(seed=2)
    adapter_set = AdapterSet.for_base(tiny_whisper()[0], "tiny-random")
    adapter_set.add("cy", cy_folder, metrics={"dev_wer": 0.25})
    adapter_set.add("en", en, metrics={"dev_wer": 0.125})
    return adapter_set.save(tmp_path / "set"), {"cy": cy, "en": en}


def test_a_set_exports_one_model_per_language_and_an_index(adapter_set, tmp_path):
    folder, models = adapter_set
    out = tmp_path / "out"
    export_adapter(folder, out, "hf", model="tiny-random")
    assert {p.name for p in out.iterdir()} == {"cy", "en", "export_index.json", "README.md"}
    index = json.loads((out / "export_index.json").read_text())
    assert index["languages"] == {
        "cy": {"folder": "cy", "method": "lora"},
        "en": {"folder": "en", "method": "lora"},
    }
    assert index["base_model"] == "tiny-random" and index["export_format"] == "hf"
    for code, adapted in models.items():
        merged = WhisperForConditionalGeneration.from_pretrained(out / code)
        assert merged.generation_config.language == code
        torch.testing.assert_close(logits(merged), logits(adapted), atol=1e-4, rtol=0)
    card = (out / "en" / "README.md").read_text()
    assert "value: 12.5" in card and "name: dev WER" in card  # the set's metric, in percent


def test_one_language_of_a_set_and_ct2_quantization_in_the_index(adapter_set, tmp_path):
    folder, _ = adapter_set
    out = tmp_path / "out"
    export_adapter(folder, out, "ct2", model="tiny-random", language="English", quantization="int8")
    assert {p.name for p in out.iterdir()} == {"en", "export_index.json", "README.md"}
    assert (out / "en" / "model.bin").is_file() and (out / "en" / "tokenizer.json").is_file()
    index = json.loads((out / "export_index.json").read_text())
    assert index["quantization"] == "int8" and list(index["languages"]) == ["en"]


def test_an_unknown_language_for_a_set_is_refused(adapter_set, tmp_path):
    folder, _ = adapter_set
    with pytest.raises(ExportError, match="--language fr: .* has no member 'fr'; it holds cy, en"):
        export_adapter(folder, tmp_path / "out", "hf", model="tiny-random", language="fr")
    with pytest.raises(ExportError, match="--language: unknown language 'klingon'"):
        export_adapter(folder, tmp_path / "out", "hf", model="tiny-random", language="klingon")
    assert not (tmp_path / "out").exists()


def test_a_set_on_another_base_is_refused_by_fingerprint(adapter_set, tmp_path):
    folder, _ = adapter_set
    other = save_tiny_whisper(tmp_path / "other-base", seed=1)
    with pytest.raises(
        ExportError, match=r"built for base model tiny-random \(fingerprint [0-9a-f]{16}\), but"
    ):
        export_adapter(folder, tmp_path / "out", "ct2", model=str(other))
    assert not (tmp_path / "out").exists()


def test_a_single_adapter_on_another_base_is_refused_by_name(lora, tmp_path):
    folder, _ = lora
    other = save_tiny_whisper(tmp_path / "other-base", seed=1)
    with pytest.raises(ExportError, match="trained on base model tiny-random, not --model .*other-base"):
        export_adapter(folder, tmp_path / "out", "peft", model=str(other))
    # The same weights under another name pass with the check off (the user's word for it).
    same = save_tiny_whisper(tmp_path / "same-base", seed=0)
    export_adapter(folder, tmp_path / "out", "peft", model=str(same), check_base_name=False)
    assert (
        json.loads((tmp_path / "out" / "dama_export.json").read_text())["base_check"]
        == "skipped (--no-base-check)"
    )


def test_a_mole_is_refused_for_every_format_and_its_experts_export(tmp_path):
    experts = tmp_path / "experts-set"
    expert_set = AdapterSet.for_base(tiny_whisper()[0], "tiny-random")
    expert_set.add("cy", adapted_model(seed=1)[1])
    expert_set.add("en", adapted_model(seed=2)[1])
    expert_set.save(experts)
    cfg = AdapterConfig(method="mole", extra=mole_options(experts, encoder_layers=2, l1=1, router_hidden=8))
    mole = save_adapter(
        apply_adapter(tiny_whisper()[0], cfg), cfg, tmp_path / "mole", base_model="tiny-random"
    )
    for fmt in ("hf", "peft", "ct2"):
        with pytest.raises(
            ExportError,
            match=f"a MoLE routes per utterance; export its experts: dama export {mole / 'experts'}",
        ):
            export_adapter(mole, tmp_path / "out", fmt, model="tiny-random")
    export_adapter(mole / "experts", tmp_path / "out", "peft", model="tiny-random")
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"cy", "en", "export_index.json"}


def test_an_existing_out_is_kept_without_force_and_replaced_with_it(lora, tmp_path):
    folder, _ = lora
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="--out .*: exists; pass --force to replace it"):
        export_adapter(folder, out, "peft", model="tiny-random")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    export_adapter(folder, out, "peft", model="tiny-random", force=True)
    assert not (out / "keep.txt").exists() and (out / "adapter_model.safetensors").is_file()
    with pytest.raises(ExportError, match="inside or around the source"):
        export_adapter(folder, folder / "export", "peft", model="tiny-random", force=True)


def test_a_run_folder_is_pointed_at_its_best_adapter(tmp_path):
    save(tmp_path, name="run/best")
    with pytest.raises(ExportError, match="a run folder; pass its best/ .*: dama export .*run/best"):
        export_adapter(tmp_path / "run", tmp_path / "out", "hf", model="tiny-random")


def test_the_cli_prints_a_refusal_as_one_line(lora, tmp_path, capsys):
    folder, _ = lora
    (tmp_path / "out").mkdir()
    argv = ["export", str(folder), "--model", "tiny-random", "--format", "hf", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "\n" not in err
    assert main([*argv, "--force"]) == 0
    assert "merge check: max logit difference" in capsys.readouterr().out
