"""Validate utterances before anything trains or scores on them.

Every item gets at most one *error* (the first found; the item is rejected) and any number of
*notes* (the item is kept, possibly with its duration or language code filled in). Cheap checks run
first so a missing file is never decoded. Nothing raises on a bad item: a corpus of 100k clips must
not stop at clip 73,012; the report counts each problem class and keeps the first examples.

After every item is checked on its own, the items kept are checked against each other: a transcript
whose characters per second are far from its language's typical rate is a *warning* (`rates.py`):
kept, reported, and dropped only on request (`dama data check --drop-implausible`).

Multi-channel audio is a note, not an error: `load_audio` averages channels, which is what Whisper
would hear from a mono mix. Pass `reject_multichannel=True` where that is not acceptable. Audio at
another sample rate is a note too (resampled to 16 kHz on load).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from dama_asr.accounting import SkippedItems
from dama_asr.data.audio import MAX_SECONDS, SAMPLE_RATE, AudioError
from dama_asr.data.manifest import ManifestError, Utterance, iter_manifest
from dama_asr.data.rates import RateOptions, implausible_rates
from dama_asr.data.scripts import script_mismatch
from dama_asr.languages import UnknownLanguageError, normalise_language, unsupported_language_message

ERROR, WARNING, NOTE = "error", "warning", "note"
# kind -> (severity, what it means); the order is the order of the summary.
KINDS: dict[str, tuple[str, str]] = {
    "malformed_line": (ERROR, "manifest line is not a valid utterance"),
    "duplicate_id": (ERROR, "id already used by an earlier item"),
    "unknown_language": (ERROR, "not one of Whisper's language codes"),
    "unsupported_language": (ERROR, "a Whisper code the chosen model has no token for"),
    "empty_transcript": (ERROR, "transcript has no letters or digits"),
    "script_mismatch": (ERROR, "transcript is not in the language's script"),
    "missing_audio": (ERROR, "audio file does not exist"),
    "unreadable_audio": (ERROR, "audio cannot be decoded (corrupt, truncated, NaN)"),
    "empty_audio": (ERROR, "audio holds no samples"),
    "silent_audio": (ERROR, "audio is silent"),
    "too_long": (ERROR, f"longer than Whisper's {MAX_SECONDS:.0f} s window"),
    "multichannel_rejected": (ERROR, "more than one channel"),
    "implausible_rate": (WARNING, "characters per second far from the language's: transcript may not match"),
    "multichannel": (NOTE, "more than one channel: downmixed to mono on load"),
    "resampled": (NOTE, f"not at {SAMPLE_RATE} Hz: resampled on load"),
    "duration_filled": (NOTE, "duration was missing: measured from the audio"),
    "duration_corrected": (NOTE, "duration disagreed with the audio: corrected"),
    "language_renamed": (NOTE, "language given as a name or variant: replaced by Whisper's code"),
}


@dataclass(frozen=True)
class ValidationOptions:
    decode: bool = True  # decode every file (finds silence, truncation); False reads headers only
    max_seconds: float = MAX_SECONDS
    silence_peak: float = 1e-4  # peak |sample| below this is silence (-80 dBFS)
    min_script_share: float = 0.5  # share of letters that must be in the language's script(s)
    reject_multichannel: bool = False
    workers: int = min(4, os.cpu_count() or 1)  # threads for audio (libsndfile releases the GIL)
    # The codes the model to be trained has tokens for (None: any Whisper code) and its name, for messages.
    languages: frozenset[str] | None = None
    model: str = ""
    rates: RateOptions | None = RateOptions()  # None: no speaking-rate check


DEFAULT_OPTIONS = ValidationOptions()


@dataclass(frozen=True)
class Problem:
    kind: str
    item_id: str
    message: str

    @property
    def is_error(self) -> bool:
        return KINDS[self.kind][0] == ERROR


@dataclass
class ValidationReport:
    """Counts per problem kind with the first examples, and the items kept, warned about and rejected."""

    good: list[Utterance] = field(default_factory=list)
    bad: list[tuple[Utterance | None, Problem]] = field(default_factory=list)
    warned: list[tuple[Utterance, Problem]] = field(default_factory=list)  # also in `good`
    problems: SkippedItems = field(default_factory=lambda: SkippedItems(keep_examples=3))
    total: int = 0

    @property
    def counts(self):
        return self.problems.counts

    @property
    def examples(self) -> dict[str, list[str]]:
        return self.problems.examples

    def record(self, problem: Problem) -> None:
        self.problems.add(problem.kind, f"{problem.item_id}: {problem.message}")

    def reject(self, item: Utterance | None, problem: Problem) -> None:
        self.record(problem)
        self.bad.append((item, problem))

    def warn(self, item: Utterance, problem: Problem) -> None:
        self.record(problem)
        self.warned.append((item, problem))

    def _severity_total(self, severity: str) -> int:
        return sum(n for kind, n in self.counts.items() if KINDS[kind][0] == severity)

    @property
    def errors(self) -> int:
        return self._severity_total(ERROR)

    @property
    def warnings(self) -> int:
        return self._severity_total(WARNING)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def kept(self, drop_warned: bool = False) -> list[Utterance]:
        """The good items, without those warned about when `drop_warned`."""
        if not drop_warned:
            return list(self.good)
        dropped = {item.id for item, _ in self.warned}
        return [u for u in self.good if u.id not in dropped]

    def summary(self) -> str:
        hours = sum(u.duration for u in self.good) / 3600
        lines = [
            f"checked {self.total} item(s): {len(self.good)} good ({hours:.2f} h), {len(self.bad)} rejected"
            + (f", {len(self.warned)} of the good with a warning" if self.warned else "")
        ]
        sections = ((ERROR, "rejected"), (WARNING, "kept, with a warning"), (NOTE, "kept, with a note"))
        for severity, title in sections:
            kinds = [k for k in KINDS if KINDS[k][0] == severity and self.counts[k]]
            if kinds:
                lines.append(f"{title}:")
            for kind in kinds:
                lines.append(f"  {kind:<22} {self.counts[kind]:>7}  ({KINDS[kind][1]})")
                lines.extend(f"      e.g. {example}" for example in self.examples[kind])
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "good": len(self.good),
            "rejected": len(self.bad),
            "warned": len(self.warned),
            "counts": dict(self.counts),
            "examples": self.examples,
        }


@dataclass(frozen=True)
class AudioFacts:
    duration: float  # seconds, from the decoded samples when decoded
    sample_rate: int
    channels: int


class AudioProblem(AudioError):
    """An audio file that fails validation; `kind` is one of KINDS."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def inspect_audio(path: str | Path, options: ValidationOptions = DEFAULT_OPTIONS) -> AudioFacts:
    """Facts about one audio file, or AudioProblem saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise AudioProblem("missing_audio", f"{path}: file not found")
    if path.stat().st_size == 0:
        raise AudioProblem("empty_audio", f"{path}: the file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioProblem("unreadable_audio", f"{path}: cannot read audio header ({err})") from err
    if info.frames == 0 or info.samplerate <= 0:
        raise AudioProblem("empty_audio", f"{path}: the file holds no samples")
    header_seconds = info.frames / info.samplerate
    _check_length(path, header_seconds, options)  # before decoding: never decode an hour-long file
    if not options.decode:
        return AudioFacts(round(header_seconds, 3), info.samplerate, info.channels)
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioProblem("unreadable_audio", f"{path}: cannot decode audio ({err})") from err
    if samples.shape[0] == 0:
        raise AudioProblem("empty_audio", f"{path}: the file holds no samples")
    seconds = samples.shape[0] / rate
    if seconds < 0.9 * header_seconds - 0.05:
        raise AudioProblem(
            "unreadable_audio",
            f"{path}: truncated: the header says {header_seconds:.2f} s, {seconds:.2f} s decode",
        )
    _check_length(path, seconds, options)
    if not np.all(np.isfinite(samples)):
        raise AudioProblem("unreadable_audio", f"{path}: audio holds NaN or inf samples")
    peak = float(np.max(np.abs(samples)))
    if peak < options.silence_peak:
        raise AudioProblem("silent_audio", f"{path}: silent (peak {peak:.1e} < {options.silence_peak:.0e})")
    return AudioFacts(round(seconds, 3), rate, samples.shape[1])


def _check_length(path: Path, seconds: float, options: ValidationOptions) -> None:
    if seconds > options.max_seconds:
        raise AudioProblem(
            "too_long",
            f"{path}: {seconds:.1f} s is longer than {options.max_seconds:.0f} s; segment it first",
        )


def _check_text(
    item: Utterance, options: ValidationOptions
) -> tuple[Utterance, Problem | None, list[Problem]]:
    """Language and transcript checks; returns the (possibly renamed) item, its error, its notes."""
    notes = []
    try:
        code = normalise_language(item.language)
    except UnknownLanguageError:
        return (
            item,
            Problem("unknown_language", item.id, f"language {item.language!r} is not a Whisper code"),
            notes,
        )
    if code != item.language:
        notes.append(Problem("language_renamed", item.id, f"{item.language!r} -> {code!r}"))
        item = replace(item, language=code)
    if options.languages is not None and code not in options.languages:
        return (
            item,
            Problem(
                "unsupported_language",
                item.id,
                unsupported_language_message(code, options.languages, options.model or "the model"),
            ),
            notes,
        )
    if not any(c.isalnum() for c in item.text):
        return item, Problem("empty_transcript", item.id, f"transcript {item.text!r} is empty"), notes
    mismatch = script_mismatch(item.text, code, options.min_script_share)
    if mismatch:
        return item, Problem("script_mismatch", item.id, f"{mismatch}: {item.text[:60]!r}"), notes
    return item, None, notes


def _apply_audio_facts(
    item: Utterance, facts: AudioFacts, options: ValidationOptions
) -> tuple[Utterance, Problem | None, list[Problem]]:
    notes = []
    if facts.channels > 1:
        if options.reject_multichannel:
            return item, Problem("multichannel_rejected", item.id, f"{facts.channels} channels"), notes
        notes.append(Problem("multichannel", item.id, f"{facts.channels} channels"))
    if facts.sample_rate != SAMPLE_RATE:
        notes.append(Problem("resampled", item.id, f"{facts.sample_rate} Hz"))
    if item.duration <= 0:
        notes.append(Problem("duration_filled", item.id, f"{facts.duration:.2f} s"))
        item = replace(item, duration=facts.duration)
    elif abs(item.duration - facts.duration) > 0.1:
        notes.append(
            Problem("duration_corrected", item.id, f"{item.duration:.2f} s -> {facts.duration:.2f} s")
        )
        item = replace(item, duration=facts.duration)
    return item, None, notes


def _inspect_or_problem(path: str, options: ValidationOptions) -> AudioFacts | AudioProblem:
    try:
        return inspect_audio(path, options)
    except AudioProblem as problem:
        return problem
    except Exception as err:  # noqa: BLE001 - one odd file (permissions, codec bug) must not stop a corpus
        return AudioProblem("unreadable_audio", f"{path}: {type(err).__name__}: {err}")


def validate_items(
    items: Iterable[Utterance],
    options: ValidationOptions = DEFAULT_OPTIONS,
    report: ValidationReport | None = None,
    progress: bool = True,
) -> ValidationReport:
    """Check every item; good ones (durations filled, codes normalised) land in `report.good`, in order."""
    report = report or ValidationReport()
    seen: dict[str, str] = {}  # id -> audio of its first item
    pending: list[Utterance] = []  # passed the cheap checks; their audio is inspected next
    for item in items:
        report.total += 1
        if item.id in seen:
            first = seen[item.id]
            report.reject(
                item,
                Problem(
                    "duplicate_id",
                    item.id,
                    f"id appears more than once (audio {first} kept, {item.audio} rejected); ids must be unique",
                ),
            )
            continue
        seen[item.id] = item.audio
        item, error, notes = _check_text(item, options)
        for note in notes:
            report.record(note)
        if error:
            report.reject(item, error)
        else:
            pending.append(item)

    # The bar counts every item, as the summary does: those settled by the cheap checks (and lines the
    # caller already rejected) are done before the first file opens.
    bar = tqdm(
        total=report.total,
        initial=report.total - len(pending),
        desc="checking",
        unit="utt",
        disable=not progress,
    )
    with bar, ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        results = pool.map(lambda u: _inspect_or_problem(u.audio, options), pending)
        for item, facts in zip(pending, results, strict=True):
            bar.update()
            if isinstance(facts, AudioProblem):
                report.reject(item, Problem(facts.kind, item.id, str(facts)))
                continue
            item, error, notes = _apply_audio_facts(item, facts, options)
            for note in notes:
                report.record(note)
            if error:
                report.reject(item, error)
            else:
                report.good.append(item)
    if options.rates is not None:
        flagged = implausible_rates(report.good, options.rates)
        for item in report.good:
            if item.id in flagged:
                report.warn(item, Problem("implausible_rate", item.id, flagged[item.id]))
    return report


def validate_manifest(
    path: str | Path, options: ValidationOptions = DEFAULT_OPTIONS, progress: bool = True
) -> ValidationReport:
    report = ValidationReport()

    def malformed(where: str, err: ManifestError) -> None:  # counted and reported; the rest goes on
        report.total += 1
        report.reject(None, Problem("malformed_line", where, str(err)))

    items = iter_manifest(path, on_error=malformed)
    return validate_items(items, options, report=report, progress=progress)
