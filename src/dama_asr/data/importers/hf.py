"""Saved Hugging Face datasets (`Dataset.save_to_disk`) -> audio files + manifest. Needs `datasets`.

The audio column is read undecoded (`Audio(decode=False)`): the original encoded bytes are written
as they are (no re-encoding, no torchcodec needed). Plain `{"array", "sampling_rate"}` values are
written as 16-bit wav. Split names validation/valid become dev. Each file is named after its item's
id with the suffix appended (`spk1.001` -> `spk1.001.wav`), unsafe characters replaced, and a short
hash added where two ids would still share a name (`common.AudioNamer`); nothing is overwritten.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from dama_asr.atomic import atomic_dir
from dama_asr.data.importers.common import (
    AudioNamer,
    Echo,
    FileNameClash,
    ImportResult,
    echo_stderr,
    relocate,
    validate_for_import,
    whisper_code,
    write_import,
    write_new_file,
)
from dama_asr.data.manifest import ManifestError, Utterance
from dama_asr.data.validate import DEFAULT_OPTIONS, Problem, ValidationOptions, ValidationReport
from dama_asr.languages import normalise_language

SOURCE = "huggingface"
TEXT_COLUMNS = ("text", "sentence", "raw_transcription", "transcription", "transcript", "normalized_text")
LANGUAGE_COLUMNS = ("language", "locale", "lang")
SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")
ID_COLUMNS = ("id", "utt_id", "segment_id")
_SPLIT_NAMES = {"train": "train", "validation": "dev", "valid": "dev", "dev": "dev", "test": "test"}


def _load_from_disk(path: Path):
    try:
        import datasets
    except ImportError as err:
        raise ManifestError(
            "reading saved Hugging Face datasets needs the `datasets` package: pip install datasets"
        ) from err
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise ManifestError(f"{path}: not a dataset saved with save_to_disk ({err})") from err
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"": loaded}
    return datasets, parts


def write_audio_value(value, folder: Path, item_id: str, namer: AudioNamer) -> Path:
    """Write one audio cell into `folder` under a name `namer` gives `item_id` (or return the file it names).

    The suffix is appended to the id, never substituted for its last part: `spk1.001` and `spk1.002`
    are two files, not one `spk1.wav` written twice.
    """
    if isinstance(value, dict) and value.get("bytes"):
        suffix = Path(value.get("path") or "").suffix or ".wav"
        return write_new_file(folder / namer.file_name(item_id, suffix), value["bytes"])
    if isinstance(value, dict) and value.get("array") is not None:
        samples = np.asarray(value["array"], dtype=np.float32)  # (T,) or (T, C)
        buffer = io.BytesIO()
        sf.write(buffer, np.clip(samples, -1, 1), int(value["sampling_rate"]), format="WAV", subtype="PCM_16")
        return write_new_file(folder / namer.file_name(item_id, ".wav"), buffer.getvalue())
    if isinstance(value, dict) and value.get("path") and Path(value["path"]).is_file():
        return Path(value["path"])  # already a file on disk; the manifest points at it
    if isinstance(value, str):
        return Path(value)
    raise ManifestError(
        f"row {item_id}: its audio cell holds neither bytes, an array nor an existing path "
        f"({type(value).__name__}); check the dataset's audio column (--audio-column)"
    )


def items_from_rows(
    rows: Iterable[dict],
    split: str,
    audio_dir: Path,
    report: ValidationReport,
    audio_column: str = "audio",
    text_column: str | None = None,
    language: str | None = None,
    language_column: str | None = None,
    speaker_column: str | None = None,
    seen: dict[str, str] | None = None,
    namer: AudioNamer | None = None,
) -> Iterator[Utterance]:
    """Turn dataset rows into utterances, writing their audio under `audio_dir/<split>/`.

    `seen` (id -> the row that used it) and `namer` span every split of one import. A repeated id is
    rejected (as `duplicate_id`, naming both rows) before its audio is written, so the kept item's
    audio is its own.
    """
    audio_dir = audio_dir / (_SPLIT_NAMES.get(split, split) or "all")
    audio_dir.mkdir(parents=True, exist_ok=True)
    seen = {} if seen is None else seen
    namer = namer or AudioNamer()
    columns: dict[str, str | None] = {}
    for index, row in enumerate(rows):
        if not columns:
            columns = _resolve_columns(
                row.keys(), audio_column, text_column, language_column, speaker_column, language
            )
        item_id = str(row.get(columns["id"] or "", "") or f"{split or 'all'}_{index:07d}")
        where = f"{split}[{index}]"
        if item_id in seen:
            report.total += 1
            message = f"id also used by row {seen[item_id]}; this row ({where}) is not imported"
            report.reject(None, Problem("duplicate_id", item_id, message))
            continue
        seen[item_id] = where
        try:
            audio = write_audio_value(row[audio_column], audio_dir, item_id, namer)
        except FileNameClash:
            raise  # two items, one file: refuse the import rather than keep mismatched audio
        except (ValueError, TypeError, KeyError, sf.LibsndfileError) as err:
            report.total += 1
            report.reject(None, Problem("malformed_line", where, str(err)))
            continue
        tag = str(row.get(columns["language"] or "", "") or language or "")
        yield Utterance(
            id=item_id,
            audio=str(audio),
            text=str(row.get(columns["text"] or "", "") or ""),
            language=whisper_code(tag) or tag,
            speaker=str(row.get(columns["speaker"] or "", "") or ""),
            source=SOURCE,
            split=_SPLIT_NAMES.get(split, ""),
            extra={} if split in _SPLIT_NAMES or not split else {"hf_split": split},
        )


def _resolve_columns(
    names, audio_column, text_column, language_column, speaker_column, language
) -> dict[str, str | None]:
    names = list(names)

    def first(explicit: str | None, candidates: Sequence[str]) -> str | None:
        if explicit is not None:
            if explicit not in names:
                raise ManifestError(f"dataset has no column {explicit!r}; its columns: {', '.join(names)}")
            return explicit
        return next((c for c in candidates if c in names), None)

    columns = {
        "audio": first(audio_column, ()),
        "text": first(text_column, TEXT_COLUMNS),
        "language": first(language_column, LANGUAGE_COLUMNS if language is None else ()),
        "speaker": first(speaker_column, SPEAKER_COLUMNS),
        "id": first(None, ID_COLUMNS),
    }
    if columns["text"] is None:
        raise ManifestError(f"no transcript column; pass --text-column (columns: {', '.join(names)})")
    if columns["language"] is None and language is None:
        raise ManifestError(
            f"no language column; pass --language CODE or --language-column (columns: {', '.join(names)})"
        )
    return columns


def import_hf(
    path: str | Path,
    out_dir: str | Path,
    audio_column: str = "audio",
    text_column: str | None = None,
    language: str | None = None,
    language_column: str | None = None,
    speaker_column: str | None = None,
    splits: Sequence[str] | None = None,
    options: ValidationOptions = DEFAULT_OPTIONS,
    echo: Echo | None = echo_stderr,
) -> ImportResult:
    """Import a saved Dataset or DatasetDict; audio lands in `out_dir/audio/<split>/`."""
    path, out_dir = Path(path), Path(out_dir)
    if language is not None:
        language = normalise_language(language)
    datasets, parts = _load_from_disk(path)
    if splits:
        unknown = [s for s in splits if s not in parts]
        if unknown:
            raise ManifestError(f"{path}: no split(s) {', '.join(unknown)}; it has: {', '.join(parts)}")
        parts = {s: parts[s] for s in splits}
    report = ValidationReport()
    seen: dict[str, str] = {}
    namer = AudioNamer()
    final_audio = out_dir / "audio"
    # Audio is written to a scratch folder renamed into place only when the import succeeds.
    with atomic_dir(final_audio) as scratch:
        items: list[Utterance] = []
        for split, part in parts.items():
            if audio_column not in part.column_names:
                raise ManifestError(
                    f"{path}: no audio column {audio_column!r}; columns: {', '.join(part.column_names)}"
                )
            if isinstance(part.features[audio_column], datasets.Audio):
                part = part.cast_column(audio_column, datasets.Audio(decode=False))
            bar = tqdm(
                part, desc=f"writing {split or 'all'} audio", unit="utt", leave=False, disable=echo is None
            )
            rows = items_from_rows(
                bar,
                split,
                scratch,
                report,
                audio_column,
                text_column,
                language,
                language_column,
                speaker_column,
                seen,
                namer,
            )
            items.extend(rows)
        report = validate_for_import(items, report, options, echo)
    report.good[:] = relocate(report.good, scratch, final_audio)
    return write_import(report, out_dir, echo)
