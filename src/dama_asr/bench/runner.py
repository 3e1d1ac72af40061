"""Run a study cell by cell; finished cells are never redone, so a study spans several sittings.

Committed: <study dir>/config.yaml and <study dir>/cells/*.json (one result per cell, plus
zero-shot and English baselines). Not committed: the training runs, under $DAMA_HOME/bench/<name>/.
Every cell shares the encoder-output cache, since all use the same backbone and audio.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path

import torch

from dama_asr.adapters import AdapterConfig, adapted_backbone
from dama_asr.atomic import atomic_write_text
from dama_asr.backbone.loading import Backbone, load_backbone
from dama_asr.bench.config import Cell, StudyConfig
from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.data.subset import hour_subset, total_hours
from dama_asr.evaluate import evaluate_items
from dama_asr.paths import dama_home
from dama_asr.transcribe import DecodingOptions

log = logging.getLogger(__name__)
NORMALISER = "whisper"  # the headline number; raw and script-safe are kept in the cell JSON too


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        out[key] = (
            _deep_merge(out.get(key, {}), value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def _scores(result: dict) -> dict:
    overall = result["by_language"]["all"]
    return {
        "wer": overall[NORMALISER]["wer"],
        "cer": overall[NORMALISER]["cer"],
        "wer_raw": overall["raw"]["wer"],
        "cer_raw": overall["raw"]["cer"],
        "wer_script_safe": overall["script_safe"]["wer"],
        "cer_script_safe": overall["script_safe"]["cer"],
        "utterances": overall["utterances"],
        "suspicious": overall["suspicious"],
    }


class StudyRunner:
    def __init__(self, study: StudyConfig, study_dir: str | Path, work_dir: str | Path | None = None):
        self.study = study
        self.study_dir = Path(study_dir)
        self.cells_dir = self.study_dir / "cells"
        self.work_dir = Path(work_dir) if work_dir else dama_home() / "bench" / study.name
        self._base: Backbone | None = None

    # ---- shared pieces -------------------------------------------------------------------------
    def base(self) -> Backbone:
        if self._base is None:
            self._base = load_backbone(self.study.model, precision=self.study.train.get("precision", "auto"))
            self._base.ready_for_inference()
        return self._base

    def _evaluate(
        self, backbone: Backbone, manifest: str, limit: int = 0, frozen_encoder: bool = True
    ) -> dict:
        """Score on a test manifest; a frozen (base) encoder's outputs are cached once for every cell."""
        items = read_manifest(manifest)
        items = items[:limit] if limit else items
        return evaluate_items(
            backbone, items, DecodingOptions(batch_size=16), reuse_encoder_outputs=frozen_encoder
        )

    def baseline(self, key: str, manifest: str, limit: int) -> dict:
        """Zero-shot scores of the base model on a test manifest, computed once and committed."""
        path = self.cells_dir / f"baseline__{key}.json"
        if path.is_file():
            return json.loads(path.read_text())
        scores = {"manifest": manifest, **_scores(self._evaluate(self.base(), manifest, limit))}
        atomic_write_text(path, json.dumps(scores, indent=2))
        return scores

    def train_subset(self, corpus: str, hours: float) -> Path:
        """The nested hour budget of a corpus' training split (data seed fixed across cells)."""
        path = self.work_dir / "data" / f"{corpus}-{hours:g}h.jsonl"
        if not path.is_file():
            items = read_manifest(self.study.corpora[corpus].train)
            if total_hours(items) < hours:
                raise ValueError(
                    f"corpus {corpus} has only {total_hours(items):.2f} h of training audio; cannot take {hours} h"
                )
            write_manifest(path, hour_subset(items, hours, seed=0), relative=False)
        return path

    # ---- one cell --------------------------------------------------------------------------------
    def train_config(self, cell: Cell):
        from dama_asr.train import TrainConfig

        corpus = self.study.corpora[cell.corpus]
        settings = _deep_merge(self.study.train, self.study.method_train.get(cell.method, {}))
        adapter = AdapterConfig.from_dict({"method": cell.method, **self.study.adapters.get(cell.method, {})})
        data = _deep_merge(settings, {
            "model": self.study.model, "train": str(self.train_subset(cell.corpus, cell.hours)), "dev": corpus.dev,
            "output_dir": str(self.work_dir / "runs" / cell.id), "seed": cell.seed, "adapter": adapter.to_dict(),
        })  # fmt: skip
        if cell.precision:
            data["precision"] = cell.precision
        return TrainConfig.from_dict(data)

    def run_cell(self, cell: Cell) -> dict:
        from dama_asr.train import train

        path = self.cells_dir / f"{cell.id}.json"
        if path.is_file():
            return json.loads(path.read_text())
        corpus = self.study.corpora[cell.corpus]
        zero_shot = self.baseline(cell.corpus, corpus.test, self.study.max_test_utterances)
        config = self.train_config(cell)
        resume = (Path(config.output_dir) / "checkpoints").is_dir()
        started = time.perf_counter()
        summary = train(config, resume=resume)
        run_dir = Path(config.output_dir)
        chosen = run_dir / "best" if (run_dir / "best").is_dir() else run_dir / "final"
        # Scored at the precision the cell trained in (what a user of that run would decode with).
        adapted = adapted_backbone(load_backbone(self.study.model, precision=summary["precision"]), chosen)
        frozen = not config.adapter.adapts_encoder
        result = {
            "cell": {
                "corpus": cell.corpus,
                "method": cell.method,
                "hours": cell.hours,
                "seed": cell.seed,
                "language": self._language(corpus.test),
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
            "test": _scores(self._evaluate(adapted, corpus.test, self.study.max_test_utterances, frozen)),
            "zero_shot": {"wer": zero_shot["wer"], "cer": zero_shot["cer"]},
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
            result["forgetting"] = {"en_wer_before": before["wer"], "en_wer_after": after["wer"]}
        atomic_write_text(path, json.dumps(result, indent=2))
        return result

    @staticmethod
    def _language(manifest: str) -> str:
        return next(iter(read_manifest(manifest))).language

    def run(self, only: list[str] | None = None) -> list[dict]:
        results = []
        cells = [c for c in self.study.cells() if not only or any(key in c.id for key in only)]
        for i, cell in enumerate(cells, 1):
            done = (self.cells_dir / f"{cell.id}.json").is_file()
            print(f"[{i}/{len(cells)}] {cell.id}{' (done)' if done else ''}", flush=True)
            results.append(self.run_cell(cell))
        return results
