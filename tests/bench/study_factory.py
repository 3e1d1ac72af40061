"""A tiny study on the tiny random Whisper: one corpus of six tone clips, two grid methods, one extra cell."""

from __future__ import annotations

from pathlib import Path

import yaml

from dama_asr.testing import tiny_manifest

TEXTS = [f"bore da {w}" for w in ("un", "dau", "tri", "pedwar", "pump", "chwech")]


def tiny_study_config(tmp_path: Path) -> dict:
    train = tiny_manifest(tmp_path / "train", n=6, texts=TEXTS)
    dev = tiny_manifest(tmp_path / "dev", n=2, texts=TEXTS[:2])
    return {
        "name": "tiny-study",
        "model": "tiny-random",
        "corpora": {"toy": {"train": str(train), "dev": str(dev), "test": str(dev)}},
        "methods": {"dama": {"r_high": 4, "r_low": 2}, "lora": {"r": 2}},
        "hours": [0.001],  # 3.6 s of audio
        "seeds": [0],
        "train": {
            "optim": {"epochs": 1, "batch_size": 2},
            "progress_bar": False,
            "eval": {"max_utterances": 2},
        },
        "extra_cells": [{"corpus": "toy", "method": "lora-fa", "hours": 0.001, "adapter": {"r": 2}}],
    }


def write_study(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "study" / "config.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path
