"""The objective seam: `asr` is the loop's old inline loss bit for bit; extra terms are logged; names."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from torch import nn

from dama_asr.adapters import base_model_of
from dama_asr.errors import DamaError
from dama_asr.faults import crash_point
from dama_asr.train import TrainConfigError, train
from dama_asr.train.data import IGNORE_INDEX, shard_batch
from dama_asr.train.logit_rows import logits_at
from dama_asr.train.loop import Trainer
from dama_asr.train.metrics_log import read_log
from dama_asr.train.objectives import (
    AsrObjective,
    LossParts,
    ObjectiveSetup,
    StepModel,
    UnknownObjectiveError,
    get_objective,
    objective_names,
    register_objective,
)
from dama_asr.train.setup import build_cross_kv, build_encoder_cache, global_micro_batches


def reference_step(trainer: Trainer, group: list[list[int]]) -> dict:
    """`Trainer._optimizer_step` as it was before objectives existed (commit 42f1814), verbatim but
    for `self` -> `trainer`: the loss written inline in the loop."""
    self = trainer
    local = [shard_batch(b, self.accelerator.process_index, self.world) for b in group]
    batches = [self._model_inputs(ix) for ix in local]
    n_local = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batches)
    n_global = self.accelerator.reduce(torch.tensor(float(n_local), device=self.accelerator.device), "sum")
    loss_sum = torch.zeros((), device=self.accelerator.device)
    head = base_model_of(self.accelerator.unwrap_model(self.model)).proj_out
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)
        rows = batch["labels"] != IGNORE_INDEX  # (B, T)
        stored = (
            self.cross_kv.inject(batch["cross_kv"])
            if batch["cross_kv"] is not None
            else contextlib.nullcontext()
        )
        with sync, self.accelerator.autocast():
            with logits_at(head, rows), stored:
                logits = self.model(**batch["inputs"]).logits  # (N, V): labelled positions only
            token_loss = nn.functional.cross_entropy(logits.float(), batch["labels"][rows], reduction="sum")
            self.accelerator.backward(token_loss * self.world / n_global)
        loss_sum += token_loss.detach()
    loss = (self.accelerator.reduce(loss_sum, "sum") / n_global).item()
    if not math.isfinite(loss):
        self._diverged(f"loss is {loss}")
    params = [p for p in self.model.parameters() if p.requires_grad]
    max_norm = self.config.optim.max_grad_norm or float("inf")
    grad_norm = float(self.accelerator.clip_grad_norm_(params, max_norm))
    if not math.isfinite(grad_norm) and self.precision != "fp16":
        self._diverged(f"gradient norm is {grad_norm}")
    lr = self.scheduler.get_last_lr()[0]
    crash_point("step")
    self.optimizer.step()
    self.scheduler.step()
    self.optimizer.zero_grad(set_to_none=True)
    return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "samples": sum(len(b) for b in group),
            "tokens": int(n_global.item())}  # fmt: skip


def _steps(config, step) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Every optimizer step of the run's epochs through `step(trainer, group)`, as `Trainer.run` orders
    them; returns the metrics and the trainable weights after."""
    trainer = Trainer(config)
    try:
        if config.uses_encoder_cache:  # what `Trainer.run` builds before the first step
            examples = trainer.data.examples
            trainer.cache, _, _ = build_encoder_cache(trainer.accelerator, trainer.backbone, examples, 4)
            unwrapped = trainer.accelerator.unwrap_model(trainer.model)
            trainer.cross_kv = build_cross_kv(config, unwrapped, trainer.cache, examples, trainer.precision)
        if config.cross_kv_cache_gib > 0:
            assert trainer.cross_kv is not None and len(trainer.cross_kv) == len(trainer.data.examples)
        accum, metrics = config.optim.grad_accum, []
        for epoch in range(config.optim.epochs):
            micro = global_micro_batches(config, trainer.data.lengths, 1, epoch, trainer.data.languages)
            for s in range(trainer.steps_per_epoch):
                metrics.append(step(trainer, micro[s * accum : (s + 1) * accum]))
        weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        return metrics, weights
    finally:
        trainer.release()


