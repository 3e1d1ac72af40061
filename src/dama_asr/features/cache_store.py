"""The encoder cache on disk: index records, shard checks, and `dama cache list|verify|prune`.

One fingerprint folder (see `encoder_cache`) holds:
    shard-<uuid>.safetensors   float16 (frames, D) per key
    index.jsonl                {"shard": name, "keys": [...]} per shard; {"shard": name, "keys": [],
                               "dead": true} marks a dropped one (an old reader sees a record with no keys)
    last_used                  touched when a run reads the cache: the eviction order
    .lock                      the writers' lock
Nothing here is needed for correctness of a run: a missing or dropped shard's utterances are encoded
again. So a bad shard is dropped rather than repaired, and eviction removes whole folders.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import SafetensorError, safe_open

from dama_asr.atomic import file_lock
from dama_asr.durable import STALE_SECONDS, append_line, fsync_dir, remove_stale_temps, write_file
from dama_asr.errors import DamaError, DiskFullError
from dama_asr.paths import dama_home

log = logging.getLogger(__name__)

INDEX, LOCK, LAST_USED = "index.jsonl", ".lock", "last_used"
SHARD_GLOB = "shard-*.safetensors"
TOUCH_SECONDS = 600.0  # a reading run marks its folder used again this often
IN_USE_SECONDS = 2 * TOUCH_SECONDS  # marked more recently: a run may be reading it; never evicted
PRUNE_HINT = "; free space with `dama cache prune --max-gb N` (sizes: `dama cache list`) and rerun"
# What reading a shard raises when the file is truncated, missing, or not what the index says.
SHARD_ERRORS = (SafetensorError, OSError, KeyError, ValueError, RuntimeError)


class CacheError(DamaError, RuntimeError):
    """A cache problem the user fixes with a `dama cache` command or a rerun."""


def cache_root() -> Path:
    return dama_home() / "cache"


def encoder_root(root: Path | None = None) -> Path:
    return (root or cache_root()) / "encoder"


# ---- the index -----------------------------------------------------------------------------------
def read_index(folder: Path) -> tuple[list[dict], int]:
    """(records in file order, number of unparsable lines). A crash mid-append leaves a torn line."""
    path = folder / INDEX
    if not path.is_file():
        return [], 0
    records, torn = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record["shard"], str) or not isinstance(record["keys"], list):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            torn += 1
            continue
        records.append(record)
    return records, torn


def live_index(folder: Path, records: Iterable[dict]) -> dict[str, str]:
    """key -> shard, the first live record winning; dropped shards and vanished files are skipped."""
    records = list(records)
    dead = {r["shard"] for r in records if r.get("dead")}
    present = {p.name for p in folder.glob(SHARD_GLOB)}
    index: dict[str, str] = {}
    for record in records:
        if record["shard"] in present and record["shard"] not in dead:
            for key in record["keys"]:
                index.setdefault(key, record["shard"])
    return index


def append_record(folder: Path, record: dict) -> None:
    with file_lock(folder / LOCK):
        # A prune that evicted the folder while we waited for the lock: the record lands in a fresh
        # folder, pointing at a shard that is gone (readers skip it) instead of failing the run.
        folder.mkdir(parents=True, exist_ok=True)
        append_line(folder / INDEX, json.dumps(record, allow_nan=False), PRUNE_HINT)


def drop_shard(folder: Path, shard: str, reason: str) -> None:
    """Mark `shard` dead in the index, then delete it; its utterances are encoded again when needed.

    The mark comes first: if the delete fails or a crash interrupts it, readers still skip the shard
    and the next prune deletes it."""
    log.warning("encoder cache %s: dropping %s (%s); its utterances will be encoded again",
                folder, shard, reason)  # fmt: skip
    try:
        append_record(folder, {"shard": shard, "keys": [], "dead": True})
    except DiskFullError:
        pass  # the delete alone suffices (readers skip vanished shards) and frees the space we lack
    (folder / shard).unlink(missing_ok=True)
    fsync_dir(folder)


def compact_index(folder: Path) -> int:
    """Rewrite the index without dead, vanished or torn records; returns the records removed.

    Needs room for one more copy of the index; on a full disk it is left as it is (still correct)."""
    with file_lock(folder / LOCK):
        records, torn = read_index(folder)
        index = live_index(folder, records)
        kept = [
            r for r in records if not r.get("dead") and any(index.get(k) == r["shard"] for k in r["keys"])
        ]
        removed = len(records) - len(kept) + torn
        if removed:
            text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept)
            try:
                write_file(folder / INDEX, text.encode("utf-8"), PRUNE_HINT, margin=0)
            except DiskFullError as err:
                log.warning("%s; the index was not compacted", err)
                return 0
    return removed


# ---- shards --------------------------------------------------------------------------------------
def shard_shape(path: Path, keys: Iterable[str], full: bool = False) -> tuple[int, ...]:
    """The one (frames, D) shape of the listed keys in a shard, or ValueError/SafetensorError/OSError.

    Reads the header only, unless `full` (then every tensor is read: slower, finds a short file that
    a lying header hides)."""
    shapes = set()
    with safe_open(str(path), framework="pt") as f:
        present = set(f.keys())
        absent = [k for k in keys if k not in present]
        if absent:
            raise ValueError(f"{len(absent)} indexed key(s) missing, e.g. {absent[0]}")
        for key in present:
            piece = f.get_slice(key)
            if piece.get_dtype() != "F16" or len(piece.get_shape()) != 2:
                raise ValueError(f"{key} is {piece.get_dtype()} {piece.get_shape()}, not float16 (frames, D)")
            shapes.add(tuple(piece.get_shape()))
            if full:
                f.get_tensor(key)
    if len(shapes) != 1:
        raise ValueError(f"mixed shapes {sorted(shapes)}")
    return shapes.pop()


def check_shards(
    folder: Path,
    keys_of: dict[str, list[str]],
    frame_shape: tuple[int, ...] | None = None,
    full: bool = False,
) -> tuple[dict[str, str], tuple[int, ...] | None]:
    """({shard: problem}, the expected shape) for the shards in `keys_of` ({shard: its indexed keys}).

    Without `frame_shape`, the shape most shards share is taken as right: one folder is one encoder."""
    problems: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for shard, keys in keys_of.items():
        try:
            shapes[shard] = shard_shape(folder / shard, keys, full)
        except SHARD_ERRORS as err:
            problems[shard] = f"{type(err).__name__}: {err}"
    expected = tuple(frame_shape) if frame_shape else None
    if expected is None and shapes:
        expected = Counter(shapes.values()).most_common(1)[0][0]
    for shard, shape in shapes.items():
        if shape != expected:
            problems[shard] = f"shape {shape}, expected {expected}"
    return problems, expected


def touch_last_used(folder: Path) -> None:
    try:
        (folder / LAST_USED).touch()
    except OSError:
        pass  # bookkeeping only: a read-only or full disk must not stop a run that only reads


def last_used(folder: Path) -> float:
    """When a run last read the folder (older folders without the mark: their newest file)."""
    mark = folder / LAST_USED
    if mark.is_file():
        return mark.stat().st_mtime
    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
    return max(times, default=folder.stat().st_mtime)


def folder_bytes(folder: Path) -> int:
    total = 0
    for p in folder.rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except FileNotFoundError:
            continue
    return total


# ---- list / verify / prune -----------------------------------------------------------------------
@dataclass(frozen=True)
class CacheInfo:
    """One cache folder: an encoder fingerprint folder, or another folder under $DAMA_HOME/cache
    (shards and utterances are None for those: their layout is not ours to read)."""

    name: str
    path: Path
    size_bytes: int
    last_used: float
    shards: int | None = None
    utterances: int | None = None


def encoder_folders(root: Path | None = None) -> list[Path]:
    base = encoder_root(root)
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def describe_encoder_folder(folder: Path) -> CacheInfo:
    records, _ = read_index(folder)
    index = live_index(folder, records)
    return CacheInfo(
        name=f"encoder/{folder.name}",
        path=folder,
        size_bytes=folder_bytes(folder),
        last_used=last_used(folder),
        shards=len(set(index.values())),
        utterances=len(index),
    )


def list_caches(root: Path | None = None) -> list[CacheInfo]:
    """Every cache under `root` (default $DAMA_HOME/cache): encoder folders first, then the others."""
    root = root or cache_root()
    caches = [describe_encoder_folder(f) for f in encoder_folders(root)]
    if root.is_dir():
        for other in sorted(root.iterdir()):
            if other.is_dir() and other.name != "encoder" and not other.name.startswith("."):
                caches.append(CacheInfo(other.name, other, folder_bytes(other), last_used(other)))
    return caches


@dataclass
class Verification:
    folder: Path
    shards: int
    bad: dict[str, str] = field(default_factory=dict)  # shard -> problem
    torn_lines: int = 0
    fixed: bool = False


def verify_folder(folder: Path, fix: bool = False) -> Verification:
    """Read every indexed shard in full and check it holds its keys in one float16 (frames, D) shape;
    with `fix`, drop the bad ones and compact the index."""
    records, torn = read_index(folder)
    index = live_index(folder, records)
    keys_of: dict[str, list[str]] = {}
    for key, shard in index.items():
        keys_of.setdefault(shard, []).append(key)
    result = Verification(folder, len(keys_of), check_shards(folder, keys_of, full=True)[0], torn)
    if fix and (result.bad or torn):
        for shard, problem in result.bad.items():
            drop_shard(folder, shard, problem)
        compact_index(folder)
        result.fixed = True
    return result


def verify_caches(root: Path | None = None, fix: bool = False) -> list[Verification]:
    return [verify_folder(f, fix) for f in encoder_folders(root)]


@dataclass
class PruneReport:
    removed_files: list[Path] = field(default_factory=list)  # temporaries, dead and orphaned shards
    evicted: list[CacheInfo] = field(default_factory=list)
    in_use: list[CacheInfo] = field(default_factory=list)  # over the limit, but read minutes ago
    total_before: int = 0
    total_after: int = 0


def clean_folder(folder: Path, now: float | None = None) -> list[Path]:
    """Remove abandoned temporaries, dropped shards and shards no record names (a writer that died
    between its rename and its index line; after STALE_SECONDS, so a live writer is never raced)."""
    now = time.time() if now is None else now
    removed = remove_stale_temps(folder, now=now)
    with file_lock(folder / LOCK):
        records, _ = read_index(folder)
        dead = {r["shard"] for r in records if r.get("dead")}
        named = {r["shard"] for r in records if not r.get("dead")}
        for shard in folder.glob(SHARD_GLOB):
            orphan = shard.name not in named and now - shard.stat().st_mtime > STALE_SECONDS
            if shard.name in dead or orphan:
                shard.unlink(missing_ok=True)
                removed.append(shard)
    if removed:
        fsync_dir(folder)
    return removed


def evict_folder(folder: Path) -> None:
    """Rename under the writers' lock, then delete: readers see the whole folder or none of it, and a
    crash mid-delete leaves a hidden `.evicting` folder that the next prune finishes."""
    doomed = folder.with_name(f".{folder.name}.evicting-{os.getpid()}")
    try:
        with file_lock(folder / LOCK):
            os.replace(folder, doomed)
    except FileNotFoundError:
        return  # another prune got there first
    fsync_dir(folder.parent)
    shutil.rmtree(doomed, ignore_errors=True)


def prune_caches(
    root: Path | None = None, max_bytes: int | None = None, in_use_seconds: float = IN_USE_SECONDS
) -> PruneReport:
    """Remove leftovers from every encoder folder; then, with `max_bytes`, evict encoder folders least
    recently used first until all caches under `root` together fit. Other cache folders are counted,
    never evicted; so is a folder read within `in_use_seconds` (a running job would lose it)."""
    root = root or cache_root()
    report = PruneReport(total_before=sum(c.size_bytes for c in list_caches(root)))
    base = encoder_root(root)
    if base.is_dir():
        for leftover in base.glob(".*.evicting-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    for folder in encoder_folders(root):
        report.removed_files += clean_folder(folder)
    caches = list_caches(root)
    total = sum(c.size_bytes for c in caches)
    if max_bytes is not None:
        now = time.time()
        for cache in sorted((c for c in caches if c.shards is not None), key=lambda c: c.last_used):
            if total <= max_bytes:
                break
            if now - cache.last_used < in_use_seconds:
                report.in_use.append(cache)
                continue
            evict_folder(cache.path)
            report.evicted.append(cache)
            total -= cache.size_bytes
    for folder in encoder_folders(root):  # last: compacting needs a little room that eviction made
        compact_index(folder)
    report.total_after = sum(c.size_bytes for c in list_caches(root))
    return report
