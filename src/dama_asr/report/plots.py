"""Plots of a study (PNG, matplotlib Agg): WER vs trainable parameters, WER vs hours, probe curves."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dama_asr.adapters.registry import all_methods, method_of_label  # noqa: E402
from dama_asr.report.results import Aggregate  # noqa: E402

# Fixed colours (from each method's registry entry) so a method looks the same in every figure.
METHOD_COLOURS = {spec.name: spec.colour for spec in all_methods()}
UNKNOWN_COLOUR = "#7f7f7f"


def _colour(method: str) -> str:
    # "dama (bf16)" keeps dama's colour; plots tell the two apart by label and marker.
    spec = method_of_label(method)
    return spec.colour if spec is not None else UNKNOWN_COLOUR


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)  # figures are not garbage-collected while pyplot holds them
    return path


def _legend_order(label: str) -> tuple:
    """Registry order (baselines, then DAMA and its ablations), a method's precisions after it."""
    spec = method_of_label(label)
    return (spec.order if spec is not None else 1000, label)


def plot_wer_vs_parameters(aggs: list[Aggregate], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for a in aggs:
        if math.isnan(a.wer):
            continue
        ax.errorbar(
            a.trainable_parameters,
            a.wer * 100,
            yerr=a.wer_std * 100,
            fmt="o",
            color=_colour(a.method),
            capsize=3,
        )
        ax.annotate(
            f"{a.method} {a.hours:g}h",
            (a.trainable_parameters, a.wer * 100),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("test WER (%)")
    ax.set_title("WER vs trainable parameters (lower-left is better)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_wer_vs_hours(aggs: list[Aggregate], path: Path) -> Path:
    """One panel per corpus (their WERs live on different scales), a line per method, zero-shot dotted."""
    corpora = sorted({(a.corpus, a.language) for a in aggs})
    fig, axes = plt.subplots(1, len(corpora), figsize=(5.5 * len(corpora), 4.5), squeeze=False)
    for ax, (corpus, language) in zip(axes[0], corpora, strict=True):
        group = [a for a in aggs if (a.corpus, a.language) == (corpus, language)]
        for method in sorted({a.method for a in group}, key=_legend_order):
            points = sorted((a.hours, a.wer * 100, a.wer_std * 100) for a in group if a.method == method)
            hours, wer, std = zip(*points, strict=True)
            style = "--" if " (" in method else "-"  # a non-float32 repeat, e.g. "dama (bf16)"
            ax.errorbar(
                hours, wer, yerr=std, marker="o", capsize=3, color=_colour(method), ls=style, label=method
            )
        zero = [a.zero_shot_wer for a in group if not math.isnan(a.zero_shot_wer)]
        if zero:
            ax.axhline(zero[0] * 100, ls=":", color="black", lw=1, label="zero-shot")
        ax.set_xlabel("training data (hours)")
        ax.set_ylabel("test WER (%)")
        ax.set_title(f"{corpus} ({language})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("WER vs amount of training data")
    return _save(fig, path)


def plot_probe_curves(
    curves: dict[str, list[float]], path: Path, title: str = "Language-ID probe accuracy per decoder layer"
) -> Path:
    """curves: label -> accuracy per layer (layer 0 = embeddings)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, acc in curves.items():
        ax.plot(range(len(acc)), [x * 100 for x in acc], marker="o", label=label)
    ax.set_xlabel("decoder layer (0 = embeddings)")
    ax.set_ylabel("probe accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def dev_curves(results: list[dict], min_epochs: int = 4) -> dict[str, dict[str, list[float]]]:
    """corpus -> {"method hours h seed s": dev WER per epoch, NaN where an epoch was not scored} for
    cells that scored at least min_epochs (converged runs; a fixed 3-epoch grid has no curve to draw)."""
    curves: dict[str, dict[str, list[float]]] = {}
    for r in sorted(
        results, key=lambda r: (r["cell"]["method"], float(r["cell"]["hours"]), r["cell"]["seed"])
    ):
        wer = [math.nan if w is None else w for w in r.get("train", {}).get("dev_wer") or []]
        if sum(not math.isnan(w) for w in wer) >= min_epochs:
            c = r["cell"]
            curves.setdefault(c.get("corpus", ""), {})[
                f"{c['method']} {float(c['hours']):g} h seed {c['seed']}"
            ] = wer
    return curves


def plot_dev_curves(curves: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """One panel per corpus, dev WER by epoch per cell, the kept (best) epoch ringed: where each run
    converged and how far past its best the plateau schedule let it go."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4.5), squeeze=False)
    for ax, (corpus, runs) in zip(axes[0], sorted(curves.items()), strict=True):
        for label, wer in runs.items():
            epochs = range(1, len(wer) + 1)
            line = ax.plot(
                epochs, [w * 100 for w in wer], marker=".", color=_colour(label.split(" ")[0]), label=label
            )
            best = min((i for i, w in enumerate(wer) if not math.isnan(w)), key=wer.__getitem__)
            ax.plot(best + 1, wer[best] * 100, "o", mfc="none", ms=10, color=line[0].get_color())
        ax.set_xlabel("epoch")
        ax.set_ylabel("dev WER (%)")
        ax.set_title(f"{corpus}: dev WER by epoch (ring: kept epoch)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)
