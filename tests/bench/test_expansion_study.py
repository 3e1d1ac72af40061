"""The language-expansion study through `dama bench` on the tiny model: a language joins a
language-experts study's set, and every base language decodes exactly as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests.bench.test_experts_study import _corpus

from dama_asr.bench.expansion_study import ExpansionStudy, ExpansionStudyError
from dama_asr.cli import main
from dama_asr.report.expansion_table import base_languages_table, expansion_table


def _base_study(root: Path) -> Path:
    config = {
        "name": "tiny-experts", "kind": "language-experts", "model": "tiny-random",
        "languages": {"cy": _corpus(root, "cy", 0), "en": _corpus(root, "en", 1)},
        "seeds": [0], "max_test_utterances": 3, "rows": ["experts"],
        "expert": {"r": 2, "targets": ["all"], "encoder": False},
        "train": {"precision": "no", "optim": {"epochs": 1, "batch_size": 2}, "eval": {"max_utterances": 2},
                  "progress_bar": False},
    }  # fmt: skip
    folder = root / "experts-study"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "config.yaml"


def test_expansion_cells_report_the_new_language_and_untouched_base_languages(tmp_path: Path, capsys) -> None:
    _base_study(tmp_path)
    config = {
        "name": "tiny-expansion", "kind": "expansion",
        "base": {"study": "../experts-study/config.yaml", "seed": 0, "work_dir": str(tmp_path / "base-work")},
        "new_languages": {"lt": _corpus(tmp_path, "lt", 2)}, "inits": ["warm", "moe"],
        "moe": {"top_k": 2, "gates": "similarity"}, "rescore_base": ["moe"], "max_test_utterances": 3,
        "similarity": {"min_utterances": 4},
        "train": {"eval": {"max_utterances": 2, "patience": 2}},
    }  # fmt: skip
    study = tmp_path / "study"
    study.mkdir()
    (study / "config.yaml").write_text(yaml.safe_dump(config))
    args = ["bench", str(study / "config.yaml"), "--work-dir", str(tmp_path / "work")]
    assert main([*args, "--list"]) == 0
    assert capsys.readouterr().out.split() == ["todo", "base-languages", "todo", "zero-shot-lt", "todo",
                                               "lt-warm__seed0", "todo", "lt-moe__seed0"]  # fmt: skip
    assert main(args) == 0
    cells = {p.stem: json.loads(p.read_text()) for p in (study / "cells").glob("*.json")}
    assert set(cells) == {"base-languages", "zero-shot-lt", "lt-warm__seed0", "lt-moe__seed0"}
    assert (tmp_path / "base-work" / "experts__seed0" / "experts" / "adapter_set.json").is_file()
    base_cell = cells["base-languages"]
    assert base_cell["languages"] == ["cy", "en"] and set(base_cell["digests"]) == {"cy", "en"}
    warm, moe = cells["lt-warm__seed0"], cells["lt-moe__seed0"]
    assert set(warm["rows"]["warm"]["by_language"]) == {"lt"}
    assert warm["start"]["members"][0] == warm["similarity"][0]["language"]
    assert warm["members_identical"] == {"cy": True, "en": True} == moe["members_identical"]
    assert "base_after" not in warm and moe["base_identical"] == {"cy": True, "en": True}
    assert moe["base_after"]["by_language"] == base_cell["rows"]["base set"]["by_language"]
    assert len(moe["start"]["gates"]) == 2 and moe["gates"] == "similarity"
    table = expansion_table(study)
    line = next(row for row in table.splitlines() if row.startswith("| lt | LoRA MoE |"))
    assert f"{moe['rows']['moe']['average_wer']:.1%}" in line and line.endswith("| yes |")
    assert "| lt | zero-shot (base model) |" in table
    before = base_languages_table(study)
    assert "WER after +lt (moe, seed 0)" in before and before.splitlines()[2].endswith("| yes |")
    capsys.readouterr()
    assert main(args) == 0  # everything is done: nothing runs again
    assert "0 cell(s) run now; 0 left" in capsys.readouterr().out
    # A base cell scored on another machine's trained set (another digest): the moe cell re-scores "before"
    # on the set it expands, and judges identical transcripts against that.
    base_path = study / "cells" / "base-languages.json"
    assert base_cell["set_digest"]
    base_path.write_text(json.dumps({**base_cell, "set_digest": "another machine's set"}))
    (study / "cells" / "lt-moe__seed0.json").unlink()
    assert main([*args, "--only", "lt-moe"]) == 0
    again = json.loads((study / "cells" / "lt-moe__seed0.json").read_text())
    assert again["base_before"] == base_cell["rows"]["base set"] and again["base_identical"] == {
        "cy": True,
        "en": True,
    }
    assert "(base set retrained: before " in base_languages_table(study)


def test_expansion_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ExpansionStudyError, match="base.study"):
        ExpansionStudy.from_dict({"new_languages": {"lt": {}}})
    with pytest.raises(ExpansionStudyError, match="new_languages.lt: missing dev, test"):
        ExpansionStudy.from_dict({"base": {"study": "x.yaml"}, "new_languages": {"lt": {"train": "t"}}})
    with pytest.raises(ExpansionStudyError, match="unknown mix"):
        ExpansionStudy.from_dict({"base": {"study": "x.yaml"}, "new_languages": {"lt": dict.fromkeys(
            ("train", "dev", "test"), "m")}, "inits": ["mix"]})  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"kind": "expansion", "base": {"study": "nowhere.yaml"},
                                      "new_languages": {"lt": dict.fromkeys(("train", "dev", "test"), "m")}}))  # fmt: skip
    assert main(["bench", str(config), "--work-dir", str(tmp_path / "w")]) == 2
