"""`distill`: the loss terms on known tensors, and a student trained from LoRA language experts end to end."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dama_asr.adapters import AdapterConfig, apply_adapter
from dama_asr.adapters.sets import AdapterSet
from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.testing import tiny_manifest, tiny_whisper
from dama_asr.train import TrainConfigError, train
from dama_asr.train.data import IGNORE_INDEX, collate_tokens
from dama_asr.train.loop import Trainer
from dama_asr.train.metrics_log import read_log
from dama_asr.train.objectives.distill import DistillError, cosine_distance_sum, js_divergence_sum


# ---- the terms on known tensors -------------------------------------------------------------------
def _js_by_hand(student: list[list[float]], teacher: list[list[float]], t: float) -> float:
    """T^2 * sum over rows of JS, with explicit loops over numpy float64 values."""
    total = 0.0
    for zs, zt in zip(student, teacher, strict=True):
        p = np.exp(np.array(zs) / t) / np.exp(np.array(zs) / t).sum()
        q = np.exp(np.array(zt) / t) / np.exp(np.array(zt) / t).sum()
        kl_pm = kl_qm = 0.0
        for pi, qi in zip(p, q, strict=True):
            mi = (pi + qi) / 2
            kl_pm += pi * math.log(pi / mi)
            kl_qm += qi * math.log(qi / mi)
        total += 0.5 * kl_pm + 0.5 * kl_qm
    return t * t * total


S_LOGITS = [[0.0, 1.0, 2.0, -1.0], [3.0, 0.5, 0.0, 0.0]]
T_LOGITS = [[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 1.0, 4.0]]


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_js_divergence_sum_matches_the_definition_by_hand(temperature):
    got = js_divergence_sum(torch.tensor(S_LOGITS), torch.tensor(T_LOGITS), temperature)
    assert got.dtype == torch.float32 and got.shape == ()
    assert got.item() == pytest.approx(_js_by_hand(S_LOGITS, T_LOGITS, temperature), rel=1e-5)


def test_js_is_zero_for_equal_distributions_symmetric_and_bounded():
    s, t = torch.tensor(S_LOGITS), torch.tensor(T_LOGITS)
    assert js_divergence_sum(s, s).item() == pytest.approx(0.0, abs=1e-7)
    assert js_divergence_sum(s, s + 5.0).item() == pytest.approx(0.0, abs=1e-6)  # softmax ignores shifts
    assert js_divergence_sum(s, t).item() == pytest.approx(js_divergence_sum(t, s).item(), rel=1e-6)
    far = js_divergence_sum(torch.tensor([[100.0, 0.0]]), torch.tensor([[0.0, 100.0]]))
    assert far.item() == pytest.approx(math.log(2.0), rel=1e-5)  # disjoint supports: the bound ln 2
    # bfloat16 logits (autocast) are compared in float32, over a Whisper-sized vocabulary too.
    wide = torch.randn(3, 51865, generator=torch.Generator().manual_seed(0))
    assert js_divergence_sum(wide.bfloat16(), wide.bfloat16()).dtype == torch.float32


def test_js_gradient_reaches_the_student_only_through_its_logits():
    s = torch.tensor(S_LOGITS, requires_grad=True)
    js_divergence_sum(s, torch.tensor(T_LOGITS)).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    torch.testing.assert_close(s.grad.sum(dim=-1), torch.zeros(2), atol=1e-6, rtol=0)  # softmax shift


def test_cosine_distance_sum_matches_hand_values():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0], [-3.0, -4.0]])
    assert cosine_distance_sum(a, b).item() == pytest.approx(1.0 + 0.0 + 2.0, abs=1e-6)
    x = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1))
    y = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(2))
    by_hand = sum(
        1.0 - float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
        for u, v in zip(x.reshape(-1, 5).numpy(), y.reshape(-1, 5).numpy(), strict=True)
    )
    assert cosine_distance_sum(x, y).item() == pytest.approx(by_hand, rel=1e-5)
    assert cosine_distance_sum(x, 3.0 * x).item() == pytest.approx(0.0, abs=1e-5)  # scale-free


# ---- end to end on the tiny model -----------------------------------------------------------------
def _expert_set(folder: Path, languages: list[str], encoder: bool = False, r: int = 4) -> Path:
    """A saved set of random LoRA experts on tiny-random (what `dama train --method lora` adapts)."""
    adapter_set = AdapterSet.for_base(tiny_whisper()[0], "tiny-random")
    for seed, code in enumerate(languages, start=1):
        model = apply_adapter(tiny_whisper()[0], AdapterConfig(method="lora", r=r, encoder=encoder))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(0.5 * torch.randn(p.shape, generator=g))
        adapter_set.add(code, model)
    return adapter_set.save(folder)


@pytest.fixture(scope="module")
def two_languages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 Welsh and 4 German tiny clips in one manifest."""
    root = tmp_path_factory.mktemp("cy_de")
    items = []
    for code in ("cy", "de"):
        manifest = tiny_manifest(root / code, n=4, language=code)
        items += [dataclasses.replace(u, id=f"{code}-{u.id}") for u in read_manifest(manifest)]
    return write_manifest(root / "manifest.jsonl", items)


