"""Study results: one JSON per finished cell, aggregated over seeds for tables and plots.

A cell result (written by `dama bench`) looks like:
  {"cell": {"method", "hours", "language", "seed", "corpus", "precision"}, "trainable_parameters",
   "train": {"seconds_per_epoch": [...], "samples_per_second", "peak_memory_gib", "dev_wer": [...]},
   "test": {"wer", "cer", "wer_raw", "cer_raw", "suspicious", "utterances"},
   "zero_shot": {"wer", "cer"}, "forgetting": {"en_wer_before", "en_wer_after"} (optional),
   "machine": {"torch_threads", "cpus", "device"} (optional; older cells lack it)}
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Aggregate:
    """Mean and spread over seeds of one (corpus, language, method, hours) group."""

    corpus: str
    language: str
    method: str
    hours: float
    seeds: int
    wer: float
    wer_std: float
    cer: float
    cer_std: float
    zero_shot_wer: float
    zero_shot_cer: float
    trainable_parameters: int
    seconds_per_epoch: float
    first_epoch_seconds: float  # includes building the encoder cache when that run built it
    samples_per_second: float
    peak_memory_gib: float
    en_wer_before: float | None
    en_wer_after: float | None
    torch_threads: str = "?"  # the CPU threads the cells trained with ("?" where not recorded)


def load_cell_results(folder: str | Path) -> list[dict]:
    """Every `*.json` cell result under folder/cells (sorted, unreadable files reported)."""
    folder = Path(folder)
    cells_dir = folder / "cells" if (folder / "cells").is_dir() else folder
    results = []
    for path in sorted(cells_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg}); delete it to rerun that cell") from err
        if "cell" in data and "test" in data:
            results.append(data)
    return results


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _first_epoch_excluded_mean(seconds: list[float]) -> float:
    # Epoch 1 includes building the encoder cache; later epochs are the steady cost.
    steady = seconds[1:] or seconds
    return statistics.fmean(steady) if steady else float("nan")


def _threads(results: list[dict]) -> str:
    # Epoch times are only comparable at equal thread counts (a study may run two 1-thread lanes).
    found = sorted({str(r.get("machine", {}).get("torch_threads", "?")) for r in results})
    return "/".join(found)


def method_label(cell: dict) -> str:
    """The method, with the precision when it is not float32 (cells before precisions were recorded ran
    in float32): a bf16 repeat of a cell is its own row, never averaged with the float32 seeds."""
    precision = cell.get("precision", "no")
    return cell["method"] if precision == "no" else f"{cell['method']} ({precision})"


def aggregate(results: list[dict]) -> list[Aggregate]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        c = r["cell"]
        groups[(c.get("corpus", ""), c["language"], method_label(c), float(c["hours"]))].append(r)
    out = []
    for (corpus, language, method, hours), rs in sorted(groups.items()):
        wer, wer_std = _mean_std([r["test"]["wer"] for r in rs])
        cer, cer_std = _mean_std([r["test"]["cer"] for r in rs])
        forget = [r.get("forgetting") or {} for r in rs]
        out.append(
            Aggregate(
                corpus=corpus,
                language=language,
                method=method,
                hours=hours,
                seeds=len(rs),
                wer=wer,
                wer_std=wer_std,
                cer=cer,
                cer_std=cer_std,
                zero_shot_wer=_mean_std([r.get("zero_shot", {}).get("wer") for r in rs])[0],
                zero_shot_cer=_mean_std([r.get("zero_shot", {}).get("cer") for r in rs])[0],
                trainable_parameters=int(rs[0]["trainable_parameters"]),
                seconds_per_epoch=_mean_std(
                    [_first_epoch_excluded_mean(r["train"]["seconds_per_epoch"]) for r in rs]
                )[0],
                first_epoch_seconds=_mean_std([(r["train"]["seconds_per_epoch"] or [None])[0] for r in rs])[
                    0
                ],
                samples_per_second=_mean_std([r["train"].get("samples_per_second") for r in rs])[0],
                peak_memory_gib=max(r["train"].get("peak_memory_gib", float("nan")) for r in rs),
                en_wer_before=_mean_std([f.get("en_wer_before") for f in forget])[0] if any(forget) else None,
                en_wer_after=_mean_std([f.get("en_wer_after") for f in forget])[0] if any(forget) else None,
                torch_threads=_threads(rs),
            )
        )
    return out


def _pct(x: float | None, std: float | None = None) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{x:.1%}" + (f" ± {std:.1%}" if std else "")


def markdown_tables(aggs: list[Aggregate]) -> str:
    """One WER table per corpus/language (methods x hours), then the efficiency table."""
    lines = []
    for corpus, language in sorted({(a.corpus, a.language) for a in aggs}):
        group = [a for a in aggs if (a.corpus, a.language) == (corpus, language)]
        hours = sorted({a.hours for a in group})
        zero = next((a for a in group if not math.isnan(a.zero_shot_wer)), None)
        for metric in ("wer", "cer"):
            zero_shot = _pct(getattr(zero, f"zero_shot_{metric}")) if zero else "–"
            lines += [
                f"### {corpus} / {language} — test {metric.upper()} (normalised), zero-shot {zero_shot}",
                "",
            ]
            lines.append(
                "| method | trainable params | " + " | ".join(f"{h:g} h" for h in hours) + " | seeds |"
            )
            lines.append("|---|---:|" + "---:|" * len(hours) + "---:|")
            for method in sorted(
                {a.method for a in group},
                # by size, ties by name: the same table on every run (set order is not)
                key=lambda m: (next(a.trainable_parameters for a in group if a.method == m), m),
            ):
                cells = {a.hours: a for a in group if a.method == method}
                row = " | ".join(
                    _pct(getattr(cells[h], metric), getattr(cells[h], f"{metric}_std")) if h in cells else "–"
                    for h in hours
                )
                seeds = "/".join(str(cells[h].seeds) for h in hours if h in cells)
                lines.append(
                    f"| {method} | {cells[next(iter(cells))].trainable_parameters:,} | {row} | {seeds} |"
                )
            lines.append("")
    lines += ["### Efficiency (per cell, mean over seeds)", ""]
    lines.append(
        "| corpus | method | hours | epoch 1 s (incl. encoder cache) | s/epoch (steady) | samples/s "
        "| peak memory GiB | torch threads | EN WER before → after |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for a in aggs:
        forget = f"{_pct(a.en_wer_before)} → {_pct(a.en_wer_after)}" if a.en_wer_after is not None else "–"
        lines.append(
            f"| {a.corpus}/{a.language} | {a.method} | {a.hours:g} | {a.first_epoch_seconds:.0f} | "
            f"{a.seconds_per_epoch:.0f} | "
            f"{a.samples_per_second:.2f} | {a.peak_memory_gib:.2f} | {a.torch_threads} | {forget} |"
        )
    return "\n".join(lines) + "\n"
