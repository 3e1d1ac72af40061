"""A study config is checked whole before any work: one-line errors naming the file, the key and the fix."""

from __future__ import annotations

import pytest
import yaml

from dama_asr.bench.config import StudyConfigError, load_study, parse_shard
from dama_asr.bench.runner import StudyRunner
from dama_asr.cli import main

from .study_factory import tiny_study_config, write_study


def _bench_error(capsys, *argv) -> str:
    assert main(["bench", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_an_unreadable_study_config_is_one_line_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert str(missing) in _bench_error(capsys, missing) and "does not exist" in _bench_error(capsys, missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ncorpora: {toy: [a\nhours: [1]\n")
    assert f"{broken}:" in _bench_error(capsys, broken) and "not valid YAML" in _bench_error(capsys, broken)
    for text in ("- name: x\n", "just a string\n"):
        listed = tmp_path / "listed.yaml"
        listed.write_text(text)
        assert "top level must be a mapping" in _bench_error(capsys, listed)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c.update(seed=[1]), ["unknown key 'seed'", "did you mean 'seeds'?", "valid: corpora"]),
        (lambda c: c["corpora"]["toy"].update(tset="x"), ["corpora.toy", "'tset'", "did you mean 'test'?"]),
        (lambda c: c["train"]["optim"].update(lrr=0.1), ["train.optim", "'lrr'", "did you mean 'lr'?"]),
        (lambda c: c["train"].update(precison="no"), ["train", "'precison'", "did you mean 'precision'?"]),
        (lambda c: c["train"]["optim"].update(lr=-1), ["train: optim.lr: must be > 0"]),
        (lambda c: c["train"].update(output_dir="runs/x"), ["train.output_dir: set per cell", "remove it"]),
        (lambda c: c.update(method_train={"ful": {"optim": {"lr": 1e-5}}}), ["method_train.ful", "no cell uses"]),
        (lambda c: c.update(method_train={"lora": {"optim": {"bach_size": 2}}}), ["method_train.lora.optim"]),
        (lambda c: c["extra_cells"][0].update(corpus="nope"), ["extra_cells[0]", "unknown corpus 'nope'"]),
        (lambda c: c["extra_cells"][0].update(seed=[1]), ["extra_cells[0]", "did you mean 'seeds'?"]),
        (lambda c: c["extra_cells"].append({"corpus": "toy", "method": "lora", "hours": 0.001,
                                            "adapter": {"r": 8}}), ["extra_cells[1].adapter", "{'r': 2}"]),
        (lambda c: c.update(hours=[0]), ["hours: hour budgets must be > 0"]),
        (lambda c: c.update(max_skipped="lots"), ["max_skipped", "'lots'"]),
    ],
)  # fmt: skip
def test_a_wrong_key_or_value_names_itself(tmp_path, capsys, change, expected):
    config = tiny_study_config(tmp_path)
    change(config)
    path = write_study(tmp_path, config)
    with pytest.raises(StudyConfigError) as err:
        load_study(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for part in expected:
        assert part in message, message
    assert _bench_error(capsys, path, "--work-dir", tmp_path / "work") == f"error: {message}\n"


def test_bad_cells_are_all_reported_before_any_work(tmp_path, capsys):
    config = tiny_study_config(tmp_path)
    config["methods"]["lora"] = {"rr": 2}  # typo of r
    config["extra_cells"] += [
        {"corpus": "toy", "method": "pissa", "hours": 0.001},  # no rank
        {"corpus": "toy", "method": "dama", "hours": 0.001, "precision": "bf15"},
    ]
    path = write_study(tmp_path, config)
    work = tmp_path / "work"
    err = _bench_error(capsys, path, "--work-dir", work)
    assert "3 of 5 cell(s) cannot be configured, so nothing was run" in err
    assert "unknown adapter option(s): rr (cell toy__lora__0.001h__seed0)" in err
    assert "needs a rank r >= 1" in err and "toy__pissa__0.001h__seed0" in err
    assert "precision: one of" in err and "toy__dama__0.001h__seed0__bf15" in err
    # Failed before the zero-shot evaluation, the hour subsets and any training.
    assert not (path.parent / "cells").exists() and not work.exists()
    assert _bench_error(capsys, path, "--work-dir", work, "--list").startswith(
        f"error: study tiny-study ({path}): 3 of 5"
    )


def test_missing_inputs_of_the_selected_cells_stop_the_study_before_any_work(tmp_path, capsys):
    config = tiny_study_config(tmp_path)
    config["corpora"]["gone"] = {"train": str(tmp_path / "no-train.jsonl"), "dev": "/no/dev.jsonl",
                                 "test": config["corpora"]["toy"]["test"]}  # fmt: skip
    config["hours"] = [0.001, 1.0]  # toy holds 0.001 h, not 1 h
    path = write_study(tmp_path, config)
    work = tmp_path / "work"
    err = _bench_error(capsys, path, "--work-dir", work)
    assert "manifest /no/dev.jsonl does not exist" in err and f"manifest {tmp_path / 'no-train.jsonl'}" in err
    assert "corpus toy has only 0.00 h of training audio; a cell asks for 1 h" in err
    assert not (path.parent / "cells").exists() and not (work / "data").exists()
    # A lane that runs only cells whose inputs exist is not stopped by the others'.
    runner = StudyRunner(load_study(path), path.parent, work)
    runner.check_inputs(runner.study.select(only=["toy__dama__0.001h"]))


def test_the_committed_studies_configure_every_cell(tmp_path):
    from pathlib import Path

    from dama_asr.bench.cells import config_kind
    from dama_asr.bench.expansion_study import ExpansionStudyRunner, load_expansion_study
    from dama_asr.bench.experts_study import ROWS as EXPERT_ROWS
    from dama_asr.bench.experts_study import is_experts_study, load_experts_study
    from dama_asr.train.config import TrainConfig

    for config in sorted(Path(__file__).parents[2].glob("benchmarks/*/config.yaml")):
        if config_kind(config) == "expansion":  # on a committed language-experts study's set
            expansion = load_expansion_study(config)
            runner = ExpansionStudyRunner(expansion, config.parent, tmp_path / "expansion")
            assert runner.frozen_encoder and runner.base_study.languages  # the base study loads
            assert len(expansion.cell_ids()) == 1 + len(expansion.new_languages) * (
                1 + len(expansion.inits) * len(expansion.seeds)
            )
            continue
        if is_experts_study(config):  # its own runner: every row's training settings must build
            experts = load_experts_study(config)
            if config.parent.name == "language-experts":  # the main study runs every row
                assert set(experts.rows) == set(EXPERT_ROWS)
            trained_rows = [row for row in experts.rows if row != "zero-shot"]
            zero_shot = ["zero-shot"] if "zero-shot" in experts.rows else []
            assert experts.cell_ids()[: len(zero_shot)] == zero_shot and len(experts.cell_ids()) == len(
                zero_shot
            ) + sum(len(experts.row_seeds(row)) for row in trained_rows)
            # MoLE and the students build on their seed's experts: that seed must have an experts row.
            built_on_experts = [row for row in trained_rows if row == "mole" or row.startswith("kd-")]
            assert all(
                s in experts.row_seeds("experts") for row in built_on_experts for s in experts.row_seeds(row)
            )
            adapter = {"method": "lora", **experts.expert}
            assert (
                TrainConfig.from_dict({**experts.train, "train": "x.jsonl", "adapter": adapter}).adapter.r
                == 64
            )
            continue
        study = load_study(config)
        configs = StudyRunner(study, config.parent, tmp_path / "work").cell_configs()
        assert len(configs) == len(study.cells()) > 0


def test_shards_split_the_cells_sorted_by_id(tmp_path, capsys):
    config = tiny_study_config(tmp_path)
    config["seeds"] = [0, 1, 2]
    path = write_study(tmp_path, config)
    study = load_study(path)
    ids = sorted(c.id for c in study.cells())
    shards = [[c.id for c in study.select(shard=(i, 3))] for i in (1, 2, 3)]
    assert sorted(sum(shards, [])) == ids and len(set(sum(shards, []))) == len(ids) == 7
    assert sorted(shards[1]) == ids[1::3]  # shard 2 of 3: positions 1, 4, ...
    assert [c.id for c in study.select(only=["lora-fa"], shard=(1, 3))] == [
        i for i in shards[0] if "lora-fa" in i
    ]
    assert main(["bench", str(path), "--work-dir", str(tmp_path / "w"), "--list", "--shard", "2/3"]) == 0
    listed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert listed == shards[1]


@pytest.mark.parametrize("text", ["0/4", "5/4", "2", "a/b", "1/0", "-1/4", "1/4/2"])
def test_a_bad_shard_is_a_clear_error(tmp_path, capsys, text):
    with pytest.raises(StudyConfigError, match="--shard: expected I/N"):
        parse_shard(text)
    assert "SLURM_ARRAY_TASK_ID" in _bench_error(capsys, tmp_path / "x.yaml", f"--shard={text}")


def test_parse_shard():
    assert parse_shard("1/1") == (1, 1) and parse_shard("4/4") == (4, 4) and parse_shard(" 2/3") == (2, 3)
    assert yaml.safe_load("s: 2/3")["s"] == "2/3"  # unquoted in a YAML job file it stays text
