"""Exclusive claims on a run or study-cell folder, across processes and across machines.

Two `dama train` processes writing one run folder (or two `dama bench --only` lanes training one cell)
prune each other's checkpoints and interleave their logs. A `FolderLock` lets one in and tells the
other who holds the folder. It must also work when several machines share the folder over NFS (the
cells of one study as the array jobs of a scheduler), where `flock` is not reliable, so it rests on
what NFS does guarantee:

- taking the lock is an exclusive create (`O_CREAT | O_EXCL`) of `<folder>/.lock`, holding JSON with
  host, pid, process start time and a random token;
- the holder touches the file every `heartbeat_s` seconds (a daemon thread);
- a lock is stale when its process is dead (same host: pid gone, or reused by another process) or
  when its heartbeat is older than `stale_after_s` (any host; the holder's machine died). A stale
  lock is taken over by renaming it aside and creating a fresh one; the rename makes sure only one
  of several racing takers succeeds.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path

from dama_asr.errors import DamaError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class AlreadyRunning(DamaError):
    """Another live process holds the folder."""


def _process_start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time since boot), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int, start_ticks: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    if start_ticks is not None:
        current = _process_start_ticks(pid)
        if current is not None and current != start_ticks:
            return False  # the pid now belongs to another process
    return True


def _read_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # torn or unreadable: judged by its age alone


class FolderLock:
    """`with FolderLock(folder, "training run"):` holds `folder/.lock` for the block."""

    def __init__(self, folder: Path, what: str, heartbeat_s: float = 30.0, stale_after_s: float = 600.0):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and releasing -------------------------------------------------------------------
    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._try_create():
                self._start_heartbeat()
                return self
            holder = _read_holder(self.path)
            reason = self._stale_reason(holder)
            if reason is None:
                raise AlreadyRunning(self._busy_message(holder))
            self._take_over(holder, reason)
        raise AlreadyRunning(f"{self.what} {self.folder}: could not take the lock {self.path} (contended)")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if _read_holder(self.path).get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # -- internals --------------------------------------------------------------------------------
    def _record(self) -> dict:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start_ticks": _process_start_ticks(os.getpid()),
            "token": self.token,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv[:6]),
        }

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self._record(), f, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _stale_reason(self, holder: dict) -> str | None:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "released meanwhile"
        if holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
            return None  # this very process holds it (a nested claim): busy, and the message says so
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            if not _pid_alive(holder["pid"], holder.get("start_ticks")):
                return f"process {holder['pid']} is gone"
            return None  # alive on this machine: its heartbeat may lag, the process is what counts
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f} s"
        return None

    def _take_over(self, holder: dict, reason: str) -> None:
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{secrets.token_hex(4)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # someone else released or took it first: try again
        taken = _read_holder(aside)
        if taken.get("token") != holder.get("token"):
            # Between our read and our rename another taker replaced the stale lock with its own,
            # live one: put it back (link fails rather than overwrite if the path is taken again).
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        log.warning("%s %s: took over a stale lock (%s)", self.what, self.folder, reason)

    def _busy_message(self, holder: dict) -> str:
        who = (
            f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}"
        )
        if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            who += "; that is this process itself, which already holds the folder"
        return (
            f"{self.what} {self.folder} is already running ({who}); wait for it to finish or stop it. "
            f"If that process is gone for good, delete {self.path}"
        )

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                if _read_holder(self.path).get("token") != self.token:
                    log.warning("%s %s: lost the lock to another process", self.what, self.folder)
                    return
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._thread = threading.Thread(target=beat, name="dama-lock-heartbeat", daemon=True)
        self._thread.start()