@pytest.mark.parametrize(
    "inputs",
    [{}, {"cross_kv_cache_gib": 1.0}, {"encoder_cache": False}],
    ids=["encoder-cache", "stored-cross-kv", "log-mel"],
)
def test_asr_objective_is_the_old_inline_loss_bit_for_bit(make_config, tmp_path, inputs) -> None:
    common = {"precision": "no", "optim": {"epochs": 2, "batch_size": 2, "grad_accum": 2}, **inputs}
    new, new_weights = _steps(
        make_config(output_dir=str(tmp_path / "new"), **common), Trainer._optimizer_step
    )
    old, old_weights = _steps(make_config(output_dir=str(tmp_path / "old"), **common), reference_step)
    assert len(new) == 4 and all("loss_terms" not in m for m in new)
    assert [m["loss"] for m in new] == [m["loss"] for m in old]  # exact, not approximate
    assert [m["grad_norm"] for m in new] == [m["grad_norm"] for m in old]
    assert [m["tokens"] for m in new] == [m["tokens"] for m in old]
    assert new_weights.keys() == old_weights.keys() and new_weights
    for name, weight in new_weights.items():
        assert torch.equal(weight, old_weights[name]), name
    assert new[-1]["loss"] < new[0]["loss"]  # it trained: equal because both learnt, not because neither did


def test_asr_log_records_keep_their_fields(make_config) -> None:
    config = make_config(stop_after_steps=2)
    train(config)
    records = read_log(config.run_dir / "train_log.jsonl")
    assert len(records) == 2
    for record in records:
        assert set(record) == {"kind", "step", "epoch", "loss", "lr", "grad_norm", "samples", "tokens",
                               "samples_per_s", "seconds"}  # fmt: skip


class ZLoss(AsrObjective):
    """Cross-entropy plus a z-loss (the squared log-partition of each labelled row, summed): a real
    second term with a gradient of its own, and a count of `prepare` calls."""

    name = "asr+z"

    def __init__(self) -> None:
        self.prepared: list[ObjectiveSetup] = []
        self.languages: list[str] = []

    def prepare(self, setup: ObjectiveSetup) -> None:
        self.prepared.append(setup)

    def loss(self, model: StepModel, batch: dict) -> LossParts:
        self.languages += batch["languages"]
        logits, targets = model.labelled_logits(batch)  # (N, V), (N,)
        token = nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        z = 1e-2 * torch.logsumexp(logits.float(), dim=-1).pow(2).sum()
        return LossParts(token, {"z": z})


def test_extra_terms_are_logged_and_add_up_to_the_loss(make_config) -> None:
    config = make_config(optim={"epochs": 1, "batch_size": 2, "grad_accum": 2}, precision="no")
    trainer = Trainer(config)
    objective = trainer.objective = ZLoss()
    trainer.run()
    records = read_log(config.run_dir / "train_log.jsonl")
    assert len(records) == 2
    for record in records:
        terms = record["loss_terms"]
        assert set(terms) == {"token", "z"} and terms["z"] > 0 and terms["token"] > 0
        assert record["loss"] == pytest.approx(terms["token"] + terms["z"], rel=1e-6)
    assert len(objective.prepared) == 1  # once, not per step
    setup = objective.prepared[0]
    assert setup.encoder_cache is trainer.cache and len(setup.examples) == 8
    assert objective.languages == ["cy"] * 8  # every training utterance once, with its language


def test_loss_parts_without_extra_terms_is_the_token_loss_itself() -> None:
    token = torch.tensor(3.0)
    assert LossParts(token).total() is token  # not token + 0: nothing is added to the asr graph
    assert LossParts(token, {"a": torch.tensor(1.0), "b": torch.tensor(0.5)}).total().item() == 4.5


def test_registry_names_objectives_and_config_validates_them(make_config) -> None:
    assert "asr" in objective_names()
    first, second = get_objective("asr"), get_objective("asr")
    assert isinstance(first, AsrObjective) and first is not second  # prepared state is per run
    with pytest.raises(UnknownObjectiveError, match="unknown objective 'contrastive'; valid: .*asr") as err:
        get_objective("contrastive")
    assert isinstance(err.value, DamaError)
    with pytest.raises(ValueError, match="already registered"):
        register_objective("asr", AsrObjective)
    with pytest.raises(TrainConfigError, match="objective: one of .*asr.*, got 'contrastive'"):
        make_config(objective="contrastive")
    assert make_config().objective == "asr"
