"""espeak-ng speech synthesis (Debian package `espeak-ng`) to 16-bit wav files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dama_asr.errors import DamaError


class EspeakError(DamaError, RuntimeError):
    pass


def espeak_binary() -> str:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise EspeakError("espeak-ng is not installed: run `make setup` or `apt-get install espeak-ng`")
    return binary


def synthesize(text: str, out_path: str | Path, voice: str = "en", speed: int = 160, pitch: int = 50) -> Path:
    """Speak `text` with espeak-ng voice `voice` (e.g. 'cy', 'lt+f3') into a 22.05 kHz mono wav."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [espeak_binary(), "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out_path), "--", text]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or not out_path.is_file() or out_path.stat().st_size <= 44:
        raise EspeakError(
            f"espeak-ng failed for voice {voice!r}: {done.stderr.strip() or 'no audio written'}"
        )
    return out_path
