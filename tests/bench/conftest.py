"""Fixtures of the study tests (the factory itself is in study_factory.py, which tests import)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .study_factory import tiny_study_config, write_study


@pytest.fixture()
def tiny_study(tmp_path) -> Path:
    """The study's config.yaml (in its own folder, where cells/ will go)."""
    return write_study(tmp_path, tiny_study_config(tmp_path))
