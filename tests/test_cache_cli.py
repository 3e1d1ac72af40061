"""`dama cache list|verify|prune` on a real $DAMA_HOME with encoder caches written by EncoderCache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from dama_asr.cli import main
from dama_asr.features.cache_store import list_caches, read_index
from dama_asr.features.encoder_cache import EncoderCache

DAY = 86400


def fill(cache: EncoderCache, prefix: str, shards: int) -> None:
    for s in range(shards):
        cache.add({f"{prefix}{s}-{i}": torch.randn(1500, 16) for i in range(3)})


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """Two encoder caches (`old` used two days ago, `new` now) and one cache of another kind."""
    home = tmp_path / "home"
    monkeypatch.setenv("DAMA_HOME", str(home))
    root = home / "cache" / "encoder"
    fill(EncoderCache("old", root=root), "o", shards=2)
    fill(EncoderCache("new", root=root), "n", shards=1)
    os.utime(root / "old" / "last_used", (time.time() - 2 * DAY,) * 2)
    (home / "cache" / "teacher").mkdir()
    (home / "cache" / "teacher" / "logits.bin").write_bytes(b"\0" * 1000)
    return home


def shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("shard-*.safetensors"))


def test_list_shows_every_cache_with_counts_size_and_last_use(home: Path, capsys) -> None:
    assert main(["cache", "list"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert lines["encoder/old"][1:3] == ["2", "6"] and lines["encoder/old"][-2:] == ["d", "ago"]
    assert lines["encoder/new"][1:3] == ["1", "3"] and lines["encoder/new"][-2:] == ["just", "now"]
    assert lines["teacher"][1:3] == ["-", "-"]
    assert "total" in lines


def test_verify_reports_a_damaged_shard_and_fix_drops_it(home: Path, capsys) -> None:
    bad = shards(home / "cache" / "encoder" / "new")[0]
    data = bad.read_bytes()
    bad.unlink()
    bad.write_bytes(data[:-100])  # truncated by a crash
    assert main(["cache", "verify"]) == 2
    captured = capsys.readouterr()
    assert bad.name in captured.out and captured.err.startswith("error: 1 bad shard(s)")
    assert "--fix" in captured.err and bad.exists()
    assert main(["cache", "verify", "--fix"]) == 0
    assert (
        not bad.exists() and "new: 1 shard(s), 1 bad, 0 torn index line(s): fixed" in capsys.readouterr().out
    )
    assert main(["cache", "verify"]) == 0
    assert len(shards(home / "cache" / "encoder" / "old")) == 2  # the healthy cache is untouched


def test_prune_max_gb_evicts_the_least_recently_used_cache_first(home: Path, capsys) -> None:
    sizes = {c.name: c.size_bytes for c in list_caches()}
    limit = sizes["encoder/new"] + sizes["teacher"] + 10  # room for everything but `old`
    assert main(["cache", "prune", "--max-gb", str(limit / 1e9)]) == 0
    out = capsys.readouterr().out
    assert "evicted encoder/old" in out and "encoder/new" not in out
    assert [c.name for c in list_caches()] == ["encoder/new", "teacher"]
    assert sum(c.size_bytes for c in list_caches()) <= limit
    assert EncoderCache("new", root=home / "cache" / "encoder").missing(["n0-0", "n0-2"]) == []
    # Read seconds ago: a running job may be reading it, so even a limit of 0 keeps it.
    assert main(["cache", "prune", "--max-gb", "0"]) == 0
    assert "kept encoder/new" in capsys.readouterr().out and (home / "cache" / "encoder" / "new").is_dir()


def test_prune_without_a_limit_removes_only_leftovers(home: Path, capsys) -> None:
    folder = home / "cache" / "encoder" / "old"
    stale = folder / ".shard-x.safetensors.partial"
    stale.write_bytes(b"half a shard")
    os.utime(stale, (time.time() - 2 * 3600,) * 2)
    dead, kept = shards(folder)
    with open(folder / "index.jsonl", "a") as f:  # dropped by a crashed run that never deleted it
        f.write(json.dumps({"shard": dead.name, "keys": [], "dead": True}) + "\n")
        f.write('{"shard": "shard-torn')  # and a torn line
    assert main(["cache", "prune"]) == 0
    out = capsys.readouterr().out
    assert f"removed {stale}" in out and f"removed {dead}" in out and "evicted" not in out
    assert shards(folder) == [kept] and len(shards(home / "cache" / "encoder" / "new")) == 1
    records, torn = read_index(folder)
    assert torn == 0 and [r["shard"] for r in records] == [kept.name]  # the index was compacted


def test_prune_rejects_a_negative_limit(home: Path, capsys) -> None:
    assert main(["cache", "prune", "--max-gb", "-1"]) == 2
    assert capsys.readouterr().err.startswith("error: --max-gb -1.0")
    assert len(list_caches()) == 3
