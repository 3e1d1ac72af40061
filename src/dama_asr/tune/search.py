"""`dama tune`: a small, resumable search on the dev split that writes the chosen recipe.

Why a coordinate search over a plain grid, not optuna: each trial is a converged training run of minutes
to an hour on a CPU, so a search affords a handful of trials, not the tens a model-based sampler needs
before it beats a grid. Coordinate search walks the axes in order (learning rate first), trying each
value with the others at their best so far: 3 + 3 trials instead of a 3 x 3 grid's 9, each trial a
named folder that a rerun reuses or resumes. `search="grid"` runs the whole product when it is affordable.

Only the training and dev manifests are read; a dev manifest holding test-split items is refused, so the
test split cannot leak into the choice. Trials are compared on their best dev WER (the sample of
`eval.max_utterances` each run scores after every epoch: the same utterances for every trial, by seed).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from dama_asr.atomic import atomic_write_text
from dama_asr.errors import UserError
from dama_asr.tune.pruning import median_stopping_rule
from dama_asr.tune.space import Axis, axes_overlap, short_value

log = logging.getLogger(__name__)

SEARCHES = ("coordinate", "grid")
RECORD = "tune.json"
RECIPE = "recipe.yaml"
# What a recipe leaves to the command line: the data, the run folder and run control.
NOT_IN_RECIPE = ("train", "dev", "output_dir", "log_dir", "stop_after_steps")


class TuneError(UserError):
    """A search that cannot run as asked; the message says what to change."""


@dataclass
class Trial:
    name: str
    settings: dict
    summary: dict

    @property
    def dev_wer(self) -> float | None:
        return self.summary.get("best_dev_wer")

    def record(self) -> dict:
        s = self.summary
        return {"name": self.name, "settings": self.settings, "dev_wer": self.dev_wer,
                "best_epoch": s.get("best_epoch"), "epochs_run": len(s.get("epochs", [])),
                "trainable_parameters": s.get("trainable_parameters"), "wall_seconds": s.get("wall_seconds"),
                "peak_rss_bytes": s.get("peak_rss_bytes"), "pruned": s.get("pruned")}  # fmt: skip


def trial_name(settings: dict) -> str:
    """A readable, stable folder name: the settings, then a short hash that keeps names unique."""
    text = json.dumps(settings, sort_keys=True)
    label = "_".join(f"{k.rsplit('.', 1)[-1]}-{short_value(v)}" for k, v in sorted(settings.items()))
    return f"{label}__{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def check_base(base: dict, axes: list[Axis], search: str) -> None:
    """Refuse what would make the search meaningless before any training runs."""
    from dama_asr.data.manifest import read_manifest

    if search not in SEARCHES:
        raise TuneError(f"--search: one of {', '.join(SEARCHES)}, got {search!r}")
    if not axes:
        raise TuneError("nothing to search: give at least one --axis")
    overlap = axes_overlap(axes)
    if overlap:
        raise TuneError(f"--axis: {overlap} is named by two axes; put its values on one")
    if not base.get("dev"):
        raise TuneError("dama tune chooses on a dev set: give --dev (a split held out from --train)")
    if Path(base["dev"]).resolve() == Path(base["train"]).resolve():
        raise TuneError(f"--dev {base['dev']} is the training manifest: choose on held-out utterances")
    test_items = [u.id for u in read_manifest(base["dev"]) if u.split == "test"]
    if test_items:
        raise TuneError(
            f"--dev {base['dev']}: {len(test_items)} item(s) are marked split 'test' (first: {test_items[0]}); "
            "tune on the dev split and keep the test split for the numbers you report"
        )


def _points(axes: list[Axis], search: str, chosen: list[int], axis_index: int) -> list[list[int]]:
    if search == "grid":
        return [list(p) for p in itertools.product(*(range(len(a.values)) for a in axes))]
    return [chosen[:axis_index] + [i] + chosen[axis_index + 1 :] for i in range(len(axes[axis_index].values))]


def _start(axes: list[Axis], base_config) -> list[int]:
    """Each axis starts at the base config's value when it lists it, else at its middle value."""
    from dama_asr.train.config import _flatten

    flat = _flatten(base_config.to_dict())
    start = []
    for axis in axes:
        current = tuple(flat.get(f) for f in axis.fields)
        start.append(axis.values.index(current) if current in axis.values else len(axis.values) // 2)
    return start


def run_search(
    base: dict, axes: list[Axis], out: Path, search: str = "coordinate",
    train_fn: Callable | None = None, max_trials: int = 0, prune_after: int = 0, prune_margin: float = 0.1,
) -> dict:  # fmt: skip
    """Train the trials the search needs (reusing finished ones, resuming unfinished ones) and write
    OUT/tune.json and OUT/recipe.yaml; returns the record. `base` is the nested config of every trial.
    prune_after > 0: stop a trial from that epoch on when it is clearly behind the finished ones
    (`dama_asr.tune.pruning`, the median stopping rule with `prune_margin`)."""
    from dama_asr.train import train
    from dama_asr.train.config import TrainConfig, TrainConfigError, apply_overrides

    train_fn = train_fn or train
    check_base(base, axes, search)
    if prune_after < 0 or prune_margin < 0:
        raise TuneError(
            f"--prune-after and --prune-margin: must be >= 0, got {prune_after} and {prune_margin}"
        )
    try:
        base_config = TrainConfig.from_dict({**base, "output_dir": str(out / "trials" / "base")})
        configs = {}
        for p in itertools.product(*(range(len(a.values)) for a in axes)):
            settings = {k: v for a, i in zip(axes, p, strict=True) for k, v in a.settings(i).items()}
            configs[p] = TrainConfig.from_dict(apply_overrides(base, settings)), settings
    except TrainConfigError as err:
        raise TuneError(f"a trial's config is invalid: {err}") from None
    out.mkdir(parents=True, exist_ok=True)
    chosen = _start(axes, base_config)
    trials: dict[str, Trial] = {}
    started = time.perf_counter()
    rounds = [0] if search == "grid" else range(len(axes))
    for axis_index in rounds:
        points = _points(axes, search, chosen, axis_index)
        for point in points:
            config, settings = configs[tuple(point)]
            name = trial_name(settings)
            if name not in trials:
                if max_trials and len(trials) >= max_trials:
                    raise TuneError(f"--max-trials {max_trials} reached; raise it to finish the search")
                log.info("tune: trial %d (%s)", len(trials) + 1, name)
                finished = [
                    t.summary.get("epochs") or [] for t in trials.values() if not t.summary.get("pruned")
                ]
                prune = median_stopping_rule(finished, prune_after, prune_margin)
                summary = _run_trial(config, out / "trials" / name, train_fn, prune)
                trials[name] = Trial(name, settings, summary)
                _write(out, base, axes, search, trials, None, started, (prune_after, prune_margin))
        scored = [trials[trial_name(configs[tuple(p)][1])] for p in points]
        best = _best(scored)
        best_point = points[scored.index(best)]
        chosen = list(best_point)
    best_config, best_settings = configs[tuple(chosen)]
    record = _write(
        out, base, axes, search, trials, trial_name(best_settings), started, (prune_after, prune_margin)
    )
    _write_recipe(out / RECIPE, best_config, record)
    return record


def _best(trials: list[Trial]) -> Trial:
    scored = [t for t in trials if t.dev_wer is not None]
    if not scored:
        raise TuneError("no trial produced a dev WER (is the dev set empty?)")
    return min(scored, key=lambda t: t.dev_wer)  # ties: the first listed (the axis's order)


def _run_trial(config, run_dir: Path, train_fn: Callable, prune=None) -> dict:
    import dataclasses

    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text(encoding="utf-8"))
    config = dataclasses.replace(config, output_dir=str(run_dir))
    # A trial killed mid-run continues from its last checkpoint (a run folder with a config has one, or
    # restarts from the beginning when it had not reached its first).
    resume = (run_dir / "config.yaml").is_file()
    return train_fn(config, resume=resume, prune=prune) if prune else train_fn(config, resume=resume)


