"""The expert-mean init: the student's s B A is the best rank-r fit of the experts' mean s_e B_e A_e."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer

from dama_asr.adapters.expert_average import ExpertAverageError, init_from_expert_mean, low_rank_factors
from dama_asr.adapters.sets import AdapterSet
from dama_asr.testing import tiny_whisper

# Each expert holds what the other lacks: "en" has no fc1 (its share of that mean is zero), and
# per-module ranks and alphas through the patterns, which peft's own scaling must agree with.
EXPERTS = {
    "cy": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc1"]),
    "en": LoraConfig(
        r=2, lora_alpha=6, target_modules=["q_proj", "v_proj"], rank_pattern={"v_proj": 3},
        alpha_pattern={"v_proj": 1.5},
    ),
}  # fmt: skip
STUDENT_TARGETS = ["q_proj", "v_proj", "fc1", "fc2"]  # fc2: no expert has it


def _random_lora(config: LoraConfig, seed: int, base_seed: int = 0) -> PeftModel:
    model = get_peft_model(tiny_whisper(seed=base_seed)[0], config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model


def _layers(model: PeftModel, adapter: str = "default") -> dict[str, LoraLayer]:
    return {
        name: m
        for name, m in model.base_model.model.named_modules()
        if isinstance(m, LoraLayer) and adapter in m.lora_A
    }


def _delta(layer: LoraLayer, adapter: str = "default") -> torch.Tensor:
    """peft's own view of the update: scaling * B @ A (out, in)."""
    a, b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
    return (layer.scaling[adapter] * (b @ a)).detach().float()


