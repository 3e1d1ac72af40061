"""`dama tune`: the coordinate search trains what it needs once, resumes, writes a recipe that
`dama train --recipe` runs, and never reads a test split."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from dama_asr.cli import main
from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.errors import UserError
from dama_asr.train import load_recipe
from dama_asr.train.config import TrainConfig, apply_overrides
from dama_asr.tune.search import TuneError, _points, run_search, trial_name
from dama_asr.tune.space import default_axes, parse_axis


def _base(train: Path, dev: Path) -> dict:
    return {"model": "tiny-random", "train": str(train), "dev": str(dev),
            "adapter": {"method": "lora", "r": 2}, "precision": "no", "progress_bar": False,
            "optim": {"epochs": 2, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1},
            "eval": {"max_utterances": 2, "patience": 1}}  # fmt: skip


def test_axes_parse_fields_that_move_together_and_refuse_malformed_ones() -> None:
    axis = parse_axis("adapter.r_high,adapter.r_low=16,4|32,8")
    assert axis.fields == ("adapter.r_high", "adapter.r_low") and axis.values == ((16, 4), (32, 8))
    assert parse_axis("optim.lr=3e-4|1e-3").values == ((3e-4,), (1e-3,))  # YAML 1.1 reads 3e-4 as text
    for bad in ("optim.lr", "optim.lr=", "adapter.r_high,adapter.r_low=16|32,8", "optim.lr=1e-3|1e-3"):
        with pytest.raises(UserError, match="--axis"):
            parse_axis(bad)
    speed = parse_axis("augment.speed_factors=[]|[0.9 1.1]|[0.9;1.0]")  # list-valued fields
    assert speed.values == (((),), ((0.9, 1.1),), ((0.9, 1.0),))
    assert [speed.label(i) for i in range(3)] == ["none", "0.9+1.1", "0.9+1"]
    assert trial_name(speed.settings(1)).startswith("speed_factors-0.9+1.1__")
    with pytest.raises(UserError, match=r"not a list of numbers"):
        parse_axis("augment.speed_factors=[fast]")
    base = {"model": "tiny-random", "train": "x.jsonl", "adapter": {"method": "lora", "r": 4}}
    config = TrainConfig.from_dict(apply_overrides(base, speed.settings(1)))
    assert config.augment.speed_factors == (0.9, 1.1)  # a trial's config takes the list point
    assert [a.fields for a in default_axes("dama")] == [("optim.lr",), ("adapter.r_high", "adapter.r_low")]
    assert [a.fields for a in default_axes("full")] == [("optim.lr",)]
    lr, r = parse_axis("optim.lr=1|2"), parse_axis("adapter.r=4|8|16")
    assert len(_points([lr, r], "grid", [0, 0], 0)) == 6
    assert _points([lr, r], "coordinate", [1, 0], 1) == [[1, 0], [1, 1], [1, 2]]


def test_the_search_trains_each_trial_once_resumes_and_writes_a_runnable_recipe(
    tiny_train: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "tune"
    args = ["tune", "--model", "tiny-random", "--method", "lora", "--r", "2", "--train", str(tiny_train),
            "--dev", str(tiny_train.parent / "dev.jsonl"), "--out", str(out), "--epochs", "2", "--batch-size", "4",
            "--max-dev", "2", "--patience", "1", "--precision", "no", "--set", "progress_bar=false",
            "--axis", "optim.lr=1e-3|1e-2", "--axis", "adapter.r=2|4"]  # fmt: skip
    write_manifest(tiny_train.parent / "dev.jsonl", read_manifest(tiny_train)[:4], relative=False)
    assert main(args) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "tune.json").read_text())
    # Coordinate search: lr at r=2 (2 trials), then r at the best lr (one new trial): 3, not the grid's 4.
    assert record["status"] == "finished" and len(record["trials"]) == 3
    assert len({t["name"] for t in record["trials"]}) == 3
    wers = {t["name"]: t["dev_wer"] for t in record["trials"]}
    assert all(w is not None for w in wers.values())
    by_lr = [t for t in record["trials"] if t["settings"]["adapter.r"] == 2]
    best_lr = min(by_lr, key=lambda t: t["dev_wer"])["settings"]["optim.lr"]
    assert {t["settings"]["optim.lr"] for t in record["trials"] if t["settings"]["adapter.r"] == 4} == {
        best_lr
    }
    chosen = next(t for t in record["trials"] if t["name"] == record["chosen"])
    assert chosen["dev_wer"] == min(
        t["dev_wer"] for t in record["trials"] if t["settings"]["optim.lr"] == best_lr
    )
    assert "<- chosen" in printed
    for t in record["trials"]:
        assert (out / "trials" / t["name"] / "summary.json").is_file()
    # The recipe: the chosen settings, no data, and `dama train --recipe` reads it back.
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert "train" not in recipe and "dev" not in recipe and "output_dir" not in recipe
    config = load_recipe(out / "recipe.yaml", {"train": str(tiny_train), "dev": str(tiny_train)})
    assert (
        config.optim.lr == chosen["settings"]["optim.lr"]
        and config.adapter.r == chosen["settings"]["adapter.r"]
    )
    assert "best dev WER" in (out / "recipe.yaml").read_text().splitlines()[1]

    # A rerun trains nothing: every trial is reused.
    def refuse(*_args, **_kwargs):
        raise AssertionError("a finished trial was trained again")

    axes = [parse_axis("optim.lr=1e-3|1e-2"), parse_axis("adapter.r=2|4")]
    again = run_search(record["base"], axes, out, train_fn=refuse)
    assert again["chosen"] == record["chosen"]


def test_an_interrupted_trial_resumes_from_its_checkpoint(tiny_train: Path, tmp_path: Path) -> None:
    from dama_asr.train import train

    dev = tiny_train.parent / "dev2.jsonl"
    write_manifest(dev, read_manifest(tiny_train)[:4], relative=False)
    calls = []

    def stop_then_resume(config, resume=False):
        calls.append(resume)
        if not calls[:-1]:  # the first call stops after one step, as a killed trial would
            return train(dataclasses.replace(config, stop_after_steps=1), resume=resume)
        return train(config, resume=resume)

    out = tmp_path / "tune"
    axes = [parse_axis("optim.lr=1e-3")]
    with pytest.raises(TuneError, match="no trial produced a dev WER"):
        run_search(
            _base(tiny_train, dev), axes, out, train_fn=stop_then_resume
        )  # killed before its first epoch ended
    assert json.loads((out / "tune.json").read_text())["status"] == "running"
    second = run_search(_base(tiny_train, dev), axes, out, train_fn=stop_then_resume)
    assert calls == [False, True] and second["trials"][0]["dev_wer"] is not None
    summary = json.loads((out / "trials" / second["chosen"] / "summary.json").read_text())
    assert summary["steps"] == 4  # 2 epochs of 2 steps: the first step was not trained again


def test_the_search_refuses_a_test_split_the_training_set_and_overlapping_axes(
    tiny_train: Path, tmp_path: Path
) -> None:
    test_dev = tmp_path / "test.jsonl"
    write_manifest(
        test_dev, [dataclasses.replace(u, split="test") for u in read_manifest(tiny_train)], relative=False
    )
    axes = [parse_axis("optim.lr=1e-3|1e-2")]
    with pytest.raises(TuneError, match="split 'test'"):
        run_search(_base(tiny_train, test_dev), axes, tmp_path / "a")
    with pytest.raises(TuneError, match="is the training manifest"):
        run_search(_base(tiny_train, tiny_train), axes, tmp_path / "b")
    with pytest.raises(TuneError, match="named by two axes"):
        run_search(_base(tiny_train, test_dev), [*axes, parse_axis("optim.lr=1")], tmp_path / "c")
    dev = tmp_path / "dev.jsonl"
    write_manifest(dev, read_manifest(tiny_train)[:2], relative=False)
    with pytest.raises(TuneError, match="invalid"):
        run_search(_base(tiny_train, dev), [parse_axis("optim.lr=-1")], tmp_path / "d")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert trial_name({"optim.lr": 1e-3}).startswith("lr-0.001__")
