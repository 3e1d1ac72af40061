"""A folder of audio files plus a TSV/CSV of transcripts -> manifest.

The table needs a header naming an audio column (file, path, audio, filename, file_name, wav) and a
text column (text, transcript, transcription, sentence); optional columns: id, language, speaker,
split. Audio paths are relative to the audio folder. A `language` argument labels rows that have no
language of their own.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from dama_asr.data.importers.common import (
    Echo,
    ImportResult,
    echo_stderr,
    import_items,
    pick_column,
    read_table,
    whisper_code,
)
from dama_asr.data.manifest import SPLITS, ManifestError, Utterance
from dama_asr.data.validate import DEFAULT_OPTIONS, Problem, ValidationOptions, ValidationReport
from dama_asr.languages import normalise_language

SOURCE = "folder"
AUDIO_COLUMNS = ("file", "path", "audio", "filename", "file_name", "wav")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence")
LANGUAGE_COLUMNS = ("language", "lang", "locale")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id")


def _delimiter(path: Path) -> tuple[str, int]:
    """Tab for .tsv/.tab (no quoting, as in Common Voice), comma for .csv, sniffed otherwise."""
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return "\t", csv.QUOTE_NONE
    if suffix == ".csv":
        return ",", csv.QUOTE_MINIMAL
    head = path.read_text(encoding="utf-8-sig")[:4096]
    return ("\t", csv.QUOTE_NONE) if head.count("\t") > head.count(",") else (",", csv.QUOTE_MINIMAL)


def _item_id(audio_dir: Path, audio: Path) -> str:
    """The path below the audio folder without extension, '/' -> '_': unique where stems collide.

    Only a suffix with a letter is an extension: `spk1.001` (no extension) keeps its `.001`, or it
    and `spk1.002` would share the id `spk1`.
    """
    try:
        rel = audio.relative_to(audio_dir)
    except ValueError:
        rel = Path(audio.name)
    if any(c.isalpha() for c in rel.suffix):
        rel = rel.with_suffix("")
    return rel.as_posix().replace("/", "_")


def iter_folder(
    audio_dir: Path, transcripts: Path, language: str | None, report: ValidationReport
) -> Iterator[Utterance]:
    delimiter, quoting = _delimiter(transcripts)
    columns: dict[str, str | None] = {}
    for line_no, row in enumerate(read_table(transcripts, delimiter, quoting=quoting), 2):
        if not columns:
            columns = {
                "audio": pick_column(row, AUDIO_COLUMNS, "audio file", transcripts),
                "text": pick_column(row, TEXT_COLUMNS, "transcript", transcripts),
                "language": pick_column(row, LANGUAGE_COLUMNS, "language", transcripts, required=False),
                "speaker": pick_column(row, SPEAKER_COLUMNS, "speaker", transcripts, required=False),
            }
            if columns["language"] is None and language is None:
                raise ManifestError(f"{transcripts}: no language column; pass --language CODE for all rows")
        name = row.get(columns["audio"] or "", "")
        if not name:
            report.total += 1
            report.reject(
                None, Problem("malformed_line", f"{transcripts.name}:{line_no}", "no audio file named")
            )
            continue
        audio = audio_dir / name  # an absolute name stays absolute
        tag = row.get(columns["language"] or "", "") or language or ""
        split = row.get("split", "")
        yield Utterance(
            id=row.get("id") or _item_id(audio_dir, audio),
            audio=str(audio),
            text=row.get(columns["text"] or "", ""),
            language=whisper_code(tag) or tag,  # unknown tags stay, for validation to report
            speaker=row.get(columns["speaker"] or "", ""),
            source=SOURCE,
            split=split if split in SPLITS else "",
        )


def import_folder(
    audio_dir: str | Path,
    transcripts: str | Path,
    out_dir: str | Path,
    language: str | None = None,
    options: ValidationOptions = DEFAULT_OPTIONS,
    echo: Echo | None = echo_stderr,
) -> ImportResult:
    audio_dir, transcripts = Path(audio_dir), Path(transcripts)
    if not audio_dir.is_dir():
        raise ManifestError(f"{audio_dir}: not a folder")
    if not transcripts.is_file():
        raise ManifestError(f"{transcripts}: transcripts file not found")
    if language is not None:
        language = normalise_language(language)  # a typo fails here, not as N unknown-language items
    report = ValidationReport()
    items = list(iter_folder(audio_dir, transcripts, language, report))
    return import_items(items, out_dir, report, options, echo)
