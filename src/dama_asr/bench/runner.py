"""Run a study cell by cell; finished cells are never redone, so a study spans several sittings.

Committed: <study dir>/config.yaml, <study dir>/cells/*.json (one result per cell, plus zero-shot
and English baselines) and beside each its cells/<id>.utterances.jsonl: the per-utterance hypotheses
(`dama_asr.report.utterances`), 30-60 KB per 100 test utterances. Not committed: the training runs,
under $DAMA_HOME/bench/<name>/.
Every cell shares the encoder-output cache, since all use the same backbone and audio.

Several processes may run one study together (`--only` lanes, `--shard` array jobs, or the same
command started twice, on one machine or several sharing the work folder): each cell is claimed with
a `FolderLock` under <work dir>/locks/<cell id>, and a cell that another live process holds is left
to it. Before any work, every cell's configuration is built and the selected cells' inputs checked, so
a typo fails in seconds rather than after hours of zero-shot evaluation and training.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dama_asr.adapters import adapted_backbone
from dama_asr.atomic import atomic_write_text
from dama_asr.backbone.loading import Backbone, load_backbone
from dama_asr.bench.config import Cell, StudyConfig, StudyConfigError
from dama_asr.data.manifest import ManifestError, read_manifest, write_manifest
from dama_asr.data.subset import hour_subset, total_hours
from dama_asr.errors import DamaError
from dama_asr.evaluate import EvaluationError, evaluate_items
from dama_asr.inference.decoding import DecodingOptions
from dama_asr.locks import AlreadyRunning, FolderLock
from dama_asr.paths import dama_home
from dama_asr.report.utterances import sidecar_path, write_sidecar

log = logging.getLogger(__name__)
NORMALISER = "whisper"  # the headline number; raw and script-safe are kept in the cell JSON too


class CellBusy(DamaError):
    """Another live process holds the cell; `holder` says which (host, pid, since)."""

    def __init__(self, cell_id: str, holder: str):
        super().__init__(f"study cell {cell_id} is being run by another process ({holder})")
        self.cell_id, self.holder = cell_id, holder


@dataclass
class StudyProgress:
    """What one `StudyRunner.run` saw: results of the finished cells, and cells other processes hold."""

    selected: list[str]
    results: list[dict] = field(default_factory=list)
    left_to_others: dict[str, str] = field(default_factory=dict)  # cell id -> holder

    def summary(self) -> str:
        line = f"{len(self.results)} of {len(self.selected)} selected cell(s) finished"
        if self.left_to_others:
            busy = "; ".join(f"{cell} ({who})" for cell, who in self.left_to_others.items())
            line += f"; {len(self.left_to_others)} left to another process: {busy}"
        return line


def _rates(group: dict) -> dict:
    return {
        "wer": group[NORMALISER]["wer"],
        "cer": group[NORMALISER]["cer"],
        "wer_raw": group["raw"]["wer"],
        "cer_raw": group["raw"]["cer"],
        "wer_script_safe": group["script_safe"]["wer"],
        "cer_script_safe": group["script_safe"]["cer"],
        "utterances": group["utterances"],
        "suspicious": group["suspicious"],
        # by rule (runaway, loop, ...), where the evaluation names them
        **({"suspicious_reasons": group["suspicious_reasons"]} if "suspicious_reasons" in group else {}),
    }


def _scores(result: dict) -> dict:
    """The overall scores (the headline keys), what was left out, and the same scores per language:
    a multilingual test set's corpus-level WER is dominated by its larger or worse languages."""
    return {
        **_rates(result["by_language"]["all"]),
        # What the numbers leave out (unreadable audio, empty references), so a reader can tell.
        "items_total": result["items_total"],
        "skipped": result["skipped"],
        "by_language": {lang: _rates(g) for lang, g in result["by_language"].items() if lang != "all"},
    }


