"""Perturbed copies: speed changes tempo and pitch by the factor, noise meets its SNR, copies are
deterministic files, and over-long copies are left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dama_asr.data.audio import SAMPLE_RATE, load_audio
from dama_asr.data.manifest import Utterance
from dama_asr.data.perturb import (
    PerturbError,
    Variant,
    add_noise,
    change_speed,
    coloured_noise,
    perturbed_copies,
    perturbed_copy,
    variants,
)
from dama_asr.testing import write_tone


def _peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


def test_speed_scales_duration_by_one_over_f_and_pitch_by_f() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for factor in (0.9, 1.1):
        out = change_speed(tone, factor)
        assert abs(len(out) - SAMPLE_RATE / factor) <= 2
        assert _peak_hz(out) == pytest.approx(440 * factor, abs=2)


def test_noise_meets_the_snr_asked_and_pink_noise_falls_with_frequency() -> None:
    rng = np.random.default_rng(0)
    signal = (0.05 * np.sin(2 * np.pi * 300 * np.arange(32000) / SAMPLE_RATE)).astype(np.float32)
    for snr in (0.0, 10.0, 20.0):
        noisy = add_noise(signal, snr, "white", rng)
        measured = 10 * np.log10(np.mean(signal.astype(np.float64) ** 2) / np.mean((noisy - signal) ** 2))
        assert measured == pytest.approx(snr, abs=0.05)
    pink = np.abs(np.fft.rfft(coloured_noise(2**16, "pink", rng))) ** 2
    white = np.abs(np.fft.rfft(coloured_noise(2**16, "white", rng))) ** 2
    freqs = np.fft.rfftfreq(2**16, 1 / SAMPLE_RATE)
    low, high = (freqs > 100) & (freqs < 200), (freqs > 1000) & (freqs < 2000)
    assert pink[low].mean() / pink[high].mean() == pytest.approx(10, rel=0.3)  # 1/f: a decade, 10x
    assert white[low].mean() / white[high].mean() == pytest.approx(1, rel=0.3)
    assert np.array_equal(add_noise(np.zeros(100, np.float32), 0.0, "white", rng), np.zeros(100))


def _item(folder: Path, seconds: float, name: str = "a") -> Utterance:
    audio = write_tone(folder / f"{name}.wav", seconds=seconds, freq=300)
    return Utterance(id=name, audio=str(audio), text="bore da", language="cy", duration=seconds)


def test_copies_are_files_with_the_transcript_made_once_and_the_same_every_time(tmp_path: Path) -> None:
    item = _item(tmp_path, 2.0)
    root = tmp_path / "copies"
    chosen = variants([0.9, 1.1], [15.0], "pink")
    copies, too_long = perturbed_copies([item], chosen, root, progress=False)
    assert too_long == [] and [i for i, _ in copies] == [0, 0, 0]
    by_name = {c.id: c for _, c in copies}
    assert set(by_name) == {"a#speed0.9", "a#speed1.1", "a#noise15pink"}
    slow = by_name["a#speed0.9"]
    assert slow.text == item.text and slow.language == "cy"
    assert slow.duration == pytest.approx(2.0 / 0.9)
    assert len(load_audio(slow.audio)) == pytest.approx(2.0 / 0.9 * SAMPLE_RATE, abs=2)
    noisy = by_name["a#noise15pink"]
    first = load_audio(noisy.audio)
    assert not np.allclose(first, load_audio(item.audio), atol=1e-3)
    Path(noisy.audio).unlink()  # made again: the same noise (seeded by the source and the variant)
    again = perturbed_copy(item, Variant(snr_db=15.0, colour="pink"), root)
    assert again is not None and np.array_equal(load_audio(again.audio), first)


def test_a_slowed_copy_past_thirty_seconds_is_left_out(tmp_path: Path) -> None:
    long_item, short = _item(tmp_path, 28.0, "long"), _item(tmp_path, 1.0, "short")
    copies, too_long = perturbed_copies(
        [long_item, short], variants([0.9], [], "white"), tmp_path / "c", progress=False
    )
    assert too_long == ["long#speed0.9"]
    assert [c.id for _, c in copies] == ["short#speed0.9"]


@pytest.mark.parametrize(
    ("speeds", "snrs", "colour", "match"),
    [
        ([1.0], [], "pink", "not 1"),
        ([3.0], [], "pink", r"\[0.5, 2.0\]"),
        ([], [90.0], "pink", "SNR 90"),
        ([0.9, 0.9], [], "pink", "each value once"),
        ([], [10.0], "brown", "one of white, pink"),
    ],
)
def test_bad_perturbation_options_are_named(speeds, snrs, colour, match) -> None:
    with pytest.raises(PerturbError, match=match):
        variants(speeds, snrs, colour)