def _terms(config) -> list[dict]:
    return [r["loss_terms"] for r in read_log(config.run_dir / "train_log.jsonl")]


def test_a_student_learns_from_two_experts_and_logs_each_term(make_config, two_languages, tmp_path):
    experts = _expert_set(tmp_path / "experts", ["cy", "de"])
    common = {"train": str(two_languages), "sampler": "language-homogeneous", "precision": "no",
              "optim": {"epochs": 1, "batch_size": 2}}  # fmt: skip
    config = make_config(objective="distill", objective_options={"experts": str(experts)}, **common)
    summary = train(config)
    assert summary["status"] == "finished" and summary["steps"] == 4
    records = read_log(config.run_dir / "train_log.jsonl")
    for record in records:
        terms = record["loss_terms"]
        assert set(terms) == {"token", "js", "hidden"}
        assert all(math.isfinite(v) and v > 0 for v in terms.values())
        assert terms["hidden"] <= 2.0  # a per-position mean of 1 - cos
        assert record["loss"] == pytest.approx(sum(terms.values()), rel=1e-5)
    output = make_config(output_dir=str(tmp_path / "output"), objective="distill",
                         objective_options={"experts": str(experts), "kd": "output"}, **common)  # fmt: skip
    assert train(output)["status"] == "finished"
    assert all(set(t) == {"token", "js"} for t in _terms(output))  # the ablation: no hidden-state term


@pytest.mark.parametrize("encoder", [False, True], ids=["cached-encoder", "adapted-encoder"])
def test_a_student_equal_to_its_only_expert_has_nothing_to_distil(make_config, tmp_path, encoder):
    """Seeded from a 1-language set with the expert's rank, the student's update is the expert's, so its
    logits and every hidden state match the teacher's; seeded from its own init they do not."""
    experts = _expert_set(tmp_path / "experts", ["cy"], encoder=encoder)
    adapter = {"method": "lora", "r": 4, "encoder": encoder}
    first = {}
    for init in ("expert-mean", "adapter"):
        config = make_config(output_dir=str(tmp_path / init), adapter=adapter, precision="no", stop_after_steps=1,
                             objective="distill", objective_options={"experts": str(experts), "init": init})  # fmt: skip
        train(config)
        first[init] = _terms(config)[0]
    assert first["expert-mean"]["js"] < 1e-7 and first["expert-mean"]["hidden"] < 1e-6
    assert first["adapter"]["js"] > 1e-4 and first["adapter"]["hidden"] > 1e-3  # the check can fail
    assert first["expert-mean"]["token"] > 0


def test_kd_alone_pulls_the_student_towards_its_teacher(make_config, tmp_path):
    """asr_weight 0: only js and hidden drive the student, and both fall (their gradients reach it)."""
    experts = _expert_set(tmp_path / "experts", ["cy"])
    options = {"experts": str(experts), "init": "adapter", "asr_weight": 0.0}
    config = make_config(precision="no", objective="distill", objective_options=options)
    train(config)  # 2 epochs of 4 steps; the first step has lr 0 (warmup)
    terms = _terms(config)
    assert len(terms) == 8 and all(t["token"] == 0.0 for t in terms)
    first, last = terms[0], terms[-2:]
    assert max(t["hidden"] for t in last) < 0.7 * first["hidden"]
    assert max(t["js"] for t in last) < 0.7 * first["js"]


