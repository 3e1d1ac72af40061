"""Choosing the kept epoch on dev: the capped WER counts a looping hypothesis as its utterance wholly
wrong instead of letting its insertions swing the whole dev set, and `eval.select_by` decides which
of the two logged WERs keeps `best/`, decays the schedule and stops the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.evaluate import capped_wer
from dama_asr.train import train
from dama_asr.train.config import TrainConfigError


def _utt(reference: str, hypothesis: str) -> dict:
    return {"reference": reference, "hypothesis": hypothesis, "language": "cy"}


def test_a_looping_hypothesis_counts_as_its_utterance_wholly_wrong() -> None:
    good = [_utt("bore da i chi gyd", "bore da i chi gyd"), _utt("diolch yn fawr", "diolch yn mawr")]
    loop = _utt("nos da", "nos da " + "a " * 60)  # 60 insertions against 2 words
    assert capped_wer(good, "whisper") == pytest.approx(1 / 8)  # no utterance over its length: plain WER
    # Plain: (1 + 60) / 10 = 6.1, the loop outweighs everything; capped: (1 + 2) / 10.
    assert capped_wer([*good, loop], "whisper") == pytest.approx(3 / 10)


def test_select_by_capped_wer_keeps_the_epoch_the_capped_score_prefers(
    make_config, tiny_train: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrainConfigError, match="eval.select_by: one of wer, capped_wer"):
        make_config(eval={"select_by": "cer"})
    dev = tmp_path / "dev.jsonl"
    write_manifest(dev, read_manifest(tiny_train)[:3], relative=False)
    config = make_config(dev=str(dev), optim={"epochs": 2}, eval={"select_by": "capped_wer", "patience": 0,
                         "max_utterances": 3}, precision="no")  # fmt: skip
    summary = train(config)
    history = summary["epochs"]
    assert summary["dev_select_by"] == "capped_wer"
    for h in history:
        assert h["dev_score"] == h["dev_wer_capped"] <= min(h["dev_wer"], 1.0)
    best = min(history, key=lambda h: (h["dev_wer_capped"], h["epoch"]))
    assert summary["best_epoch"] == best["epoch"] and summary["best_dev_wer"] == best["dev_wer_capped"]
    card = (tmp_path / "run" / "best" / "README.md").read_text()
    assert f"| dev WER | {100 * best['dev_wer']:.1f}% |" in card  # the card says the plain WER
