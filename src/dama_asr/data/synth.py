"""`dama data synth`: multilingual synthetic speech from espeak-ng and natural sentences.

    from dama_asr.data.synth import SynthConfig, build_synth_corpus
    build_synth_corpus(SynthConfig(languages=("cy", "lt"), hours=0.5))

Layout, per language: `<out>/<lang>/{train,dev,test}.jsonl` and `<out>/<lang>/wav/<split>/<id>.wav`
(16 kHz mono, 16-bit). Clips are written atomically one by one and reused on a rerun; manifests are
written atomically at the end, so an interrupted build leaves finished clips and no partial manifest.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from dama_asr.atomic import atomic_write_text
from dama_asr.data.audio import SAMPLE_RATE, write_wav_atomic
from dama_asr.data.espeak import EspeakError, espeak_binary
from dama_asr.data.manifest import SPLITS, Utterance, write_manifest
from dama_asr.data.sentences import CACHE_VERSION, Sentence, load_sentences
from dama_asr.data.synth_plan import ClipSpec, SynthConfig, assign_voices, clip_specs, partition_sentences
from dama_asr.paths import dama_home

__all__ = [
    "SynthConfig",
    "build_synth_corpus",
    "build_language",
    "render_clip",
    "add_noise",
    "default_synth_dir",
]

SOURCE = "synth-espeak-ng"
_PEAK = 0.95  # headroom so that added noise does not clip in 16-bit


def default_synth_dir() -> Path:
    return dama_home() / "corpora" / "synth"


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at `snr_db`, signal power measured over the whole clip. Shape (T,)."""
    power = float(np.mean(samples.astype(np.float64) ** 2))
    if power == 0.0:
        return samples
    noise = rng.standard_normal(len(samples)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (samples + noise).astype(np.float32)


def synthesize_samples(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng speech as float32 mono at 16 kHz, shape (T,). One process per clip costs ~25 ms here,
    which keeps a 0.5 h per language build within minutes on two cores, so no library binding is needed."""
    cmd = [espeak_binary(), "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", "--", text]
    done = subprocess.run(cmd, capture_output=True, timeout=120)
    if done.returncode != 0 or len(done.stdout) <= 44:
        raise EspeakError(
            f"espeak-ng failed for voice {voice!r}: {done.stderr.decode(errors='replace').strip() or 'no audio'}"
        )
    samples, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")  # (T,) at 22.05 kHz
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    return soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)


def render_clip(spec: ClipSpec, path: Path, snr_db: float | None = None) -> float:
    """Render `spec` to `path` (atomically) unless it is already there; return its duration in seconds."""
    if path.is_file():
        info = sf.info(str(path))
        return info.frames / info.samplerate
    samples = synthesize_samples(spec.sentence.text, spec.voice, spec.speed, spec.pitch)
    if snr_db is not None:
        samples = add_noise(samples, snr_db, np.random.default_rng(spec.noise_seed))
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak > _PEAK:
        samples = samples * (_PEAK / peak)  # scaling speech and noise together keeps the SNR
    write_wav_atomic(path, samples, SAMPLE_RATE)
    return len(samples) / SAMPLE_RATE


def _fingerprint(config: SynthConfig, sentences: Sequence[Sentence]) -> dict:
    """Everything that decides what clip N of a split sounds like; `hours` is absent on purpose, so a
    larger budget reuses every clip already rendered."""
    return {
        "seed": config.seed, "speed": list(config.speed), "pitch": list(config.pitch), "snr_db": config.snr_db,
        "dev_minutes": config.dev_minutes, "test_minutes": config.test_minutes,
        "sentences": len(sentences), "sentence_cache_version": CACHE_VERSION,
        "voices": assign_voices(config.seed),
    }  # fmt: skip


def _prepare_folder(folder: Path, fingerprint: dict) -> None:
    """Start over when the settings that shape the clips changed; otherwise keep finished clips."""
    stamp = folder / "synth.json"
    if stamp.is_file() and json.loads(stamp.read_text()) != fingerprint:
        print(f"{folder}: settings changed since the last build; rebuilding its clips")
        shutil.rmtree(folder / "wav", ignore_errors=True)
    atomic_write_text(stamp, json.dumps(fingerprint, indent=1, allow_nan=False))


def _utterance(spec: ClipSpec, path: Path, duration: float, snr_db: float | None) -> Utterance:
    extra = {"speed_wpm": spec.speed, "pitch": spec.pitch, "text_source": spec.sentence.source,
             "licence": spec.sentence.licence}  # fmt: skip
    if snr_db is not None:
        extra["snr_db"] = snr_db
    return Utterance(id=spec.id, audio=str(path), text=spec.sentence.text, language=spec.language,
                     duration=round(duration, 3), speaker=spec.voice, source=SOURCE, split=spec.split, extra=extra)  # fmt: skip


def _render_split(specs: Iterable[ClipSpec], folder: Path, budget: float, config: SynthConfig,
                  pool: ThreadPoolExecutor, batch_size: int, progress: Callable[[float], None]) -> list[Utterance]:  # fmt: skip
    """Render clips in order until their total duration reaches `budget` seconds.

    Clips are rendered in parallel batches but accepted strictly in plan order, so the corpus is the same
    whatever the batch size or worker count; a batch may render a few clips past the budget, which stay
    on disk for a later, larger build.
    """
    items: list[Utterance] = []
    total, iterator = 0.0, iter(specs)
    while total < budget:
        batch = [spec for _, spec in zip(range(batch_size), iterator, strict=False)]
        if not batch:
            break
        paths = [folder / "wav" / spec.split / f"{spec.id}.wav" for spec in batch]
        durations = pool.map(
            lambda sp: render_clip(sp[0], sp[1], config.snr_db), zip(batch, paths, strict=True)
        )
        for spec, path, duration in zip(batch, paths, durations, strict=True):
            if total >= budget:
                break
            items.append(_utterance(spec, path, duration, config.snr_db))
            total += duration
            progress(duration)
    return items


def build_language(language: str, sentences: Sequence[Sentence], config: SynthConfig, out: Path,
                   workers: int | None = None, progress: Callable[[float], None] = lambda s: None) -> dict[str, list[Utterance]]:  # fmt: skip
    """Build one language's corpus from `sentences` into `out/<language>`; return the utterances per split."""
    folder = out / language
    folder.mkdir(parents=True, exist_ok=True)
    _prepare_folder(folder, _fingerprint(config, sentences))
    pools = partition_sentences(sentences, config, language)
    voices = assign_voices(config.seed)
    result: dict[str, list[Utterance]] = {}
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for split in SPLITS:
            specs = clip_specs(split, pools[split], voices[split], config, language)
            budget = config.budget_seconds(split)
            result[split] = _render_split(specs, folder, budget, config, pool, 4 * workers, progress)
            got = sum(u.duration for u in result[split])
            if got < budget:
                print(f"warning: {language} {split}: only {got / 60:.1f} of {budget / 60:.1f} min "
                      f"({len(pools[split])} sentences available for this split)")  # fmt: skip
    for split, items in result.items():
        write_manifest(folder / f"{split}.jsonl", items)
    return result


def hours_table(corpus: dict[str, dict[str, list[Utterance]]]) -> str:
    """`language  train h  dev h  test h  clips` as aligned text."""
    lines = [f"{'language':<10}" + "".join(f"{s + ' h':>10}" for s in SPLITS) + f"{'clips':>8}"]
    for language, splits in corpus.items():
        hours = [sum(u.duration for u in splits.get(s, [])) / 3600 for s in SPLITS]
        clips = sum(len(v) for v in splits.values())
        lines.append(f"{language:<10}" + "".join(f"{h:>10.3f}" for h in hours) + f"{clips:>8}")
    return "\n".join(lines)


def build_synth_corpus(config: SynthConfig, out: Path | None = None, workers: int | None = None,
                       sentences: dict[str, Sequence[Sentence]] | None = None) -> dict[str, dict[str, list[Utterance]]]:  # fmt: skip
    """Build every language of `config`; sentences come from the Debian catalogues unless given."""
    out = Path(out) if out else default_synth_dir()
    texts = {lang: (sentences or {}).get(lang) or load_sentences(lang) for lang in config.languages}
    total = sum(config.budget_seconds(s) for s in SPLITS) * len(config.languages)
    corpus: dict[str, dict[str, list[Utterance]]] = {}
    with tqdm(total=round(total / 60, 1), unit="min", desc="synth", disable=None) as bar:
        for language in config.languages:
            bar.set_postfix_str(language)
            corpus[language] = build_language(
                language, texts[language], config, out, workers, lambda s: bar.update(round(s / 60, 4))
            )
    atomic_write_text(out / "synth-config.json", json.dumps(asdict(config), indent=1, allow_nan=False))
    return corpus