def test_mixed_language_batches_are_taught_row_by_row_by_their_own_expert(
    make_config, two_languages, tmp_path
):
    experts = _expert_set(tmp_path / "experts", ["cy", "de"])
    config = make_config(train=str(two_languages), precision="no", objective="distill",
                         objective_options={"experts": str(experts)})  # fmt: skip
    trainer = Trainer(config)
    try:
        codes = trainer.data.languages
        mixed = [codes.index("cy"), codes.index("de"), len(codes) - 1 - codes[::-1].index("cy")]  # cy de cy
        model = trainer._step_model()  # prepares the objective: the teacher
        objective = trainer.objective
        batch = trainer._model_inputs(mixed)
        assert len(set(batch["languages"])) == 2
        rows = batch["labels"] != IGNORE_INDEX
        together = objective.teacher_outputs(batch, rows)
        singles = [trainer._model_inputs([i]) for i in mixed]
        alone = [objective.teacher_outputs(b, b["labels"] != IGNORE_INDEX) for b in singles]
        torch.testing.assert_close(
            together.logits, torch.cat([a.logits for a in alone]), atol=1e-5, rtol=1e-4
        )
        for layer, hidden in enumerate(together.decoder):
            for row, a in enumerate(alone):
                length = a.decoder[layer].shape[1]
                torch.testing.assert_close(hidden[row, :length][rows[row, :length]],
                                           a.decoder[layer][0][rows[row, :length]], atol=1e-5, rtol=1e-4)  # fmt: skip
        # The wrong expert gives other logits: the routing is what makes these equal.
        wrong = dict(batch, languages=["cy"] * len(mixed))
        assert not torch.allclose(objective.teacher_outputs(wrong, rows).logits, together.logits, atol=1e-3)
        parts = objective.loss(model, batch)
        assert set(parts.extra) == {"js", "hidden"} and all(torch.isfinite(v) for v in parts.extra.values())
    finally:
        trainer.release()


def test_with_prompt_loss_the_language_token_is_a_label_but_not_distilled(
    make_config, two_languages, tmp_path
):
    """prompt_loss adds the prompt's positions to the token term only: js and hidden are the same sums
    as without it, on the same batch, and the token term grows by the prompt's cross-entropy."""
    experts = _expert_set(tmp_path / "experts", ["cy", "de"])
    config = make_config(train=str(two_languages), precision="no", objective="distill",
                         objective_options={"experts": str(experts)})  # fmt: skip
    trainer = Trainer(config)
    try:
        model = trainer._step_model()
        objective = trainer.objective
        batch = trainer._model_inputs([0, 1])
        with torch.no_grad():
            plain = objective.loss(model, batch)
            pad = trainer.backbone.processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
            labelled = collate_tokens([trainer.data.examples[i] for i in (0, 1)], pad, prompt_loss=True)
            assert (labelled["labels"] != IGNORE_INDEX).sum() == (
                batch["labels"] != IGNORE_INDEX
            ).sum() + 2 * 3
            objective.prompt_loss = True
            prompted = objective.loss(model, dict(batch, labels=labelled["labels"]))
    finally:
        trainer.release()
    for term in ("js", "hidden"):
        assert plain.extra[term] > 0
        torch.testing.assert_close(prompted.extra[term], plain.extra[term], rtol=1e-5, atol=1e-7)
    assert prompted.token_loss > plain.token_loss + 1.0  # three more positions, each a CE of a few nats


def test_distill_refuses_missing_experts_and_bad_options(make_config, tmp_path):
    with pytest.raises(TrainConfigError, match="objective_options.experts: .* required"):
        make_config(objective="distill")
    with pytest.raises(TrainConfigError, match="objective_options.kd: one of layerwise, output, got 'all'"):
        make_config(objective="distill", objective_options={"experts": "x", "kd": "all"})
    with pytest.raises(TrainConfigError, match="objective_options.temperature: must be > 0"):
        make_config(objective="distill", objective_options={"experts": "x", "temperature": 0})
    only_de = _expert_set(tmp_path / "de-only", ["de"])
    config = make_config(objective="distill", objective_options={"experts": str(only_de), "init": "adapter"})
    with pytest.raises(DistillError, match=r"de-only has no expert for cy \(it holds de\)"):
        train(config)


def test_experts_that_adapt_the_encoder_need_the_encoder_to_run(make_config, tmp_path):
    experts = _expert_set(tmp_path / "encoder-experts", ["cy"], encoder=True)
    config = make_config(objective="distill", objective_options={"experts": str(experts), "init": "adapter"})
    assert config.uses_encoder_cache
    with pytest.raises(DistillError, match="adapt the encoder.*--no-encoder-cache"):
        train(config)
