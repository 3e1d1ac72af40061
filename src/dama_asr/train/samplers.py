"""Batch samplers: the order of an epoch's examples, a pure function of (data, batch size, seed, epoch).

Every process computes the same list, so resuming mid-epoch and multi-process training need no shared
state: `setup.global_micro_batches` cuts it into global micro-batches, `data.shard_batch` gives each
process its contiguous part, and the loop takes `grad_accum` micro-batches per optimizer step.

    length                today's order (`data.epoch_batches`): shuffled, length-grouped within
                          mega-batches when `length_grouped`; every example once per epoch.
    language-balanced     every batch holds the languages in shares as equal as its size allows.
                          Rule: languages in sorted code order; each language's queue is its examples
                          shuffled, then reshuffled and appended again until it is as long as the
                          largest language's (N_max), then cut to N_max. The stream takes one example
                          from each queue in turn (round robin) and is cut into batches. So an epoch is
                          K x N_max examples (K languages): the largest language's examples once each, a
                          smaller language's n examples floor(N_max/n) or ceil(N_max/n) times each (a
                          batch may hold the same utterance twice when its language has very few), and
                          a batch of size B holds floor(B/K) or ceil(B/K) of each of K languages.
                          Length grouping does not apply (it would undo the balance).
    language-homogeneous  every batch holds one language. Each language's examples are batched on
                          their own (length-grouped within mega-batches when `length_grouped`), so a
                          language's last batch may be smaller. The languages' batches are then spread
                          evenly over the epoch: a language with m batches puts its j-th at
                          (j + u) / m, u a seeded offset in [0, 1), and the epoch sorts by that position,
                          so no language's batches bunch at the start or the end. Every example once
                          per epoch, except that under several processes a batch smaller than their
                          number (here: a small language's last one) is dropped, as for every sampler.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from dama_asr.train.data import epoch_batches, grouped_batches

SAMPLERS = ("length", "language-balanced", "language-homogeneous")


def sampler_batches(
    sampler: str,
    lengths: Sequence[int],
    languages: Sequence[str] | None,
    batch_size: int,
    seed: int,
    epoch: int,
    length_grouped: bool = True,
    mega_batch_factor: int = 50,
) -> list[list[int]]:
    """The epoch's batches of example indices under `sampler` (one of SAMPLERS).

    `languages` (one code per example) is needed by the language samplers and ignored by `length`.
    """
    if sampler == "length":
        return epoch_batches(
            lengths, batch_size, seed=seed, epoch=epoch, length_grouped=length_grouped,
            mega_batch_factor=mega_batch_factor,
        )  # fmt: skip
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if languages is None or len(languages) != len(lengths):
        got = "none" if languages is None else len(languages)
        raise ValueError(
            f"sampler {sampler!r} needs one language per example: {len(lengths)} examples, {got} languages"
        )
    # Seeded by (seed, epoch) alone: a resumed run, and every process, redraws the same order.
    rng = random.Random(f"{seed}:{epoch}:{sampler}")
    if sampler == "language-balanced":
        return language_balanced_batches(languages, batch_size, rng)
    return language_homogeneous_batches(
        lengths, languages, batch_size, rng, length_grouped, mega_batch_factor
    )


def by_language(languages: Sequence[str]) -> dict[str, list[int]]:
    """Example indices per language code, codes in sorted order (not first-seen, which a manifest's
    order would decide)."""
    groups: dict[str, list[int]] = {}
    for i, code in enumerate(languages):
        groups.setdefault(code, []).append(i)
    return {code: groups[code] for code in sorted(groups)}


def language_balanced_batches(
    languages: Sequence[str], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Round robin over per-language queues, each oversampled to the largest language's size."""
    groups = by_language(languages)
    longest = max((len(ix) for ix in groups.values()), default=0)
    queues = []
    for indices in groups.values():
        queue: list[int] = []
        while len(queue) < longest:  # a fresh shuffle per pass: repeats are not in the same order
            shuffled = list(indices)
            rng.shuffle(shuffled)
            queue.extend(shuffled)
        queues.append(queue[:longest])
    stream = [queue[i] for i in range(longest) for queue in queues]
    return [stream[start : start + batch_size] for start in range(0, len(stream), batch_size)]


def language_homogeneous_batches(
    lengths: Sequence[int],
    languages: Sequence[str],
    batch_size: int,
    rng: random.Random,
    length_grouped: bool,
    mega_batch_factor: int,
) -> list[list[int]]:
    """One-language batches, each language's spread evenly over the epoch."""
    placed: list[tuple[float, str, list[int]]] = []
    for code, indices in by_language(languages).items():
        batches = grouped_batches(indices, lengths, batch_size, rng, length_grouped, mega_batch_factor)
        offset = rng.random()
        placed += [((j + offset) / len(batches), code, batch) for j, batch in enumerate(batches)]
    placed.sort(key=lambda p: (p[0], p[1]))
    return [batch for _, _, batch in placed]
