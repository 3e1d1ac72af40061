"""Run the `dama` process on tcmalloc when the machine has it.

PyTorch on a CPU allocates and frees tensors of tens of megabytes every step (cross-attention inputs of
(B, 1500, D), logits of (B, T, 51865)). glibc's malloc serves anything above 32 MB with a fresh mmap and
trims freed memory back to the kernel, so those tensors are page-faulted and zeroed again on every
step. tcmalloc keeps them: a cached Whisper-base training step ran 1.46x faster in bf16 and in float32
on this project's 2-core machine (benchmarks/speed/ measures it). The allocator must be chosen before
the process starts, so the console entry point re-executes itself once with LD_PRELOAD set.

Opt out with DAMA_ALLOCATOR=system. Debian/Ubuntu: `apt-get install libtcmalloc-minimal4` (the
project's setup script installs it); where it is absent the system allocator is used, silently.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "DAMA_ALLOCATOR"  # "tcmalloc" (default when present) or "system"
_MARK = "DAMA_ALLOCATOR_ACTIVE"  # set on the re-executed process, so it never loops
_LIBRARY = "libtcmalloc_minimal.so.4"
_SEARCH = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")


def tcmalloc_path() -> Path | None:
    for folder in _SEARCH:
        path = Path(folder) / _LIBRARY
        if path.is_file():
            return path
    return None


def active_allocator() -> str:
    """'tcmalloc' when this process runs on it, else 'system' (recorded in benchmark results)."""
    preload = os.environ.get("LD_PRELOAD", "")
    return "tcmalloc" if "tcmalloc" in preload else "system"


def reexec_with_tcmalloc(argv: list[str]) -> None:
    """Replace this process by itself on tcmalloc (returns only when that is not possible or wanted).

    Call before torch is imported. `argv`: what follows the Python executable to run the same program
    again (`["-m", "dama_asr.cli", *args]` for the console script, `sys.argv` for a script).
    """
    if (
        os.environ.get(_MARK)
        or os.environ.get(ENV, "tcmalloc") == "system"
        or not sys.platform.startswith("linux")
    ):
        return
    if "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    library = tcmalloc_path()
    if library is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (str(library), env.get("LD_PRELOAD", "")) if p)
    env[_MARK] = "1"
    try:
        os.execve(sys.executable, [sys.executable, *argv], env)
    except OSError:
        return  # could not re-execute: carry on with the system allocator
