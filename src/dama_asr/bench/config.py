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
max_skipped: 0             # unscorable test/English utterances allowed: 3, 0.05 or "5%"; null = any
extra_cells: [{corpus: synth-cy, method: pissa, hours: 1},  # cells outside the full grid
              {corpus: czech, method: dama, hours: 0.5, seeds: [0, 1], precision: bf16}]

Every key is checked when the file is read: a typo is an error naming the key and the closest valid
one, since a silently ignored option would change what a whole study measures. `train:` and
`method_train:` sections go through `TrainConfig`, the same validation as a `dama train` recipe.
"""

from __future__ import annotations

import copy
import difflib
import os
import typing
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from dama_asr.errors import DamaError


class StudyConfigError(DamaError, ValueError):
    pass


STUDY_KEYS = (
    "name", "model", "corpora", "methods", "hours", "seeds", "train", "method_train", "english_test",
    "max_test_utterances", "max_english_utterances", "max_skipped", "extra_cells", "probe_manifest",
)  # fmt: skip
CORPUS_KEYS = ("train", "dev", "test", "hours")
EXTRA_CELL_KEYS = ("corpus", "method", "hours", "seeds", "precision", "adapter")
# The runner sets these for every cell; a value under `train:` would be overwritten without a word.
CELL_OWNED_TRAIN_KEYS = {
    "model": "the study's `model`",
    "train": "the cell's hour subset of its corpus",
    "dev": "the corpus' `dev`",
    "output_dir": "the cell's run folder",
    "seed": "the cell's seed",
    "adapter": "`methods` (or an extra cell's `adapter`)",
}


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
    # Strict by default: a skipped utterance leaves the WER's denominator, and cells must compare.
    max_skipped: int | float | str | None = 0
    extra_cells: tuple[Cell, ...] = ()
    probe_manifest: str = ""
    source: str = ""  # the YAML file it was read from, for messages

    def cells(self) -> list[Cell]:
        grid = [
            Cell(corpus, method, float(hours), int(seed))
            for corpus in self.corpora
            for hours in (self.corpora[corpus].hours or self.hours)
            for method in self.methods
            for seed in self.seeds
        ]
        return grid + [c for c in self.extra_cells if c not in grid]

    def select(self, only: list[str] | None = None, shard: tuple[int, int] | None = None) -> list[Cell]:
        """The cells whose id contains one of `only`, of shard (i, n) (see `parse_shard`), in study order."""
        cells = self.cells()
        if shard is not None:
            index, count = shard
            ordered = sorted(c.id for c in cells)
            mine = {cell_id for k, cell_id in enumerate(ordered) if k % count == index - 1}
            cells = [c for c in cells if c.id in mine]
        return [c for c in cells if not only or any(key in c.id for key in only)]

    def train_settings(self, cell: Cell) -> dict:
        """The study's `train:` with the method's `method_train:` and the cell's precision on top."""
        settings = deep_merge(self.train, self.method_train.get(cell.method, {}))
        if cell.precision:
            settings["precision"] = cell.precision
        return settings


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), 1 <= I <= N: shard I of N takes the cells at positions k (0-based, cells sorted
    by id) with k % N == I - 1, so N array jobs (SLURM_ARRAY_TASK_ID 1..N) share a study out."""
    index, sep, count = str(text).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = 0
    if not sep or not 1 <= i <= n:
        raise StudyConfigError(
            f"--shard: expected I/N with 1 <= I <= N (e.g. 2/4, or $SLURM_ARRAY_TASK_ID/4 with "
            f"--array=1-4), got {text!r}"
        )
    return i, n


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        out[key] = (
            deep_merge(out.get(key, {}), value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


# ---- validation ----------------------------------------------------------------------------------
def _check_keys(data: dict, known: typing.Iterable[str], where: str) -> None:
    known = sorted(known)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise StudyConfigError(f"{where}: unknown key {key!r}{hint} (valid: {', '.join(known)})")


def _mapping(value: Any, where: str, empty_ok: bool = True) -> dict:
    if value is None and empty_ok:
        return {}
    if not isinstance(value, dict):
        raise StudyConfigError(f"{where}: expected a mapping (key: value), got {value!r}")
    return value


def _numbers(value: Any, where: str, kind: type = float, positive: bool = False) -> tuple:
    values = value if isinstance(value, list | tuple) else [value]
    try:
        out = tuple(kind(v) for v in values)
        if kind is int and any(float(v) != int(v) for v in values):
            raise ValueError
    except (TypeError, ValueError):
        raise StudyConfigError(f"{where}: expected a list of {kind.__name__}s, got {value!r}") from None
    if not out:
        raise StudyConfigError(f"{where}: the list is empty")
    if positive and min(out) <= 0:
        raise StudyConfigError(f"{where}: hour budgets must be > 0, got {value!r}")
    return out


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StudyConfigError(f"{where}: expected a whole number >= 0, got {value!r}")
    return value


def _max_skipped(value: Any, where: str) -> int | float | str | None:
    """As `evaluate_items` takes it: a count (3), a fraction (0.05) or a percentage ("5%"); null = any."""
    from dama_asr.evaluate import EvaluationError, parse_max_skipped

    try:
        parse_max_skipped(value)
    except EvaluationError as err:
        raise StudyConfigError(f"{where}: {err}") from err
    return value


def _check_train_keys(data: dict, cls: type, where: str) -> None:
    """Unknown keys, recursively through TrainConfig's sections, with the closest valid one."""
    hints = typing.get_type_hints(cls)
    _check_keys(data, hints, where)
    for key, value in data.items():
        if is_dataclass(hints[key]) and isinstance(value, dict):
            _check_train_keys(value, hints[key], f"{where}.{key}")


