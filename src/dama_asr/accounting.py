"""The one account of items left out: counts by reason, the first few examples of each, the total.

Evaluation skips unscorable items, training skips unusable ones, validation rejects bad ones, corpus
builders drop unusable sentences and clips. Each must say how many, why, and show a few, in the same
shape, so a summary or a result file reads the same whichever step left the items out:

    skipped = SkippedItems()
    skipped.add("unreadable audio", "clip7.wav: file not found")
    skipped.to_dict(of=120)  # {"total": 1, "counts": {...}, "examples": {...}, "fraction": 1/120}

Reasons are kept in the order first seen, so summaries and result files are stable from run to run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SkippedItems:
    """Items left out, counted by reason with the first `keep_examples` examples of each."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    keep_examples: int = 5

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.keep_examples:
            shown.append(example)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self, of: int | None = None) -> dict:
        """{"total", "counts", "examples"}, plus "fraction" (total / `of`) when `of` items were seen."""
        record: dict = {
            "total": self.total,
            "counts": dict(self.counts),
            "examples": {reason: list(shown) for reason, shown in self.examples.items()},
        }
        if of is not None:
            record["fraction"] = self.total / of if of else 0.0
        return record

    def describe(self) -> str:
        """One line: each reason with its count and first example."""
        return "; ".join(
            f"{reason}: {count} (e.g. {self.examples[reason][0]})" for reason, count in self.counts.items()
        )
