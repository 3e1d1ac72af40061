"""The package says only what it has."""

from __future__ import annotations

import re
from pathlib import Path

from dama_asr.adapters.config import METHODS

ROOT = Path(__file__).resolve().parents[1]


def test_the_description_names_only_methods_that_exist() -> None:
    # (a regex, not tomllib: the project supports Python 3.10, whose standard library has no TOML reader)
    description = re.search(r'^description = "(.*)"$', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    named = {"LoRA": "lora", "LoRA-FA": "lora-fa", "PiSSA": "pissa", "MiLoRA": "milora", "DoRA": "dora", "VeRA": "vera",
             "DAMA": "dama", "full fine-tuning": "full", "MoLE": "mole", "language experts": "experts",
             "LoRA-Whisper": "lora-whisper"}  # fmt: skip
    for words, method in named.items():
        if words in description:
            assert method in METHODS, f"pyproject's description names {words!r}, which is not a method"
