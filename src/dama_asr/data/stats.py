"""Hours per split and language: what every data command prints when it is done."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from dama_asr.data.manifest import Utterance


def hours_by_split_language(items: Iterable[Utterance]) -> dict[tuple[str, str], tuple[int, float]]:
    """(split, language) -> (utterances, hours); split '' is shown as '-'."""
    table: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for item in items:
        row = table[(item.split or "-", item.language)]
        row[0] += 1
        row[1] += item.duration / 3600
    return {key: (int(n), hours) for key, (n, hours) in sorted(table.items())}


def hours_table(items: Iterable[Utterance]) -> str:
    items = list(items)
    rows = hours_by_split_language(items)
    lines = [f"{'split':<8} {'language':<8} {'utts':>8} {'hours':>8}"]
    lines += [f"{split:<8} {lang:<8} {n:>8} {hours:>8.3f}" for (split, lang), (n, hours) in rows.items()]
    lines.append(f"{'total':<8} {'':<8} {len(items):>8} {sum(u.duration for u in items) / 3600:>8.3f}")
    return "\n".join(lines)
