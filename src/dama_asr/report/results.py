"""Study results: one JSON per finished cell, aggregated over seeds for tables and plots.

A cell result (written by `dama bench`) looks like:
  {"cell": {"method", "hours", "language", "languages", "seed", "corpus", "precision"}, "trainable_parameters",
   "train": {"seconds_per_epoch": [...], "samples_per_second", "peak_memory_gib", "dev_wer": [...]},
   "test": {"wer", "cer", "wer_raw", "cer_raw", "suspicious", "utterances",
            "by_language": {lang: the same scores on that language's utterances}},
   "zero_shot": {"wer", "cer", "by_language": {lang: {"wer", "cer"}}},
   "forgetting": {"en_wer_before", "en_wer_after"} (optional),
   "machine": {"torch_threads", "cpus", "device"} (optional; older cells lack it)}
`language` is the test set's language, or its languages joined ("cy+en"); older cells lack `languages`
and the `by_language` keys, and read as single-language. A corpus with several languages gets
per-language tables besides its overall ones.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from dama_asr.errors import DamaError


class ResultsError(DamaError, ValueError):
    """A cell file or a page marker that cannot be read; the message names the file."""


@dataclass(frozen=True)
class LanguageScores:
    """One language's share of a multilingual test set, mean and spread over seeds."""

    language: str
    utterances: int
    wer: float
    wer_std: float
    cer: float
    cer_std: float
    zero_shot_wer: float
    zero_shot_cer: float


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
    by_language: tuple[LanguageScores, ...] = ()  # from the cells' test.by_language (older cells: none)


def load_cell_results(folder: str | Path) -> list[dict]:
    """Every `*.json` cell result under folder/cells (sorted, unreadable files reported)."""
    folder = Path(folder)
    cells_dir = folder / "cells" if (folder / "cells").is_dir() else folder
    results = []
    for path in sorted(cells_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ResultsError(f"{path}: not valid JSON ({err.msg}); delete it to rerun that cell") from err
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


def _by_language(rs: list[dict]) -> tuple[LanguageScores, ...]:
    languages = sorted({lang for r in rs for lang in r["test"].get("by_language", {})})
    out = []
    for lang in languages:
        test = [r["test"]["by_language"][lang] for r in rs if lang in r["test"].get("by_language", {})]
        zero = [r.get("zero_shot", {}).get("by_language", {}).get(lang, {}) for r in rs]
        wer, wer_std = _mean_std([t["wer"] for t in test])
        cer, cer_std = _mean_std([t["cer"] for t in test])
        out.append(
            LanguageScores(
                language=lang,
                utterances=test[0]["utterances"],
                wer=wer,
                wer_std=wer_std,
                cer=cer,
                cer_std=cer_std,
                zero_shot_wer=_mean_std([z.get("wer") for z in zero])[0],
                zero_shot_cer=_mean_std([z.get("cer") for z in zero])[0],
            )
        )
    return tuple(out)


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
                by_language=_by_language(rs),
            )
        )
    return out


def _pct(x: float | None, std: float | None = None) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{x:.1%}" + (f" ± {std:.1%}" if std else "")


def _methods(group: list[Aggregate]) -> list[str]:
    # by size, ties by name: the same table on every run (set order is not)
    return sorted(
        {a.method for a in group},
        key=lambda m: (next(a.trainable_parameters for a in group if a.method == m), m),
    )


def _language_tables(corpus: str, language: str, group: list[Aggregate], hours: list[float]) -> list[str]:
    """A multilingual corpus' WER and CER per language: a row per (method, language)."""
    languages = sorted({s.language for a in group for s in a.by_language})
    lines = []
    for metric in ("wer", "cer"):
        lines += [f"### {corpus} / {language} — test {metric.upper()} by language (normalised)", ""]
        lines.append(
            "| method | language | utts | zero-shot | " + " | ".join(f"{h:g} h" for h in hours) + " | seeds |"
        )
        lines.append("|---|---|---:|---:|" + "---:|" * len(hours) + "---:|")
        for method in _methods(group):
            cells = {a.hours: a for a in group if a.method == method}
            seeds = "/".join(str(cells[h].seeds) for h in hours if h in cells)
            for lang in languages:
                scores = {h: s for h, a in cells.items() for s in a.by_language if s.language == lang}
                if not scores:
                    continue
                first = scores[min(scores)]
                row = " | ".join(
                    _pct(getattr(scores[h], metric), getattr(scores[h], f"{metric}_std"))
                    if h in scores
                    else "–"
                    for h in hours
                )
                zero = _pct(getattr(first, f"zero_shot_{metric}"))
                lines.append(f"| {method} | {lang} | {first.utterances} | {zero} | {row} | {seeds} |")
        lines.append("")
    return lines


def markdown_tables(aggs: list[Aggregate]) -> str:
    """One WER and one CER table per corpus/language (methods x hours), per-language ones for a corpus
    with several languages, then the efficiency table."""
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
            for method in _methods(group):
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
        if len({s.language for a in group for s in a.by_language}) > 1:
            lines += _language_tables(corpus, language, group, hours)
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


