"""A study whose test set holds two languages: per-language scores in the cell, per-language tables in
the report, and per-utterance sidecars that the HTML page shows beside their audio."""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import replace

import soundfile as sf

from dama_asr.cli import main
from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.report import load_cell_results
from dama_asr.report.utterances import read_sidecar, resolve_audio
from dama_asr.testing import tiny_manifest

from .study_factory import TEXTS, tiny_study_config, write_study

CELL = "toy__lora__0.001h__seed0"


def _bilingual_study(tmp_path):
    cy = read_manifest(tiny_manifest(tmp_path / "cy", n=3, texts=TEXTS[:3]))
    en = read_manifest(tiny_manifest(tmp_path / "en", language="en", texts=["good morning", "one two three"]))
    test = write_manifest(tmp_path / "mixed.jsonl", [*cy, *(replace(u, id=f"en-{u.id}") for u in en)], False)
    config = tiny_study_config(tmp_path)
    config["corpora"]["toy"]["test"] = str(test)
    config["methods"] = {"lora": {"r": 2}}
    config["train"]["precision"] = "no"  # the method's label stays "lora" on a bf16-capable CPU too
    config.pop("extra_cells")
    return write_study(tmp_path, config), read_manifest(test)


def test_a_bilingual_cell_scores_each_language_and_keeps_its_utterances(tmp_path):
    config, items = _bilingual_study(tmp_path)
    assert main(["bench", str(config), "--work-dir", str(tmp_path / "work")]) == 0
    cells = config.parent / "cells"
    result = json.loads((cells / f"{CELL}.json").read_text())
    assert result["cell"]["languages"] == ["cy", "en"] and result["cell"]["language"] == "cy+en"
    test, by = result["test"], result["test"]["by_language"]
    assert {lang: s["utterances"] for lang, s in by.items()} == {"cy": 3, "en": 2} and test["utterances"] == 5
    # Corpus-level WER weighs languages by their reference words: it lies between theirs.
    assert min(by["cy"]["wer"], by["en"]["wer"]) <= test["wer"] <= max(by["cy"]["wer"], by["en"]["wer"])
    baseline = json.loads((cells / "baseline__toy.json").read_text())
    assert result["zero_shot"]["by_language"]["en"]["wer"] == baseline["by_language"]["en"]["wer"]
    assert len(load_cell_results(config.parent)) == 1, "a sidecar was read as a cell"

    for name in (CELL, "baseline__toy"):
        rows = read_sidecar(cells / f"{name}.utterances.jsonl")
        assert [r["id"] for r in rows] == [u.id for u in items]
        assert [r["reference"] for r in rows] == [u.text for u in items]
        assert [r["language"] for r in rows] == ["cy", "cy", "cy", "en", "en"]
        assert all(
            resolve_audio(r["audio"]) == resolve_audio(u.audio) for r, u in zip(rows, items, strict=True)
        )
        assert all(isinstance(r["hypothesis"], str) and r["wer"] >= 0 for r in rows)

    report = config.parent / "report"
    md = (report / "report.md").read_text()
    assert "### toy / cy+en — test WER by language (normalised)" in md
    assert re.search(r"^\| lora \| cy \| 3 \| \d+\.\d% \| \d+\.\d% \| 1 \|$", md, re.MULTILINE), md
    assert re.search(r"^\| lora \| en \| 2 \| \d+\.\d% \| \d+\.\d% \| 1 \|$", md, re.MULTILINE), md
    page = (report / "report.html").read_text()
    assert "<th>zero-shot</th><th>lora 0.001 h seed 0</th>" in page and "No per-utterance" not in page
    clips = re.findall(r"src='data:audio/flac;base64,([^']+)'", page)
    assert len(clips) == 5  # five utterances: all of them among the worst, each with its clip
    samples, rate = sf.read(io.BytesIO(base64.b64decode(clips[0])), dtype="int16")
    assert (
        rate == 16_000
        and samples.ndim == 1
        and sf.info(io.BytesIO(base64.b64decode(clips[0]))).subtype == "PCM_16"
    )
    durations = {round(u.duration * 16_000) for u in items}
    assert len(samples) in durations
