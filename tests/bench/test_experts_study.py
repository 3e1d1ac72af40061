"""The language-experts study through `dama bench`: every row on the tiny model, resumable cell by cell."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from dama_asr.cli import main
from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.testing import tiny_manifest


def _corpus(root: Path, lang: str, k: int) -> dict:
    manifest = tiny_manifest(root / lang, n=4, language=lang, texts=[f"{lang} a {k}", f"{lang} b c"] * 2)
    items = [dataclasses.replace(i, id=f"{lang}-{i.id}") for i in read_manifest(manifest)]
    paths = {}
    for split in ("train", "dev", "test"):
        paths[split] = str(write_manifest(root / lang / f"{split}.jsonl", items, relative=False))
    return paths


def test_every_row_runs_and_a_rerun_runs_nothing(tmp_path: Path, capsys) -> None:
    config = {
        "name": "tiny-experts", "kind": "language-experts", "model": "tiny-random",
        "languages": {"cy": _corpus(tmp_path, "cy", 0), "en": _corpus(tmp_path, "en", 1)},
        "seeds": [0], "max_test_utterances": 2,
        "expert": {"r": 2, "targets": ["all"], "encoder": False}, "mole": {"router_hidden": 8},
        "student": {"r": 4},
        "train": {"precision": "no", "optim": {"epochs": 1, "batch_size": 2}, "eval": {"max_utterances": 2},
                  "progress_bar": False},
    }  # fmt: skip
    study = tmp_path / "study"
    study.mkdir()
    (study / "config.yaml").write_text(yaml.safe_dump(config))
    args = ["bench", str(study / "config.yaml"), "--work-dir", str(tmp_path / "work")]
    assert main(args) == 0
    cells = {p.stem: json.loads(p.read_text()) for p in (study / "cells").glob("*.json")}
    assert set(cells) == {"zero-shot", "experts__seed0", "mole__seed0", "joint-one__seed0", "joint-total__seed0",
                          "kd-layerwise__seed0", "kd-output__seed0", "kd-lid__seed0"}  # fmt: skip
    rows = {name: row for cell in cells.values() for name, row in cell["rows"].items()}
    assert set(rows) >= {"zero-shot", "experts (language given)", "experts (Whisper LID)", "MoLE language-aware",
                         "MoLE language-agnostic", "joint-one", "joint-total", "KD layer-wise (language given)",
                         "KD layer-wise (own detection)", "KD output-only (language given)",
                         "KD output-only (own detection)", "KD layer-wise, LID learned (own detection)"}  # fmt: skip
    for row in rows.values():
        assert set(row["by_language"]) == {"cy", "en"}
        assert row["average_wer"] == sum(v["wer"] for v in row["by_language"].values()) / 2
    assert rows["MoLE language-agnostic"]["routing"]["route"] == "router"
    # Only the LID-learned student has the language token among its labels.
    saved = {name: yaml.safe_load((tmp_path / "work" / f"{name}__seed0" / "config.yaml").read_text())
             for name in ("kd-layerwise", "kd-layerwise-lid")}  # fmt: skip
    assert saved["kd-layerwise-lid"]["prompt_loss"] is True and saved["kd-layerwise"]["prompt_loss"] is False
    assert rows["experts (Whisper LID)"]["routing"]["accuracy"] is not None
    total, one = cells["joint-total__seed0"], cells["joint-one__seed0"]
    assert (
        total["trainable_parameters"]
        == 2 * one["trainable_parameters"]
        == cells["experts__seed0"]["trainable_parameters"]
    )
    from dama_asr.report.experts_table import experts_table, routing_table

    table = experts_table(study)
    line = next(row for row in table.splitlines() if row.startswith("| MoLE language-agnostic |"))
    assert f"{rows['MoLE language-agnostic']['average_wer']:.1%}" in line
    # Minutes are only comparable on one machine: each cell records its own, and the table names it.
    assert (
        "precision no" in cells["experts__seed0"]["machine"] and cells["experts__seed0"]["machine"] in table
    )
    assert "| experts (Whisper LID) |" in routing_table(
        study
    ) and "| MoLE language-aware |" not in routing_table(study)
    capsys.readouterr()
    assert main(args) == 0
    assert "0 cell(s) run now; 0 left" in capsys.readouterr().out


def test_rows_can_run_at_their_own_seeds_and_a_bad_row_is_named() -> None:
    import pytest

    from dama_asr.bench.experts_study import ExpertsStudy, ExpertsStudyError

    base = {"languages": {c: {"train": "t", "dev": "d", "test": "e"} for c in ("cy", "lt")},
            "rows": ["zero-shot", "experts", "mole", "kd-output"], "seeds": [0, 1]}  # fmt: skip
    study = ExpertsStudy.from_dict({**base, "seeds_by_row": {"kd-output": [0]}})
    # Seed by seed, so that a sitting finishes one seed's experts and every row on them first.
    assert study.cell_ids() == ["zero-shot", "experts__seed0", "mole__seed0", "kd-output__seed0",
                                "experts__seed1", "mole__seed1"]  # fmt: skip
    with pytest.raises(ExpertsStudyError, match="seeds_by_row.kd-lid"):
        ExpertsStudy.from_dict({**base, "seeds_by_row": {"kd-lid": [1]}})
    with pytest.raises(ExpertsStudyError, match="seeds_by_row.mole"):
        ExpertsStudy.from_dict({**base, "seeds_by_row": {"mole": []}})
