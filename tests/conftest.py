"""Shared fixtures: an isolated $DAMA_HOME per test session, the embedded model converted once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Read by huggingface_hub at import time: set before any test module imports transformers.
# Without it, a hub lookup on this offline machine spends ~45 s in connection retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def dama_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tests never touch the user's cache; DAMA_TEST_HOME reuses a prepared one across runs."""
    home = Path(os.environ.get("DAMA_TEST_HOME") or tmp_path_factory.mktemp("dama_home"))
    os.environ["DAMA_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def embedded_dir(dama_home: Path) -> Path:
    from dama_asr.backbone.embedded import prepare_embedded_whisper_base

    return prepare_embedded_whisper_base()


@pytest.fixture(scope="session")
def whisper_base(embedded_dir: Path):
    from dama_asr.backbone.loading import load_backbone

    return load_backbone("whisper-base", precision="no")  # the conversion is checked in float32


@pytest.fixture(scope="session")
def tiny_backbone():
    from dama_asr.backbone.loading import load_backbone

    return load_backbone("tiny-random", precision="no")  # float32: tests compare numbers exactly