@pytest.fixture
def expert_set(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A saved two-expert set and the mean update per module, computed from the live peft models."""
    adapter_set = AdapterSet.for_base(tiny_whisper()[0], "tiny-random")
    deltas: dict[str, list[torch.Tensor]] = {}
    for seed, (code, config) in enumerate(EXPERTS.items(), start=1):
        model = _random_lora(config, seed)
        for name, layer in _layers(model).items():
            deltas.setdefault(name, []).append(_delta(layer))
        adapter_set.add(code, model)
    mean = {name: sum(ds) / len(EXPERTS) for name, ds in deltas.items()}  # a missing expert adds zero
    return adapter_set.save(tmp_path / "experts"), mean


def _student(r: int, alpha: float, **kwargs) -> PeftModel:
    return get_peft_model(
        tiny_whisper()[0], LoraConfig(r=r, lora_alpha=alpha, target_modules=STUDENT_TARGETS, **kwargs)
    )


def test_a_student_of_enough_rank_carries_the_experts_mean_update_exactly(expert_set, caplog):
    folder, mean = expert_set
    student = _student(r=8, alpha=32)  # >= 4 + 3, the largest sum of expert ranks (v_proj)
    before = {
        name: layer.lora_A["default"].weight.detach().clone() for name, layer in _layers(student).items()
    }
    with caplog.at_level(logging.WARNING):
        report = init_from_expert_mean(student, folder)
    layers = _layers(student)
    fitted = [name for name in layers if name in mean]
    assert fitted and any(".fc1" in n for n in fitted) and any(".encoder." in n for n in fitted)
    for name in fitted:
        torch.testing.assert_close(_delta(layers[name]), mean[name], atol=1e-5, rtol=0)
        assert report[name]["residual"] < 1e-5
    by_kind = {
        kind: {report[n]["rank"] for n in fitted if n.endswith(kind)} for kind in ("q_proj", "v_proj", "fc1")
    }
    assert by_kind == {"q_proj": {6}, "v_proj": {7}, "fc1": {4}}  # 4 + 2, 4 + 3, 4 alone
    assert {report[n]["experts"] for n in fitted if n.endswith("fc1")} == {1}
    # Directions beyond the mean's rank: zero B (nothing added) but the student's own random A, so they train.
    q = next(n for n in fitted if n.endswith("q_proj"))
    assert torch.equal(layers[q].lora_B["default"].weight[:, 6:], torch.zeros(16, 2))
    assert torch.equal(layers[q].lora_A["default"].weight[6:], before[q][6:])
    # fc2: no expert has it; left at its init (B = 0) with a warning.
    fc2 = [n for n in layers if n.endswith("fc2")]
    assert fc2 and all(report[n] == {"rank": None, "residual": None, "experts": 0} for n in fc2)
    assert all(torch.equal(layers[n].lora_A["default"].weight, before[n]) for n in fc2)
    assert "no expert adapts" in caplog.text


def test_a_smaller_rank_gives_the_truncated_svd_of_the_mean(expert_set):
    folder, mean = expert_set
    student = _student(r=2, alpha=3)  # scale 1.5, not 1: the split must divide it out
    report = init_from_expert_mean(student, folder)
    for name, layer in _layers(student).items():
        if name not in mean:
            continue
        u, s, vh = torch.linalg.svd(mean[name].double(), full_matrices=False)
        best = (u[:, :2] * s[:2]) @ vh[:2]
        torch.testing.assert_close(_delta(layer).double(), best, atol=1e-5, rtol=0)
        residual = float(s[2:].square().sum().sqrt() / s.square().sum().sqrt())
        assert report[name]["rank"] == 2 and report[name]["residual"] == pytest.approx(residual, rel=1e-4)
        assert report[name]["residual"] > 0.05  # it is a real truncation, not an exact fit


def test_low_rank_factors_on_a_known_matrix():
    mean = torch.zeros(4, 3)
    mean[0, 0], mean[1, 1], mean[2, 2] = 3.0, -2.0, 1.0
    b, a, k = low_rank_factors(mean, rank=2, scale=4.0)
    assert k == 2 and b.shape == (4, 2) and a.shape == (2, 3)
    expected = torch.zeros(4, 3)
    expected[0, 0], expected[1, 1] = 3.0, -2.0
    torch.testing.assert_close(4.0 * b @ a, expected)
    torch.testing.assert_close(b.norm(dim=0), a.norm(dim=1))  # the even split: sqrt(S / scale) each side
    assert low_rank_factors(torch.zeros(3, 3), rank=2, scale=1.0)[2] == 0


def test_a_dora_expert_is_refused(tmp_path):
    adapter_set = AdapterSet.for_base(tiny_whisper()[0], "tiny-random")
    adapter_set.add("cy", _random_lora(EXPERTS["cy"], 1))
    adapter_set.add("en", _random_lora(LoraConfig(r=2, target_modules=["q_proj"], use_dora=True), 2))
    folder = adapter_set.save(tmp_path / "with-dora")
    with pytest.raises(ExpertAverageError, match=r"with-dora/en: a DoRA expert.*init: adapter"):
        init_from_expert_mean(_student(r=8, alpha=16), folder)


def test_experts_of_another_base_are_refused(tmp_path):
    adapter_set = AdapterSet.for_base(tiny_whisper(seed=1)[0], "tiny-random-1")
    adapter_set.add("cy", _random_lora(EXPERTS["cy"], 1, base_seed=1))
    folder = adapter_set.save(tmp_path / "other-base")
    student = _student(r=8, alpha=16)
    with pytest.raises(ExpertAverageError, match=r"other-base: .*tiny-random-1 \(fingerprint") as err:
        init_from_expert_mean(student, folder)
    assert adapter_set.fingerprint in str(err.value)


def test_a_student_that_trains_one_factor_only_is_refused(expert_set):
    folder, _ = expert_set
    student = _student(r=8, alpha=16)
    for name, p in student.named_parameters():
        if "lora_A" in name:
            p.requires_grad_(False)  # LoRA-FA: A is fixed by design; overwriting it would undo that
    with pytest.raises(ExpertAverageError, match="trains only one of its LoRA factors"):
        init_from_expert_mean(student, folder)
