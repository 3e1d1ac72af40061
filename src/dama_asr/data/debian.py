"""Fetch and unpack Debian packages without installing them: the offline corpora's raw material.

`apt-get download` needs no root and touches no system state; `dpkg-deb -x` unpacks a .deb into a plain
folder. Both results are cached under `$DAMA_HOME/debian/`, so a package is fetched and unpacked once.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dama_asr.atomic import atomic_dir, file_lock
from dama_asr.errors import DamaError
from dama_asr.paths import dama_home


class DebianPackageError(DamaError, RuntimeError):
    """A package could not be downloaded or unpacked; the message says what to try."""


def debian_cache() -> Path:
    return dama_home() / "debian"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DebianPackageError(f"`{name}` is not available: the offline corpora need a Debian-based system")
    return path


def download_deb(package: str, cache: Path | None = None) -> Path:
    """Return the path of `package`'s .deb in the cache, downloading it with `apt-get download` if missing."""
    folder = (cache or debian_cache()) / "debs"
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / f".{package}.lock"):
        found = sorted(folder.glob(f"{package}_*.deb"))
        if found:
            return found[-1]
        # apt-get writes into the current folder; a scratch folder keeps half-downloads out of the cache.
        scratch = folder / f".{package}.download"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        try:
            done = subprocess.run(
                [_tool("apt-get"), "download", "-q", package],
                cwd=scratch,
                capture_output=True,
                text=True,
                timeout=900,
            )
            debs = sorted(scratch.glob(f"{package}_*.deb"))
            if done.returncode != 0 or not debs:
                detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no .deb written"
                raise DebianPackageError(
                    f"apt-get download {package} failed ({detail}); check the network and run `apt-get update`"
                )
            target = folder / debs[-1].name
            debs[-1].replace(target)
            return target
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def unpacked_package(package: str, cache: Path | None = None) -> Path:
    """Download (if needed) and unpack `package`; return the root of its file tree (contains `usr/`)."""
    cache = cache or debian_cache()
    deb = download_deb(package, cache)
    final = cache / "unpacked" / deb.stem
    with file_lock(cache / "unpacked" / f".{package}.lock"):
        if final.is_dir():
            return final
        with atomic_dir(final) as scratch:
            done = subprocess.run(
                [_tool("dpkg-deb"), "-x", str(deb), str(scratch)], capture_output=True, text=True
            )
            if done.returncode != 0:
                deb.unlink(missing_ok=True)  # most likely a truncated download: fetch again next time
                raise DebianPackageError(f"dpkg-deb -x {deb.name} failed: {done.stderr.strip()}")
    return final
