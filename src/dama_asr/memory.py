"""Memory figures from Linux /proc (peak RSS for summaries, available RAM for cache budgets)."""

from __future__ import annotations


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
