"""FLEURS folders -> manifest.

Layout: `<root>/<lang>/audio/<split>/*.wav` with `<root>/<lang>/<split>.tsv`, where `<lang>` is a
FLEURS tag (`cy_gb`, `lt_lt`, `cmn_hans_cn`). The TSVs have no header; columns are: sentence id,
file name, raw transcription, normalised transcription, characters, number of samples, gender.
The raw transcription is the text (casing and punctuation are part of what Whisper predicts).
Several speakers read each sentence, so the sentence id is kept for sentence-disjoint splits.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from dama_asr.data.importers.common import (
    Echo,
    ImportResult,
    echo_stderr,
    import_items,
    read_table,
    require_whisper_code,
    whisper_code,
)
from dama_asr.data.manifest import ManifestError, Utterance
from dama_asr.data.validate import DEFAULT_OPTIONS, Problem, ValidationOptions, ValidationReport

SOURCE = "fleurs"
SPLITS = ("train", "dev", "test")
FLEURS_SAMPLE_RATE = 16_000


def language_dirs(root: Path, languages: Sequence[str] | None = None) -> dict[Path, str]:
    """FLEURS language folders under `root` (or `root` itself) -> Whisper code, filtered by `languages`.

    `languages` may hold Whisper codes (`zh`) or FLEURS tags (`cmn_hans_cn`).
    """
    if (root / "audio").is_dir():
        candidates = [root]
    else:
        candidates = sorted(d for d in root.iterdir() if (d / "audio").is_dir()) if root.is_dir() else []
    if not candidates:
        raise ManifestError(f"{root}: not a FLEURS folder (no <lang>/audio/ under it)")
    if not languages:
        return {d: require_whisper_code(d.name, "FLEURS") for d in candidates}
    chosen: dict[Path, str] = {}
    for wanted in languages:
        matches = [d for d in candidates if d.name == wanted or whisper_code(d.name) == whisper_code(wanted)]
        if not matches:
            available = ", ".join(
                f"{d.name} ({whisper_code(d.name) or 'not in Whisper'})" for d in candidates
            )
            raise ManifestError(f"{root}: no FLEURS folder for language {wanted!r}; available: {available}")
        for d in matches:
            chosen[d] = require_whisper_code(d.name, "FLEURS")
    return chosen


def iter_fleurs(
    folder: Path, code: str, splits: Sequence[str], report: ValidationReport
) -> Iterator[Utterance]:
    for split in splits:
        tsv = folder / f"{split}.tsv"
        for line_no, row in enumerate(read_table(tsv, "\t", header=False, quoting=csv.QUOTE_NONE), 1):
            if len(row) < 3 or not row[1].strip():
                report.total += 1
                report.reject(
                    None,
                    Problem(
                        "malformed_line",
                        f"{folder.name}/{tsv.name}:{line_no}",
                        f"{len(row)} column(s); FLEURS rows have 7",
                    ),
                )
                continue
            file_name = row[1].strip()
            extra = {"sentence_id": row[0].strip()}
            if len(row) > 6 and row[6].strip():
                extra["gender"] = row[6].strip()
            try:
                duration = int(row[5]) / FLEURS_SAMPLE_RATE  # checked against the audio by validation
            except (IndexError, ValueError):
                duration = 0.0
            yield Utterance(
                id=f"{folder.name}_{Path(file_name).stem}",
                audio=str(folder / "audio" / split / file_name),
                text=row[2].strip(),
                language=code,
                duration=duration,
                source=SOURCE,
                split=split,
                extra=extra,
            )


def import_fleurs(
    root: str | Path,
    out_dir: str | Path,
    languages: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    options: ValidationOptions = DEFAULT_OPTIONS,
    echo: Echo | None = echo_stderr,
) -> ImportResult:
    """Import FLEURS language folders (all found, or `languages`) into one manifest in `out_dir`.

    `splits` defaults to every one of train/dev/test that has a TSV; a named split must exist.
    """
    root = Path(root)
    report = ValidationReport()
    items: list[Utterance] = []
    for folder, code in language_dirs(root, languages).items():
        present = [s for s in SPLITS if (folder / f"{s}.tsv").is_file()]
        wanted = list(splits) if splits else present
        missing = [s for s in wanted if s not in present]
        if missing or not wanted:
            raise ManifestError(
                f"{folder}: no {', '.join(f'{s}.tsv' for s in missing) or 'train/dev/test TSV'}; present: {', '.join(present) or 'none'}"
            )
        items.extend(iter_fleurs(folder, code, wanted, report))
    return import_items(items, out_dir, report, options, echo)
