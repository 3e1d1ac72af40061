"""Fixtures for training tests: a tiny manifest of real audio files and a config factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from dama_asr.testing import tiny_manifest
from dama_asr.train import TrainConfig

TEXTS = [
    "bore da",
    "diolch yn fawr iawn",
    "mae hi'n braf heddiw",
    "ble mae'r orsaf drenau",
    "rwy'n hoffi coffi",
    "nos da a chysgu'n dawel",
    "un dau tri pedwar pump",
    "croeso i gymru",
]


@pytest.fixture(scope="session")
def tiny_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 tone clips (0.5-2.25 s) with Welsh transcripts of different lengths."""
    return tiny_manifest(tmp_path_factory.mktemp("tiny_train"), n=len(TEXTS), language="cy", texts=TEXTS)


@pytest.fixture
def make_config(tiny_train: Path, tmp_path: Path):
    """TrainConfig on the tiny model: LoRA r=4, no dev set, no progress bar; keyword overrides on top."""

    def make(**overrides) -> TrainConfig:
        data = {
            "model": "tiny-random",
            "train": str(tiny_train),
            "dev": "",
            "output_dir": str(tmp_path / "run"),
            "adapter": {"method": "lora", "r": 4},
            "optim": {"epochs": 2, "batch_size": 2, "lr": 1e-2, "warmup_steps": 1},
            "progress_bar": False,
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return TrainConfig.from_dict(data)

    return make
