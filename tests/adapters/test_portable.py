"""A saved adapter travels: it names its base by hub id, describes itself, and states what it resolved to."""

from __future__ import annotations

import json
import re

import torch
from peft import PeftModel

from dama_asr.adapters import AdapterConfig, apply_adapter, plan_modules, save_adapter
from dama_asr.adapters.card import EMBEDDED_HUB_ID
from dama_asr.testing import tiny_whisper

# What peft's blank template is made of: none of it may reach a saved README.md.
PLACEHOLDERS = re.compile(r"More Information Needed|<!--|Model Card for Model ID|\[optional\]|\{\{")


def _files(folder):
    return (
        json.loads((folder / "adapter_config.json").read_text()),
        json.loads((folder / "dama_adapter.json").read_text()),
        (folder / "README.md").read_text(),
    )


def test_the_embedded_model_is_named_by_its_hub_id_and_its_folder_stays_local(embedded_dir, tmp_path):
    from dama_asr.backbone.loading import load_backbone

    cfg = AdapterConfig(method="lora", r=1, targets=("self_attn.q_proj",))
    model = apply_adapter(load_backbone("whisper-base", precision="no").model, cfg)
    with torch.no_grad():
        model.base_model.model.model.decoder.layers[0].self_attn.q_proj.lora_B["default"].weight.fill_(0.01)
    folder = save_adapter(model, cfg, tmp_path / "best", base_model="whisper-base")
    peft_config, meta, readme = _files(folder)
    assert peft_config["base_model_name_or_path"] == EMBEDDED_HUB_ID == "openai/whisper-base"
    assert str(embedded_dir) not in (folder / "adapter_config.json").read_text()
    assert meta["base_model"] == "whisper-base" and meta["base_model_id"] == EMBEDDED_HUB_ID
    assert meta["base_model_local"]["path"] == str(embedded_dir)
    assert meta["base_model_local"]["embedded"]["conversion_version"] >= 1
    assert "base_model: openai/whisper-base" in readme and not PLACEHOLDERS.search(readme)
    # The folder given by path, not by name, is recognised too; plain peft still loads the adapter.
    again = save_adapter(model, cfg, tmp_path / "by-path", base_model=str(embedded_dir))
    assert _files(again)[0]["base_model_name_or_path"] == EMBEDDED_HUB_ID
    plain = PeftModel.from_pretrained(load_backbone("whisper-base", precision="no").model, again)
    layer = plain.base_model.model.model.decoder.layers[0].self_attn.q_proj
    assert torch.all(layer.lora_B["default"].weight == 0.01)


def test_other_models_keep_the_users_string_and_the_card_says_what_the_caller_knows(tmp_path):
    cfg = AdapterConfig(method="dora", r=2)
    model = apply_adapter(tiny_whisper()[0], cfg)
    card = {"language": "cy", "train_hours": 1.5, "dev_wer": 0.312, "test_wer": 0.3, "dataset": "synth-cy"}
    folder = save_adapter(model, cfg, tmp_path / "a", base_model="openai/whisper-small", card=card)
    peft_config, meta, readme = _files(folder)
    assert peft_config["base_model_name_or_path"] == "openai/whisper-small"
    assert not PLACEHOLDERS.search(readme)
    for fact in ("language:\n- cy", "# DoRA adapter for openai/whisper-small (cy)", "| training audio | 1.5 h |",
                 "| dev WER | 31.2% |", "| test WER | 30.0% |", "| training data | synth-cy |",
                 f"| trainable parameters | {meta['resolved']['trainable_parameters']:,} |"):  # fmt: skip
        assert fact in readme, fact
    # Without a card, nothing unknown is invented.
    bare = _files(save_adapter(model, cfg, tmp_path / "b", base_model="tiny-random"))[2]
    assert "WER" not in bare and "language:" not in bare and not PLACEHOLDERS.search(bare)


def test_saved_metadata_states_the_resolved_ranks_and_alphas(tmp_path):
    lora = AdapterConfig(method="lora", r=4)
    peft_config, meta, _ = _files(save_adapter(apply_adapter(tiny_whisper()[0], lora), lora, tmp_path / "l"))
    assert meta["adapter_config"]["alpha"] == peft_config["lora_alpha"] == 8.0
    assert meta["adapter_config"]["r"] == peft_config["r"] == 4
    dama = AdapterConfig(method="dama", r_high=4, r_low=2)
    whisper = tiny_whisper(layers=4)[0]
    config = whisper.config
    _, meta, _ = _files(save_adapter(apply_adapter(whisper, dama), dama, tmp_path / "d"))
    assert meta["adapter_config"]["r"] is None and meta["adapter_config"]["alpha"] is None
    planned = {(p.layer, p.rank, p.alpha) for p in plan_modules(config, dama)}
    saved = {(x["layer"], x["rank"], x["alpha"]) for x in meta["resolved"]["layers"]}
    assert saved == planned and len(saved) == 4 and len({r for _, r, _ in saved}) > 1
