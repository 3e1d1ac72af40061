"""`router`: train a MoLE's combination weights and language-ID router (`dama_asr.adapters.mole`).

The loss of one micro-batch is the token cross-entropy (summed over labelled tokens, as `asr`) plus
router_weight x the router's cross-entropy against each utterance's language, that utterance's term
multiplied by its number of labelled tokens, so the router's share of the step is the same whatever
the transcript lengths and the batch split (LossParts' per-token contract).

During training the deeper layers are routed by the utterance's true language (`route: given`, the
default: teacher forcing, so a router still learning never sends an utterance through the wrong expert
and the mix learns from the right gradients); `route: router` routes by the router's own prediction,
as language-agnostic inference will.
"""

from __future__ import annotations

import contextlib

from torch import nn

from dama_asr.adapters.mole import MoleError, mole_of
from dama_asr.train.data import IGNORE_INDEX
from dama_asr.train.objectives.base import LossParts, Objective, StepModel

ROUTER_TERM = "router"


class RouterObjective(Objective):
    name = "router"
    option_defaults = {"router_weight": 1.0, "route": "given"}  # noqa: RUF012

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        out = super().resolve_options(options)
        if out["route"] not in ("given", "router"):
            raise ValueError(f"objective_options.route: 'given' or 'router', got {out['route']!r}")
        if out["router_weight"] < 0:
            raise ValueError("objective_options.router_weight: must be >= 0")
        return out

    def __init__(self) -> None:
        self.options = dict(self.option_defaults)

    def prepare(self, setup) -> None:
        self.options = self.resolve_options(setup.config.objective_options)
        if mole_of(setup.model) is None:
            raise MoleError("objective router: the model is not a MoLE; train it with --method mole")

    def loss(self, model: StepModel, batch: dict) -> LossParts:
        controller = mole_of(model.module)
        codes = batch["languages"]
        given = (
            controller.languages_given(codes)
            if self.options["route"] == "given"
            else contextlib.nullcontext()
        )
        with given:
            logits, targets = model.labelled_logits(batch)
        token = nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        router_logits = controller.state.router_logits  # (B, E), from this forward
        truth = controller.index_of(codes)
        per_utterance = nn.functional.cross_entropy(router_logits, truth, reduction="none")  # (B,)
        tokens = (batch["labels"] != IGNORE_INDEX).sum(dim=1).to(per_utterance.dtype)  # (B,)
        router = self.options["router_weight"] * (per_utterance * tokens).sum()
        return LossParts(token, {ROUTER_TERM: router})
