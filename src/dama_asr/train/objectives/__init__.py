"""Training objectives: one strategy per loss (`asr` today; distillation and router losses next).

    from dama_asr.train.objectives import get_objective
    objective = get_objective("asr")       # TrainConfig.objective names it
    parts = objective.loss(step_model, batch)   # LossParts: summed token loss + named extra terms

base.py: the `Objective` protocol, `LossParts`, `StepModel`, `ObjectiveSetup`.  registry.py: names.
asr.py: token cross-entropy, as the trainer computed it inline before this package existed.
distill.py: a LoRA student taught by per-language LoRA experts (JS on logits, cosine on hidden states).
"""

from dama_asr.train.objectives.asr import AsrObjective
from dama_asr.train.objectives.base import TOKEN_TERM, LossParts, Objective, ObjectiveSetup, StepModel
from dama_asr.train.objectives.distill import DistillObjective
from dama_asr.train.objectives.registry import (
    UnknownObjectiveError,
    get_objective,
    get_objective_class,
    objective_names,
    register_objective,
)
from dama_asr.train.objectives.router import RouterObjective

register_objective("asr", AsrObjective)
register_objective("router", RouterObjective)
register_objective("distill", DistillObjective)

__all__ = [
    "TOKEN_TERM",
    "AsrObjective",
    "RouterObjective",
    "DistillObjective",
    "LossParts",
    "Objective",
    "ObjectiveSetup",
    "StepModel",
    "UnknownObjectiveError",
    "get_objective",
    "get_objective_class",
    "objective_names",
    "register_objective",
]
