"""The language-experts study's table (`bench.experts_study` cells -> markdown), for RESULTS.md and STUDY.md."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

# Rows in the order the paper's comparison reads: baselines, experts, MoLE, distilled students.
ROW_ORDER = ("zero-shot", "joint-one", "joint-total", "experts (language given)", "experts (Whisper LID)",
             "MoLE language-aware", "MoLE language-agnostic", "KD layer-wise (language given)",
             "KD layer-wise (own detection)", "KD output-only (language given)", "KD output-only (own detection)",
             "KD layer-wise, LID learned (language given)", "KD layer-wise, LID learned (own detection)")  # fmt: skip
LABELS = {"joint-one": "joint multilingual LoRA (one expert's rank)",
          "joint-total": "joint multilingual LoRA (all experts' parameters)"}  # fmt: skip


def load_experts_cells(study_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(study_dir) / "cells").glob("*.json"))]


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1%}"
    return f"{statistics.mean(values):.1%} ± {statistics.stdev(values):.1%}"


def experts_table(study_dir: Path) -> str:
    """One line per row: average WER over languages (mean ± sd over seeds), WER per language, routing
    accuracy, trainable parameters, training minutes and peak RSS of the cell that produced it."""
    cells = load_experts_cells(study_dir)
    if not cells:
        return "_no cells yet_\n"
    languages = cells[0]["cell"]["languages"]
    rows: dict[str, list[tuple[dict, dict]]] = {}
    for cell in cells:
        for name, row in cell["rows"].items():
            rows.setdefault(name, []).append((row, cell))
    head = ["row", "seeds", "avg WER", *(f"WER {lang}" for lang in languages), "avg CER", "routing acc.",
            "trainable params", "train min", "peak RSS GiB"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name in [n for n in ROW_ORDER if n in rows] + sorted(set(rows) - set(ROW_ORDER)):
        entries = rows[name]
        per_lang = [_mean_sd([r["by_language"][lang]["wer"] for r, _ in entries]) for lang in languages]
        # A given language routes by definition: only predicted routes have an accuracy to report.
        routing = [r["routing"]["accuracy"] for r, _ in entries
                   if r.get("routing", {}).get("route") != "given" and r.get("routing", {}).get("accuracy") is not None]  # fmt: skip
        entries.sort(key=lambda e: e[1]["cell"]["seed"])
        cell = entries[0][1]  # parameters and memory: the lowest seed's cell
        # Per seed, not averaged: seeds may run on different machines (each cell records its own).
        minutes = " / ".join(f"{c.get('train_seconds', 0) / 60:.0f}" for _, c in entries)
        lines.append("| " + " | ".join([
            LABELS.get(name, name), str(len(entries)), _mean_sd([r["average_wer"] for r, _ in entries]), *per_lang,
            _mean_sd([r["average_cer"] for r, _ in entries]), _mean_sd(routing) if routing else "–",
            f"{cell.get('trainable_parameters', 0):,}", minutes if cell.get("runs") else "–",
            f"{cell['peak_rss_gib']:.2f}" if "peak_rss_gib" in cell else "–",
        ]) + " |")  # fmt: skip
    first = cells[0]["cell"]
    seeds = sorted({c["cell"]["seed"] for c in cells if c.get("runs")})
    machines = "; ".join(f"seed {seed}: " + ", ".join(sorted({c.get("machine", "not recorded") for c in cells
                         if c["cell"]["seed"] == seed and c.get("runs")})) for seed in seeds)  # fmt: skip
    note = (f"\n{first['model']}, {', '.join(languages)}, {first['hours_per_language']} h of training audio per "
            "language; WER/CER Whisper-normalised on each language's test utterances, averaged over languages "
            "(each weighs the same). Parameters, minutes and memory are the cell's own training runs, cache "
            "builds and dev scoring included: the MoLE and KD rows exclude the experts they build on (the "
            "experts rows show those). Several seeds: WER mean ± sd over seeds, minutes per seed in seed order "
            f"(the seeds' machines: {machines}).\n")  # fmt: skip
    return "\n".join(lines) + "\n" + note


def routing_table(study_dir: Path) -> str:
    """Per-language routing accuracy of every row that routes (the true language's share of its row of
    the confusion matrix), and where the misrouted utterances went."""
    cells = load_experts_cells(study_dir)
    if not cells:
        return "_no cells yet_\n"
    languages = cells[0]["cell"]["languages"]
    head = ["row", "seed", *(f"{lang} → right" for lang in languages), "misrouted to"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(languages) + "---|"]
    for cell in cells:
        for name, row in cell["rows"].items():
            confusion = (row.get("routing") or {}).get("confusion")
            if not confusion or row["routing"].get("route") == "given":
                continue
            shares, wrong = [], {}
            for lang in languages:
                counts = confusion.get(lang, {})
                total = sum(counts.values())
                shares.append(f"{counts.get(lang, 0) / total:.0%}" if total else "–")
                for other, n in counts.items():
                    if other != lang:
                        wrong[f"{lang}→{other}"] = n
            misrouted = (
                ", ".join(f"{k} {v}" for k, v in sorted(wrong.items(), key=lambda kv: -kv[1])) or "none"
            )
            lines.append(f"| {name} | {cell['cell']['seed']} | " + " | ".join(shares) + f" | {misrouted} |")
    return "\n".join(lines) + "\n"
