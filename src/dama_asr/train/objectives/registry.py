"""Objectives by name: each registers itself once (in `objectives/__init__.py`); nothing else names it."""

from __future__ import annotations

from collections.abc import Callable

from dama_asr.errors import DamaError
from dama_asr.train.objectives.base import Objective

_FACTORIES: dict[str, Callable[[], Objective]] = {}


class UnknownObjectiveError(DamaError, ValueError):
    """An objective name nobody registered; the message lists the valid ones."""


def register_objective(name: str, factory: Callable[[], Objective]) -> None:
    """Make `get_objective(name)` return `factory()`. A name is registered once."""
    if name in _FACTORIES:
        raise ValueError(f"objective {name!r} is already registered")
    _FACTORIES[name] = factory


def objective_names() -> tuple[str, ...]:
    return tuple(sorted(_FACTORIES))


def get_objective(name: str) -> Objective:
    """A fresh instance of the objective registered as `name` (its prepared state is per run)."""
    if name not in _FACTORIES:
        raise UnknownObjectiveError(f"unknown objective {name!r}; valid: {', '.join(objective_names())}")
    objective = _FACTORIES[name]()
    if objective.name != name:
        raise ValueError(f"objective registered as {name!r} calls itself {objective.name!r}")
    return objective


def get_objective_class(name: str) -> type[Objective]:
    """The class behind `name` (for its option defaults), without making an instance."""
    if name not in _FACTORIES:
        raise UnknownObjectiveError(f"unknown objective {name!r}; valid: {', '.join(objective_names())}")
    factory = _FACTORIES[name]
    return factory if isinstance(factory, type) else type(factory())
