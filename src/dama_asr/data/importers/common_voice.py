"""Common Voice release folders -> manifest.

Layout: `<locale>/clips/*.mp3` next to `train.tsv`, `dev.tsv`, `test.tsv`, `validated.tsv` (and
`other.tsv`, `invalidated.tsv`). The TSVs have a header (client_id, path, sentence, up_votes,
down_votes, age, gender, accents, locale, segment; newer releases add sentence_id, sentence_domain,
variant, and rename nothing we need), so columns are read by name. `validated.tsv` repeats the clips of
train/dev/test: a clip is imported once, under the first TSV that lists it.
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
    pick_column,
    read_table,
    require_whisper_code,
)
from dama_asr.data.manifest import SPLITS, ManifestError, Utterance
from dama_asr.data.validate import DEFAULT_OPTIONS, Problem, ValidationOptions, ValidationReport

SOURCE = "common_voice"
DEFAULT_SPLITS = ("train", "dev", "test")
_EXTRA_COLUMNS = (
    "gender",
    "age",
    "accents",
    "variant",
    "sentence_id",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "segment",
    "locale",
)


def locale_dirs(root: Path) -> list[Path]:
    """The locale folders of a release: `root` itself when it holds `clips/`, else its children that do."""
    if (root / "clips").is_dir():
        return [root]
    found = sorted(d for d in root.iterdir() if (d / "clips").is_dir()) if root.is_dir() else []
    if not found:
        raise ManifestError(f"{root}: not a Common Voice folder (no clips/ in it or in its sub-folders)")
    return found


def _locale_of(folder: Path, tsv: Path) -> str:
    first = next(iter(read_table(tsv, "\t", quoting=csv.QUOTE_NONE)), {})
    return first.get("locale") or folder.name


def iter_common_voice(
    folder: Path, splits: Sequence[str], language: str | None, seen: set[str], report: ValidationReport
) -> Iterator[Utterance]:
    """Utterances of one locale folder; `seen` holds clip names already imported (validated.tsv repeats)."""
    tsvs = {split: folder / f"{split}.tsv" for split in splits}
    missing = [p.name for p in tsvs.values() if not p.is_file()]
    if missing:
        present = ", ".join(sorted(p.stem for p in folder.glob("*.tsv"))) or "none"
        raise ManifestError(f"{folder}: no {', '.join(missing)}; the splits present are: {present}")
    code = require_whisper_code(language or _locale_of(folder, tsvs[splits[0]]), "Common Voice")
    for split, tsv in tsvs.items():
        for line_no, row in enumerate(read_table(tsv, "\t", quoting=csv.QUOTE_NONE), 2):
            if line_no == 2:
                pick_column(row, ("path",), "clip path", tsv)
                pick_column(row, ("sentence",), "sentence", tsv)
            if not row.get("path"):
                report.total += 1
                report.reject(None, Problem("malformed_line", f"{tsv.name}:{line_no}", "no clip path"))
                continue
            clip = row["path"] if Path(row["path"]).suffix else row["path"] + ".mp3"  # very old releases
            if clip in seen:
                continue
            seen.add(clip)
            yield Utterance(
                id=Path(clip).stem,
                audio=str(folder / "clips" / clip),
                text=row.get("sentence", ""),
                language=code,
                speaker=row.get("client_id", ""),
                source=SOURCE,
                split=split if split in SPLITS else "",
                extra={k: row[k] for k in _EXTRA_COLUMNS if row.get(k)}
                | ({} if split in SPLITS else {"tsv": split}),
            )


def import_common_voice(
    root: str | Path,
    out_dir: str | Path,
    splits: Sequence[str] = DEFAULT_SPLITS,
    language: str | None = None,
    options: ValidationOptions = DEFAULT_OPTIONS,
    echo: Echo | None = echo_stderr,
) -> ImportResult:
    """Import one locale folder (or every locale folder under a release root) into `out_dir`.

    `splits` names TSVs: train/dev/test keep their split; any other (validated, other) is imported
    with an empty split for `dama data split` to assign. `language` overrides the locale's mapping.
    """
    root = Path(root)
    seen: set[str] = set()
    report = ValidationReport()
    items: list[Utterance] = []
    for folder in locale_dirs(root):
        items.extend(iter_common_voice(folder, list(splits), language, seen, report))
    return import_items(items, out_dir, report, options, echo)
