"""Where dama-asr keeps what it builds: converted models, corpora, encoder caches."""

from __future__ import annotations

import os
from pathlib import Path


def dama_home() -> Path:
    """`$DAMA_HOME`, else `~/.cache/dama-asr`. Created on first use."""
    home = Path(os.environ.get("DAMA_HOME", Path.home() / ".cache" / "dama-asr")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
