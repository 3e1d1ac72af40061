"""Hour budgets (exact, seeded, nested) and speaker/sentence-disjoint splits."""

from __future__ import annotations

import hashlib
import random

import pytest

from dama_asr.data.manifest import ManifestError, Utterance
from dama_asr.data.subset import LADDER_HOURS, budget_chain, hour_subset, overlaps, split_items, total_hours


def corpus(n: int = 2800, languages: tuple[str, ...] = ("cy",), seed: int = 1) -> list[Utterance]:
    """n utterances of 1-15 s (2800: about 6.2 h), 300 sentences (case/punctuation variants), 40 speakers.

    Each sentence is read by one speaker only, so speaker+sentence groups stay small enough to split.
    """
    rng = random.Random(seed)
    items = []
    for i in range(n):
        sentence = f"brawddeg rhif {i % 300}"
        text = sentence.capitalize() + "." if i % 2 else sentence
        items.append(
            Utterance(
                id=f"u{i:05d}",
                audio=f"/nowhere/u{i}.wav",
                text=text,
                language=languages[i % len(languages)],
                duration=round(rng.uniform(1.0, 15.0), 3),
                speaker=f"spk{(i % 300) % 40}",
            )
        )
    return items


ITEMS = corpus()


@pytest.mark.parametrize("hours", [0.5, 1.0, 2.0, 5.0])
def test_ladder_budgets_are_filled_without_exceeding(hours):
    chosen = hour_subset(ITEMS, hours, seed=0)
    gap_s = hours * 3600 - total_hours(chosen) * 3600
    chosen_ids = {u.id for u in chosen}
    left = [u.duration for u in ITEMS if u.id not in chosen_ids]
    assert 0 <= gap_s < min(left)  # no clip left out would still have fitted
    assert gap_s < 1.0  # with 1-15 s clips the budget is met to within a second


def test_any_budget_is_met_within_one_utterance():
    chosen = hour_subset(ITEMS, 0.75, seed=3)
    assert 0.75 * 3600 - 15 <= total_hours(chosen) * 3600 <= 0.75 * 3600


def test_budgets_nest_for_the_same_seed():
    budgets = [0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 3.3, 5.0]
    subsets = [{u.id for u in hour_subset(ITEMS, h, seed=7)} for h in budgets]
    for smaller, larger in zip(subsets, subsets[1:], strict=False):
        assert smaller < larger


def test_deterministic_by_seed_and_independent_of_manifest_order():
    a = [u.id for u in hour_subset(ITEMS, 1.0, seed=0)]
    shuffled = ITEMS[:]
    random.Random(5).shuffle(shuffled)
    b = sorted(u.id for u in hour_subset(shuffled, 1.0, seed=0))
    assert a == b  # returned in manifest order, which is sorted by id here
    c = [u.id for u in hour_subset(ITEMS, 1.0, seed=1)]
    assert set(c) != set(a)


def test_per_language_budget_and_whole_corpus_when_budget_exceeds_it():
    items = corpus(600, languages=("cy", "lt"))
    chosen = hour_subset(items, 0.5, seed=0, per_language=True)
    for language in ("cy", "lt"):
        hours = total_hours(u for u in chosen if u.language == language)
        assert 0.49 < hours <= 0.5
    assert len(hour_subset(items, 1000.0)) == len(items)
    assert len(budget_chain(items, 0, LADDER_HOURS)) == len(items)


def test_missing_durations_and_bad_budgets_are_errors():
    with pytest.raises(ManifestError, match="no duration.*dama data check"):
        hour_subset([Utterance("a", "a.wav", "x", "cy")], 0.5)
    with pytest.raises(ManifestError, match="positive"):
        hour_subset(ITEMS, 0)


@pytest.mark.parametrize("by", ["speaker", "sentence", "both"])
def test_splits_are_disjoint_complete_and_near_their_shares(by):
    result = split_items(ITEMS, by=by, dev=0.1, test=0.1, seed=0)
    ids = [u.id for part in result.splits.values() for u in part]
    assert sorted(ids) == [u.id for u in ITEMS]
    assert all(u.split == name for name, part in result.splits.items() for u in part)
    shared = overlaps(result.splits)
    if by in ("speaker", "both"):
        assert shared["speaker"] == set()
    if by in ("sentence", "both"):
        assert shared["sentence"] == set()  # "Brawddeg rhif 3." and "brawddeg rhif 3" are one sentence
    total = total_hours(ITEMS)
    for name in ("dev", "test"):
        assert 0.05 * total < total_hours(result.splits[name]) <= 0.1 * total + 1e-9


def test_split_is_deterministic_by_seed_and_supports_hours():
    first = split_items(ITEMS, by="sentence", seed=4)
    again = split_items(list(reversed(ITEMS)), by="sentence", seed=4)
    assert {u.id for u in first.splits["test"]} == {u.id for u in again.splits["test"]}
    other = split_items(ITEMS, by="sentence", seed=5)
    assert {u.id for u in first.splits["test"]} != {u.id for u in other.splits["test"]}
    by_hours = split_items(ITEMS, by="sentence", dev=0.2, test=0.3, unit="hours")
    assert 0.25 < total_hours(by_hours.splits["test"]) <= 0.3


