"""Model cards: Hub `model-index` results from the run's dev scores and a `dama eval` result (--results)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from dama_asr.adapters.sets import base_fingerprint
from dama_asr.backbone.loading import load_backbone
from dama_asr.cli import main
from dama_asr.export import ExportError, export_adapter
from dama_asr.testing import save_tiny_whisper, tiny_manifest


def _front(folder) -> dict:
    return yaml.safe_load((folder / "README.md").read_text().split("---\n")[1])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real one-epoch `dama train` run on tiny-random (Welsh) and a `dama eval` of its best/."""
    root = tmp_path_factory.mktemp("run")
    manifest = tiny_manifest(root / "data", n=2, language="cy")
    train = ["train", "--model", "tiny-random", "--train", str(manifest), "--dev", str(manifest), "--out",
             str(root / "run"), "--method", "lora", "--r", "2", "--epochs", "1", "--batch-size", "2",
             "--no-progress", "--precision", "no"]  # fmt: skip
    assert main(train) == 0
    evaluate = ["eval", "--manifest", str(manifest), "--model", "tiny-random", "--adapter", str(root / "run" / "best"),
                "--out", str(root / "eval.json"), "--precision", "no"]  # fmt: skip
    assert main(evaluate) == 0
    return root


def test_the_card_holds_dev_and_test_scores_in_model_index(run, tmp_path):
    out = tmp_path / "ct2"
    export_adapter(run / "run" / "best", out, "ct2", model="tiny-random", results=run / "eval.json")
    summary = json.loads((run / "run" / "summary.json").read_text())
    test = json.loads((run / "eval.json").read_text())["by_language"]["cy"]["script_safe"]
    front = _front(out)
    assert (
        front["library_name"] == "ctranslate2"
        and front["language"] == ["cy"]
        and "ctranslate2" in front["tags"]
    )
    (index,) = front["model-index"]
    assert index["name"] == "tiny-random-lora-cy"
    by_split = {r["dataset"]["split"]: r for r in index["results"]}
    assert set(by_split) == {"dev", "test"}
    for split, wer in (("dev", summary["best_dev_wer"]), ("test", test["wer"])):
        result = by_split[split]
        assert (
            result["task"]["type"] == "automatic-speech-recognition" and result["dataset"]["config"] == "cy"
        )
        metrics = {m["type"]: m["value"] for m in result["metrics"]}
        assert metrics["wer"] == round(100 * wer, 2) and "cer" in metrics
    assert by_split["test"]["metrics"][1]["value"] == round(100 * test["cer"], 2)
    assert by_split["dev"]["dataset"]["name"].endswith("manifest.jsonl")
    assert "| training data |" in (out / "README.md").read_text()


def test_a_file_that_is_no_eval_result_is_refused(run, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"wer": 0.3}')
    with pytest.raises(ExportError, match="not a `dama eval` result JSON"):
        export_adapter(run / "run" / "best", tmp_path / "out", "hf", model="tiny-random", results=bad)


def test_a_card_without_scores_has_no_model_index(lora, tmp_path):
    folder, _ = lora
    export_adapter(folder, tmp_path / "out", "peft", model="tiny-random")
    front = _front(tmp_path / "out")
    assert "model-index" not in front and front["base_model"] == "tiny-random"
    assert "More Information Needed" not in (tmp_path / "out" / "README.md").read_text()


def test_a_folder_saved_with_peft_s_blank_card_takes_its_language_from_the_run(run, tmp_path):
    """Adapters saved before dama wrote its own card: the language comes from the run's dev scores."""
    old = tmp_path / "old-run"
    shutil.copytree(run / "run", old, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    (old / "best" / "checksums.json").unlink()  # such folders predate checksums too
    (old / "best" / "README.md").write_text("---\nlibrary_name: peft\n---\n\n# Model Card for Model ID\n")
    summary = export_adapter(old / "best", tmp_path / "hf", "hf", model="tiny-random")
    assert list(summary["members"]) == ["cy"] and not summary["notes"]
    saved = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert saved["language"] == "cy"


def test_a_trained_adapter_records_its_base_and_another_base_is_refused_by_its_weights(run, tmp_path):
    meta = json.loads((run / "run" / "best" / "dama_adapter.json").read_text())
    assert meta["base_fingerprint"] == base_fingerprint(load_backbone("tiny-random", precision="no").model)
    other = save_tiny_whisper(tmp_path / "other-base", seed=1)
    # Not even the user's word (no name check) lets another base through: its weights differ.
    with pytest.raises(ExportError, match="fingerprint"):
        export_adapter(
            run / "run" / "best", tmp_path / "out", "peft", model=str(other), check_base_name=False
        )
    assert not (tmp_path / "out").exists()
