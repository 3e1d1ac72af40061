"""The language-expansion study (`kind: expansion`): LoRA-Whisper's expansion rows, cell by cell, through
`dama bench`, on the adapter set of a language-experts study (`bench.experts_study`).

Cells (each a JSON file in <study>/cells/, written last, so a finished cell is never redone):

    base-languages              the base set on each base language's test set (language given): WER/CER
                                and a digest of every transcript, per language
    zero-shot-<lang>            the base model on a new language's test set
    <lang>-<init>__seed<k>      `expand_set(base set, lang, init)` (random | warm | moe): the new
                                language's WER/CER, the similarity ranking and start, whether every base
                                member's files are byte-identical in the expanded set, and, for the inits
                                in `rescore_base`, every base language re-scored with the expanded set
                                (transcripts compared with the base-languages cell's digests)

The base set, its languages' test sets and the training recipe are the base study's (its `train`
section, unless this config gives one): the new LoRA trains exactly as the base experts did. A new
language's training split is cut to `hours` (a nested subset); its test split to max_test_utterances.
Every expansion resumes from its last checkpoint when a sitting is interrupted.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.data.subset import hour_subset, total_hours
from dama_asr.errors import DamaError

INITS = ("random", "warm", "moe")
BASE_CELL = "base-languages"


class ExpansionStudyError(DamaError, ValueError):
    """An expansion study config that cannot run; the message names the key."""


@dataclass(frozen=True)
class ExpansionStudy:
    name: str
    base_study: Path  # a `kind: language-experts` config: its experts are the base set
    base_seed: int
    base_work_dir: Path | None  # where that study trains (default: $DAMA_HOME/bench/<its name>)
    new_languages: dict[str, dict[str, str]]  # code -> {train, dev, test}
    hours: float | None
    inits: tuple[str, ...]
    moe: dict  # top_k, gates
    similarity: dict  # utterances, min_utterances: how many of the new audio the ranking reads
    rescore_base: tuple[str, ...]  # inits whose expanded set re-scores every base language
    seeds: tuple[int, ...]
    max_test_utterances: int
    train: dict = field(default_factory=dict)  # overrides of the base study's train section
    source: str = ""

    @classmethod
    def from_dict(cls, data: dict, source: str = "", folder: Path | None = None) -> ExpansionStudy:
        known = {"name", "kind", "base", "new_languages", "hours", "inits", "moe", "similarity", "rescore_base", "seeds",
                 "max_test_utterances", "train"}  # fmt: skip
        unknown = set(data) - known
        if unknown:
            raise ExpansionStudyError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
        base = data.get("base") or {}
        if not base.get("study"):
            raise ExpansionStudyError(
                f"{source}: base.study: the language-experts config whose set is expanded"
            )
        new = data.get("new_languages") or {}
        if not new:
            raise ExpansionStudyError(
                f"{source}: new_languages: at least one, with train, dev and test manifests"
            )
        for code, paths in new.items():
            missing = [k for k in ("train", "dev", "test") if not (paths or {}).get(k)]
            if missing:
                raise ExpansionStudyError(f"{source}: new_languages.{code}: missing {', '.join(missing)}")
        inits = tuple(data.get("inits") or INITS)
        rescore = tuple(data.get("rescore_base") or ())
        bad = [i for i in (*inits, *rescore) if i not in INITS]
        if bad:
            raise ExpansionStudyError(
                f"{source}: inits/rescore_base: unknown {', '.join(bad)}; choose from {', '.join(INITS)}"
            )
        study = Path(base["study"])
        if not study.is_absolute() and folder is not None:
            study = folder / study
        work = base.get("work_dir")
        return cls(name=data.get("name", "expansion"), base_study=study, base_seed=int(base.get("seed", 0)),
                   base_work_dir=Path(work) if work else None, new_languages={c: dict(p) for c, p in new.items()},
                   hours=data.get("hours"), inits=inits, moe=dict(data.get("moe") or {}), similarity=dict(data.get("similarity") or {}), rescore_base=rescore,
                   seeds=tuple(data.get("seeds") or (0,)), max_test_utterances=int(data.get("max_test_utterances", 0)),
                   train=dict(data.get("train") or {}), source=source)  # fmt: skip

    def cell_ids(self) -> list[str]:
        ids = [BASE_CELL] + [f"zero-shot-{code}" for code in self.new_languages]
        return ids + [f"{code}-{init}__seed{seed}" for seed in self.seeds for code in self.new_languages
                      for init in self.inits]  # fmt: skip


def _digest(utterances: list[dict]) -> str:
    """One hash of a language's transcripts (id and text, in id order): equal digests, equal output."""
    lines = sorted(f"{u['id']}\t{u['hypothesis']}" for u in utterances)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _set_digest(folder: Path, members: list[str]) -> str:
    """One hash of the base members' files: which trained base set a base cell scored."""
    lines = [f"{m}/{name}\t{h}" for m in members for name, h in _files(folder / m).items()]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


