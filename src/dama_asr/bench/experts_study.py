"""The language-experts study (`kind: language-experts`): the rows of the LoRA language experts paper on
several languages at once, cell by cell, resumable, through `dama bench`.

Cells (each a JSON file in <study>/cells/, written last, so a finished cell is never redone):

    zero-shot                       the base model, language given
    joint-one__seed<k>              one multilingual LoRA at one expert's rank (the standard fine-tune)
    joint-total__seed<k>            one multilingual LoRA at the experts' total parameters (rank x E)
    experts__seed<k>                one expert per language: rows "given" and "whisper-lid" routing
    mole__seed<k>                   MoLE over those experts: rows language-aware and language-agnostic
    kd-layerwise__seed<k>           a KD student, hidden states + logits; decoded language-agnostic
    kd-output__seed<k>              the same, logits only (the ablation)
    kd-lid__seed<k>                 kd-layerwise with the language token among the labels (prompt_loss),
                                    so that its own language detection is trained

A cell holds, per row: WER/CER per language and their average over languages (macro: every language
weighs the same), the routing accuracy where something routes, and the cell's trainable parameters,
training seconds and peak RSS. The experts are trained once per seed and shared by the cells that
build on them; every training run resumes from its checkpoints when a sitting is interrupted.
Hyperparameters come from the config's `train` section (the same for every row), chosen on dev data
only; test sets are scored once per row.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.data.subset import hour_subset, total_hours
from dama_asr.errors import DamaError

ROWS = ("zero-shot", "joint-one", "joint-total", "experts", "mole", "kd-layerwise", "kd-output", "kd-lid")


class ExpertsStudyError(DamaError, ValueError):
    """A language-experts study config that cannot run; the message names the key."""


@dataclass(frozen=True)
class ExpertsStudy:
    name: str
    model: str
    languages: dict[str, dict[str, str]]  # code -> {train, dev, test}
    hours: float | None  # per language (None: all of its training split)
    seeds: tuple[int, ...]
    rows: tuple[str, ...]
    expert: dict  # adapter options of one expert (and of the joint LoRAs, at their ranks)
    mole: dict
    student: dict  # r, and lr when the student's rank needs its own (else train.optim.lr)
    train: dict  # TrainConfig sections shared by every run
    max_test_utterances: int
    joint_total: dict = field(default_factory=dict)  # lr, as the student's
    # Rows that run at other seeds than `seeds` (the ablations at one seed, the main rows at all).
    seeds_by_row: dict[str, tuple[int, ...]] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> ExpertsStudy:
        unknown = set(data) - {"name", "kind", "model", "languages", "hours", "seeds", "rows", "expert", "mole",
                               "student", "joint_total", "train", "max_test_utterances", "seeds_by_row"}  # fmt: skip
        if unknown:
            raise ExpertsStudyError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
        languages = data.get("languages") or {}
        if len(languages) < 2:
            raise ExpertsStudyError(
                f"{source}: languages: at least two, each with train, dev and test manifests"
            )
        for code, paths in languages.items():
            missing = [k for k in ("train", "dev", "test") if not (paths or {}).get(k)]
            if missing:
                raise ExpertsStudyError(f"{source}: languages.{code}: missing {', '.join(missing)}")
        rows = tuple(data.get("rows") or ROWS)
        bad = [r for r in rows if r not in ROWS]
        if bad:
            raise ExpertsStudyError(
                f"{source}: rows: unknown {', '.join(bad)}; choose from {', '.join(ROWS)}"
            )
        seeds_by_row = {}
        for row, seeds in (data.get("seeds_by_row") or {}).items():
            if row not in rows or row == "zero-shot":
                raise ExpertsStudyError(
                    f"{source}: seeds_by_row.{row}: not a trained row of this study (rows: {', '.join(rows)})"
                )
            if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
                raise ExpertsStudyError(f"{source}: seeds_by_row.{row}: a non-empty list of integer seeds")
            seeds_by_row[row] = tuple(seeds)
        return cls(name=data.get("name", "language-experts"), model=data.get("model", "whisper-base"),
                   languages={c: dict(p) for c, p in languages.items()}, hours=data.get("hours"),
                   seeds=tuple(data.get("seeds") or (0,)), rows=rows, expert=dict(data.get("expert") or {}),
                   mole=dict(data.get("mole") or {}), student=dict(data.get("student") or {}),
                   train=dict(data.get("train") or {}), max_test_utterances=int(data.get("max_test_utterances", 0)),
                   joint_total=dict(data.get("joint_total") or {}), seeds_by_row=seeds_by_row,
                   source=source)  # fmt: skip

    def row_seeds(self, row: str) -> tuple[int, ...]:
        return self.seeds_by_row.get(row, self.seeds)

    def cell_ids(self) -> list[str]:
        """Seed by seed (a seed's experts serve every row built on them), rows in the config's order."""
        ids = ["zero-shot"] if "zero-shot" in self.rows else []
        seeds = sorted({s for row in self.rows if row != "zero-shot" for s in self.row_seeds(row)})
        return ids + [f"{row}__seed{seed}" for seed in seeds for row in self.rows
                      if row != "zero-shot" and seed in self.row_seeds(row)]  # fmt: skip


class ExpertsStudyRunner:
    def __init__(self, study: ExpertsStudy, study_dir: Path, work_dir: Path) -> None:
        self.study, self.study_dir, self.work = study, Path(study_dir), Path(work_dir)
        self.cells_dir = self.study_dir / "cells"

    # ---- data ----------------------------------------------------------------------------------
    def manifest(self, split: str) -> Path:
        """All languages' items of a split in one manifest (train: each language's hour budget)."""
        path = self.work / "data" / f"{split}.jsonl"
        if not path.is_file():
            items = []
            for code, paths in self.study.languages.items():
                part = read_manifest(paths[split])
                if split == "train" and self.study.hours:
                    if total_hours(part) < self.study.hours:
                        raise ExpertsStudyError(
                            f"languages.{code}: only {total_hours(part):.2f} h of training audio"
                        )
                    part = hour_subset(part, self.study.hours, seed=0)
                if split == "test" and self.study.max_test_utterances:
                    part = part[: self.study.max_test_utterances]
                items += part
            write_manifest(path, items, relative=False)
        return path

    # ---- configs ---------------------------------------------------------------------------------
    def _config(self, out: Path, adapter: dict, seed: int, **fields):
        from dama_asr.train.config import TrainConfig

        data = {**self.study.train, "model": self.study.model, "train": str(self.manifest("train")),
                "dev": str(self.manifest("dev")), "output_dir": str(out), "adapter": adapter, "seed": seed, **fields}  # fmt: skip
        return TrainConfig.from_dict(data)

    def optim_with_lr(self, section: dict) -> dict:
        """`fields` for `_config` giving a row its own peak learning rate (section["lr"]), if it has one."""
        if "lr" not in section:
            return {}
        return {"optim": {**self.study.train.get("optim", {}), "lr": float(section["lr"])}}

    def experts_dir(self, seed: int) -> Path:
        from dama_asr.train.experts import train_experts

        out = self.work / f"experts__seed{seed}"
        if not (out / "experts_summary.json").is_file():
            train_experts(self._config(out, {"method": "lora", **self.study.expert}, seed))
        return out

    # ---- cells -----------------------------------------------------------------------------------
    def run(self, only: list[str] | None = None) -> list[str]:
        from dama_asr.bench.cells import run_cells

        return run_cells(self.study.cell_ids(), self.cells_dir, self.work / "locks", self.run_cell, only)

    def run_cell(self, cell: str) -> dict:
        from dama_asr.bench import experts_cells
        from dama_asr.precision import machine_description

        row, _, seed_text = cell.partition("__seed")
        seed = int(seed_text) if seed_text else 0
        started = time.perf_counter()
        result = experts_cells.RUNNERS[row](self, seed)
        return {"cell": {"id": cell, "row": row, "seed": seed, "model": self.study.model,
                         "languages": list(self.study.languages), "hours_per_language": self.study.hours},
                **result, "cell_seconds": time.perf_counter() - started,
                # Minutes compare only on one machine: seeds of one row may run on different ones.
                "machine": machine_description(result.get("precision", "none")),
                "finished": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip


def load_experts_study(path: Path) -> ExpertsStudy:
    import yaml

    from dama_asr.paths import dama_home

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    text = json.dumps(data).replace("${DAMA_HOME}", str(dama_home()))
    return ExpertsStudy.from_dict(json.loads(text), source=str(path))


def is_experts_study(path: Path) -> bool:
    """Whether the config says `kind: language-experts`."""
    from dama_asr.bench.cells import config_kind

    return config_kind(path) == "language-experts"
