"""Tables in hand-written pages are generated from the cell files and cannot drift from them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dama_asr.report import aggregate, load_cell_results, markdown_tables
from dama_asr.report.results import GeneratedBlockError, fill_generated

ROOT = Path(__file__).resolve().parents[2]


def _make_results():
    spec = importlib.util.spec_from_file_location("make_results", ROOT / "scripts" / "make_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerating_the_committed_pages_changes_nothing():
    assert _make_results().refresh_pages(check=True) == [], "run `python scripts/make_results.py`"
    text = (ROOT / "docs" / "STUDY.md").read_text(encoding="utf-8")
    assert text.count("<!-- /generated -->") == 8, (
        "STUDY.md's tables are generated blocks (3 of the DAMA study, 2 of the language-experts study, "
        "2 of the expansion study, 1 of the converged rerun)"
    )


def test_results_md_holds_the_tables_of_the_committed_cells():
    for study in sorted(p.parent for p in ROOT.glob("benchmarks/*/cells")):
        tables = markdown_tables(aggregate(load_cell_results(study)))
        assert tables in (ROOT / "docs" / "RESULTS.md").read_text(encoding="utf-8"), study


def _cell(corpus, method, hours, seed, wer, precision="no", en_after=0.3):
    return {
        "cell": {"corpus": corpus, "method": method, "hours": hours, "seed": seed, "language": "cy",
                 "precision": precision},
        "trainable_parameters": {"dama": 1_331_200, "lora": 5_111_808}[method],
        "train": {"seconds_per_epoch": [10.0], "samples_per_second": 1.0, "peak_memory_gib": 1.0},
        "test": {"wer": wer, "cer": wer / 2, "utterances": 10, "suspicious": 0},
        "zero_shot": {"wer": 2.0, "cer": 1.0},
        "forgetting": {"en_wer_before": 0.25, "en_wer_after": en_after},
    }  # fmt: skip


CELLS = [
    _cell("cy", "dama", 0.5, 0, 0.50),
    _cell("cy", "dama", 0.5, 1, 0.60, en_after=0.5),
    _cell("cy", "lora", 0.5, 0, 0.40),
    _cell("cy", "lora", 1.0, 0, 0.30),
    _cell("cy", "dama", 0.5, 0, 0.52, precision="bf16"),
]
PAGE = """# Reading

Prose, kept as written; it may quote a marker: `<!-- generated:... -->`.

<!-- generated:wer-by-method study=s methods="lora=LoRA-64,dama=DAMA" corpora="cy=Welsh" -->
| a stale | table |
<!-- /generated -->

More prose.

<!-- generated:forgetting study=s methods="dama=DAMA,lora=LoRA-64" corpora=cy=Welsh -->
<!-- /generated -->

