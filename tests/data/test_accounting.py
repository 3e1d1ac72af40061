"""One account of items left out, shared by validation, the corpus builders, evaluation and training."""

from __future__ import annotations

from dama_asr.accounting import SkippedItems
from dama_asr.data.czech_fillets import FilletsReport
from dama_asr.data.importers.testing import write_audio
from dama_asr.data.manifest import Utterance
from dama_asr.data.sentences import filter_strings
from dama_asr.data.validate import validate_items


def test_counts_by_reason_first_examples_and_the_result_file_shape():
    skipped = SkippedItems()
    for i in range(7):
        skipped.add("empty reference", f"utt{i}")
    skipped.add("unreadable audio", "x.wav: file not found")
    # The shape evaluation results have always had, plus the fraction they add.
    assert skipped.to_dict(of=16) == {
        "total": 8,
        "counts": {"empty reference": 7, "unreadable audio": 1},
        "examples": {
            "empty reference": [f"utt{i}" for i in range(5)],
            "unreadable audio": ["x.wav: file not found"],
        },
        "fraction": 0.5,
    }
    assert set(SkippedItems().to_dict()) == {"total", "counts", "examples"}
    assert (
        skipped.describe()
        == "empty reference: 7 (e.g. utt0); unreadable audio: 1 (e.g. x.wav: file not found)"
    )
    assert skipped.counts["never seen"] == 0 and "never seen" not in skipped.to_dict()["counts"]


def test_the_data_side_counts_with_the_one_account(tmp_path):
    audio = str(write_audio(tmp_path / "a.wav", 1.0))
    items = [Utterance(f"u{i}", audio, "" if i % 2 else "Bore da.", "cy") for i in range(10)]
    report = validate_items(items, progress=False)
    assert isinstance(report.problems, SkippedItems)
    assert report.problems.counts["empty_transcript"] == 5 and len(report.examples["empty_transcript"]) == 3
    assert report.to_dict()["counts"] == report.problems.to_dict()["counts"]

    extraction = filter_strings(
        [("Per trumpas.", "pkg", "GPL"), ("Tai yra labai geras sakinys.", "pkg", "GPL")], "lt"
    )
    assert extraction.rejected.to_dict()["counts"] == {"word count": 1}

    fillets = FilletsReport()
    fillets.skip("silent audio", "a.ogg")
    assert fillets.skipped.to_dict() == {
        "total": 1,
        "counts": {"silent audio": 1},
        "examples": {"silent audio": ["a.ogg"]},
    }
