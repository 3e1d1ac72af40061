"""Adapter sets: one folder of named per-language peft adapters that plain peft can load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from dama_asr.adapters.sets import (
    SET_CHECKSUMS,
    SET_INDEX,
    AdapterSet,
    AdapterSetError,
    AdapterSetIntegrityError,
    activate,
    base_fingerprint,
)
from dama_asr.integrity import write_manifest
from dama_asr.testing import tiny_whisper

TARGETS = ["q_proj", "v_proj", "fc1"]


def _adapted(seed: int) -> PeftModel:
    """A LoRA on the tiny Whisper with random factors, so each seed decodes differently."""
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS)
    model = get_peft_model(tiny_whisper()[0], config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval()


def _logits(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 80, 3000, generator=g)  # (B, mels, frames)
    tokens = torch.tensor([[50258, 50297, 50359, 50363, 400, 401]] * 2)
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=tokens).logits


@pytest.fixture
def saved_set(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A two-language set: "cy" added as a live PeftModel, "en" as a peft folder; logits of each alone."""
    cy, en = _adapted(1), _adapted(2)
    expected = {"cy": _logits(cy), "en": _logits(en)}
    en.save_pretrained(tmp_path / "en-adapter")
    adapter_set = AdapterSet.for_base(tiny_whisper()[0], "tiny-random")
    assert adapter_set.add("Welsh", cy, metrics={"wer": 0.42}) == "cy"
    adapter_set.add("en", tmp_path / "en-adapter")
    with torch.no_grad():  # training on after add() must not change the saved member
        next(p for n, p in cy.named_parameters() if "lora_B" in n).add_(1.0)
    return adapter_set.save(tmp_path / "set"), expected


def test_fingerprint_ignores_peft_wrapping_and_bf16_holding_but_sees_weight_changes():
    base = tiny_whisper()[0]
    fingerprint = base_fingerprint(base)
    assert base_fingerprint(_adapted(1)) == fingerprint  # base_layer names, lora_* factors dropped
    assert base_fingerprint(tiny_whisper()[0].to(torch.bfloat16)) == fingerprint
    assert base_fingerprint(tiny_whisper(seed=1)[0]) != fingerprint
    merged = _adapted(1)
    merged.merge_adapter()
    assert base_fingerprint(merged) != fingerprint


def test_a_saved_set_loads_in_plain_peft_and_each_adapter_matches_itself_alone(saved_set):
    folder, expected = saved_set
    assert {p.name for p in folder.iterdir()} == {SET_INDEX, SET_CHECKSUMS, "cy", "en"}
    # The done-when check: nothing but peft, one member per call, named by language.
    model = PeftModel.from_pretrained(tiny_whisper()[0], folder / "cy", adapter_name="cy")
    model.load_adapter(folder / "en", adapter_name="en")
    model.eval()
    for language in ("cy", "en"):
        model.set_adapter(language)
        assert torch.equal(_logits(model), expected[language])
    assert not torch.allclose(expected["cy"], expected["en"])  # the adapters really differ


def test_load_into_holds_the_members_by_language_and_activate_switches(saved_set):
    folder, expected = saved_set
    loaded = AdapterSet.load(folder)
    assert loaded.languages == ["cy", "en"] and loaded.base_model == "tiny-random"
    assert loaded.member("cy")["metrics"] == {"wer": 0.42}
    assert loaded.member("en")["adapter"]["r"] == 4 and loaded.member("en")["method"] == "lora"
    model = loaded.load_into(tiny_whisper()[0])
    assert set(model.peft_config) == {"cy", "en"} and model.active_adapter == "cy"
    for language in ("en", "Welsh"):
        code = activate(model, language)
        assert torch.equal(_logits(model), expected[code])
    only = loaded.load_into(tiny_whisper()[0], languages=["en"])
    assert list(only.peft_config) == ["en"]
    with pytest.raises(AdapterSetError, match="no adapter for language 'cy'.*holds en"):
        activate(only, "cy")
    with pytest.raises(AdapterSetError, match="no member for ka; it holds cy, en"):
        loaded.load_into(tiny_whisper()[0], languages=["ka"])