# ---- tables for hand-written pages (docs/STUDY.md) -----------------------------------------------
# A page keeps its prose and marks each table with `<!-- generated:KIND study=FOLDER key="value" -->`
# ... `<!-- /generated -->`; `fill_generated` rewrites what lies between from the cell files, so the
# numbers a reading cites cannot drift from the cells. Columns, rows and labels come from the marker,
# in the order it gives them, so the same cells always give the same page.
# Markers stand on lines of their own, so that prose may quote them.
GENERATED = re.compile(
    r"^(<!-- generated:(?P<spec>[^\n]*) -->\n)(?P<body>.*?)^(<!-- /generated -->)$", re.DOTALL | re.MULTILINE
)
OPENING, CLOSING = (
    re.compile(r"^<!-- generated:", re.MULTILINE),
    re.compile(r"^<!-- /generated -->$", re.MULTILINE),
)


class GeneratedBlockError(ResultsError):
    pass


def _labels(text: str) -> dict[str, str]:
    """'dama=DAMA,lora=LoRA-64' -> {'dama': 'DAMA', 'lora': 'LoRA-64'} (a bare name is its own label)."""
    pairs = [p.partition("=") for p in text.split(",") if p.strip()]
    return {key.strip(): (label.strip() or key.strip()) for key, _, label in pairs}


def _row(cells: list[str]) -> str:
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def _points(values: list[float], spread: bool = True) -> str:
    """Percentage points, mean ± std where there are several seeds: '57.5 ± 1.3', or '57.2'."""
    mean, std = _mean_std(values)
    return f"{mean * 100:.1f}" + (f" ± {std * 100:.1f}" if spread and len(values) > 1 else "")


def _millions(count: int) -> str:
    """Three significant digits: 1.33 M, 52.0 M."""
    value = count / 1e6
    return f"{value:.{max(0, 2 - math.floor(math.log10(value)))}f} M" if value > 0 else "0 M"


