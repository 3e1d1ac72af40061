"""TrainConfig validation, YAML recipes and their round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from dama_asr.adapters import AdapterConfig
from dama_asr.train import TrainConfig, TrainConfigError, load_recipe
from dama_asr.train.config import config_differences

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_load_and_round_trip(recipe: Path, tmp_path: Path) -> None:
    config = load_recipe(recipe, {"train": "train.jsonl", "dev": "dev.jsonl"})  # plateau needs a dev set
    assert isinstance(config.adapter, AdapterConfig)
    saved = tmp_path / "config.yaml"
    saved.write_text(config.to_yaml())
    assert load_recipe(saved) == config


def test_there_are_recipes_for_dama_and_lora() -> None:
    assert {"dama-whisper-base.yaml", "lora-whisper-base.yaml"} <= {p.name for p in RECIPES}


def test_overrides_and_yaml_scalars(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    # YAML 1.1 reads 1e-3 (no dot) as a string: it must still become a float.
    recipe.write_text("model: tiny-random\noptim: {lr: 1e-3, epochs: '3'}\nadapter: {method: lora, r: 4}\n")
    config = load_recipe(recipe, {"train": "t.jsonl", "optim.batch_size": 4, "adapter.r": 8, "seed": None})
    assert config.optim.lr == 1e-3 and config.optim.epochs == 3 and config.optim.batch_size == 4
    assert config.adapter.r == 8 and config.seed == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"optim.lr": -1}, "optim.lr"),
        ({"optim.epochs": -1}, "optim.epochs"),
        ({"optim.schedule": "step"}, "optim.schedule"),
        ({"optim.bogus": 1}, "optim.bogus"),
        ({"precision": "fp8"}, "precision"),
        ({"eval.normaliser": "nfkc"}, "eval.normaliser"),
        ({"adapter.method": "lora", "adapter.r": 0}, "adapter"),
        ({"adapter.theta1": 0.8, "adapter.theta2": 0.2}, "theta1"),
        ({"optim.batch_size": "many"}, "optim.batch_size"),
        ({"train": ""}, "train"),
    ],
)
def test_errors_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(TrainConfigError, match=field.replace(".", r"\.")):
        load_recipe(None, {"train": "t.jsonl", **overrides})


def test_config_is_frozen_and_differences_ignore_run_control() -> None:
    a = load_recipe(None, {"train": "t.jsonl"})
    with pytest.raises(AttributeError):
        a.seed = 3  # type: ignore[misc]
    b = TrainConfig.from_dict({**a.to_dict(), "stop_after_steps": 5})
    c = TrainConfig.from_dict({**a.to_dict(), "optim": {**a.to_dict()["optim"], "lr": 0.5}})
    assert config_differences(a, b) == [] and config_differences(a, c) == ["optim.lr"]
