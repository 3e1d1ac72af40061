"""Training objectives: one strategy per loss (`asr` today; distillation and router losses next).

    from dama_asr.train.objectives import get_objective
    objective = get_objective("asr")       # TrainConfig.objective names it
    parts = objective.loss(step_model, batch)   # LossParts: summed token loss + named extra terms

base.py: the `Objective` protocol, `LossParts`, `StepModel`, `ObjectiveSetup`.  registry.py: names.
asr.py: token cross-entropy, as the trainer computed it inline before this package existed.
"""

from dama_asr.train.objectives.asr import AsrObjective
from dama_asr.train.objectives.base import TOKEN_TERM, LossParts, Objective, ObjectiveSetup, StepModel
from dama_asr.train.objectives.registry import (
    UnknownObjectiveError,
    get_objective,
    objective_names,
    register_objective,
)

register_objective("asr", AsrObjective)

__all__ = [
    "TOKEN_TERM",
    "AsrObjective",
    "LossParts",
    "Objective",
    "ObjectiveSetup",
    "StepModel",
    "UnknownObjectiveError",
    "get_objective",
    "objective_names",
    "register_objective",
]
