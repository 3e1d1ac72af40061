"""Training logs: one JSON object per line, TensorBoard when it is installed, peak memory."""

from __future__ import annotations

import json
import logging
import resource
import sys
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def proc_kib(path: str, field: str) -> int:
    """A `field:  N kB` line of a Linux /proc file (status, meminfo) in KiB; 0 where there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _vm_hwm_bytes() -> int:
    return proc_kib("/proc/self/status", "VmHWM") * 1024


def _ru_maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def peak_memory_bytes(device: torch.device) -> dict[str, int]:
    """Peak resident memory of this process (CPU) and peak allocated CUDA memory (GPU).

    Linux: VmHWM of this process's memory. getrusage's ru_maxrss would do elsewhere, but after fork+exec
    it starts from the parent's RSS (a launcher holding a model would inflate every child's number).
    """
    out = {"peak_rss_bytes": _vm_hwm_bytes() or _ru_maxrss_bytes()}
    if device.type == "cuda":
        out["peak_cuda_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    return out


class MetricsLog:
    """Append-only `train_log.jsonl` (+ TensorBoard scalars); a no-op on non-main processes."""

    def __init__(self, folder: Path, enabled: bool, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = folder / "train_log.jsonl"
        self._writer = None
        if not enabled:
            return
        folder.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
            except ImportError:
                log.info("tensorboard is not installed; logging to %s only", self.path)

    def write(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self._writer.add_scalar(f"{record.get('kind', 'train')}/{key}", value, step)

    def truncate_after(self, step: int) -> None:
        """On resume: drop records past the checkpoint's step (they will be written again)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [
            line for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]  # fmt: skip
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_log(path: Path, kind: str = "train") -> list[dict]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r.get("kind", "train") == kind]
