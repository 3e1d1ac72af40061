"""Language experts: one adapter per language of a multilingual manifest, trained apart, kept as one set.

`train_experts(config)` splits `config.train` (and `config.dev`) by language and runs the ordinary
trainer once per language, each run in its own folder with everything a run has (checkpoints, best/,
logs, resume); then every language's best adapter (final/ without a dev set) goes into one adapter set
(`dama_asr.adapters.sets`), with its dev WER as the member's metric. Layout of `config.output_dir`:

    data/<lang>.train.jsonl, data/<lang>.dev.jsonl   the per-language manifests (absolute audio paths)
    runs/<lang>/                                       one `dama train` run per language
    experts/                                           the adapter set (what MoLE, KD and eval read)
    experts_summary.json                               per-language run summaries and the set's path

Rerunning the same call resumes: finished languages are kept, an interrupted one resumes from its
last checkpoint, and the set is rebuilt from the finished runs. Seeds: every expert uses config.seed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from dama_asr.adapters.sets import AdapterSet
from dama_asr.atomic import atomic_write_text
from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.errors import DamaError
from dama_asr.languages import normalise_language
from dama_asr.train.config import TrainConfig
from dama_asr.train.loop import train

log = logging.getLogger(__name__)

EXPERTS_DIR = "experts"
SUMMARY = "experts_summary.json"


class ExpertsError(DamaError, ValueError):
    """Training data that cannot give one expert per language; the message names what is missing."""


def _by_language(manifest: str, where: str) -> dict[str, list]:
    groups: dict[str, list] = {}
    for item in read_manifest(manifest):
        if not item.language:
            raise ExpertsError(
                f"{where} {manifest}: item {item.id!r} has no language; experts need one per item"
            )
        groups.setdefault(normalise_language(item.language), []).append(item)
    return groups


def _run_state(run_dir: Path) -> str:
    if (run_dir / "summary.json").is_file():
        return "finished"
    return "started" if (run_dir / "config.yaml").is_file() else "new"


def train_experts(config: TrainConfig, languages: list[str] | None = None) -> dict:
    """Train one expert per language (all of the manifest's, or `languages`); returns the summary.

    `config` is the recipe of one expert (adapter, optimiser, ...); its train/dev manifests hold all
    languages and its output_dir is the experts' folder.
    """
    if config.adapter.saves_full_model:
        raise ExpertsError("experts: a full fine-tune is not an adapter; choose an adapter method (lora)")
    out = Path(config.output_dir)
    train_sets = _by_language(config.train, "--train")
    dev_sets = _by_language(config.dev, "--dev") if config.dev else {}
    wanted = [normalise_language(lang) for lang in languages] if languages else sorted(train_sets)
    missing = [lang for lang in wanted if lang not in train_sets]
    if missing:
        raise ExpertsError(
            f"experts: no training utterances for {', '.join(missing)} in {config.train} "
            f"(it holds {', '.join(sorted(train_sets))})"
        )
    summaries: dict[str, dict] = {}
    for lang in wanted:
        run_dir = out / "runs" / lang
        train_path = write_manifest(out / "data" / f"{lang}.train.jsonl", train_sets[lang], relative=False)
        dev_path = ""
        if lang in dev_sets:
            dev_path = str(write_manifest(out / "data" / f"{lang}.dev.jsonl", dev_sets[lang], relative=False))
        elif config.dev:
            log.warning(
                "experts: %s has no dev utterances in %s; its expert is the final epoch's", lang, config.dev
            )
        expert = dataclasses.replace(config, train=str(train_path), dev=dev_path, output_dir=str(run_dir))
        state = _run_state(run_dir)
        if state == "finished":
            log.info("experts: %s already trained (%s); kept", lang, run_dir)
            summaries[lang] = json.loads((run_dir / "summary.json").read_text())
            continue
        log.info("experts: training %s on %d utterances -> %s", lang, len(train_sets[lang]), run_dir)
        summaries[lang] = train(expert, resume=state == "started")
    experts = build_expert_set(config.model, out, wanted, summaries)
    summary = {"experts": str(experts), "languages": wanted, "runs": summaries,
               "trainable_parameters": sum(s["trainable_parameters"] for s in summaries.values())}  # fmt: skip
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2, allow_nan=False))
    return summary


def build_expert_set(model: str, out: Path, languages: list[str], summaries: dict[str, dict]) -> Path:
    """The adapter set of the finished runs' best adapters (final/ where no dev set chose one)."""
    from dama_asr.backbone.loading import load_backbone

    base = load_backbone(model, device="cpu", precision="no").model
    expert_set = AdapterSet.for_base(base, model)
    for lang in languages:
        run_dir = out / "runs" / lang
        best = run_dir / "best"
        folder = best if (best / "adapter_config.json").is_file() else run_dir / "final"
        wer = summaries[lang].get("best_dev_wer")
        expert_set.add(lang, folder, metrics={"dev_wer": wer} if wer is not None else None)
    return expert_set.save(out / EXPERTS_DIR)