def _zero_shot(baseline: dict) -> dict:
    # Baselines committed before per-language scores have none; their cells then report "–" per language.
    per_language = {
        lang: {"wer": s["wer"], "cer": s["cer"]} for lang, s in baseline.get("by_language", {}).items()
    }
    return {
        "wer": baseline["wer"],
        "cer": baseline["cer"],
        **({"by_language": per_language} if per_language else {}),
    }


def _holder(lock_path: Path) -> str:
    try:
        holder = json.loads(lock_path.read_text())
        return f"host {holder['host']}, pid {holder['pid']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"see {lock_path}"  # released or torn meanwhile


def _grouped(problems: dict[str, list[str]]) -> str:
    parts = []
    for message, cells in problems.items():
        shown = ", ".join(cells[:3]) + (f" and {len(cells) - 3} more" if len(cells) > 3 else "")
        parts.append(f"{message} (cell{'s' if len(cells) > 1 else ''} {shown})")
    return "; ".join(parts)


class StudyRunner:
    def __init__(self, study: StudyConfig, study_dir: str | Path, work_dir: str | Path | None = None):
        self.study = study
        self.study_dir = Path(study_dir)
        self.cells_dir = self.study_dir / "cells"
        self.work_dir = Path(work_dir) if work_dir else dama_home() / "bench" / study.name
        self._base: Backbone | None = None

    @property
    def _what(self) -> str:
        return f"study {self.study.name}" + (f" ({self.study.source})" if self.study.source else "")

    # ---- shared pieces -------------------------------------------------------------------------
    def base(self) -> Backbone:
        if self._base is None:
            self._base = load_backbone(self.study.model, precision=self.study.train.get("precision", "auto"))
            self._base.ready_for_inference()
        return self._base

    def _evaluate(
        self,
        backbone: Backbone,
        manifest: str,
        limit: int = 0,
        frozen_encoder: bool = True,
        sidecar: Path | None = None,
    ) -> dict:
        """Score on a test manifest; a frozen (base) encoder's outputs are cached once for every cell.
        With `sidecar`, the per-utterance hypotheses go there (written before the cell, which marks it done)."""
        items = read_manifest(manifest)
        items = items[:limit] if limit else items
        try:
            result = evaluate_items(
                backbone,
                items,
                DecodingOptions(batch_size=16),
                reuse_encoder_outputs=frozen_encoder,
                max_skipped=self.study.max_skipped,
                manifest=manifest,
            )
        except EvaluationError as err:
            raise EvaluationError(
                f"{self._what}: {err} (a study's limit is `max_skipped` in its config, "
                f"now {self.study.max_skipped!r})"
            ) from err
        if sidecar is not None:
            write_sidecar(sidecar, result["utterances"], {item.id: item.audio for item in items})
        return result

    def baseline(self, key: str, manifest: str, limit: int) -> dict:
        """Zero-shot scores of the base model on a test manifest, computed once and committed."""
        path = self.cells_dir / f"baseline__{key}.json"
        if path.is_file():
            # Even one committed before sidecars, without its hypotheses: the report says they are
            # missing, and deleting the file records them.
            return json.loads(path.read_text())
        result = self._evaluate(self.base(), manifest, limit, sidecar=sidecar_path(path))
        scores = {"manifest": manifest, **_scores(result)}
        atomic_write_text(path, json.dumps(scores, indent=2, allow_nan=False))
        return scores

    def _subset_path(self, corpus: str, hours: float) -> Path:
        return self.work_dir / "data" / f"{corpus}-{hours:g}h.jsonl"

    def train_subset(self, corpus: str, hours: float) -> Path:
        """The nested hour budget of a corpus' training split (data seed fixed across cells)."""
        path = self._subset_path(corpus, hours)
        if not path.is_file():
            items = read_manifest(self.study.corpora[corpus].train)
            if total_hours(items) < hours:
                raise StudyConfigError(
                    f"corpus {corpus} has only {total_hours(items):.2f} h of training audio; cannot take {hours} h"
                )
            write_manifest(path, hour_subset(items, hours, seed=0), relative=False)
        return path

    def cell_path(self, cell: Cell) -> Path:
        return self.cells_dir / f"{cell.id}.json"

    def lock_folder(self, cell: Cell) -> Path:
        # Not the run folder itself: the trainer locks that one, and a lock is not re-entrant.
        return self.work_dir / "locks" / cell.id

    # ---- checks before any work ------------------------------------------------------------------
    def train_config(self, cell: Cell):
        """The cell's TrainConfig (its adapter included); builds nothing on disk."""
        from dama_asr.train import TrainConfig

        corpus = self.study.corpora[cell.corpus]
        data = {
            **self.study.train_settings(cell),
            "model": self.study.model,
            "train": str(self._subset_path(cell.corpus, cell.hours)),
            "dev": corpus.dev,
            "output_dir": str(self.work_dir / "runs" / cell.id),
            "seed": cell.seed,
            # TrainConfig builds and checks the adapter as it does for a recipe's `adapter:`.
            "adapter": {"method": cell.method, **self.study.adapters.get(cell.method, {})},
        }
        return TrainConfig.from_dict(data)

    def cell_configs(self, cells: list[Cell] | None = None) -> dict:
        """Every cell's TrainConfig by id; all the cells that cannot be configured in one error."""
        from dama_asr.train import TrainConfigError

        configs, problems = {}, defaultdict(list)
        cells = self.study.cells() if cells is None else cells
        for cell in cells:
            try:
                configs[cell.id] = self.train_config(cell)
            except TrainConfigError as err:
                problems[str(err)].append(cell.id)
        if problems:
            bad = sum(len(ids) for ids in problems.values())
            raise StudyConfigError(
                f"{self._what}: {bad} of {len(cells)} cell(s) cannot be configured, so nothing was run; "
                f"fix `methods`, `extra_cells` or `train` in the study config: {_grouped(problems)}"
            )
        return configs

    def check_inputs(self, cells: list[Cell]) -> None:
        """The manifests that the cells will read exist and hold their hour budgets."""
        problems, budgets = [], defaultdict(float)
        for cell in cells:
            if not self._subset_path(cell.corpus, cell.hours).is_file():
                budgets[cell.corpus] = max(budgets[cell.corpus], cell.hours)
            corpus = self.study.corpora[cell.corpus]
            for split in (corpus.dev, corpus.test):
                if not Path(split).is_file():
                    problems.append(f"corpus {cell.corpus}: manifest {split} does not exist")
        for name, hours in budgets.items():
            try:
                have = total_hours(read_manifest(self.study.corpora[name].train))
            except ManifestError as err:
                problems.append(f"corpus {name}: {err}")
                continue
            if have < hours:
                problems.append(
                    f"corpus {name} has only {have:.2f} h of training audio; a cell asks for {hours:g} h"
                )
        if cells and self.study.english_test and not Path(self.study.english_test).is_file():
            problems.append(f"english_test: manifest {self.study.english_test} does not exist")
        if problems:
            raise StudyConfigError(f"{self._what}: nothing was run; " + "; ".join(dict.fromkeys(problems)))

    # ---- one cell --------------------------------------------------------------------------------
    def run_cell(self, cell: Cell) -> dict:
        """The cell's result, from its file or by running it; CellBusy if another process holds it."""
        path = self.cell_path(cell)
        if path.is_file():
            return json.loads(path.read_text())
        lock = FolderLock(self.lock_folder(cell), f"study cell {cell.id}")
        try:
            lock.acquire()
        except AlreadyRunning as err:
            raise CellBusy(cell.id, _holder(lock.path)) from err
        try:
            if path.is_file():  # finished by another process between our look and our lock
                return json.loads(path.read_text())
            return self._run_cell(cell, path)
        finally:
            lock.release()

    def _run_cell(self, cell: Cell, path: Path) -> dict:
        from dama_asr.train import train

        corpus = self.study.corpora[cell.corpus]
        zero_shot = self.baseline(cell.corpus, corpus.test, self.study.max_test_utterances)
        config = self.train_config(cell)
        self.train_subset(cell.corpus, cell.hours)
        resume = (Path(config.output_dir) / "checkpoints").is_dir()
        started = time.perf_counter()
        summary = train(config, resume=resume)
        run_dir = Path(config.output_dir)
        chosen = run_dir / "best" if (run_dir / "best").is_dir() else run_dir / "final"
        # Scored at the precision the cell trained in (what a user of that run would decode with).
        adapted = adapted_backbone(load_backbone(self.study.model, precision=summary["precision"]), chosen)
        frozen = not config.adapter.adapts_encoder
        limit = self.study.max_test_utterances
        test = _scores(self._evaluate(adapted, corpus.test, limit, frozen, sidecar=sidecar_path(path)))
        languages = sorted(test["by_language"])
        result = {
            "cell": {
                "corpus": cell.corpus,
                "method": cell.method,
                "hours": cell.hours,
                "seed": cell.seed,
                # One language as before; a multilingual test set's are joined, "cy+en", so its
                # tables are headed by all of them (its per-language scores are under test.by_language).
                "language": "+".join(languages),
                "languages": languages,
                "precision": summary["precision"],
            },
            "train_hours": total_hours(read_manifest(config.train)),
            "adapter": config.adapter.to_dict(),
            "trainable_parameters": summary["trainable_parameters"],
            "train": {
                "seconds_per_epoch": summary["seconds_per_epoch"],
                "samples_per_second": max(summary["samples_per_second"] or [0.0]),
                # allocated CUDA memory on a GPU, resident memory on a CPU
                "peak_memory_gib": summary.get("peak_cuda_allocated_bytes", summary.get("peak_rss_bytes", 0))
                / 2**30,
                "encoder_cache_build_seconds": summary["encoder_cache_build_seconds"],
                "dev_wer": [h.get("dev_wer") for h in summary["epochs"]],
                "best_epoch": summary["best_epoch"],
                "status": summary["status"],
            },
            "evaluated_checkpoint": chosen.name,
            "test": test,
            "zero_shot": _zero_shot(zero_shot),
            "wall_seconds": time.perf_counter() - started,
            # Times depend on these: a study may run as two 1-thread lanes side by side.
            "machine": {
                "torch_threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "device": summary["device"],
            },
        }
        if self.study.english_test:
            limit = self.study.max_english_utterances
            before = self.baseline("english", self.study.english_test, limit)
            after = _scores(self._evaluate(adapted, self.study.english_test, limit, frozen))
            result["forgetting"] = {
                "en_wer_before": before["wer"],
                "en_wer_after": after["wer"],
                "skipped": after["skipped"],
            }
        atomic_write_text(path, json.dumps(result, indent=2, allow_nan=False))
        return result

    def run(self, only: list[str] | None = None, shard: tuple[int, int] | None = None) -> StudyProgress:
        """Run the selected cells (see `StudyConfig.select`) that are neither finished nor held elsewhere."""
        cells = self.study.select(only, shard)
        # Every cell of the study, not only this lane's: a typo stops all lanes before any of them works.
        self.cell_configs()
        self.check_inputs([c for c in cells if not self.cell_path(c).is_file()])
        progress = StudyProgress(selected=[c.id for c in cells])
        for i, cell in enumerate(cells, 1):
            head = f"[{i}/{len(cells)}] {cell.id}"
            done = self.cell_path(cell).is_file()
            print(f"{head}{' (done)' if done else ''}", flush=True)
            try:
                progress.results.append(self.run_cell(cell))
            except CellBusy as busy:
                progress.left_to_others[cell.id] = busy.holder
                print(f"  left to another process ({busy.holder})", flush=True)
        return progress