def test_a_different_base_is_refused_naming_both_fingerprints(saved_set):
    folder, _ = saved_set
    loaded = AdapterSet.load(folder)
    other = tiny_whisper(seed=1)[0]
    with pytest.raises(AdapterSetError) as err:
        loaded.load_into(other)
    message = str(err.value)
    assert "tiny-random" in message and loaded.fingerprint in message and base_fingerprint(other) in message
    with pytest.raises(AdapterSetError, match="already holds peft adapters"):
        loaded.load_into(_adapted(1))


def test_damaged_or_tampered_sets_are_named_errors(saved_set):
    folder, _ = saved_set
    weights = folder / "en" / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(AdapterSetIntegrityError, match="en/adapter_model.safetensors is .* bytes"):
        AdapterSet.load(folder)
    weights.write_bytes(data)
    index = json.loads((folder / SET_INDEX).read_text())
    index["members"]["en"]["folder"] = "../elsewhere"
    (folder / SET_INDEX).write_text(json.dumps(index))
    with pytest.raises(AdapterSetIntegrityError, match=r"adapter_set\.json (is \d+ bytes|does not match)"):
        AdapterSet.load(folder)
    write_manifest(folder, SET_CHECKSUMS, "dama-adapter-set")  # a tamperer who also rewrites the manifest
    with pytest.raises(AdapterSetError, match="member 'en' has no valid folder name"):
        AdapterSet.load(folder)
    (folder / SET_CHECKSUMS).unlink()
    with pytest.raises(AdapterSetError, match="not an adapter set dama saved"):
        AdapterSet.load(folder)


def test_members_that_cannot_be_a_faithful_adapter_are_refused(tmp_path):
    adapter_set = AdapterSet.for_base(tiny_whisper()[0], "tiny-random")
    merged = _adapted(1)
    merged.merge_adapter()  # merged weights: the saved factors would apply twice on the real base
    with pytest.raises(AdapterSetError, match="base weights .* are not the set's base"):
        adapter_set.add("cy", merged)
    pickled = tmp_path / "pickled"
    _adapted(1).save_pretrained(pickled)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(AdapterSetError, match="only adapter_model.bin, a pickle"):
        adapter_set.add("cy", pickled)
    with pytest.raises(AdapterSetError, match="metrics for 'cy'"):
        adapter_set.add("cy", _adapted(1), metrics={"wer": float("nan")})
    with pytest.raises(AdapterSetError, match="unknown language 'klingon'"):
        adapter_set.add("klingon", _adapted(1))
    with pytest.raises(AdapterSetError, match="has no members"):
        adapter_set.save(tmp_path / "empty")
    adapter_set.add("cy", _adapted(1))
    with pytest.raises(AdapterSetError, match="already has a member 'cy'"):
        adapter_set.add("cy", _adapted(2))


def test_a_dama_train_folder_keeps_its_files_and_loads_standalone(tmp_path):
    from dama_asr.adapters import AdapterConfig, apply_adapter, load_adapted, save_adapter

    cfg = AdapterConfig(method="dora", r=2)
    trained = apply_adapter(tiny_whisper()[0], cfg)
    with torch.no_grad():
        for p in trained.parameters():
            if p.requires_grad:
                p.add_(0.05)
    expected = _logits(trained.eval())
    run = save_adapter(trained, cfg, tmp_path / "run" / "best", base_model="tiny-random")
    adapter_set = AdapterSet.for_base(tiny_whisper()[0], "tiny-random")
    adapter_set.add("cy", run)
    folder = adapter_set.save(tmp_path / "set")
    assert {p.name for p in (folder / "cy").iterdir()} == {p.name for p in run.iterdir()}
    assert AdapterSet.load(folder).member("cy")["method"] == "dora"
    # The member is still a complete `dama train` folder: its own checksums verify and it loads alone.
    assert torch.equal(_logits(load_adapted(tiny_whisper()[0], folder / "cy").eval()), expected)
    model = AdapterSet.load(folder).load_into(tiny_whisper()[0])
    assert torch.equal(_logits(model), expected)