def test_impossible_splits_are_clear_errors():
    one_speaker = [Utterance(f"u{i}", "a.wav", f"s {i}", "cy", 2.0, speaker="x") for i in range(10)]
    with pytest.raises(ManifestError, match="no speaker group fits the test target"):
        split_items(one_speaker, by="speaker")
    anonymous = [Utterance(f"u{i}", "a.wav", f"s {i}", "cy", 2.0) for i in range(10)]
    with pytest.raises(ManifestError, match="no utterance has a speaker id"):
        split_items(anonymous, by="speaker")
    crossing = [Utterance(f"u{i}", "a.wav", f"s {i % 5}", "cy", 2.0, speaker=f"p{i % 7}") for i in range(70)]
    with pytest.raises(ManifestError, match="no both group fits"):  # every speaker reads every sentence
        split_items(crossing, by="both")
    with pytest.raises(ManifestError, match="sum to less than 1"):
        split_items(ITEMS, dev=0.5, test=0.5)
    assert len(split_items(anonymous, by="sentence", dev=0.1, test=0.1).splits["test"]) == 1


# ---- pinned selections: the committed studies were trained on these subsets and splits -----------


def pinned_corpus() -> list[Utterance]:
    """900 items in two languages: cased and punctuated variants of 350 sentences, 23 speakers."""
    rng = random.Random(20240501)
    words = ["bore", "da", "nos", "hwyl", "diolch", "croeso", "ŵy", "ïe", "cân", "môr"]
    items = []
    for i in range(900):
        s = i % 350
        text = " ".join(words[(s * k) % 10] for k in range(1, 2 + s % 7)) + f" {s}"
        text = text.capitalize() + "!" if i % 3 == 0 else text
        items.append(Utterance(id=f"pin-{rng.randrange(10**6):06d}-{i}", audio=f"/x/{i}.wav", text=text,
                               language=("cy", "lt")[i % 5 == 0], duration=round(rng.uniform(0.8, 16.0), 3),
                               speaker=f"s{s % 23}"))  # fmt: skip
    return items


def _digest(items: list[Utterance]) -> tuple[int, str]:
    return len(items), hashlib.sha256("\n".join(u.id for u in items).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    "hours, seed, per_language, expected",
    [
        (0.1, 0, False, (49, "76a001633ee65eb8")),
        (0.25, 0, False, (114, "f2840227f8ac5802")),
        (0.5, 0, False, (212, "89abf3d840fe25e8")),
        (1.0, 0, False, (430, "08f07b1fc55a4a80")),
        (0.37, 0, False, (155, "97f6ee914d653377")),
        (0.25, 0, True, (223, "6d4c71a1e0aaa290")),
        (0.5, 3, False, (207, "ab444da3b4a46d85")),
    ],
)
def test_hour_subsets_are_the_ones_the_studies_used(hours, seed, per_language, expected):
    assert _digest(hour_subset(pinned_corpus(), hours, seed=seed, per_language=per_language)) == expected


@pytest.mark.parametrize(
    "seed, expected",
    [
        (
            0,
            {
                "train": (715, "ce8d97bbda495698"),
                "dev": (95, "04382cbff3b9c8a1"),
                "test": (90, "c6943252f699cb7f"),
            },
        ),
        (
            1,
            {
                "train": (731, "25cf13c7568234fa"),
                "dev": (84, "2f0f9b4d7dbcb662"),
                "test": (85, "8f4abadc7369a996"),
            },
        ),
    ],
)
def test_the_czech_corpus_split_is_the_one_the_studies_used(seed, expected):
    # As `dama data czech-fillets` splits: by sentence, 10 % each, held-out splits reach their share.
    result = split_items(pinned_corpus(), by="sentence", dev=0.1, test=0.1, seed=seed, overshoot=True)
    assert {name: _digest(part) for name, part in result.splits.items()} == expected


def test_overshoot_reaches_the_target_and_the_default_never_passes_it():
    items = [Utterance(f"u{i}", "a.wav", f"s {i}", "cy", 10.0 + i % 7) for i in range(100)]
    total = total_hours(items)
    fit = split_items(items, by="sentence", dev=0.1, test=0.1, seed=0)
    reach = split_items(items, by="sentence", dev=0.1, test=0.1, seed=0, overshoot=True)
    for name in ("dev", "test"):
        assert total_hours(fit.splits[name]) <= 0.1 * total < total_hours(reach.splits[name])
        assert total_hours(reach.splits[name]) < 0.1 * total + 16 / 3600  # by less than one group


def test_split_by_count_takes_shares_of_the_utterances():
    # Ten long clips and ninety short ones: a tenth of the hours is not a tenth of the utterances.
    items = [Utterance(f"u{i:03d}", "a.wav", f"s {i}", "cy", 25.0 if i < 10 else 1.0) for i in range(100)]
    by_count = split_items(items, by="sentence", dev=0.2, test=0.1, seed=0, unit="count")
    assert (len(by_count.splits["test"]), len(by_count.splits["dev"])) == (10, 20)
    # Counting needs no durations.
    unknown = [Utterance(f"u{i}", "a.wav", f"s {i}", "cy") for i in range(10)]
    assert len(split_items(unknown, by="sentence", dev=0.1, test=0.1, unit="count").splits["test"]) == 1
