"""A rerun study against the study it replaces: each (corpus, hours, method) cell group of the new study
beside the same group of the earlier one, with the change, English WER after adaptation, and the target
the rerun was set (the converged, tuned rerun against the 3-epoch grid).

Used by docs/STUDY.md through a generated block:
  <!-- generated:wer-change study=benchmarks/converged before=benchmarks/whisper-base-grid
       methods="dama=DAMA,lora=LoRA-64" corpora="synth-cy=Welsh" precision=bf16 targets="synth-cy:0.5=20" -->
"""

from __future__ import annotations

from dama_asr.report.results import (
    ResultsError,
    _labels,
    _mean_std,
    _millions,
    _points,
    _row,
    precision_groups,
)


def _targets(text: str) -> dict[tuple[str, float], float]:
    """'synth-cy:0.5=20,czech:0.5=35' -> {('synth-cy', 0.5): 0.20, ('czech', 0.5): 0.35}."""
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, _, wer = part.partition("=")
        corpus, _, hours = key.partition(":")
        try:
            out[(corpus.strip(), float(hours))] = float(wer) / 100
        except ValueError as err:
            raise ResultsError(f"targets: {part!r} is not corpus:hours=WER%, e.g. synth-cy:0.5=20") from err
    return out


def _english_after(rs: list[dict]) -> str:
    after = [r["forgetting"]["en_wer_after"] for r in rs if r.get("forgetting")]
    return _points(after) if after else "–"


def wer_change_table(
    results: list[dict],
    before_results: list[dict],
    methods: str,
    corpora: str,
    precision: str = "bf16",
    before_precision: str = "no",
    targets: str = "",
) -> str:
    """A row per (corpus, hours, method) the new study has: test WER before (earlier study) and after
    (mean ± sd, n seeds each), the change in points and relative to before, English WER after, and the
    target where one is set for that corpus and budget."""
    methods_, corpora_, goals = _labels(methods), _labels(corpora), _targets(targets)
    after, before = precision_groups(results, precision), precision_groups(before_results, before_precision)
    lines = [_row(["corpus", "hours", "method", "params", "WER before", "WER after", "change (points)",
                   "change (relative)", "EN WER after", "target"]),
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for corpus, corpus_label in corpora_.items():
        for hours in sorted({h for (c, m, h) in after if c == corpus and m in methods_}):
            goal = goals.get((corpus, hours))
            for method, label in methods_.items():
                new = after.get((corpus, method, hours), [])
                if not new:
                    continue
                old = before.get((corpus, method, hours), [])
                wer_new, wer_old = ([r["test"]["wer"] for r in rs] for rs in (new, old))
                n_new, n_old = (f" (n={len(x)})" if len(x) > 1 else "" for x in (new, old))
                mean_new, mean_old = _mean_std(wer_new)[0], (_mean_std(wer_old)[0] if old else None)
                change = rel = "–"
                if mean_old:
                    change = f"{(mean_new - mean_old) * 100:+.1f}"
                    rel = f"{(mean_new - mean_old) / mean_old * 100:+.0f}%"
                met = (
                    "" if goal is None else f"≤ {goal * 100:g}: " + ("met" if mean_new <= goal else "not met")
                )
                lines.append(_row([
                    corpus_label, f"{hours:g}", label, _millions(new[0]["trainable_parameters"]),
                    (_points(wer_old) + n_old) if old else "–", _points(wer_new) + n_new, change, rel,
                    _english_after(new), met,
                ]))  # fmt: skip
    return "\n".join(lines) + "\n"
