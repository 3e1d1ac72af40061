"""`dama train`: a thin command over `dama_asr.train.train`."""

from __future__ import annotations

import json
from pathlib import Path

from dama_asr.cli import main
from dama_asr.train import load_recipe


def test_dama_train_with_recipe_and_flags(tiny_train: Path, tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "model: tiny-random\nadapter: {method: dama, r_high: 8, r_low: 2}\noptim: {epochs: 1, lr: 1.0e-3}\n"
    )
    out = tmp_path / "run"
    code = main(["train", "--recipe", str(recipe), "--train", str(tiny_train), "--batch-size", "4",
                 "--r-low", "4", "--theta1", "0.5", "--theta2", "0.9", "--lr", "5e-3", "--no-progress",
                 "--set", "optim.weight_decay=0.01", "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "finished: dama on tiny-random" in printed and "trainable parameters" in printed
    saved = load_recipe(out / "config.yaml")
    assert (saved.adapter.r_high, saved.adapter.r_low, saved.adapter.theta1) == (8, 4, 0.5)
    assert saved.optim.lr == 5e-3 and saved.optim.batch_size == 4 and saved.optim.weight_decay == 0.01
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "dama" and summary["steps"] == 2
    meta = json.loads((out / "final" / "dama_adapter.json").read_text())
    assert meta["adapter_config"]["r_low"] == 4 and meta["base_model"] == "tiny-random"


def test_dama_train_errors_are_one_line(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["train", "--model", "tiny-random", "--train", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert "training set is empty" in capsys.readouterr().err
    assert main(["train", "--model", "tiny-random", "--train", str(empty), "--lr", "-1"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--model",
                "tiny-random",
                "--train",
                str(empty),
                "--resume",
                "--out",
                str(tmp_path / "n"),
            ]
        )
        == 2
    )
    assert "no run to resume" in capsys.readouterr().err


def test_train_takes_the_same_adapter_flags_as_plan(tmp_path: Path) -> None:
    """Recipe values survive unset flags; alpha and dropout flags (shared with `dama plan`) land in the config."""
    from dama_asr.cli import build_parser
    from dama_asr.train_commands import config_from_args

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: tiny-random\ntrain: t.jsonl\nadapter: {method: lora, r: 12, alpha_ratio: 1.0}\n"
    )
    parse = build_parser().parse_args
    kept = config_from_args(parse(["train", "--recipe", str(recipe)]))
    assert (kept.adapter.method, kept.adapter.r, kept.adapter.alpha_ratio) == ("lora", 12, 1.0)
    changed = config_from_args(
        parse(["train", "--recipe", str(recipe), "--alpha-policy", "fixed", "--alpha", "8",
               "--lora-dropout", "0.1", "--targets", "qv", "--no-encoder"])
    )  # fmt: skip
    assert (changed.adapter.r, changed.adapter.alpha_policy, changed.adapter.alpha) == (12, "fixed", 8.0)
    assert changed.adapter.dropout == 0.1 and changed.adapter.targets == ("qv",)
    assert changed.adapter.encoder is False


def test_train_help_shows_the_one_set_of_defaults_the_recipes_use(capsys) -> None:
    import pytest
    import yaml

    from dama_asr.train.config import DEFAULT_MAX_EPOCHS, EvalConfig

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "without dev improvement (default: 3)" in printed
    assert "(0 = all) (default: 100)" in printed and "frozen (default: True)" in printed
    # A bare `dama train` and the shipped recipes stop and sample dev alike.
    for recipe in sorted(Path(__file__).parents[2].glob("recipes/*.yaml")):
        data = yaml.safe_load(recipe.read_text())
        ev, optim = data["eval"], data["optim"]
        assert (ev["patience"], ev["max_utterances"]) == (EvalConfig.patience, EvalConfig.max_utterances)
        # What a bare `dama train --dev ...` resolves to: converged (plateau), 30 epochs at most.
        assert (optim["schedule"], optim["epochs"]) == ("plateau", DEFAULT_MAX_EPOCHS)


def test_tiny_train_and_eval_warn_nothing_and_time_dev_scoring_apart(
    tiny_train: Path, tmp_path: Path, capsys
):
    import warnings

    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--model", "tiny-random", "--method", "lora", "--r", "2", "--train",
                     str(tiny_train), "--dev", str(tiny_train), "--epochs", "1", "--batch-size", "4",
                     "--max-dev", "2", "--no-progress", "--precision", "no", "--out", str(out)]) == 0  # fmt: skip
        printed = capsys.readouterr().out
        assert main(["eval", "--manifest", str(tiny_train), "--model", "tiny-random", "--adapter",
                     str(out / "best"), "--limit", "2", "--precision", "no", "--out",
                     str(tmp_path / "eval.json")]) == 0  # fmt: skip
    future = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert not future  # peft's `is_gradient_checkpointing` FutureWarning printed on every train and eval
    epoch = json.loads((out / "summary.json").read_text())["epochs"][0]
    assert epoch["dev_seconds"] > 0 and epoch["seconds"] == epoch["train_seconds"] + epoch["cache_seconds"]
    assert f"{epoch['dev_seconds']:.0f} s dev scoring" in printed and " s training (" in printed
