"""What every importer shares: reading tables, mapping language codes, validating and writing.

An import writes `<out>/manifest.jsonl` (every good item, with its split) and `<out>/<split>.jsonl`
for train/dev/test, plus `<out>/import_report.json`. Items are validated before anything is
written and each file is replaced atomically, so a failed import leaves no partial manifest.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from transformers.models.whisper.tokenization_whisper import LANGUAGES

from dama_asr.atomic import atomic_write_text
from dama_asr.data.manifest import SPLITS, ManifestError, Utterance, write_manifest
from dama_asr.data.stats import hours_table
from dama_asr.data.validate import DEFAULT_OPTIONS, ValidationOptions, ValidationReport, validate_items
from dama_asr.languages import LARGE_V3_ONLY, UnknownLanguageError, nearest_language, normalise_language

Echo = Callable[[str], None]


def echo_stderr(message: str) -> None:
    print(message, file=sys.stderr)


# Corpus language tags whose first part is not Whisper's code for the same language.
_SPECIAL_CODES = {
    "cmn": "zh",  # Mandarin (FLEURS cmn_hans_cn)
    "zh-hk": "yue",  # Common Voice zh-HK is Cantonese
    "fil": "tl",  # Whisper calls Filipino/Tagalog "tl"
    "nb": "no",  # Norwegian Bokmål
    "jv": "jw",  # Whisper's Javanese code is the legacy "jw"
}


def whisper_code(tag: str) -> str | None:
    """Map a corpus language tag (cy, zh-CN, sv-SE, cmn_hans_cn, nb_no, Welsh) to Whisper's code, or None."""
    key = tag.strip().lower().replace("_", "-")
    if key in _SPECIAL_CODES:
        return _SPECIAL_CODES[key]
    try:
        return normalise_language(key)
    except UnknownLanguageError:
        pass
    base = key.split("-")[0]
    code = _SPECIAL_CODES.get(base, base)
    return code if code in LANGUAGES else None


def require_whisper_code(tag: str, corpus: str) -> str:
    code = whisper_code(tag)
    if code is None:
        raise UnknownLanguageError(
            f"{corpus} language {tag!r} is not one of Whisper's languages, so Whisper has no token for it; "
            f"pass --language CODE to label it as a related language. Whisper's codes: {', '.join(sorted(LANGUAGES))}"
        )
    return code


def read_table(
    path: Path, delimiter: str, header: bool = True, quoting: int = csv.QUOTE_MINIMAL
) -> Iterator[dict | list]:
    """Rows of a TSV/CSV file: dicts keyed by the header, or plain lists when there is none.

    Common Voice and FLEURS quote nothing (their sentences contain bare `"`), so they pass QUOTE_NONE.
    """
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        if not header:
            yield from (row for row in reader if row)
            return
        names = next(reader, None)
        if names is None:
            raise ManifestError(f"{path}: the file is empty; it needs a header line")
        names = [n.strip().lower() for n in names]
        for row in reader:
            if row:
                yield dict(zip(names, (v.strip() for v in row), strict=False))


def pick_column(
    names: Iterable[str], candidates: tuple[str, ...], what: str, path: Path, required: bool = True
) -> str | None:
    names = list(names)
    for candidate in candidates:
        if candidate in names:
            return candidate
    if required:
        raise ManifestError(
            f"{path}: no {what} column; name one of: {', '.join(candidates)} (found: {', '.join(names)})"
        )
    return None


@dataclass(frozen=True)
class ImportResult:
    manifest: Path
    split_manifests: dict[str, Path]
    report: ValidationReport

    @property
    def items(self) -> list[Utterance]:
        return self.report.good


def validate_for_import(
    items: Iterable[Utterance],
    report: ValidationReport | None = None,
    options: ValidationOptions = DEFAULT_OPTIONS,
    echo: Echo | None = echo_stderr,
) -> ValidationReport:
    """Validate; print the summary; raise when nothing usable is left (nothing gets written then)."""
    report = validate_items(items, options, report=report, progress=echo is not None)
    if echo:
        echo(report.summary())
    warn_large_v3_only(report.good, echo)
    if not report.good:
        raise ManifestError(
            f"no usable utterances out of {report.total}; nothing written (see the summary above)"
        )
    return report


