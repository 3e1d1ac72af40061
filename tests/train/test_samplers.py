"""Samplers: `length` is the order from before samplers existed; the language samplers balance or
separate languages, deterministically, under several processes and gradient accumulation."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from pathlib import Path

import pytest

from dama_asr.data.manifest import Utterance, write_manifest
from dama_asr.testing import write_tone
from dama_asr.train import TrainConfig, TrainConfigError, train
from dama_asr.train.data import epoch_batches, shard_batch
from dama_asr.train.loop import Trainer
from dama_asr.train.metrics_log import read_log
from dama_asr.train.samplers import SAMPLERS, sampler_batches
from dama_asr.train.setup import global_micro_batches, steps_per_epoch


def _config(**fields) -> TrainConfig:
    return TrainConfig.from_dict({"train": "unused.jsonl", **fields})


def old_global_micro_batches(config: TrainConfig, lengths, world_size: int, epoch: int) -> list[list[int]]:
    """`setup.global_micro_batches` before samplers existed (commit 42f1814), verbatim."""
    batches = epoch_batches(
        lengths,
        config.optim.batch_size * world_size,
        seed=config.seed,
        epoch=epoch,
        length_grouped=config.length_grouped,
        mega_batch_factor=config.mega_batch_factor,
    )
    return [b for b in batches if len(b) >= world_size]


@pytest.mark.parametrize("length_grouped", [True, False])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_the_default_sampler_is_the_order_from_before(length_grouped: bool, world: int) -> None:
    rng = random.Random(7)
    lengths = [rng.randint(5, 120) for _ in range(101)]
    languages = [rng.choice(["cy", "en", "sw"]) for _ in lengths]
    config = _config(seed=3, length_grouped=length_grouped, mega_batch_factor=4, optim={"batch_size": 3})
    assert config.sampler == "length"
    for epoch in range(3):
        old = old_global_micro_batches(config, lengths, world, epoch)
        assert global_micro_batches(config, lengths, world, epoch) == old
        assert global_micro_batches(config, lengths, world, epoch, languages) == old  # languages unused


def _languages(**counts: int) -> list[str]:
    """Codes in a shuffled manifest order (a sampler must not rely on languages coming in blocks)."""
    codes = [code for code, n in counts.items() for _ in range(n)]
    random.Random(0).shuffle(codes)
    return codes


def test_balanced_batches_hold_both_languages_of_a_3_to_1_manifest_equally() -> None:
    languages = _languages(cy=30, en=10)
    batches = sampler_batches("language-balanced", [1] * 40, languages, 4, seed=0, epoch=0)
    assert len(batches) == 15  # 2 languages x 30 (the largest): en oversampled to cy's size
    for batch in batches:
        assert Counter(languages[i] for i in batch) == {"cy": 2, "en": 2}
    drawn = Counter(i for batch in batches for i in batch)
    assert all(drawn[i] == (1 if code == "cy" else 3) for i, code in enumerate(languages))
    # An odd batch size: shares differ by at most one within a batch, and are equal over the epoch.
    odd = sampler_batches("language-balanced", [1] * 40, languages, 3, seed=0, epoch=0)
    for batch in odd[:-1]:
        assert sorted(Counter(languages[i] for i in batch).values()) == [1, 2]
    assert Counter(languages[i] for b in odd for i in b) == {"cy": 30, "en": 30}


def test_balanced_with_uneven_oversampling_draws_each_example_floor_or_ceil_times() -> None:
    languages = _languages(cy=10, en=4, sw=3)
    batches = sampler_batches("language-balanced", [1] * 17, languages, 6, seed=1, epoch=2)
    drawn = Counter(i for batch in batches for i in batch)
    for code, n in (("cy", 10), ("en", 4), ("sw", 3)):
        counts = {drawn[i] for i, c in enumerate(languages) if c == code}
        assert (
            counts <= {10 // n, -(-10 // n)}
            and sum(drawn[i] for i, c in enumerate(languages) if c == code) == 10
        )
    for batch in batches:
        assert Counter(languages[i] for i in batch) == {"cy": 2, "en": 2, "sw": 2}


def test_balanced_global_batches_shard_into_balanced_process_batches() -> None:
    # 2 processes x batch 2, 2 accumulation steps: each process's part of each global batch is one of each.
    languages = _languages(cy=30, en=10)
    config = _config(sampler="language-balanced", optim={"batch_size": 2, "grad_accum": 2})
    micro = global_micro_batches(config, [1] * 40, 2, 0, languages)
    assert len(micro) == 15 and all(len(b) == 4 for b in micro)
    for batch in micro:
        for rank in range(2):
            assert sorted(languages[i] for i in shard_batch(batch, rank, 2)) == ["cy", "en"]
    assert steps_per_epoch(config, 40, 2, languages) == 8  # ceil(15 / 2)


def test_homogeneous_batches_hold_one_language_and_interleave_languages() -> None:
    languages = _languages(cy=30, en=10, sw=5)
    rng = random.Random(2)
    lengths = [rng.randint(5, 100) for _ in languages]
    batches = sampler_batches(
        "language-homogeneous", lengths, languages, 2, seed=0, epoch=0, mega_batch_factor=3
    )
    assert all(len({languages[i] for i in batch}) == 1 for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(45))  # every example once
    order = [languages[batch[0]] for batch in batches]
    assert Counter(order) == {"cy": 15, "en": 5, "sw": 3}
    # Spread evenly, not in blocks: each language has about half its batches in the first half.
    first_half = Counter(order[: len(order) // 2])
    for code, m in Counter(order).items():
        assert abs(first_half[code] - m / 2) <= 1.5, (code, first_half)
    longest_run = max(len(list(run)) for _, run in itertools.groupby(order))
    assert longest_run <= 3  # 15 Welsh batches between 8 others: never more than 3 in a row


@pytest.mark.parametrize("sampler", ["language-balanced", "language-homogeneous"])
def test_language_samplers_are_a_function_of_seed_and_epoch(sampler: str) -> None:
    languages = _languages(cy=20, en=8)
    lengths = [(7 * i) % 23 + 1 for i in range(28)]
    config = _config(sampler=sampler, seed=5, optim={"batch_size": 2})
    a = global_micro_batches(config, lengths, 1, 1, languages)
    assert a == global_micro_batches(config, lengths, 1, 1, list(languages))
    assert a != global_micro_batches(config, lengths, 1, 2, languages)
    assert a != global_micro_batches(
        _config(sampler=sampler, seed=6, optim={"batch_size": 2}), lengths, 1, 1, languages
    )
    # The batch count, so the schedule, is the same every epoch, at every process count.
    for world in (1, 2, 3):
        counts = {len(global_micro_batches(config, lengths, world, e, languages)) for e in range(4)}
        assert len(counts) == 1
        assert steps_per_epoch(config, 28, world, languages) == counts.pop()


def test_sampler_names_are_validated_and_language_samplers_need_languages() -> None:
    assert SAMPLERS == ("length", "language-balanced", "language-homogeneous")
    with pytest.raises(
        TrainConfigError, match="sampler: one of length, language-balanced, language-homogeneous"
    ):
        _config(sampler="random")
    config = _config(sampler="language-balanced")
    with pytest.raises(ValueError, match="needs one language per example: 3 examples, none"):
        global_micro_batches(config, [1, 2, 3], 1, 0)


@pytest.fixture(scope="module")
def mixed_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 Welsh and 2 English clips (3:1); English written as a name, which the examples normalise."""
    folder = tmp_path_factory.mktemp("mixed_train")
    texts = ["bore da", "diolch yn fawr", "nos da", "croeso i gymru", "un dau tri", "rwy'n hoffi coffi",
             "good morning", "thank you very much"]  # fmt: skip
    items = [
        Utterance(id=f"utt{i}", audio=str(write_tone(folder / f"utt{i}.wav", 0.5 + 0.25 * i, freq=300 + 50 * i)),
                  text=text, language="cy" if i < 6 else "English", duration=0.5 + 0.25 * i)
        for i, text in enumerate(texts)
    ]  # fmt: skip
    return write_manifest(folder / "manifest.jsonl", items)