<!-- generated:precision study=s hours=0.5 -->
<!-- /generated -->
"""


def _study(tmp_path, order):
    cells = tmp_path / "s" / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    for old in cells.glob("*.json"):
        old.unlink()
    for name, i in zip("abcde", order, strict=True):  # file names decide the loading order
        (cells / f"{name}.json").write_text(json.dumps(CELLS[i]))
    return tmp_path


def test_blocks_are_rewritten_from_the_cells_in_the_markers_order(tmp_path):
    page = fill_generated(PAGE, _study(tmp_path, range(5)))
    assert "a stale" not in page and "Prose, kept as written" in page and "More prose." in page
    assert "| | LoRA-64 | DAMA |\n" in page  # columns as the marker lists them
    assert "| Welsh 0.5 h | 40.0 (20.0) | 55.0 ± 7.1 (27.5 ± 3.5), n=2 |\n" in page  # bf16 kept apart
    assert "| Welsh 1 h | 30.0 (15.0) | |\n" in page and "Zero-shot: Welsh 200.0% (100.0%)." in page
    assert "| English WER after (25.0% before) | 0.5 h | 1 h |\n" in page
    assert "| DAMA, Welsh | 40.0 ± 14.1 (n=2) | |\n" in page
    assert "| cy | dama | 50.0/60.0 | 52.0/– (n=1) | 55.0 ± 7.1 | 52.0 | 40.0 → 30.0 |\n" in page
    assert fill_generated(page, tmp_path) == page  # a second run changes nothing
    for order in ([4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        assert fill_generated(PAGE, _study(tmp_path, order)) == page, "row order depends on file order"


def test_a_rerun_study_is_read_against_the_one_it_replaces(tmp_path):
    # The converged bf16 rerun beside the 3-epoch float32 grid: change in points and relative, the
    # rerun's English WER, and whether its target is met; methods the old study lacks read "–".
    _study(tmp_path, range(5))  # the old study "s"
    new = tmp_path / "n" / "cells"
    new.mkdir(parents=True)
    for i, cell in enumerate([_cell("cy", "dama", 0.5, 0, 0.30, "bf16", en_after=0.2),
                              _cell("cy", "dama", 0.5, 1, 0.20, "bf16", en_after=0.4),
                              _cell("cy", "lora", 1.0, 0, 0.33, "bf16"),
                              _cell("cy", "lora", 1.0, 1, 0.99)]):  # float32: not part of the rerun  # fmt: skip
        (new / f"{i}.json").write_text(json.dumps(cell))
    marker = ('<!-- generated:wer-change study=n before=s methods="dama=DAMA,lora=LoRA-64" corpora=cy=Welsh '
              'precision=bf16 targets="cy:0.5=26" -->\n<!-- /generated -->\n')  # fmt: skip
    page = fill_generated(marker, tmp_path)
    assert (
        "| Welsh | 0.5 | DAMA | 1.33 M | 55.0 ± 7.1 (n=2) | 25.0 ± 7.1 (n=2) | -30.0 | -55% | 30.0 ± 14.1 | ≤ 26: met |"
        in page
    )
    assert "| Welsh | 1 | LoRA-64 | 5.11 M | 30.0 | 33.0 | +3.0 | +10% | 30.0 | |" in page
    assert page.count("| Welsh |") == 2, "the float32 cell of the rerun study is not a row of its own"
    only_new = marker.replace("lora=LoRA-64", "lora=LoRA-64,full=full")
    assert "full" not in fill_generated(only_new, tmp_path).split("-->", 1)[1]  # no cells: no row
    with pytest.raises(GeneratedBlockError, match="not corpus:hours=WER"):
        fill_generated(marker.replace("cy:0.5=26", "cy=26"), tmp_path)
    with pytest.raises(GeneratedBlockError, match="study=gone has no cell results"):
        fill_generated(marker.replace("before=s", "before=gone"), tmp_path)
    bf16 = fill_generated('<!-- generated:wer-by-method study=n methods=dama corpora=cy precision=bf16 -->\n'
                          "<!-- /generated -->\n", tmp_path)  # fmt: skip
    assert "| cy 0.5 h | 25.0 ± 7.1 (12.5 ± 3.5), n=2 |" in bf16


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("<!-- generated:nonsense study=s -->\n<!-- /generated -->\n", "needs a kind"),
        ("<!-- generated:forgetting methods=dama corpora=cy -->\n<!-- /generated -->\n", "study=FOLDER"),
        ("<!-- generated:precision study=s -->\n<!-- /generated -->\n", "hours"),
        ('<!-- generated:precision study=s hours="0.5 -->\n<!-- /generated -->\n', "quotation"),
        ("<!-- generated:precision study=nowhere hours=0.5 -->\n<!-- /generated -->\n", "no cell results"),
        ("<!-- generated:precision study=s hours=0.5 -->\n| table |\n", "lacks its"),
    ],
)
def test_a_bad_marker_is_an_error_naming_the_page(tmp_path, marker, message):
    with pytest.raises(GeneratedBlockError, match=message) as err:
        fill_generated(marker, _study(tmp_path, range(5)), where="docs/X.md")
    assert str(err.value).startswith("docs/X.md")


def test_a_torn_cell_file_is_a_one_line_error(tmp_path, capsys):
    from dama_asr.cli import main

    study = _study(tmp_path, range(5)) / "s"
    (study / "cells" / "b.json").write_text('{"cell": ')
    assert main(["report", str(study)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {study / 'cells' / 'b.json'}: not valid JSON") and err.count("\n") == 1
