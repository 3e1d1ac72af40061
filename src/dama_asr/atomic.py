"""Write-then-rename helpers: a reader never sees a half-written file or folder."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dama_asr.durable import fsync_dir


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(folder)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    ok = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0
    return ok  # EINVAL/ENOSYS (file system or kernel without it): the caller falls back


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a scratch folder next to `final`; on success it replaces `final` in one step.

    The scratch files are fsynced first, so after a crash (even a power cut) `final` is either the old
    folder or the complete new one. An existing `final` is swapped out atomically where Linux allows
    (`renameat2(RENAME_EXCHANGE)`), else renamed aside just before the new one is renamed in, and only
    then deleted: there is no moment without a `final` to read (`best/` of a run that is killed while
    saving a better adapter).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield scratch
        scratch.chmod(0o755)  # mkdtemp makes it private; the final folder should not be
        _fsync_tree(scratch)
        if final.exists() and _exchange(scratch, final):
            pass  # `scratch` now holds the old folder, removed below
        elif final.exists():
            aside = final.with_name(f".{final.name}.old-{os.getpid()}")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
            os.replace(scratch, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(scratch, final)
        fsync_dir(final.parent)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the scratch (`.x.partial`) and set-aside (`.x.old-<pid>`) folders a killed writer left
    in `folder`. Only call it while holding the folder's lock: a live writer's scratch looks the same."""
    removed = []
    for path in sorted(folder.glob(".*")):
        if path.is_dir() and (path.name.endswith(".partial") or ".old-" in path.name):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; done once, at import, before any threads
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp makes it private; a result file should not be
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (two `dama` commands preparing the same cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
