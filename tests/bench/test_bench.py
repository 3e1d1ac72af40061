import json

import yaml

from dama_asr.bench.config import load_study
from dama_asr.cli import main


def test_grid_and_extra_cells(tiny_study):
    study = load_study(tiny_study)
    ids = [c.id for c in study.cells()]
    assert ids == ["toy__dama__0.001h__seed0", "toy__lora__0.001h__seed0", "toy__lora-fa__0.001h__seed0"]
    assert study.adapters["lora-fa"] == {"r": 2} and "lora-fa" not in study.methods


def test_a_corpus_can_have_its_own_hour_budgets(tiny_study):
    path = tiny_study
    config = yaml.safe_load(path.read_text())
    config["hours"] = [0.001, 0.002]
    config["corpora"]["small"] = {**config["corpora"]["toy"], "hours": [0.001]}  # too little audio for 0.002
    path.write_text(yaml.safe_dump(config))
    ids = [c.id for c in load_study(path).cells() if c.corpus == "small"]
    assert ids == ["small__dama__0.001h__seed0", "small__lora__0.001h__seed0"]
    assert sum(c.corpus == "toy" for c in load_study(path).cells()) == 5


def test_bench_runs_cells_once_and_reports(tmp_path, tiny_study, capsys):
    config = tiny_study
    work = tmp_path / "work"
    assert main(["bench", str(config), "--work-dir", str(work), "--only", "__dama__", "__lora__"]) == 0
    cells = config.parent / "cells"
    result = json.loads((cells / "toy__dama__0.001h__seed0.json").read_text())
    assert result["cell"]["language"] == "cy" and 0 < result["train_hours"] <= 0.001
    assert result["trainable_parameters"] > 0 and result["test"]["utterances"] == 2
    # Strict by default, and what was left out is on record in every cell.
    assert result["test"]["items_total"] == 2 and result["test"]["skipped"]["total"] == 0
    assert result["test"]["skipped"]["max_skipped"] == 0
    assert "zero_shot" in result and (cells / "baseline__toy.json").is_file()
    assert result["machine"]["torch_threads"] >= 1 and result["machine"]["device"] == "cpu"
    stamp = (cells / "toy__dama__0.001h__seed0.json").stat().st_mtime_ns
    assert main(["bench", str(config), "--work-dir", str(work), "--list"]) == 0
    listing = capsys.readouterr().out
    assert "done  toy__dama__0.001h__seed0" in listing and "todo  toy__lora-fa__0.001h__seed0" in listing
    assert main(["bench", str(config), "--work-dir", str(work), "--only", "__dama__"]) == 0
    assert (cells / "toy__dama__0.001h__seed0.json").stat().st_mtime_ns == stamp, "a finished cell was redone"
    assert (config.parent / "report" / "report.html").is_file()


def test_a_precision_repeat_is_its_own_cell_and_its_own_report_row(tmp_path, tiny_study):
    from dama_asr.report import aggregate, load_cell_results

    path = tiny_study
    config = yaml.safe_load(path.read_text())
    config["train"]["precision"] = "no"
    config["methods"] = {"lora": {"r": 2}}
    config["extra_cells"] = [{"corpus": "toy", "method": "lora", "hours": 0.001, "precision": "bf16"}]
    path.write_text(yaml.safe_dump(config))
    ids = [c.id for c in load_study(path).cells()]
    assert ids == ["toy__lora__0.001h__seed0", "toy__lora__0.001h__seed0__bf16"]
    assert main(["bench", str(path), "--work-dir", str(tmp_path / "work")]) == 0
    cells = path.parent / "cells"
    fp32 = json.loads((cells / "toy__lora__0.001h__seed0.json").read_text())
    bf16 = json.loads((cells / "toy__lora__0.001h__seed0__bf16.json").read_text())
    assert fp32["cell"]["precision"] == "no" and bf16["cell"]["precision"] == "bf16"
    rows = {a.method: a.seeds for a in aggregate(load_cell_results(path.parent))}
    assert rows == {"lora": 1, "lora (bf16)": 1}  # never averaged together
