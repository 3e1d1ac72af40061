"""The language-expansion study's tables (`bench.expansion_study` cells -> markdown), for RESULTS.md and
STUDY.md: the new languages' rows, and every base language before and after."""

from __future__ import annotations

import json
from pathlib import Path

from dama_asr.report.experts_table import _mean_sd

INIT_LABELS = {"zero-shot": "zero-shot (base model)", "random": "random init", "warm": "warm start",
               "moe": "LoRA MoE"}  # fmt: skip


def _cells(study_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((Path(study_dir) / "cells").glob("*.json"))}


def _start(cell: dict) -> str:
    start, init = cell.get("start") or {}, cell.get("init")
    if init == "warm":
        return f"from {start['members'][0]}"
    if init == "moe":
        gates = " + ".join(f"{g:.2f}·{m}" for m, g in zip(start["members"], start["gates"], strict=True))
        return f"{gates} ({cell.get('gates')} gates)"
    return "–"


def expansion_table(study_dir: Path) -> str:
    """Per new language and start: WER/CER (mean ± sd over seeds), the similarity's top three, how the
    LoRA started, trainable parameters, training minutes, and whether every base member's files are
    byte-identical in the expanded set."""
    cells = _cells(study_dir)
    entries = [c for c in cells.values() if c.get("language") and c["cell"] != "base-languages"]
    if not entries:
        return "_no cells yet_\n"
    head = ["new language", "start", "seeds", "WER", "CER", "similarity (top 3)", "started from",
            "trainable params", "train min", "base members byte-identical"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---|---|---:|---:|---:|---|---|---:|---:|---|"]
    for code in dict.fromkeys(c["language"] for c in entries):
        for init in INIT_LABELS:
            found = [c for c in entries if c["language"] == code and init in c["rows"]]
            if not found:
                continue
            rows = [c["rows"][init] for c in found]
            first = found[0]
            ranking = first.get("similarity") or []
            similar = ", ".join(f"{r['language']} {r['probability']:.2f}" for r in ranking[:3]) or "–"
            identical = [all(c["members_identical"].values()) for c in found if "members_identical" in c]
            lines.append("| " + " | ".join([
                code, INIT_LABELS[init], str(len(found)), _mean_sd([r["average_wer"] for r in rows]),
                _mean_sd([r["average_cer"] for r in rows]), similar, _start(first),
                f"{first['trainable_parameters']:,}" if "trainable_parameters" in first else "0",
                _minutes([c["train_seconds"] for c in found if "train_seconds" in c]),
                ("yes" if all(identical) else "**no**") if identical else "–",
            ]) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _minutes(seconds: list[float]) -> str:
    """Mean training minutes over seeds; – for a row that trains nothing."""
    return f"{sum(seconds) / len(seconds) / 60:.1f}" if seconds else "–"


def base_languages_table(study_dir: Path) -> str:
    """Every base language's test WER with the base set, then with each expanded set that re-scored
    it, and whether every transcript came out identical."""
    cells = _cells(study_dir)
    base = cells.get("base-languages")
    if base is None:
        return "_no cells yet_\n"
    after = [c for c in cells.values() if "base_after" in c]
    head = ["base language", "WER before"] + [
        f"WER after +{c['language']} ({c['init']}, seed {c['seed']})" for c in after
    ]
    head.append("identical transcripts")
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
    for code in base["languages"]:
        before = base["rows"]["base set"]["by_language"][code]["wer"]
        values = [_after(c, code) for c in after]
        same = [c["base_identical"][code] for c in after]
        verdict = "–" if not same else ("yes" if all(same) else "**no**")
        lines.append("| " + " | ".join([code, f"{before:.1%}", *values, verdict]) + " |")
    return "\n".join(lines) + "\n"


def _after(cell: dict, code: str) -> str:
    """The WER after an expansion; with the set's own "before" when that cell retrained the base set
    (a fresh machine: identical transcripts are then judged against that set, not the base cell's)."""
    after = f"{cell['base_after']['by_language'][code]['wer']:.1%}"
    if "base_before" not in cell:
        return after
    return f"{after} (base set retrained: before {cell['base_before']['by_language'][code]['wer']:.1%})"
