"""Perturbed copies of training utterances: speed perturbation and added noise, written once as audio.

Kaldi-style speed perturbation (resampling by a factor f and playing the result at 16 kHz: tempo and
pitch both scale by f, duration by 1/f) and noise at a chosen signal-to-noise ratio are the standard
cheap augmentations for tiny training sets. They change the waveform, so with a cached encoder they
cannot be drawn afresh every step; each copy is instead materialised once as a 16-bit wav and enters
the training set as one more utterance (with the original transcript). Everything downstream then works
unchanged: the encoder cache keys the copy by its own file, log-mel training reads it like any clip, and
a cached run and an uncached run see the same audio.

Copies are deterministic: the noise of a copy is drawn from a generator seeded by the source file's
identity and the variant, never by the run's seed, so every run, seed and `dama tune` trial reuses the
same files (under DAMA_HOME/cache/perturbed, named by source and variant).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soxr

from dama_asr.data.audio import MAX_SECONDS, SAMPLE_RATE, load_audio, write_wav_atomic
from dama_asr.data.manifest import Utterance
from dama_asr.errors import DamaError
from dama_asr.paths import dama_home

NOISE_COLOURS = ("white", "pink")
SPEED_RANGE = (0.5, 2.0)
SNR_RANGE_DB = (-10.0, 60.0)


class PerturbError(DamaError, ValueError):
    """A perturbation that cannot be made; the message names the option or the item."""


@dataclass(frozen=True)
class Variant:
    """One perturbed copy: speed factor f (1 = unchanged) or noise at snr_db (None = none)."""

    speed: float = 1.0
    snr_db: float | None = None
    colour: str = "pink"

    @property
    def name(self) -> str:
        """A short label, also in copies' ids: 'speed0.9', 'noise20pink'."""
        if self.snr_db is None:
            return f"speed{self.speed:g}"
        return f"noise{self.snr_db:g}{self.colour}"


def variants(speed_factors: Sequence[float], noise_snr_db: Sequence[float], colour: str) -> list[Variant]:
    """One copy per speed factor and one per SNR (not their product: each copy changes one thing)."""
    if colour not in NOISE_COLOURS:
        raise PerturbError(f"noise colour: one of {', '.join(NOISE_COLOURS)}, got {colour!r}")
    out = []
    for f in speed_factors:
        if not SPEED_RANGE[0] <= f <= SPEED_RANGE[1] or f == 1.0:
            raise PerturbError(f"speed factor {f}: must be in [{SPEED_RANGE[0]}, {SPEED_RANGE[1]}] and not 1")
        out.append(Variant(speed=float(f)))
    for snr in noise_snr_db:
        if not SNR_RANGE_DB[0] <= snr <= SNR_RANGE_DB[1]:
            raise PerturbError(f"noise SNR {snr} dB: must be in [{SNR_RANGE_DB[0]:g}, {SNR_RANGE_DB[1]:g}]")
        out.append(Variant(snr_db=float(snr), colour=colour))
    if len({v.name for v in out}) != len(out):
        raise PerturbError("speed factors and noise SNRs: each value once")
    return out


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Resample to SAMPLE_RATE / factor and read it back at SAMPLE_RATE: factor 1.1 plays 10% faster
    (and higher), 0.9 slower (and lower), as sox's `speed` effect in Kaldi's recipes."""
    out = soxr.resample(samples, SAMPLE_RATE, SAMPLE_RATE / factor, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def coloured_noise(length: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise: white (flat spectrum) or pink (power falling as 1/f, nearer to what rooms and
    crowds sound like than white hiss)."""
    white = rng.standard_normal(length)
    if colour == "pink" and length > 1:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(length)
        freqs[0] = freqs[1]  # no infinite DC gain
        white = np.fft.irfft(spectrum / np.sqrt(freqs), n=length)
    power = float(np.mean(white**2)) or 1.0
    return (white / np.sqrt(power)).astype(np.float32)


def add_noise(samples: np.ndarray, snr_db: float, colour: str, rng: np.random.Generator) -> np.ndarray:
    """samples + noise scaled so that signal power / noise power = snr_db (power over the whole clip;
    a silent clip gets no noise, since its SNR is undefined)."""
    signal_power = float(np.mean(samples.astype(np.float64) ** 2))
    if signal_power == 0.0:
        return samples.copy()
    noise = coloured_noise(len(samples), colour, rng) * np.sqrt(signal_power / 10 ** (snr_db / 10))
    mixed = samples + noise
    peak = float(np.max(np.abs(mixed)))
    # Rescale rather than clip when the sum leaves [-1, 1]: 16-bit wav would clip it.
    return (mixed / peak * 0.99 if peak > 0.99 else mixed).astype(np.float32)


def source_id(path: str | Path) -> str:
    """The source file's identity: its resolved path, size and modification time (an edited clip gets
    new copies)."""
    path = Path(path).resolve()
    stat = path.stat()
    return hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:24]


def perturb(samples: np.ndarray, variant: Variant, seed_text: str) -> np.ndarray:
    if variant.snr_db is None:
        return change_speed(samples, variant.speed)
    seed = int.from_bytes(hashlib.sha256(f"{seed_text}\0{variant.name}".encode()).digest()[:8], "little")
    return add_noise(samples, variant.snr_db, variant.colour, np.random.default_rng(seed))


def perturbed_root() -> Path:
    return dama_home() / "cache" / "perturbed"


def perturbed_copy(item: Utterance, variant: Variant, root: Path | None = None) -> Utterance | None:
    """The item's copy under `variant` (its wav written if absent), or None when the copy would be longer
    than Whisper's 30 s window (a slowed-down long clip): cutting it would cut its transcript too."""
    duration = item.duration / variant.speed if item.duration else 0.0
    if duration > MAX_SECONDS:
        return None
    ident = source_id(item.audio)
    path = (root or perturbed_root()) / ident[:2] / f"{ident}-{variant.name}.wav"
    if not path.is_file():
        samples = perturb(load_audio(item.audio), variant, ident)
        if len(samples) > MAX_SECONDS * SAMPLE_RATE:
            return None
        write_wav_atomic(path, samples, SAMPLE_RATE)
    return replace(item, id=f"{item.id}#{variant.name}", audio=str(path), duration=duration)


def perturbed_copies(
    items: Sequence[Utterance], chosen: Sequence[Variant], root: Path | None = None, progress: bool = True
) -> tuple[list[tuple[int, Utterance]], list[str]]:
    """Every item's copy under every variant, as (index of the source item, copy); and the ids of the
    copies left out for being longer than 30 s."""
    from tqdm.auto import tqdm

    out, too_long = [], []
    jobs = [(i, item, v) for v in chosen for i, item in enumerate(items)]
    for i, item, variant in tqdm(
        jobs, desc="perturbed copies", unit="clip", disable=not progress or not jobs
    ):
        copy = perturbed_copy(item, variant, root)
        if copy is None:
            too_long.append(f"{item.id}#{variant.name}")
        else:
            out.append((i, copy))
    return out, too_long