class ExpansionStudyRunner:
    def __init__(self, study: ExpansionStudy, study_dir: Path, work_dir: Path) -> None:
        from dama_asr.bench.experts_study import ExpertsStudyRunner, load_experts_study
        from dama_asr.paths import dama_home

        self.study, self.study_dir, self.work = study, Path(study_dir), Path(work_dir)
        self.cells_dir = self.study_dir / "cells"
        if not study.base_study.is_file():
            raise ExpansionStudyError(f"{study.source}: base.study {study.base_study}: no such config")
        self.base_study = load_experts_study(study.base_study)
        base_work = study.base_work_dir or dama_home() / "bench" / self.base_study.name
        self.base = ExpertsStudyRunner(self.base_study, study.base_study.parent, base_work)
        # Decoder-only experts leave the encoder frozen: its outputs are cached across evaluations.
        self.frozen_encoder = not self.base_study.expert.get("encoder", True)

    # ---- data and models -------------------------------------------------------------------------
    def base_set(self) -> Path:
        return self.base.experts_dir(self.study.base_seed) / "experts"

    def manifest(self, code: str, split: str) -> Path:
        path = self.work / "data" / f"{code}.{split}.jsonl"
        if not path.is_file():
            items = read_manifest(self.study.new_languages[code][split])
            if split == "train" and self.study.hours:
                if total_hours(items) < self.study.hours:
                    raise ExpansionStudyError(
                        f"new_languages.{code}: only {total_hours(items):.2f} h of training audio"
                    )
                items = hour_subset(items, self.study.hours, seed=0)
            if split == "test" and self.study.max_test_utterances:
                items = items[: self.study.max_test_utterances]
            write_manifest(path, items, relative=False)
        return path

    def _backbone(self, adapter_set: Path | None = None, languages: list[str] | None = None):
        from dama_asr.adapters.sets import adapter_set_backbone
        from dama_asr.backbone.loading import load_backbone

        precision = self.base_study.train.get("precision", "auto")
        backbone = load_backbone(self.base_study.model, precision=precision).ready_for_inference()
        return backbone if adapter_set is None else adapter_set_backbone(backbone, adapter_set, languages)

    def _score(self, backbone, manifest: Path, languages: list[str]) -> tuple[dict, dict[str, str]]:
        from dama_asr.bench.experts_cells import OPTIONS, _scores
        from dama_asr.evaluate import evaluate_items

        result = evaluate_items(backbone, read_manifest(manifest), OPTIONS, reuse_encoder_outputs=self.frozen_encoder,
                                manifest=manifest, route="given")  # fmt: skip
        digests = {
            code: _digest([u for u in result["utterances"] if u["language"] == code]) for code in languages
        }
        return _scores(result, languages), digests

    def _template(self, code: str, seed: int):
        from dama_asr.train.config import TrainConfig

        train = {**self.base_study.train, **self.study.train}
        data = {**train, "model": self.base_study.model, "train": str(self.manifest(code, "train")),
                "dev": str(self.manifest(code, "dev")), "output_dir": str(self.work / "unused"),
                "adapter": {"method": "lora", **self.base_study.expert}, "seed": seed}  # fmt: skip
        return TrainConfig.from_dict(data)  # expand_set puts in the members' own adapter and OUT/run

    # ---- cells -----------------------------------------------------------------------------------
    def base_languages(self) -> dict:
        languages = list(self.base_study.languages)
        base_set = self.base_set()
        scores, digests = self._score(self._backbone(base_set), self.base.manifest("test"), languages)
        return {"rows": {"base set": scores}, "digests": digests, "languages": languages,
                "set_digest": _set_digest(base_set, languages)}  # fmt: skip

    def zero_shot(self, code: str) -> dict:
        scores, _ = self._score(self._backbone(), self.manifest(code, "test"), [code])
        return {"language": code, "rows": {"zero-shot": scores}}

    def expansion(self, code: str, init: str, seed: int) -> dict:
        from dama_asr.train.expansion import ExpansionOptions, expand_set

        options = ExpansionOptions(init=init, top_k=int(self.study.moe.get("top_k", 2)),
                                   gates=self.study.moe.get("gates", "similarity"), resume=True,
                                   similarity_utterances=int(self.study.similarity.get("utterances", 100)),
                                   min_similarity_utterances=int(self.study.similarity.get("min_utterances", 5)))  # fmt: skip
        out = self.work / f"{code}-{init}__seed{seed}"
        base_set = self.base_set()
        summary = expand_set(base_set, code, self._template(code, seed), out, options)
        expanded = out / "experts"
        scores, _ = self._score(self._backbone(expanded, [code]), self.manifest(code, "test"), [code])
        run = summary["run"]
        result = {"language": code, "init": init, "gates": options.gates if init == "moe" else None,
                  "rows": {init: scores}, "similarity": summary["similarity"], "start": summary["start"],
                  "members_identical": {m: _files(base_set / m) == _files(expanded / m) for m in self.base_study.languages},
                  "trainable_parameters": run["trainable_parameters"], "train_seconds": run["wall_seconds"],
                  "peak_rss_gib": run["peak_rss_bytes"] / 2**30, "precision": run["precision"]}  # fmt: skip
        if init in self.study.rescore_base:
            if not (self.cells_dir / f"{BASE_CELL}.json").is_file():  # asked for with --only
                self.run(only=[BASE_CELL])
            before = json.loads((self.cells_dir / f"{BASE_CELL}.json").read_text(encoding="utf-8"))
            languages = list(self.base_study.languages)
            if before.get("set_digest") != _set_digest(base_set, languages):
                # The base set was retrained since the base cell scored it (a fresh machine keeps the
                # committed cells, not the trained sets): "before" is this set, scored now.
                before = {**self.base_languages(), "rescored": True}
                result["base_before"] = before["rows"]["base set"]
            after, digests = self._score(self._backbone(expanded), self.base.manifest("test"), languages)
            result["base_after"] = after
            result["base_identical"] = {m: digests[m] == before["digests"][m] for m in languages}
        return result

    def run_cell(self, cell: str) -> dict:
        started = time.perf_counter()
        if cell == BASE_CELL:
            result = self.base_languages()
        elif cell.startswith("zero-shot-"):
            result = self.zero_shot(cell.removeprefix("zero-shot-"))
        else:
            name, _, seed = cell.partition("__seed")
            code, _, init = name.rpartition("-")
            result = {**self.expansion(code, init, int(seed)), "seed": int(seed)}
        return {"cell": cell, "base_seed": self.study.base_seed, "model": self.base_study.model, **result,
                "cell_seconds": time.perf_counter() - started, "finished": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip

    def run(self, only: list[str] | None = None) -> list[str]:
        from dama_asr.bench.cells import run_cells

        return run_cells(self.study.cell_ids(), self.cells_dir, self.work / "locks", self.run_cell, only)


def load_expansion_study(path: Path) -> ExpansionStudy:
    import yaml

    from dama_asr.paths import dama_home

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    text = json.dumps(data).replace("${DAMA_HOME}", str(dama_home()))
    return ExpansionStudy.from_dict(json.loads(text), source=str(path), folder=Path(path).parent)
