"""Manifests: one JSON object per line describing one utterance.

A manifest is the contract between importers, training and evaluation. Relative audio paths are
resolved against the manifest's own folder, so a corpus folder can be moved as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from dama_asr.atomic import atomic_write_text
from dama_asr.errors import DamaError

SPLITS = ("train", "dev", "test")


class ManifestError(DamaError, ValueError):
    pass


@dataclass(frozen=True)
class Utterance:
    """One transcribed recording.

    id: unique within the manifest.  audio: path to a wav/flac/mp3/ogg file.  text: the transcript.
    language: Whisper's code (`cy`, `lt`, ...).  duration: seconds (0 when unknown).
    speaker: speaker or voice id ('' when unknown).  source: corpus name.  split: train/dev/test or ''.
    """

    id: str
    audio: str
    text: str
    language: str
    duration: float = 0.0
    speaker: str = ""
    source: str = ""
    split: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        record = {k: v for k, v in asdict(self).items() if k != "extra" or v}
        return json.dumps(record, ensure_ascii=False, allow_nan=False)


_FIELDS = {f.name for f in fields(Utterance)}
_REQUIRED = ("audio", "text", "language")


def utterance_from_dict(record: dict, where: str, base_dir: Path | None = None) -> Utterance:
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise ManifestError(
            f"{where}: missing field(s) {', '.join(missing)}; each line needs audio, text, language"
        )
    known = {k: v for k, v in record.items() if k in _FIELDS and k != "extra"}
    extra = {**record.get("extra", {}), **{k: v for k, v in record.items() if k not in _FIELDS}}
    audio = Path(str(known["audio"]))
    if base_dir is not None and not audio.is_absolute():
        audio = base_dir / audio
    known["audio"] = str(audio)
    known.setdefault("id", audio.stem)
    known["text"] = str(known["text"])
    known["duration"] = float(known.get("duration") or 0.0)
    return Utterance(**known, extra=extra)


def _parse_line(line: str, where: str, base_dir: Path) -> Utterance:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg})") from err
    if not isinstance(record, dict):
        raise ManifestError(f"{where}: each line must be a JSON object")
    try:
        return utterance_from_dict(record, where, base_dir=base_dir)
    except ManifestError:
        raise
    except (ValueError, TypeError) as err:  # e.g. "duration": "long", "extra": 3
        raise ManifestError(f"{where}: a field has the wrong type ({err})") from err


def iter_manifest(
    path: str | Path, on_error: Callable[[str, ManifestError], None] | None = None
) -> Iterator[Utterance]:
    """The utterances of a JSONL manifest. A malformed line raises ManifestError naming it, or, with
    `on_error`, is handed to on_error(where, error) and skipped (validation counts them and goes on)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}" if on_error is None else f"{path.name}:{line_no}"
            try:
                yield _parse_line(line, where, path.parent)
            except ManifestError as err:
                if on_error is None:
                    raise
                on_error(where, err)


def read_manifest(path: str | Path) -> list[Utterance]:
    items = list(iter_manifest(path))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ManifestError(f"{path}: duplicate id {item.id!r}; ids must be unique")
        seen.add(item.id)
    return items


def stored_audio_path(audio: str, folder: Path, relative: bool = True) -> str:
    """How a manifest in `folder` names `audio` (a path as this process opens it: absolute, or relative
    to the current folder).

    Relative to `folder` when the file is under it (so the corpus folder can move as a whole), else
    absolute. Never relative to the current folder: the reader resolves relative paths against the
    manifest's folder, so such a path would be lost as soon as the manifest is read from elsewhere.
    """
    path = Path(audio)
    if relative:
        try:
            return str(path.resolve().relative_to(folder.resolve()))
        except ValueError:
            pass
    return str(path) if path.is_absolute() else str(path.resolve())


def write_manifest(path: str | Path, items: Iterable[Utterance], relative: bool = True) -> Path:
    """Write atomically; audio under the manifest's folder is stored relative to it, the rest absolute
    (`relative=False`: every path absolute)."""
    path = Path(path)
    lines = []
    for item in items:
        stored = stored_audio_path(item.audio, path.parent, relative)
        if stored != item.audio:
            item = Utterance(**{**asdict(item), "audio": stored})
        lines.append(item.to_json())
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path
