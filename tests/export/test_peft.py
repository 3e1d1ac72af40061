"""--format peft: a plain PEFT folder; on the ORIGINAL base it is the adapted model (PiSSA included)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from peft import PeftModel

from dama_asr.adapters import load_adapted
from dama_asr.export import ExportError, export_adapter
from dama_asr.quiet import peft_quietly
from dama_asr.testing import tiny_whisper

from .factories import logits, save


@pytest.mark.parametrize("method", ["lora", "pissa"])
def test_plain_peft_on_the_original_base_is_the_adapted_model(method, tmp_path):
    folder, adapted = save(tmp_path, method)
    out = tmp_path / "peft"
    export_adapter(folder, out, "peft", model="tiny-random")
    expected = logits(adapted)
    with peft_quietly():  # only silences peft's FutureWarning about transformers 5
        plain = PeftModel.from_pretrained(tiny_whisper()[0], out)  # nothing of dama
    torch.testing.assert_close(logits(plain), expected, atol=1e-4, rtol=0)
    assert not torch.allclose(logits(tiny_whisper()[0]), expected, atol=1e-2)  # the adapter matters
    config = json.loads((out / "adapter_config.json").read_text())
    if method == "pissa":  # saved as the equivalent rank-2r LoRA on the original base
        assert config["r"] == 8 and config["init_lora_weights"] in (True, False)
    # dama loads it too, verified against the fresh checksums (the card was rewritten)
    torch.testing.assert_close(logits(load_adapted(tiny_whisper()[0], out)), expected, atol=1e-4, rtol=0)
    front = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    assert front["library_name"] == "peft" and front["language"] == ["cy"]


def test_a_full_fine_tune_is_refused_for_peft(tmp_path):
    folder, _ = save(tmp_path, "full")
    with pytest.raises(ExportError, match="full fine-tune.*use --format hf"):
        export_adapter(folder, tmp_path / "peft", "peft", model="tiny-random")
    assert not (tmp_path / "peft").exists()