def precision_groups(results: list[dict], precision: str = "no") -> dict[tuple[str, str, float], list[dict]]:
    """(corpus, method, hours) -> its cells at one precision ("no": float32), by seed. A study mixing
    precisions compares them in their own table, never averaged together."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        c = r["cell"]
        if c.get("precision", "no") == precision:
            groups[(c.get("corpus", ""), c["method"], float(c["hours"]))].append(r)
    return {k: sorted(v, key=lambda r: r["cell"]["seed"]) for k, v in sorted(groups.items())}


def wer_by_method_table(results: list[dict], methods: str, corpora: str, precision: str = "no") -> str:
    """Methods as columns, (corpus, hours) as rows: test WER (CER) of the cells at `precision` (float32
    unless given), then zero-shot."""
    methods_, corpora_ = _labels(methods), _labels(corpora)
    groups = precision_groups(results, precision)
    params = {
        m: next((rs[0]["trainable_parameters"] for k, rs in groups.items() if k[1] == m), 0) for m in methods_
    }
    lines = [_row(["", *methods_.values()]), "|---|" + "---|" * len(methods_),
             _row(["trainable params", *(_millions(p) if p else "" for p in params.values())])]  # fmt: skip
    zero_shot = []
    for corpus, label in corpora_.items():
        for hours in sorted({h for (c, m, h) in groups if c == corpus and m in methods_}):
            row = [f"{label} {hours:g} h"]
            for method in methods_:
                rs = groups.get((corpus, method, hours), [])
                seeds = f", n={len(rs)}" if len(rs) > 1 else ""
                wer, cer = _points([r["test"]["wer"] for r in rs]), _points([r["test"]["cer"] for r in rs])
                row.append(f"{wer} ({cer}){seeds}" if rs else "")
            lines.append(_row(row))
        base = [
            r["zero_shot"] for k, rs in groups.items() if k[0] == corpus for r in rs if r.get("zero_shot")
        ]
        if base:
            wer, cer = (_mean_std([z[m] for z in base])[0] for m in ("wer", "cer"))
            zero_shot.append(f"{label} {_pct(wer)} ({_pct(cer)})")
    return "\n".join(lines) + ("\n\nZero-shot: " + ", ".join(zero_shot) + "." if zero_shot else "") + "\n"


def forgetting_table(results: list[dict], methods: str, corpora: str, precision: str = "no") -> str:
    """English WER after adaptation, a row per (corpus, method), a column per budget; cells at `precision`."""
    methods_, corpora_ = _labels(methods), _labels(corpora)
    groups = {
        k: [r["forgetting"] for r in rs if r.get("forgetting")]
        for k, rs in precision_groups(results, precision).items()
        if k[0] in corpora_ and k[1] in methods_
    }
    groups = {k: f for k, f in groups.items() if f}
    hours = sorted({h for (_, _, h) in groups})
    before = _mean_std([f["en_wer_before"] for fs in groups.values() for f in fs])[0]
    lines = [_row([f"English WER after ({_pct(before)} before)", *(f"{h:g} h" for h in hours)]),
             "|---|" + "---|" * len(hours)]  # fmt: skip
    for corpus, corpus_label in corpora_.items():
        for method, label in methods_.items():
            if any((corpus, method, h) in groups for h in hours):
                row = [f"{label}, {corpus_label}"]
                for h in hours:
                    fs = groups.get((corpus, method, h), [])
                    seeds = f" (n={len(fs)})" if len(fs) > 1 else ""
                    row.append(_points([f["en_wer_after"] for f in fs]) + seeds if fs else "")
                lines.append(_row(row))
    return "\n".join(lines) + "\n"


def precision_table(results: list[dict], hours: str, precision: str = "bf16") -> str:
    """Each (corpus, method) with `precision` repeats at `hours`: WER per seed against its float32 cells."""
    by: dict[tuple[str, str], dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in results:
        c, p = r["cell"], r["cell"].get("precision", "no")
        if float(c["hours"]) == float(hours) and p in ("no", precision):
            by[(c.get("corpus", ""), c["method"])][p][int(c["seed"])] = r
    rows = {k: v for k, v in sorted(by.items()) if precision in v and "no" in v}
    seeds = sorted({s for v in rows.values() for runs in v.values() for s in runs})
    tag = "/".join(map(str, seeds))
    lines = [_row(["corpus", "method", f"float32 WER, seeds {tag}", f"{precision} WER, seeds {tag}",
                   "float32 mean ± sd", f"{precision} mean ± sd", f"EN WER after, fp32 → {precision}"]),
             "|---|---|---|---|---:|---:|---|"]  # fmt: skip
    for (corpus, method), v in rows.items():
        kinds = ("no", precision)
        per_seed = {
            p: "/".join(_points([v[p][s]["test"]["wer"]]) if s in v[p] else "–" for s in seeds) for p in kinds
        }
        mean = {p: _points([r["test"]["wer"] for r in v[p].values()]) for p in kinds}
        after = {
            p: [r["forgetting"]["en_wer_after"] for r in v[p].values() if r.get("forgetting")] for p in kinds
        }
        forget = " → ".join(_points(after[p], spread=False) for p in kinds) if all(after.values()) else "–"
        n = f" (n={len(v[precision])})"
        lines.append(
            _row(
                [corpus, method, per_seed["no"], per_seed[precision] + n, mean["no"], mean[precision], forget]
            )
        )
    return "\n".join(lines) + "\n"


GENERATORS = {
    "wer-by-method": wer_by_method_table,
    "forgetting": forgetting_table,
    "precision": precision_table,
}


def fill_generated(text: str, root: str | Path, where: str = "page") -> str:
    """`text` with every generated block rewritten from the cells of its `study=` folder (under root)."""
    studies: dict[str, list[dict]] = {}

    def fill(match: re.Match) -> str:
        try:
            kind, *args = shlex.split(match["spec"])
        except ValueError as err:  # an unclosed quote
            raise GeneratedBlockError(f"{where}: marker '{match['spec']}': {err}") from err
        params = dict(a.partition("=")[::2] for a in args)
        study = params.pop("study", "")
        if kind in ("language-experts", "language-routing") and study:
            from dama_asr.report.experts_table import experts_table, routing_table

            table = experts_table if kind == "language-experts" else routing_table
            return f"{match[1]}\n{table(Path(root) / study).strip()}\n\n{match[4]}"
        if kind == "wer-change" and study and params.get("before"):
            from dama_asr.report.change_table import wer_change_table

            before = params.pop("before")
            loaded = {f: load_cell_results(Path(root) / f) for f in (study, before)}
            for folder, cells in loaded.items():
                if not cells:
                    raise GeneratedBlockError(f"{where}: study={folder} has no cell results under {root}")
            try:
                body = wer_change_table(loaded[study], loaded[before], **params)
            except (TypeError, ResultsError) as err:
                raise GeneratedBlockError(f"{where}: marker '{match['spec']}': {err}") from err
            return f"{match[1]}\n{body.strip()}\n\n{match[4]}"
        if kind in ("language-expansion", "expansion-base-languages") and study:
            from dama_asr.report.expansion_table import base_languages_table, expansion_table

            table = expansion_table if kind == "language-expansion" else base_languages_table
            return f"{match[1]}\n{table(Path(root) / study).strip()}\n\n{match[4]}"
        if kind not in GENERATORS or not study:
            raise GeneratedBlockError(
                f"{where}: marker '{match['spec']}' needs a kind ({', '.join(GENERATORS)}) and study=FOLDER"
            )
        if study not in studies:
            studies[study] = load_cell_results(Path(root) / study)
            if not studies[study]:
                raise GeneratedBlockError(f"{where}: study={study} has no cell results under {root}")
        try:
            body = GENERATORS[kind](studies[study], **params)
        except TypeError as err:  # a missing or unknown parameter in the marker
            raise GeneratedBlockError(f"{where}: marker '{match['spec']}': {err}") from err
        # Blank lines around the table: a comment line touching it could be read as part of it.
        return f"{match[1]}\n{body.strip()}\n\n{match[4]}"

    filled = GENERATED.sub(fill, text)
    if len(OPENING.findall(filled)) != len(CLOSING.findall(filled)):
        raise GeneratedBlockError(
            f"{where}: a `<!-- generated:... -->` marker lacks its `<!-- /generated -->`"
        )
    return filled
