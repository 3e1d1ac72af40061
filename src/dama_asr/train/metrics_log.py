"""Training logs: one JSON object per line, TensorBoard when it is installed, peak memory."""

from __future__ import annotations

import json
import logging
import resource
import sys
from pathlib import Path

import torch

from dama_asr.atomic import atomic_write_text
from dama_asr.faults import crash_point
from dama_asr.memory import proc_kib

log = logging.getLogger(__name__)


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
        line = json.dumps(record, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line[: len(line) // 2])
            f.flush()
            crash_point("log-write")  # leaves a torn last line, as a kill mid-write would
            f.write(line[len(line) // 2 :])
        if self._writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self._writer.add_scalar(f"{record.get('kind', 'train')}/{key}", value, step)

    def truncate_after(self, step: int) -> None:
        """On resume: drop records past the checkpoint's step (they will be written again)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line, record in _parsed_lines(self.path) if record.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _parsed_lines(path: Path) -> list[tuple[str, dict]]:
    """(line, record) of every line that parses; a torn line (a process killed mid-write) is dropped
    with a warning instead of failing `--resume` on a JSONDecodeError."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s line %d is torn (a process stopped mid-write); dropped", path, number)
            continue
        if isinstance(record, dict):
            out.append((line, record))
    return out


def read_log(path: Path, kind: str = "train") -> list[dict]:
    return [r for _, r in _parsed_lines(path) if r.get("kind", "train") == kind]
