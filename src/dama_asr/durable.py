"""Writes that survive a crash, a power cut or a full disk: fsync before trusting a rename.

A rename is atomic but not durable on its own: after a power cut the directory may still hold the
old entry, or a new name pointing at data that never reached the disk. So a file is fsynced, then its
folder (the temporary entry), then renamed, then the folder again (the new name). Temporary files
carry the writer's host and pid, so a later run can tell an abandoned one from one still being written.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import time
from pathlib import Path

from dama_asr.errors import DiskFullError

FREE_MARGIN = 64 * 2**20  # bytes left free after a write: logs, checkpoints and the OS need room too
STALE_SECONDS = 3600.0  # a temporary file older than this is abandoned whoever wrote it
_CHUNK = 16 * 2**20
_HOST = socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as err:
        # Some network and FUSE file systems cannot fsync a directory; their renames are what they are.
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    """`.NAME.HOST-PID.partial` next to `final`: hidden, and attributable to its writer."""
    return final.with_name(f".{final.name}.{_HOST}-{os.getpid()}.partial")


def _is_disk_full(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, errno.EDQUOT)


def require_free_space(folder: Path, needed: int, hint: str = "", margin: int = FREE_MARGIN) -> None:
    """Raise DiskFullError before writing `needed` bytes into `folder` would leave under `margin`."""
    free = shutil.disk_usage(folder).free
    if free < needed + margin:
        raise DiskFullError(
            f"{folder}: not enough free space: writing needs {needed} bytes ({needed / 1e9:.2f} GB) plus "
            f"a {margin // 2**20} MiB margin, but only {free} bytes ({free / 1e9:.2f} GB) are free{hint}"
        )


def write_file(final: Path, data: bytes, hint: str = "", margin: int = FREE_MARGIN) -> None:
    """Write `data` to `final` durably and atomically; on any failure nothing is left behind.

    `hint` ends the DiskFullError message (the fix, e.g. which command frees space)."""
    folder = final.parent
    require_free_space(folder, len(data), hint, margin)
    tmp = temp_path(final)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view[:_CHUNK]) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(folder)
        os.replace(tmp, final)
        fsync_dir(folder)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if _is_disk_full(err) and not isinstance(err, DiskFullError):
            raise DiskFullError(
                f"{folder}: the disk filled up while writing {final.name} ({len(data)} bytes); "
                f"the partial file was removed{hint}"
            ) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_line(path: Path, line: str, hint: str = "") -> None:
    """Append one line and fsync it. The caller holds the file's lock.

    A crash mid-append leaves a last line without its newline; starting a new line first keeps that
    torn fragment from swallowing this record (readers skip the fragment as one unparsable line)."""
    created = not path.exists()
    try:
        with open(path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            prefix = b""
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    prefix = b"\n"
            f.write(prefix + line.rstrip("\n").encode("utf-8") + b"\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        if _is_disk_full(err):
            raise DiskFullError(f"{path}: the disk is full; the record was not written{hint}") from err
        raise
    if created:
        fsync_dir(path.parent)


def _writer_is_gone(tmp: Path) -> bool:
    """True when the name says this host wrote it and that process no longer runs."""
    writer = tmp.name.removesuffix(".partial").rsplit(".", 1)[-1]
    host, _, pid = writer.rpartition("-")
    if host != _HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


def remove_stale_temps(folder: Path, max_age: float = STALE_SECONDS, now: float | None = None) -> list[Path]:
    """Delete `.*.partial` files in `folder` whose writer died, or that are older than `max_age` s."""
    now = time.time() if now is None else now
    removed = []
    for tmp in folder.glob(".*.partial"):
        try:
            old = now - tmp.stat().st_mtime > max_age
            if (old or _writer_is_gone(tmp)) and tmp.is_file():
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:
            continue  # renamed or removed by its writer meanwhile
    return removed
