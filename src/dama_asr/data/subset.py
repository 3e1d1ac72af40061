"""Hour budgets and disjoint train/dev/test splits, deterministic by seed: the one implementation of each.

Budgets are nested for every pair of budgets with the same seed (the 0.5 h subset is inside the 1 h
subset): each seed defines one ordering of the corpus, a *chain*, and a budget takes the longest
prefix of the chain that fits. The chain is built so that its prefixes fill the standard budgets
(`LADDER_HOURS`: 0.5, 1, 2, 5, 10 h ...) as fully as the clip lengths allow without exceeding them;
any other budget is met to within one utterance. The order depends on the ids and the seed only, not
on the manifest order, so a re-ordered manifest gives the same subset.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from dama_asr.data.manifest import ManifestError, Utterance
from dama_asr.scoring import script_safe

LADDER_HOURS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
SplitBy = Literal["speaker", "sentence", "both"]
Unit = Literal["fraction", "hours", "count"]


def _rank(seed: int, key: str) -> bytes:
    """A seeded pseudo-random sort key that does not depend on Python's hash randomisation."""
    return hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()


def _ms(item: Utterance) -> int:
    return round(item.duration * 1000)  # integer milliseconds: sums are exact, comparisons too


def total_hours(items: Iterable[Utterance]) -> float:
    return sum(_ms(u) for u in items) / 3_600_000


def _require_durations(items: Sequence[Utterance]) -> None:
    missing = [u.id for u in items if u.duration <= 0]
    if missing:
        raise ManifestError(
            f"{len(missing)} utterance(s) have no duration (e.g. {missing[0]!r}); "
            "fill them with `dama data check MANIFEST --out FIXED.jsonl`"
        )


def budget_chain(
    items: Sequence[Utterance], seed: int = 0, ladder: Sequence[float] = LADDER_HOURS
) -> list[Utterance]:
    """Every item once, ordered so that each ladder budget is a best-filled prefix."""
    _require_durations(items)
    pool = sorted(items, key=lambda u: _rank(seed, u.id))
    chain: list[Utterance] = []
    total = 0
    for hours in sorted(ladder):
        target = round(hours * 3_600_000)
        rest = []
        for item in pool:  # first-fit in seed order: small clips top the budget up
            if total + _ms(item) <= target:
                chain.append(item)
                total += _ms(item)
            else:
                rest.append(item)
        pool = rest
    return chain + pool  # past the largest rung: seed order


def hour_subset(
    items: Sequence[Utterance], hours: float, seed: int = 0, per_language: bool = False
) -> list[Utterance]:
    """At most `hours` of audio (per language when `per_language`), in manifest order."""
    if hours <= 0:
        raise ManifestError(f"the budget must be positive, not {hours} h")
    if per_language:
        by_language: dict[str, list[Utterance]] = defaultdict(list)
        for item in items:
            by_language[item.language].append(item)
        chosen_ids = {u.id for group in by_language.values() for u in hour_subset(group, hours, seed)}
        return [u for u in items if u.id in chosen_ids]
    target = round(hours * 3_600_000)
    chosen, total = set(), 0
    for item in budget_chain(items, seed):
        if total + _ms(item) > target:
            break
        chosen.add(item.id)
        total += _ms(item)
    return [u for u in items if u.id in chosen]


# ---- disjoint splits ---------------------------------------------------------------------------


def sentence_key(text: str) -> str:
    """Two transcripts that differ only in case, punctuation or spacing are the same sentence.

    The scorer's script-safe normalisation, so marks that carry meaning (Devanagari vowel signs,
    decomposed accents) keep two sentences apart, as they do in a WER.
    """
    return script_safe(text)


def _group_ids(items: Sequence[Utterance], by: SplitBy) -> list[str]:
    """A group label per item: items sharing a speaker and/or a sentence share a label (union-find).

    A group is named by its smallest node ("sentence:<key>", "speaker:<id>"), whatever the union order.
    """
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    item_nodes = []
    for item in items:
        nodes = []
        if by in ("speaker", "both"):
            # Unknown speakers cannot be kept apart; each such item is its own speaker.
            nodes.append(f"speaker:{item.speaker}" if item.speaker else f"item:{item.id}")
        if by in ("sentence", "both"):
            nodes.append(f"sentence:{sentence_key(item.text)}")
        for other in nodes[1:]:
            a, b = find(other), find(nodes[0])
            parent[max(a, b)] = min(a, b)  # the smaller node stays the root: the group's name
        item_nodes.append(nodes[0])
    return [find(node) for node in item_nodes]


