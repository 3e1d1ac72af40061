"""A study: a grid of corpora x methods x hour budgets x seeds, described by one YAML file.

name: whisper-base-cy
model: whisper-base
corpora:
  synth-cy: {train: ${DAMA_HOME}/corpora/synth/cy/train.jsonl, dev: ..., test: ...}
  czech: {train: ..., dev: ..., test: ..., hours: [0.5, 1]}  # optional: this corpus' own budgets
english_test: ${DAMA_HOME}/corpora/synth/en/test.jsonl   # optional: forgetting check
methods: {dama: {}, lora: {r: 32}, full: {}}                # adapter overrides per method
hours: [0.5, 1, 2]
seeds: [0]
train: {optim: {epochs: 5, batch_size: 8, lr: 1.0e-3}, eval: {max_utterances: 100}}
method_train: {full: {optim: {lr: 1.0e-5}}}                # training overrides per method
max_test_utterances: 0                                      # 0 = the whole test split
max_english_utterances: 60                                  # forgetting check sample
extra_cells: [{corpus: synth-cy, method: pissa, hours: 1},  # cells outside the full grid
              {corpus: czech, method: dama, hours: 0.5, seeds: [0, 1], precision: bf16}]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dama_asr.errors import DamaError


class StudyConfigError(DamaError, ValueError):
    pass


@dataclass(frozen=True)
class Corpus:
    name: str
    train: str
    dev: str
    test: str
    hours: tuple[float, ...] | None = None  # budgets of this corpus when it cannot take the study's


@dataclass(frozen=True)
class Cell:
    """One training run of a study. precision: '' = the study's `train.precision`; set on extra cells
    that repeat a grid cell at another precision (their id then ends in `__<precision>`)."""

    corpus: str
    method: str
    hours: float
    seed: int
    precision: str = ""

    @property
    def id(self) -> str:
        tag = f"__{self.precision}" if self.precision else ""
        return f"{self.corpus}__{self.method}__{self.hours:g}h__seed{self.seed}{tag}"


@dataclass(frozen=True)
class StudyConfig:
    name: str
    model: str
    corpora: dict[str, Corpus]
    methods: dict[str, dict]  # the grid's methods
    adapters: dict[str, dict]  # adapter options of every method, extra cells' included
    hours: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    train: dict = field(default_factory=dict)
    method_train: dict[str, dict] = field(default_factory=dict)
    english_test: str = ""
    max_test_utterances: int = 0
    max_english_utterances: int = 60
    extra_cells: tuple[Cell, ...] = ()
    probe_manifest: str = ""

    def cells(self) -> list[Cell]:
        grid = [
            Cell(corpus, method, float(hours), int(seed))
            for corpus in self.corpora
            for hours in (self.corpora[corpus].hours or self.hours)
            for method in self.methods
            for seed in self.seeds
        ]
        return grid + [c for c in self.extra_cells if c not in grid]


def _expand(value: str) -> str:
    return os.path.expanduser(os.path.expandvars(value)) if value else value


def load_study(path: str | Path) -> StudyConfig:
    path = Path(path)
    if not path.is_file():
        raise StudyConfigError(f"study config {path} does not exist")
    from dama_asr.paths import dama_home

    os.environ.setdefault("DAMA_HOME", str(dama_home()))
    data = yaml.safe_load(path.read_text()) or {}
    for key in ("name", "corpora", "methods", "hours"):
        if key not in data:
            raise StudyConfigError(f"{path}: missing '{key}'")
    corpora = {}
    for name, c in data["corpora"].items():
        missing = [k for k in ("train", "dev", "test") if k not in c]
        if missing:
            raise StudyConfigError(f"{path}: corpus {name} lacks {', '.join(missing)}")
        hours = tuple(float(h) for h in c["hours"]) if c.get("hours") else None
        corpora[name] = Corpus(name, _expand(c["train"]), _expand(c["dev"]), _expand(c["test"]), hours)
    methods = {m: dict(opts or {}) for m, opts in data["methods"].items()}
    adapters = dict(methods)
    extra = []
    for c in data.get("extra_cells", []) or []:
        for seed in c.get("seeds", [0]):
            extra.append(
                Cell(c["corpus"], c["method"], float(c["hours"]), int(seed), str(c.get("precision", "")))
            )
            adapters.setdefault(c["method"], dict(c.get("adapter", {})))
    return StudyConfig(
        name=data["name"],
        model=data.get("model", "whisper-base"),
        corpora=corpora,
        methods=methods,
        adapters=adapters,
        hours=tuple(float(h) for h in data["hours"]),
        seeds=tuple(int(s) for s in data.get("seeds", [0])),
        train=data.get("train", {}) or {},
        method_train=data.get("method_train", {}) or {},
        english_test=_expand(data.get("english_test", "")),
        max_test_utterances=int(data.get("max_test_utterances", 0)),
        max_english_utterances=int(data.get("max_english_utterances", 60)),
        extra_cells=tuple(extra),
        probe_manifest=_expand(data.get("probe_manifest", "")),
    )