def _write(out: Path, base: dict, axes, search, trials: dict[str, Trial], chosen, started, pruning) -> dict:
    record = {
        "search": search,
        "pruning": {"after_epochs": pruning[0], "margin": pruning[1]} if pruning[0] else None,
        "axes": [{"fields": list(a.fields), "values": [list(v) for v in a.values]} for a in axes],
        "base": {k: v for k, v in base.items() if k not in ("output_dir",)},
        "trials": [t.record() for t in trials.values()],
        "chosen": chosen,
        "chosen_settings": trials[chosen].settings if chosen else None,
        "chosen_dev_wer": trials[chosen].dev_wer if chosen else None,
        "status": "finished" if chosen else "running",
        "search_seconds": time.perf_counter() - started,
    }
    atomic_write_text(out / RECORD, json.dumps(record, indent=2, allow_nan=False))
    return record


def _write_recipe(path: Path, config, record: dict) -> None:
    data = {k: v for k, v in config.to_dict().items() if k not in NOT_IN_RECIPE}
    settings = ", ".join(f"{k}={v}" for k, v in record["chosen_settings"].items())
    header = (
        f"# Chosen by `dama tune` ({record['search']} search, {len(record['trials'])} trials) on the dev set\n"
        f"# {record['base']['dev']}: best dev WER {record['chosen_dev_wer']:.1%} with {settings}.\n"
        "# Usage: dama train --recipe THIS --train TRAIN.jsonl --dev DEV.jsonl --out RUN\n"
    )
    atomic_write_text(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