def write_import(
    report: ValidationReport, out_dir: str | Path, echo: Echo | None = echo_stderr
) -> ImportResult:
    """Write the good items of a validated import into `out_dir`."""
    out_dir = Path(out_dir)
    items = report.good
    split_paths = {}
    for split in SPLITS:
        path = out_dir / f"{split}.jsonl"
        chosen = [u for u in items if u.split == split]
        if chosen:
            split_paths[split] = write_manifest(path, chosen)
        elif path.exists():
            path.unlink()  # stale from an earlier import with other splits
    atomic_write_text(
        out_dir / "import_report.json",
        json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
    )
    manifest = write_manifest(out_dir / "manifest.jsonl", items)
    if echo:
        echo(hours_table(items))
        echo(
            f"wrote {manifest} ({len(items)} utterances)"
            + "".join(f", {p.name}" for p in split_paths.values())
        )
    return ImportResult(manifest, split_paths, report)


def import_items(
    items: Iterable[Utterance],
    out_dir: str | Path,
    report: ValidationReport | None = None,
    options: ValidationOptions = DEFAULT_OPTIONS,
    echo: Echo | None = echo_stderr,
) -> ImportResult:
    return write_import(validate_for_import(items, report, options, echo), out_dir, echo)


# Characters kept in file names made from ids: letters, digits (any script), dot, dash, underscore.
_UNSAFE_CHARS = re.compile(r"[^\w.\-]")
_MAX_STEM_BYTES = 180  # file systems allow 255 bytes; room for a hash and a suffix


def safe_file_stem(item_id: str) -> str:
    """`item_id` made safe as a file name: path separators and other unsafe characters become `_`.

    Dots are kept (`spk1.001` stays `spk1.001`; the suffix is appended, never substituted). A leading
    dot would hide the file or climb out of the folder (`..`), so it becomes `_` too.
    """
    stem = _UNSAFE_CHARS.sub("_", item_id)
    stem = re.sub(r"^\.", "_", stem) or "_"
    if len(stem.encode("utf-8")) > _MAX_STEM_BYTES:
        stem = stem.encode("utf-8")[:_MAX_STEM_BYTES].decode("utf-8", errors="ignore")
    return stem


class FileNameClash(ManifestError):
    """Two items would be written to the same file."""


class AudioNamer:
    """Distinct, safe file names for the items of one import, so no item's audio overwrites another's.

    An id keeps its sanitised form where that is free; when two ids sanitise to the same name (`a/b`
    and `a_b`, or `A` and `a`, one file on macOS and Windows), the later one gets a short hash of its
    id appended. Deterministic for a given order of items.
    """

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}  # case-folded file name -> the id it was given to

    def file_name(self, item_id: str, suffix: str) -> str:
        stem = safe_file_stem(item_id)
        suffix = _UNSAFE_CHARS.sub("_", suffix)
        digest = hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:10]
        owner = ""
        for candidate in (stem + suffix, f"{stem}-{digest}{suffix}"):
            owner = self._owners.setdefault(candidate.casefold(), item_id)
            if owner == item_id:
                return candidate
        raise FileNameClash(
            f"items {owner!r} and {item_id!r} would both be written to {stem + suffix}; "
            "give one of them another id"
        )


def write_new_file(path: Path, data: bytes) -> Path:
    """Write `data` to a file that must not exist yet: a clash is an error, never a silent overwrite."""
    try:
        with open(path, "xb") as f:
            f.write(data)
    except FileExistsError:
        raise FileNameClash(f"{path} already exists; two items map to the same file") from None
    return path


def warn_large_v3_only(items: Iterable[Utterance], echo: Echo | None) -> None:
    """Say at import time, not at training time, when a language needs whisper-large-v3."""
    if echo is None:
        return
    counts = Counter(u.language for u in items if u.language in LARGE_V3_ONLY)
    for code, n in sorted(counts.items()):
        older = nearest_language(code)
        relabel = f", or label them {older!r} to train an earlier model" if older else ""
        echo(
            f"warning: {n} utterance(s) are labelled {code!r}, which only whisper-large-v3 has a "
            f"token for: train them with --model openai/whisper-large-v3{relabel}"
        )


def relocate(items: list[Utterance], old_root: Path, new_root: Path) -> list[Utterance]:
    """Point audio paths under `old_root` (a scratch folder that was renamed) at `new_root`."""
    out = []
    for item in items:
        try:
            rel = Path(item.audio).relative_to(old_root)
            item = replace(item, audio=str(new_root / rel))
        except ValueError:
            pass
        out.append(item)
    return out
