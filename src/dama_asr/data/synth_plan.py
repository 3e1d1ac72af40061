"""What a synthetic corpus will contain, decided before any audio exists: pure and deterministic by seed.

The plan fixes, per language: which sentences belong to train/dev/test (disjoint), which voice variants
speak each split (dev and test voices never speak training data, in any language), and the voice, speed
and pitch of every clip. Rendering then only walks the plan, so a rerun or a resumed run produces the
same corpus, and growing `--hours` only appends clips.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from dama_asr.data.sentences import Sentence

# espeak-ng voice variants that sound like a person (robotic, whispering and joke variants left out),
# grouped so that every held-out split gets one voice of each kind.
VOICE_GROUPS: dict[str, tuple[str, ...]] = {
    "male": ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"),
    "female": ("f1", "f2", "f3", "f4", "f5"),
    "klatt": ("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6"),
    "named": (
        "adam", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david",
        "edward", "Gene", "grandma", "grandpa", "Henrique", "Hugo", "iven", "iven2", "Jacky", "john", "Lee",
        "linda", "Marco", "max", "Michael", "Mike", "norbert", "pablo", "paul", "quincy", "rob", "robert",
        "steph", "travis", "victor", "zac",
    ),
}  # fmt: skip

HELD_OUT_SPLITS = ("test", "dev")


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one synthetic build; every field is validated here, once."""

    languages: tuple[str, ...]
    hours: float = 0.5  # training audio per language
    dev_minutes: float = 10.0
    test_minutes: float = 10.0
    seed: int = 0
    speed: tuple[int, int] = (130, 200)  # words per minute, espeak-ng accepts 80..450
    pitch: tuple[int, int] = (35, 65)  # espeak-ng accepts 0..99
    snr_db: float | None = None  # additive white noise at this signal-to-noise ratio; None = clean

    def __post_init__(self) -> None:
        if not self.languages:
            raise ValueError("languages: give at least one language code")
        for name in ("hours", "dev_minutes", "test_minutes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        lo, hi = self.speed
        if not 80 <= lo <= hi <= 450:
            raise ValueError(f"speed: need 80 <= low <= high <= 450 words per minute, got {lo}-{hi}")
        lo, hi = self.pitch
        if not 0 <= lo <= hi <= 99:
            raise ValueError(f"pitch: need 0 <= low <= high <= 99, got {lo}-{hi}")

    def budget_seconds(self, split: str) -> float:
        return {"train": self.hours * 3600, "dev": self.dev_minutes * 60, "test": self.test_minutes * 60}[
            split
        ]


@dataclass(frozen=True)
class ClipSpec:
    """One clip to render; `id` is stable, so a rerun finds the clip it already rendered."""

    id: str
    split: str
    language: str
    sentence: Sentence
    variant: str
    speed: int
    pitch: int
    noise_seed: int

    @property
    def voice(self) -> str:
        return f"{self.language}+{self.variant}"


def assign_voices(seed: int) -> dict[str, list[str]]:
    """Voice variants per split: test and dev get one of each group, train the rest. Same for every
    language, so no held-out voice is heard in training in any language."""
    rng = random.Random(f"voices-{seed}")
    splits: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for group in VOICE_GROUPS.values():
        shuffled = list(group)
        rng.shuffle(shuffled)
        for split in HELD_OUT_SPLITS:
            splits[split].append(shuffled.pop())
        splits["train"].extend(shuffled)
    return splits


def estimated_seconds(text: str, words_per_minute: float) -> float:
    # espeak-ng keeps close to the requested rate; the constant covers its leading and trailing pause.
    return 60.0 * len(text.split()) / words_per_minute + 0.4


def partition_sentences(
    sentences: Sequence[Sentence], config: SynthConfig, language: str
) -> dict[str, list[Sentence]]:
    """Disjoint sentence pools. Test and dev get about twice the sentences their budgets need (so a
    budget is met even when clips run short), capped at a fifth of the list each; train gets the rest."""
    pool = list(sentences)
    random.Random(f"sentences-{config.seed}-{language}").shuffle(pool)
    mean_speed = sum(config.speed) / 2
    split_pools: dict[str, list[Sentence]] = {}
    start = 0
    for split in HELD_OUT_SPLITS:
        budget = config.budget_seconds(split)
        need, count = 2 * budget, 0
        while start + count < len(pool) and need > 0 and count < max(1, len(pool) // 5):
            need -= estimated_seconds(pool[start + count].text, mean_speed)
            count += 1
        split_pools[split] = pool[start : start + count]
        start += count
    split_pools["train"] = pool[start:]
    return split_pools


def clip_specs(
    split: str, pool: Sequence[Sentence], voices: Sequence[str], config: SynthConfig, language: str
) -> Iterator[ClipSpec]:
    """The clips of one split in order. Held-out splits speak each sentence once; train cycles through its
    sentences again (with other voices and speeds) when the budget needs more audio than one pass."""
    if not pool or not voices:
        return
    passes = 1 if split != "train" else math.inf
    index, done = 0, 0
    while done < passes:
        for sentence in pool:
            rng = random.Random(f"clip-{config.seed}-{language}-{split}-{index}")
            yield ClipSpec(
                id=f"synth-{language}-{split}-{index:06d}",
                split=split,
                language=language,
                sentence=sentence,
                variant=rng.choice(list(voices)),
                speed=rng.randint(*config.speed),
                pitch=rng.randint(*config.pitch),
                noise_seed=rng.getrandbits(32),
            )
            index += 1
        done += 1
