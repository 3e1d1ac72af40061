"""Render an HTML file to PNG with headless Chromium (Debian package `chromium`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from dama_asr.errors import DamaError


class ChromiumMissing(DamaError, RuntimeError):
    pass


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumMissing(
        "headless Chromium is needed for screenshots: apt-get install chromium (make setup does)"
    )


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1200, height: int = 1800) -> Path:
    png_path = Path(png_path)
    with tempfile.TemporaryDirectory() as profile:
        # No background networking: this machine has no network and Chromium would retry forever.
        cmd = [
            chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", "--hide-scrollbars",
            f"--screenshot={png_path}", Path(html_path).resolve().as_uri(),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not png_path.is_file():
        raise ChromiumMissing(f"chromium wrote no screenshot of {html_path}: {done.stderr[-500:]}")
    return png_path
