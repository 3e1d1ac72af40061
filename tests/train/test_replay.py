"""Replay against forgetting: a seeded share of a known language's utterances joins the training set
under its own language token, counts in neither the training hours nor the dev choice, and a bad
replay manifest is named as such."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dama_asr.bench.config import check_train_section
from dama_asr.errors import DamaError
from dama_asr.testing import tiny_manifest
from dama_asr.train import TrainConfig, train
from dama_asr.train.config import TrainConfigError
from dama_asr.train.setup import load_run_data

ENGLISH = ["good morning", "thank you very much", "where is the station", "one two three",
           "see you tomorrow", "the weather is fine today"]  # fmt: skip


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_manifest(tmp_path_factory.mktemp("replay_en"), n=len(ENGLISH), language="en", texts=ENGLISH)


def test_replay_adds_a_seeded_share_under_its_own_language(make_config, english, tiny_backbone) -> None:
    config = make_config(replay={"train": str(english), "share": 0.5})
    data = load_run_data(config, tiny_backbone)
    assert data.replayed == 4 and len(data.examples) == 8 + 4  # half as many as the 8 training clips
    assert [e.language for e in data.originals] == ["cy"] * 8
    replay = data.examples[-4:]
    assert {e.language for e in replay} == {"en"} and {e.item.text for e in replay} <= set(ENGLISH)
    en_token = tiny_backbone.processor.tokenizer.convert_tokens_to_ids("<|en|>")
    assert all(e.tokens[1] == en_token for e in replay)  # trained under <|en|>, not the target's token
    again = load_run_data(config, tiny_backbone).examples[-4:]
    assert [e.item.id for e in again] == [e.item.id for e in replay]  # the same sample on a resume
    others = {tuple(e.item.id for e in load_run_data(make_config(replay={"train": str(english), "share": 0.5},
                                                                 seed=s), tiny_backbone).examples[-4:])
              for s in range(1, 6)}  # fmt: skip
    assert len(others | {tuple(e.item.id for e in replay)}) > 1  # the seed draws the sample
    whole = load_run_data(make_config(replay={"train": str(english), "share": 4}), tiny_backbone)
    assert whole.replayed == len(ENGLISH)  # no more than the manifest holds, each once


def test_a_replay_run_trains_on_both_and_reports_only_the_target_hours(
    make_config, english, tmp_path
) -> None:
    config = make_config(replay={"train": str(english), "share": 4}, precision="no")
    summary = train(config)
    assert summary["replay_utterances"] == 6 and summary["train_utterances"] == 14
    card = (tmp_path / "run" / "final" / "README.md").read_text()
    # 8 clips of 0.5-2.25 s = 11 s = 0.003 h; with the 6.75 s of replay it would read 0.005 h.
    assert "| training audio | 0.003 h |" in card and "| language | cy |" in card
    assert f"| replay | 6 utterances (en) from {english} |" in card
    saved = TrainConfig.from_dict(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()))
    assert saved.replay == config.replay


def test_bad_replay_input_is_named(make_config, tmp_path: Path, tiny_backbone) -> None:
    with pytest.raises(TrainConfigError, match=r"replay.share: must be in \(0, 4\]"):
        make_config(replay={"train": "en.jsonl", "share": 0})
    unknown = tiny_manifest(tmp_path / "xx", n=2, language="xx")
    with pytest.raises(DamaError, match=rf"replay manifest {unknown}: item 'utt0'"):
        load_run_data(make_config(replay={"train": str(unknown)}), tiny_backbone)
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(DamaError, match="nowhere.jsonl"):
        load_run_data(make_config(replay={"train": str(missing)}), tiny_backbone)


def test_a_study_expands_the_replay_manifest_path(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DAMA_HOME", str(tmp_path))
    section = check_train_section(
        {"replay": {"train": "${DAMA_HOME}/en.jsonl", "share": 0.5}}, "method_train.x"
    )
    assert section["replay"] == {"train": f"{tmp_path}/en.jsonl", "share": 0.5}
