"""MoLE: experts merged in the shallow encoder layers, routed per utterance by language in the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from dama_asr.adapters import AdapterConfig, apply_adapter, load_adapted, save_adapter
from dama_asr.adapters.families.mole import mole_options
from dama_asr.adapters.mole import MoleError, build_mole, mole_of
from dama_asr.adapters.sets import AdapterSet
from dama_asr.testing import tiny_whisper

DEPTH = 4  # encoder and decoder layers of the tiny model used here
TOKENS = torch.tensor([[50258, 50297, 50359, 50363, 400, 401]] * 3)


def _base():
    return tiny_whisper(layers=DEPTH)[0].eval()


def _expert(seed: int, targets=("q_proj", "v_proj", "fc1"), r: int = 4, dora: bool = False) -> PeftModel:
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), use_dora=dora)
    model = get_peft_model(_base(), config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval()


def _features(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 80, 3000, generator=torch.Generator().manual_seed(0))


def _logits(model, features=None, tokens=None) -> torch.Tensor:
    features = _features() if features is None else features
    tokens = TOKENS[: features.shape[0]] if tokens is None else tokens
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=tokens).logits


def _set(tmp_path: Path, experts: dict[str, PeftModel], name: str = "set") -> AdapterSet:
    adapter_set = AdapterSet.for_base(_base(), "tiny-random")
    for code, model in experts.items():
        adapter_set.add(code, model)
    adapter_set.save(tmp_path / name)
    return AdapterSet.load(tmp_path / name)


def test_one_expert_at_weight_one_is_that_expert(tmp_path: Path) -> None:
    expert = _expert(1)
    mole = _base()
    controller = build_mole(mole, _set(tmp_path, {"cy": expert}), l1=2)
    assert controller.mix.weights.shape == (2, 1) and torch.all(controller.mix.weights == 1.0)
    assert torch.allclose(_logits(mole), _logits(expert), atol=1e-5)
    with torch.no_grad():
        controller.mix.weights.fill_(0.5)  # the merged layers now differ from the expert
    assert not torch.allclose(_logits(mole), _logits(expert), atol=1e-3)


def test_routed_layers_give_each_utterance_its_own_expert_in_a_mixed_batch(tmp_path: Path) -> None:
    """Decoder-only experts with l1 = the whole encoder: nothing is merged, so a MoLE told the
    languages equals each utterance's expert alone, row by row, in one mixed batch."""
    decoder = [f"decoder.layers.{i}.{m}" for i in range(DEPTH) for m in ("self_attn.q_proj", "fc1")]
    cy, en = _expert(1, decoder), _expert(2, decoder)
    mole = _base()
    controller = build_mole(mole, _set(tmp_path, {"cy": cy, "en": en}), l1=DEPTH)
    features = _features(3)
    with controller.languages_given(["en", "cy", "en"]):
        mixed = _logits(mole, features)
    assert torch.allclose(mixed[0], _logits(en, features[:1])[0], atol=1e-5)
    assert torch.allclose(mixed[1], _logits(cy, features[1:2])[0], atol=1e-5)
    assert torch.allclose(mixed[2], _logits(en, features[2:])[0], atol=1e-5)
    assert not torch.allclose(_logits(cy, features[:1])[0], mixed[0], atol=1e-3)


def test_a_mixed_batch_equals_its_utterances_one_by_one(tmp_path: Path) -> None:
    mole = _base()
    controller = build_mole(mole, _set(tmp_path, {"cy": _expert(1), "en": _expert(2)}), l1=2)
    features = _features(3)
    codes = ["cy", "en", "cy"]
    with controller.languages_given(codes):
        together = _logits(mole, features)
    for i, code in enumerate(codes):
        with controller.languages_given([code]):
            alone = _logits(mole, features[i : i + 1])
        assert torch.allclose(together[i], alone[0], atol=1e-4)
    _logits(mole, features)  # language-agnostic: the router routes
    assert controller.state.router_logits.shape == (3, 2)
    assert torch.equal(controller.state.route, controller.state.router_logits.argmax(-1))


def test_only_the_mix_and_the_router_train_and_the_folder_round_trips(tmp_path: Path) -> None:
    experts = tmp_path / "set"
    _set(tmp_path, {"cy": _expert(1), "en": _expert(2)})
    cfg = AdapterConfig(
        method="mole", extra=mole_options(experts, encoder_layers=DEPTH, l1=2, router_hidden=8)
    )
    model = apply_adapter(_base(), cfg)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("mole.") for n in trained)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == cfg.spec.trainable_parameters(
        model.config, cfg
    )
    with torch.no_grad():
        for p in mole_of(model).parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    save_adapter(model, cfg, tmp_path / "mole", base_model="tiny-random")
    loaded = load_adapted(_base(), tmp_path / "mole")
    assert (tmp_path / "mole" / "experts" / "adapter_set.json").is_file()  # self-contained
    for codes in (["cy", "en", "en"], None):
        with mole_of(model).languages_given(codes), mole_of(loaded).languages_given(codes):
            assert torch.equal(_logits(model), _logits(loaded))
    with pytest.raises(MoleError, match="cannot be merged"):
        cfg.spec.merge(loaded)


def test_bad_experts_and_languages_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(MoleError, match="plain LoRA"):
        build_mole(_base(), _set(tmp_path, {"cy": _expert(1, dora=True)}, "dora"), l1=2)
    other_base = tiny_whisper(seed=5, layers=DEPTH)[0]
    with pytest.raises(MoleError, match="another base model"):
        build_mole(other_base, _set(tmp_path, {"cy": _expert(1)}, "plain"), l1=2)
    mole = _base()
    controller = build_mole(mole, AdapterSet.load(tmp_path / "plain"), l1=2)
    with pytest.raises(MoleError, match="no expert for fr"), controller.languages_given(["fr"]):
        pass
    with pytest.raises(MoleError, match="l1 must be"):
        build_mole(_base(), AdapterSet.load(tmp_path / "plain"), l1=DEPTH + 1)


def test_beam_search_rows_follow_their_utterance(tmp_path: Path) -> None:
    mole = _base()
    controller = build_mole(mole, _set(tmp_path, {"cy": _expert(1), "en": _expert(2)}), l1=2)
    features = _features(2)
    with controller.languages_given(["en", "cy"]):
        beams = mole.generate(input_features=features, num_beams=2, max_new_tokens=3, language="en")
    assert beams.shape[0] == 2
    for i, code in enumerate(["en", "cy"]):
        with controller.languages_given([code]):
            alone = mole.generate(
                input_features=features[i : i + 1], num_beams=2, max_new_tokens=3, language="en"
            )
        assert torch.equal(beams[i, : alone.shape[1]], alone[0])


def test_a_mole_folder_on_another_backbone_is_refused(tmp_path: Path) -> None:
    experts = tmp_path / "set"
    _set(tmp_path, {"cy": _expert(1), "en": _expert(2)})
    cfg = AdapterConfig(
        method="mole", extra=mole_options(experts, encoder_layers=DEPTH, l1=2, router_hidden=8)
    )
    save_adapter(apply_adapter(_base(), cfg), cfg, tmp_path / "mole", base_model="tiny-random")
    with pytest.raises(MoleError, match="another base model"):
        load_adapted(tiny_whisper(seed=7, layers=DEPTH)[0], tmp_path / "mole")
