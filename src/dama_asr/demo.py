"""`dama demo`: the toolkit's main job, end to end, on the embedded default (about 8 min on a fresh 2-core
machine with native bf16; 12 min in float32).

1. build synthetic corpora (Welsh to adapt to; four more languages for the probe) from Debian packages;
2. probe Whisper-base's layers for language identity and plot the curve;
3. train DAMA and uniform LoRA (rank 64, the paper's baseline) on a small Welsh budget;
4. evaluate both and the zero-shot model on held-out voices and sentences;
5. write the report (HTML + markdown) and print the table.
The scale is set so that it fits the time budget on a laptop-class CPU and still shows a clear WER drop.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import yaml

from dama_asr.atomic import atomic_write_text
from dama_asr.paths import dama_home
from dama_asr.precision import machine_description

LANGUAGE = "cy"
PROBE_LANGUAGES = ("cy", "lt", "ka", "sl", "en")


def _build_corpora() -> Path:
    from dama_asr.data.synth import build_synth_corpus, default_synth_dir
    from dama_asr.data.synth_plan import SynthConfig

    corpora = default_synth_dir()
    # Languages built before (by an earlier demo or `dama data synth`, perhaps with more hours) are used
    # as they are: rebuilding at 0.5 h would shrink a bigger training manifest someone else relies on.
    missing = tuple(
        lang for lang in PROBE_LANGUAGES
        if not all((corpora / lang / f"{split}.jsonl").is_file() for split in ("train", "dev", "test"))
    )  # fmt: skip
    if missing:
        # The same settings as `dama data synth --hours 0.5`.
        build_synth_corpus(SynthConfig(languages=missing, hours=0.5))
    return corpora


def _probe(corpora: Path, out: Path, per_language: int, precision: str) -> Path:
    from dama_asr.backbone.loading import load_backbone
    from dama_asr.data.manifest import read_manifest
    from dama_asr.probe import ProbeOptions, plot_probe, run_probe, save_probe

    items = [
        u for lang in PROBE_LANGUAGES for u in read_manifest(corpora / lang / "dev.jsonl")[:per_language]
    ]
    backbone = load_backbone("whisper-base", precision=precision).ready_for_inference()
    result = run_probe(backbone, items, ProbeOptions(folds=5, layers="decoder"))
    save_probe(result, out / "probes" / "whisper-base.json")
    plot_probe(result, out / "probe.png")
    acc = ", ".join(f"{a:.0%}" for a in result.decoder.mean)
    print(
        f"probe accuracy per decoder layer (0 = embeddings): {acc}; suggested theta1/theta2 = {result.thetas}"
    )
    return out / "probes" / "whisper-base.json"


def demo_study(
    corpora: Path,
    hours: float,
    epochs: int,
    test_utterances: int,
    dev_utterances: int = 24,
    precision: str = "auto",
) -> dict:
    return {
        "name": "demo",
        "model": "whisper-base",
        "corpora": {
            f"synth-{LANGUAGE}": {
                split: str(corpora / LANGUAGE / f"{split}.jsonl") for split in ("train", "dev", "test")
            }
        },
        "max_test_utterances": test_utterances,
        "methods": {"dama": {"r_high": 32, "r_low": 8}, "lora": {"r": 64}},
        "hours": [hours],
        "seeds": [0],
        "train": {
            "optim": {"epochs": epochs, "batch_size": 8, "lr": 1.0e-3, "schedule": "linear"},
            # patience 0: every epoch runs, as when the committed timing (docs/demo/timing.json) was taken
            "eval": {"max_utterances": dev_utterances, "normaliser": "whisper", "patience": 0},
            "precision": precision,
        },
    }


def _headline(cells: list[dict]) -> dict:
    """Test WER per method and zero-shot, for the README's sentence (scripts/make_results.py writes it)."""
    trained = [c for c in cells if "cell" in c]
    wer = {c["cell"]["method"]: c["test"]["wer"] for c in trained}
    if trained:
        wer = {"zero-shot": trained[0]["zero_shot"]["wer"], **dict(sorted(wer.items()))}
    return {"test_wer": wer, "test_utterances": trained[0]["test"]["utterances"] if trained else 0,
            "seeds": len({c["cell"]["seed"] for c in trained}),
            "precision_used": trained[0]["cell"].get("precision", "?") if trained else "?"}  # fmt: skip


def run_demo(
    out_dir: Path | None = None,
    hours: float = 0.15,
    epochs: int = 3,
    test_utterances: int = 48,
    probe_per_language: int = 20,
    dev_utterances: int = 24,
    precision: str = "auto",
) -> Path:
    from dama_asr.bench.config import load_study
    from dama_asr.bench.runner import StudyRunner
    from dama_asr.report import aggregate, build_report, load_cell_results, markdown_tables

    started = time.perf_counter()
    seconds: dict[str, float] = {}
    out = out_dir or dama_home() / "demo"
    out.mkdir(parents=True, exist_ok=True)
    print("[1/4] synthetic corpora (Debian catalogues + espeak-ng; reused when present)")
    corpora = _build_corpora()
    seconds["corpora"] = time.perf_counter() - started
    print("[2/4] language-ID probe of the decoder layers")
    if not (out / "probes" / "whisper-base.json").is_file():
        _probe(corpora, out, probe_per_language, precision)
    seconds["probe"] = time.perf_counter() - started - sum(seconds.values())
    print(f"[3/4] training DAMA and LoRA-64 on {hours} h of Welsh, then evaluating (finished cells are kept)")
    config_path = out / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            demo_study(corpora, hours, epochs, test_utterances, dev_utterances, precision), sort_keys=False
        )
    )
    StudyRunner(load_study(config_path), out, work_dir=out / "work").run()
    seconds["train_and_evaluate"] = time.perf_counter() - started - sum(seconds.values())
    print("[4/4] report")
    page = build_report(out, title="dama-asr demo: DAMA vs LoRA on Whisper-base, synthetic Welsh")
    print(markdown_tables(aggregate(load_cell_results(out))))
    total = time.perf_counter() - started
    # What this run cost, step by step (a rerun reuses finished steps, so it is cheaper).
    timing = {"total_seconds": round(total, 1), **{k: round(v, 1) for k, v in seconds.items()},
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "finished": time.strftime("%Y-%m-%d %H:%M"),
              **_headline(load_cell_results(out))}  # fmt: skip
    timing["machine_description"] = machine_description(timing.pop("precision_used"))
    atomic_write_text(out / "timing.json", json.dumps(timing, indent=2, allow_nan=False))
    print(f"report: {page}\nprobe plot: {out / 'probe.png'}\ntook {total / 60:.1f} min")
    return page