def test_model_batches_carry_each_utterances_language(make_config, mixed_train: Path) -> None:
    config = make_config(train=str(mixed_train), sampler="language-homogeneous")
    trainer = Trainer(config)
    try:
        expected = ["cy"] * 6 + ["en"] * 2  # the manifest's order; "English" normalised to its code
        assert trainer.data.languages == expected
        micro = global_micro_batches(config, trainer.data.lengths, 1, 0, trainer.data.languages)
        seen = []
        for batch in micro:
            languages = trainer._model_inputs(batch)["languages"]
            assert len(languages) == len(batch) and len(set(languages)) == 1
            assert languages == [expected[i] for i in batch]
            seen += languages
        assert Counter(seen) == {"cy": 6, "en": 2}
    finally:
        trainer.release()


def test_balanced_training_resumes_to_the_same_run(make_config, mixed_train: Path, tmp_path: Path) -> None:
    common = {"train": str(mixed_train), "sampler": "language-balanced", "precision": "no",
              "optim": {"epochs": 2, "batch_size": 2, "grad_accum": 2}}  # fmt: skip
    straight = make_config(output_dir=str(tmp_path / "straight"), **common)
    summary = train(straight)
    assert summary["steps"] == 6  # 2 epochs x (2 languages x 6 Welsh / 4 per step, rounded up)
    train(make_config(output_dir=str(tmp_path / "resumed"), stop_after_steps=2, **common))
    resumed = train(make_config(output_dir=str(tmp_path / "resumed"), **common), resume=True)
    assert resumed["resumed_from"].endswith("step-00000002")
    a = [r["loss"] for r in read_log(straight.run_dir / "train_log.jsonl")]
    b = [r["loss"] for r in read_log(tmp_path / "resumed" / "train_log.jsonl")]
    assert len(a) == 6 and b == pytest.approx(a, rel=1e-6, abs=1e-7)