@dataclass(frozen=True)
class SplitResult:
    splits: dict[str, list[Utterance]]  # train/dev/test, items with their `split` set
    groups: int
    unknown_speakers: int  # items without a speaker id (speaker disjointness cannot cover them)


def _targets(items: Sequence[Utterance], dev: float, test: float, unit: Unit) -> dict[str, int]:
    """The test and dev targets in the split's weight: milliseconds, or items for unit="count"."""
    if unit not in ("fraction", "hours", "count"):
        raise ManifestError(
            f"dev/test are a 'fraction' of the hours, 'hours' or a 'count' fraction, not {unit!r}"
        )
    if dev < 0 or test < 0 or (unit != "hours" and dev + test >= 1):
        raise ManifestError(
            f"dev ({dev}) and test ({test}) must be >= 0 and, as fractions, sum to less than 1"
        )
    if unit == "count":
        return {"test": round(test * len(items)), "dev": round(dev * len(items))}
    _require_durations(items)
    total = sum(_ms(u) for u in items)
    scale = {"fraction": total, "hours": 3_600_000}[unit]
    return {"test": round(test * scale), "dev": round(dev * scale)}


def _takes(filled: int, size: int, target: int, overshoot: bool) -> bool:
    return filled < target if overshoot else filled + size <= target


def split_items(
    items: Sequence[Utterance],
    by: SplitBy = "speaker",
    dev: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    unit: Unit = "fraction",
    overshoot: bool = False,
) -> SplitResult:
    """Assign whole groups (speakers, sentences, or both joined) to test, then dev; the rest train.

    dev/test are fractions of the total duration (unit="fraction"), hours ("hours"), or fractions of
    the number of items ("count"). Groups are visited in a seeded order, independent of the manifest
    order. By default a group goes to a held-out split only if it fits, so no split exceeds its target
    and a group larger than the target goes to train; with `overshoot` a split takes groups until it
    reaches its target, so held-out splits are never short and pass it by at most one group.
    """
    if by not in ("speaker", "sentence", "both"):
        raise ManifestError(f"split by 'speaker', 'sentence' or 'both', not {by!r}")
    targets = _targets(items, dev, test, unit)
    if by == "speaker" and not any(u.speaker for u in items):
        raise ManifestError("no utterance has a speaker id; split --by sentence instead")
    labels = _group_ids(items, by)
    weights: Counter[str] = Counter()
    for item, label in zip(items, labels, strict=True):
        weights[label] += 1 if unit == "count" else _ms(item)
    order = sorted(weights)
    random.Random(f"split-{seed}").shuffle(order)  # seeded str: the same order on every Python
    filled = {"test": 0, "dev": 0}
    assignment: dict[str, str] = {}
    for label in order:
        size = weights[label]
        split = next((s for s in ("test", "dev") if _takes(filled[s], size, targets[s], overshoot)), "train")
        if split != "train":
            filled[split] += size
        assignment[label] = split
    for name in ("test", "dev"):
        if targets[name] > 0 and filled[name] == 0:
            what = "utterances" if unit == "count" else "h"
            scale = 1 if unit == "count" else 3_600_000
            raise ManifestError(
                f"no {by} group fits the {name} target of {targets[name] / scale:.3f} {what} "
                f"(smallest group: {min(weights.values()) / scale:.3f} {what}); ask for a larger {name} share"
            )
    splits: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for item, label in zip(items, labels, strict=True):
        split = assignment[label]
        splits[split].append(replace(item, split=split))
    unknown = sum(1 for u in items if not u.speaker) if by in ("speaker", "both") else 0
    return SplitResult(splits, len(weights), unknown)


def overlaps(splits: dict[str, list[Utterance]]) -> dict[str, set[str]]:
    """Speakers and sentences found in more than one split (empty sets when disjoint)."""
    seen: dict[str, dict[str, set[str]]] = {"speaker": defaultdict(set), "sentence": defaultdict(set)}
    for split, items in splits.items():
        for item in items:
            if item.speaker:
                seen["speaker"][item.speaker].add(split)
            seen["sentence"][sentence_key(item.text)].add(split)
    return {kind: {key for key, where in keys.items() if len(where) > 1} for kind, keys in seen.items()}
