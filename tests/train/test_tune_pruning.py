"""Pruning in `dama tune`: the median stopping rule cuts a trial only when it is clearly behind the
finished ones at the same epoch, a pruned run stops, says why and stays stopped on --resume, and the
search hands each trial a rule built from the trials finished before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.train import train
from dama_asr.tune.pruning import best_so_far, median_stopping_rule
from dama_asr.tune.search import TuneError, run_search
from dama_asr.tune.space import parse_axis


def _history(*wers):
    return [{"epoch": i + 1, "dev_wer": w} for i, w in enumerate(wers)]


def test_the_rule_compares_best_so_far_with_the_finished_median_at_the_same_epoch() -> None:
    assert best_so_far(_history(None, 0.6, 0.7, 0.5)) == [None, 0.6, 0.6, 0.5]
    finished = [_history(0.6, 0.5, 0.4, 0.35), _history(0.7, 0.6, 0.5), _history(0.9, 0.8, 0.8, 0.8, 0.7)]
    prune = median_stopping_rule(finished, after=3, margin=0.1)
    assert prune(_history(0.99, 0.99)) is None  # before `after` epochs: never
    # Epoch 3: best so far 0.4, 0.5, 0.8 -> median 0.5; cut above 0.55.
    assert prune(_history(0.9, 0.6, 0.56)) and "median 50.0%" in prune(_history(0.9, 0.6, 0.56))
    assert prune(_history(0.9, 0.6, 0.54)) is None  # behind, but within the margin
    assert prune(_history(0.54, 0.9, 0.9)) is None  # its best so far counts, not its last epoch
    # Epoch 5: the second trial finished at epoch 3 and counts with its final best (0.5): 0.35, 0.5, 0.7.
    assert prune(_history(0.6, 0.6, 0.6, 0.6, 0.56)) and prune(_history(0.6, 0.6, 0.6, 0.6, 0.55)) is None
    assert median_stopping_rule(finished, after=0, margin=0.1) is None  # off
    assert median_stopping_rule([], after=3, margin=0.1) is None  # nothing finished to compare with


def test_a_pruned_run_stops_says_why_and_stays_stopped(make_config, tiny_train: Path, tmp_path: Path) -> None:
    dev = tmp_path / "dev.jsonl"
    write_manifest(dev, read_manifest(tiny_train)[:2], relative=False)
    config = make_config(dev=str(dev), optim={"epochs": 4}, eval={"max_utterances": 2, "patience": 0},
                         precision="no")  # fmt: skip
    seen = []

    def cut_at_two(history):
        seen.append(len(history))
        return "behind the others" if len(history) >= 2 else None

    summary = train(config, prune=cut_at_two)
    assert seen == [1, 2] and len(summary["epochs"]) == 2  # of 4, and patience 0 never stops
    assert summary["status"] == "pruned" and summary["pruned"] == "behind the others"
    assert (tmp_path / "run" / "best").is_dir() and (tmp_path / "run" / "final").is_dir()
    again = train(config, resume=True)
    assert len(again["epochs"]) == 2 and again["pruned"] == "behind the others"  # no epoch trained again


def test_the_search_gives_each_trial_a_rule_from_the_trials_finished_before_it(
    tiny_train: Path, tmp_path: Path
) -> None:
    dev = tmp_path / "dev.jsonl"
    write_manifest(dev, read_manifest(tiny_train)[:2], relative=False)
    base = {"model": "tiny-random", "train": str(tiny_train), "dev": str(dev),
            "adapter": {"method": "lora", "r": 2}, "precision": "no", "progress_bar": False,
            "optim": {"epochs": 2, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1},
            "eval": {"max_utterances": 2, "patience": 0}}  # fmt: skip
    rules = []

    def recording_train(config, resume=False, prune=None):
        rules.append(prune)
        return train(config, resume=resume, prune=prune)

    out = tmp_path / "tune"
    record = run_search(base, [parse_axis("optim.lr=1e-3|1e-2")], out, train_fn=recording_train,
                        prune_after=1, prune_margin=0.0)  # fmt: skip
    assert rules[0] is None and rules[1] is not None  # the first trial has nothing to be compared with
    first = json.loads((out / "trials" / record["trials"][0]["name"] / "summary.json").read_text())
    worse = first["epochs"][0]["dev_wer"] + 0.5
    assert "above the finished trials' median" in rules[1](_history(worse))
    assert rules[1](_history(first["epochs"][0]["dev_wer"])) is None
    assert record["pruning"] == {"after_epochs": 1, "margin": 0.0}
    assert all("pruned" in t for t in record["trials"])
    with pytest.raises(TuneError, match="--prune-margin: must be >= 0"):
        run_search(base, [parse_axis("optim.lr=1e-3")], out, prune_after=3, prune_margin=-0.1)
