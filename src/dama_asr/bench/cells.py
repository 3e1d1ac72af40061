"""What the one-file-per-cell studies (`kind: language-experts`, `kind: expansion`) share: running their
cells in order, each under a lock and written last, so that a finished cell is never redone and
several processes can share one study."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dama_asr.atomic import atomic_write_text
from dama_asr.locks import AlreadyRunning, FolderLock


def run_cells(
    cell_ids: list[str], cells_dir: Path, locks_dir: Path, run_cell: Callable[[str], dict],
    only: list[str] | None = None,
) -> list[str]:  # fmt: skip
    """Run each cell without a cells_dir/<id>.json (those matching `only`, when given); the ids run now."""
    done = []
    for cell in cell_ids:
        path = cells_dir / f"{cell}.json"
        if (only and not any(o in cell for o in only)) or path.is_file():
            continue
        lock = FolderLock(locks_dir / cell, f"study cell {cell}")
        try:
            lock.acquire()
        except AlreadyRunning:
            continue  # another process holds it
        try:
            if not path.is_file():
                result = run_cell(cell)
                cells_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, json.dumps(result, indent=2, allow_nan=False, ensure_ascii=False))
                done.append(cell)
        finally:
            lock.release()
    return done


def config_kind(path: Path) -> str | None:
    """A study config's `kind`; None for anything unreadable, which `bench.config.load_study` then
    reports with its own one-line errors."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data.get("kind") if isinstance(data, dict) else None
