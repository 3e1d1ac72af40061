"""The encoder cache survives crashes, damage and full disks: fsynced renames, dropped bad shards,
torn index lines, abandoned temporaries, free-space checks."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dama_asr import durable
from dama_asr.data.manifest import read_manifest
from dama_asr.errors import DamaError, DiskFullError
from dama_asr.features.cache_store import read_index
from dama_asr.features.encoder_cache import (
    EncoderCache,
    cached_encoder_outputs,
    encoder_function,
    whisper_fingerprint,
)
from dama_asr.testing import tiny_manifest
from dama_asr.train import train

FRAMES = (1500, 16)


def outputs(prefix: str, n: int = 3, shape: tuple[int, int] = FRAMES) -> dict[str, torch.Tensor]:
    return {f"{prefix}{i}": torch.randn(shape) for i in range(n)}


def only_shard(cache: EncoderCache) -> Path:
    (shard,) = cache.dir.glob("shard-*.safetensors")
    return shard


def damage(path: Path, data: bytes | None = None) -> None:
    """Truncate the file (or replace its bytes) under a new inode, as a crash leaves it: changing
    it in place would break a live mmap of it instead."""
    data = path.read_bytes()[:200] if data is None else data
    path.unlink()
    path.write_bytes(data)


def test_shard_and_folder_are_fsynced_before_and_after_the_rename(tmp_path: Path, monkeypatch) -> None:
    cache = EncoderCache("fp", root=tmp_path)
    events: list[tuple[str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        events.append(("dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino))
        real_fsync(fd)

    def replace(src, dst) -> None:
        real_replace(src, dst)
        events.append(("rename", os.stat(dst).st_ino))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    cache.add(outputs("k"))
    shard_ino, dir_ino = only_shard(cache).stat().st_ino, cache.dir.stat().st_ino
    rename = events.index(("rename", shard_ino))
    assert ("file", shard_ino) in events[:rename]  # the data is on disk before its name is
    assert events[rename - 1] == ("dir", dir_ino)  # ... and so is the temporary entry
    assert events[rename + 1] == ("dir", dir_ino)  # the new name, before the index points at it


@pytest.fixture
def corpus(tmp_path: Path):
    return read_manifest(tiny_manifest(tmp_path / "corpus", n=3))


def test_truncated_shard_is_dropped_and_encoded_again_in_the_same_run(
    tiny_backbone, corpus, tmp_path: Path, caplog
) -> None:
    fp = whisper_fingerprint(tiny_backbone.model, tiny_backbone.processor.feature_extractor)
    expected = cached_encoder_outputs(tiny_backbone, corpus, cache=EncoderCache(fp, root=tmp_path))(range(3))
    shard = only_shard(EncoderCache(fp, root=tmp_path))
    damage(shard)
    with caplog.at_level(logging.WARNING):
        lookup = cached_encoder_outputs(tiny_backbone, corpus, cache=EncoderCache(fp, root=tmp_path))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and shard.name in warnings[0].getMessage()
    assert not shard.exists()
    assert torch.equal(lookup(range(3)), expected)
    records, _ = read_index(tmp_path / fp)
    assert {"shard": shard.name, "keys": [], "dead": True} in records


def test_shard_damaged_mid_run_is_encoded_again_by_get(tiny_backbone, corpus, tmp_path: Path) -> None:
    fp = whisper_fingerprint(tiny_backbone.model, tiny_backbone.processor.feature_extractor)
    cache = EncoderCache(fp, root=tmp_path)
    lookup = cached_encoder_outputs(tiny_backbone, corpus, cache=cache)
    shard = only_shard(cache)
    damage(shard)  # after the start-of-run check, before the first read
    hidden = lookup([0, 2])
    encode = encoder_function(
        tiny_backbone.model, tiny_backbone.processor.feature_extractor, torch.device("cpu")
    )
    assert torch.equal(hidden, encode([corpus[0], corpus[2]]).to(torch.float16))
    assert not shard.exists() and len(list(cache.dir.glob("shard-*"))) == 1


def test_without_an_encoder_a_damaged_shard_is_a_clear_error(tmp_path: Path) -> None:
    cache = EncoderCache("fp", root=tmp_path)
    cache.add(outputs("k"))
    assert cache.missing(["k0"]) == []
    shard = only_shard(cache)
    damage(shard)
    with pytest.raises(DamaError, match=f"{shard.name} could not be read.*rerun"):
        cache.get(["k0"])
    assert not shard.exists() and cache.missing(["k0", "k1"]) == ["k0", "k1"]


def test_shards_with_a_wrong_shape_or_a_missing_key_are_dropped(tmp_path: Path, caplog) -> None:
    cache = EncoderCache("fp", root=tmp_path)
    cache.add(outputs("a"))
    cache.add(outputs("b"))
    wrong = cache.dir / "shard-wrong.safetensors"
    save_file({k: v.half() for k, v in outputs("w", shape=(1500, 8)).items()}, str(wrong))
    short = cache.dir / "shard-short.safetensors"
    save_file({"s0": torch.zeros(FRAMES, dtype=torch.float16)}, str(short))
    with open(cache.dir / "index.jsonl", "a") as f:
        f.write(json.dumps({"shard": wrong.name, "keys": ["w0", "w1", "w2"]}) + "\n")
        f.write(json.dumps({"shard": short.name, "keys": ["s0", "s1"]}) + "\n")
    reopened = EncoderCache("fp", root=tmp_path)
    with caplog.at_level(logging.WARNING):
        assert reopened.missing(["a0", "b1", "w0", "s0"]) == ["w0", "s0"]
    assert not wrong.exists() and not short.exists()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and wrong.name in warned[0] + warned[1] and short.name in warned[0] + warned[1]
    assert reopened.get(["a0", "b1"]).shape == (2, *FRAMES)


def test_a_torn_index_line_does_not_swallow_the_next_record(tmp_path: Path, caplog) -> None:
    cache = EncoderCache("fp", root=tmp_path)
    cache.add(outputs("a"))
    with open(cache.dir / "index.jsonl", "a") as f:
        f.write('{"shard": "shard-torn.safetensors", "ke')  # a crash mid-append
    cache.add(outputs("b"))
    with caplog.at_level(logging.WARNING):
        reopened = EncoderCache("fp", root=tmp_path)
        reopened.reload()
    assert reopened.missing(["a0", "b0", "b2"]) == []
    torn = [r for r in caplog.records if "unreadable line" in r.getMessage()]
    assert len(torn) == 1  # once per cache, not once per reload


def test_abandoned_temporaries_are_removed_when_the_cache_opens(tmp_path: Path) -> None:
    folder = tmp_path / "fp"
    folder.mkdir()
    old = folder / ".shard-old.safetensors.partial"  # an older writer's name: no pid, so by age
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * 3600,) * 2)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    orphan = durable.temp_path(folder / "shard-dead.safetensors")
    orphan = orphan.with_name(orphan.name.replace(f"-{os.getpid()}.", f"-{int(dead.stdout)}."))
    orphan.write_bytes(b"x")
    live = durable.temp_path(folder / "shard-live.safetensors")  # this process: still writing
    live.write_bytes(b"x")
    EncoderCache("fp", root=tmp_path)
    assert not old.exists() and not orphan.exists() and live.exists()


def test_too_little_free_space_stops_before_writing(tmp_path: Path, monkeypatch) -> None:
    cache = EncoderCache("fp", root=tmp_path)
    cache.add(outputs("a"))
    before = sorted(p.name for p in cache.dir.iterdir()), (cache.dir / "index.jsonl").read_text()
    usage = type("Usage", (), {"total": 10**9, "used": 10**9 - 1000, "free": 1000})
    monkeypatch.setattr(durable.shutil, "disk_usage", lambda p: usage)
    with pytest.raises(DiskFullError) as err:
        cache.add(outputs("b"))
    message = str(err.value)
    assert str(cache.dir) in message and "dama cache prune --max-gb N" in message
    needed = int(message.split("writing needs ")[1].split()[0])
    assert needed > 3 * 1500 * 16 * 2  # three float16 (1500, 16) tensors
    assert (sorted(p.name for p in cache.dir.iterdir()), (cache.dir / "index.jsonl").read_text()) == before


def test_disk_filling_up_mid_write_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    cache = EncoderCache("fp", root=tmp_path)
    real_write = os.write

    def write(fd: int, data) -> int:
        real_write(fd, bytes(data[:100]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(DiskFullError, match="dama cache prune"):
        cache.add(outputs("a"))
    monkeypatch.undo()
    assert [p.name for p in cache.dir.iterdir() if "shard" in p.name] == []
    assert cache.missing(["a0"]) == ["a0"]


def test_reading_the_cache_marks_it_used(tmp_path: Path) -> None:
    cache = EncoderCache("fp", root=tmp_path)
    cache.add(outputs("a"))
    mark = cache.dir / "last_used"
    os.utime(mark, (0, 0))
    EncoderCache("fp", root=tmp_path).get(["a1"])
    assert mark.stat().st_mtime > time.time() - 60


def test_a_run_after_a_crash_that_corrupted_a_shard_trains(make_config, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DAMA_HOME", str(tmp_path / "home"))
    first = train(make_config(output_dir=str(tmp_path / "a"), stop_after_steps=1))
    (shard,) = (tmp_path / "home" / "cache" / "encoder").glob("*/shard-*.safetensors")
    damage(shard, b"\0" * 64)  # garbage where the header should be
    second = train(make_config(output_dir=str(tmp_path / "b"), stop_after_steps=1))
    assert first["encoder_cache_encoded"] == second["encoder_cache_encoded"] == 8  # all in that shard
    assert not shard.exists()
