from __future__ import annotations

from pathlib import Path

import pytest

from .factories import save


@pytest.fixture
def lora(tmp_path: Path):
    """(folder, adapted model): a saved LoRA (encoder and decoder) for cy."""
    return save(tmp_path)