def check_train_section(section: Any, where: str) -> dict:
    """A `train:` or `method_train.<m>:` section, validated as `dama train` validates a recipe."""
    from dama_asr.train.config import TrainConfig, TrainConfigError

    section = _mapping(section, where)
    for key, source in CELL_OWNED_TRAIN_KEYS.items():
        if key in section:
            raise StudyConfigError(f"{where}.{key}: set per cell by the study (from {source}); remove it")
    _check_train_keys(section, TrainConfig, where)
    try:  # values (types, ranges) as a recipe's; `train` and `dev` stand in for the cell's own
        TrainConfig.from_dict(
            {**copy.deepcopy(section), "train": "cell-subset.jsonl", "dev": "cell-dev.jsonl"}
        )
    except TrainConfigError as err:
        raise StudyConfigError(f"{where}: {err}") from err
    replay = section.get("replay")
    if isinstance(replay, dict) and replay.get("train"):  # a manifest path, like the corpora's
        section["replay"] = {**replay, "train": _expand(str(replay["train"]))}
    return section


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise StudyConfigError(
            f"study config {path} {what}; pass a study YAML (see benchmarks/*/config.yaml)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise StudyConfigError(f"study config {path} is not UTF-8 text ({err.reason})") from err
    except yaml.YAMLError as err:
        # PyYAML's message spans several lines; the CLI prints one, so keep the mark and the problem.
        mark = getattr(err, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise StudyConfigError(
            f"study config {path}{at}: not valid YAML ({problem}); fix the syntax"
        ) from err
    if not isinstance(data, dict):
        raise StudyConfigError(
            f"study config {path}: the top level must be a mapping (name:, corpora:, methods:, hours: ...), "
            f"got {type(data).__name__}"
        )
    return data


def _expand(value: str) -> str:
    return os.path.expanduser(os.path.expandvars(value)) if value else value


def _corpora(data: dict, where: str) -> dict[str, Corpus]:
    corpora = {}
    for name, c in _mapping(data["corpora"], f"{where} corpora", empty_ok=False).items():
        at = f"{where} corpora.{name}"
        c = _mapping(c, at, empty_ok=False)
        _check_keys(c, CORPUS_KEYS, at)
        missing = [k for k in ("train", "dev", "test") if not c.get(k)]
        if missing:
            raise StudyConfigError(f"{at}: lacks {', '.join(missing)} (manifest paths)")
        hours = _numbers(c["hours"], f"{at}.hours", positive=True) if c.get("hours") else None
        corpora[str(name)] = Corpus(
            str(name), _expand(str(c["train"])), _expand(str(c["dev"])), _expand(str(c["test"])), hours
        )
    return corpora


def _extra_cells(data: dict, corpora: dict, adapters: dict, where: str) -> tuple[Cell, ...]:
    extra = []
    for i, c in enumerate(data.get("extra_cells") or []):
        at = f"{where} extra_cells[{i}]"
        c = _mapping(c, at, empty_ok=False)
        _check_keys(c, EXTRA_CELL_KEYS, at)
        missing = [k for k in ("corpus", "method", "hours") if k not in c]
        if missing:
            raise StudyConfigError(f"{at}: lacks {', '.join(missing)}")
        if c["corpus"] not in corpora:
            raise StudyConfigError(
                f"{at}: unknown corpus {c['corpus']!r}; the study has {', '.join(corpora)}"
            )
        method, options = str(c["method"]), dict(_mapping(c.get("adapter"), f"{at}.adapter"))
        # A cell id does not name adapter options, so one method must mean one adapter in a study.
        if method in adapters and "adapter" in c and options != adapters[method]:
            raise StudyConfigError(
                f"{at}.adapter: method {method} already has the options {adapters[method]}; a study gives "
                "each method one set (name a variant as its own method to compare options)"
            )
        adapters.setdefault(method, options)
        hours = _numbers(c["hours"], f"{at}.hours", positive=True)
        if len(hours) != 1:
            raise StudyConfigError(f"{at}.hours: one budget per extra cell, got {c['hours']!r}")
        precision = str(c.get("precision") or "")
        for seed in _numbers(c.get("seeds", [0]), f"{at}.seeds", int):
            extra.append(Cell(str(c["corpus"]), method, hours[0], seed, precision))
    return tuple(extra)


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML; every error names the file and the key."""
    path = Path(path)
    data = _read_yaml(path)
    from dama_asr.paths import dama_home

    os.environ.setdefault("DAMA_HOME", str(dama_home()))
    where = f"study config {path}:"
    _check_keys(data, STUDY_KEYS, where.rstrip(":"))
    for key in ("name", "corpora", "methods", "hours"):
        if key not in data:
            raise StudyConfigError(f"{where} missing '{key}'")
    corpora = _corpora(data, where)
    methods = {
        str(m): dict(_mapping(opts, f"{where} methods.{m}"))
        for m, opts in _mapping(data["methods"], f"{where} methods", empty_ok=False).items()
    }
    adapters = dict(methods)
    extra = _extra_cells(data, corpora, adapters, where)
    train = check_train_section(data.get("train"), f"{where} train")
    method_train = {}
    for method, section in _mapping(data.get("method_train"), f"{where} method_train").items():
        if method not in adapters:
            raise StudyConfigError(
                f"{where} method_train.{method}: no cell uses method {method!r} (methods: {', '.join(adapters)})"
            )
        method_train[method] = check_train_section(section, f"{where} method_train.{method}")
    return StudyConfig(
        name=str(data["name"]),
        model=str(data.get("model", "whisper-base")),
        corpora=corpora,
        methods=methods,
        adapters=adapters,
        hours=_numbers(data["hours"], f"{where} hours", positive=True),
        seeds=_numbers(data.get("seeds", [0]), f"{where} seeds", int),
        train=train,
        method_train=method_train,
        english_test=_expand(str(data.get("english_test") or "")),
        max_test_utterances=_count(data.get("max_test_utterances", 0), f"{where} max_test_utterances"),
        max_english_utterances=_count(
            data.get("max_english_utterances", 60), f"{where} max_english_utterances"
        ),
        max_skipped=_max_skipped(data.get("max_skipped", 0), f"{where} max_skipped"),
        extra_cells=extra,
        probe_manifest=_expand(str(data.get("probe_manifest") or "")),
        source=str(path),
    )
