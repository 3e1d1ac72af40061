"""A corpus with several languages gets per-language tables; a single-language one, and old cells without
per-language scores, report exactly as before."""

from __future__ import annotations

import pytest

from dama_asr.report import aggregate, markdown_tables


def _cell(seed, wers, zero_shot=True, hours=0.5, method="dama"):
    by = {lang: {"wer": w, "cer": w / 2, "utterances": n, "suspicious": 0} for lang, (w, n) in wers.items()}
    zero = {"wer": 2.0, "cer": 1.0}
    if zero_shot:
        zero["by_language"] = {lang: {"wer": 1.5, "cer": 0.7} for lang in wers}
    languages = sorted(wers)
    return {
        "cell": {"corpus": "mix", "method": method, "hours": hours, "seed": seed, "language": "+".join(languages),
                 "languages": languages},
        "trainable_parameters": 1000,
        "train": {"seconds_per_epoch": [10.0], "samples_per_second": 1.0, "peak_memory_gib": 1.0},
        "test": {"wer": 0.5, "cer": 0.25, "utterances": sum(n for _, n in wers.values()), "suspicious": 0,
                 "by_language": by},
        "zero_shot": zero,
    }  # fmt: skip


def test_per_language_means_over_seeds():
    cells = [
        _cell(0, {"cy": (0.4, 30), "en": (0.2, 10)}),
        _cell(1, {"cy": (0.6, 30), "en": (0.2, 10)}),
        _cell(0, {"cy": (0.3, 30), "en": (0.1, 10)}, zero_shot=False, hours=1),
    ]
    (half, one) = aggregate(cells)
    cy, en = half.by_language
    assert (cy.language, cy.utterances, en.utterances) == ("cy", 30, 10)
    assert cy.wer == pytest.approx(0.5) and cy.wer_std == pytest.approx(0.1414, abs=1e-4) and en.wer_std == 0
    md = markdown_tables([half, one])
    assert "### mix / cy+en — test WER (normalised), zero-shot 200.0%" in md  # the overall tables stay
    assert "### mix / cy+en — test WER by language (normalised)" in md
    assert "| dama | cy | 30 | 150.0% | 50.0% ± 14.1% | 30.0% | 2/1 |" in md
    assert "| dama | en | 10 | 150.0% | 20.0% | 10.0% | 2/1 |" in md
    assert "| dama | cy | 30 | 70.0% | 25.0% ± 7.1% | 15.0% | 2/1 |" in md  # CER = WER / 2
    # A baseline without per-language scores (committed before them) shows "–", not a wrong number.
    assert "| dama | cy | 30 | – | 30.0% |" in markdown_tables([one])


def test_single_language_tables_do_not_change():
    old = _cell(0, {"cy": (0.4, 30)})
    old["cell"].pop("languages")
    old["test"].pop("by_language")
    old["zero_shot"].pop("by_language")
    new = _cell(0, {"cy": (0.4, 30)})
    assert markdown_tables(aggregate([new])) == markdown_tables(aggregate([old]))
    assert "by language" not in markdown_tables(aggregate([new]))
    assert aggregate([old])[0].by_language == ()
