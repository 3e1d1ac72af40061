"""atomic_dir never leaves a moment without the folder; FolderLock lets one process in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dama_asr import atomic
from dama_asr.atomic import atomic_dir
from dama_asr.locks import LOCK_NAME, AlreadyRunning, FolderLock


def test_replacing_a_folder_keeps_it_readable_when_the_old_copy_cannot_be_deleted(
    tmp_path, monkeypatch
) -> None:
    best = tmp_path / "best"
    with atomic_dir(best) as scratch:
        (scratch / "w").write_text("old")
    real_rmtree = shutil.rmtree

    def dies_half_way(path, *args, **kwargs):  # a kill while the old folder is being deleted
        for child in Path(path).iterdir():
            child.unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.shutil, "rmtree", dies_half_way)
    with pytest.raises(KeyboardInterrupt), atomic_dir(best) as scratch:
        (scratch / "w").write_text("new")
    monkeypatch.setattr(atomic.shutil, "rmtree", real_rmtree)
    assert (best / "w").read_text() == "new"


def test_replacing_without_an_atomic_exchange_also_works(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # a file system without renameat2
    best = tmp_path / "best"
    for text in ("one", "two"):
        with atomic_dir(best) as scratch:
            (scratch / "w").write_text(text)
    assert (best / "w").read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["best"]


def test_a_second_holder_is_told_who_holds_the_folder(tmp_path: Path) -> None:
    with FolderLock(tmp_path, "training run"):
        with pytest.raises(AlreadyRunning, match=rf"already running \(host .*, pid {os.getpid()}"):
            FolderLock(tmp_path, "training run").acquire()
    assert not (tmp_path / LOCK_NAME).exists()
    with FolderLock(tmp_path, "training run"):  # released: free again
        pass


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    code = f"from dama_asr.locks import FolderLock; FolderLock({str(tmp_path)!r}, 'x').acquire(); import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": "src"}, check=False)
    holder = json.loads((tmp_path / LOCK_NAME).read_text())
    assert holder["pid"] != os.getpid()
    with FolderLock(tmp_path, "training run") as lock:
        assert json.loads(lock.path.read_text())["token"] == lock.token


def test_a_silent_lock_of_another_machine_is_taken_over_only_when_stale(tmp_path: Path) -> None:
    path = tmp_path / LOCK_NAME
    path.write_text(json.dumps({"host": "node-17", "pid": 4242, "token": "t", "since": "earlier"}))
    with pytest.raises(AlreadyRunning, match="node-17, pid 4242"):
        FolderLock(tmp_path, "study cell", stale_after_s=600).acquire()
    old = time.time() - 3600
    os.utime(path, (old, old))  # no heartbeat for an hour: that machine is gone
    with FolderLock(tmp_path, "study cell", stale_after_s=600) as lock:
        assert json.loads(path.read_text())["token"] == lock.token


def test_the_heartbeat_keeps_a_live_lock_fresh(tmp_path: Path) -> None:
    with FolderLock(tmp_path, "x", heartbeat_s=0.05) as lock:
        old = time.time() - 3600
        os.utime(lock.path, (old, old))
        time.sleep(0.3)
        assert time.time() - lock.path.stat().st_mtime < 60
