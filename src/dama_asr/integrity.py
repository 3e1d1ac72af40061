"""Checksum manifests: the size and sha256 of every file in a folder, written last, verified on load.

A folder written through `dama_asr.atomic.atomic_dir` is complete or absent when it appears; the
manifest catches what happens to it afterwards (a truncated copy, a partial download, a file edited
by hand). The manifest is plain JSON next to the files it describes:

    {"format": "<kind of folder>", "files": {"<relative path>": {"bytes": N, "sha256": "<hex>"}}}

Files that are not listed (a README added later) are not checked; a listed file that is missing, of
another size or of another digest is an error naming it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dama_asr.atomic import atomic_write_text
from dama_asr.errors import DamaError

_BLOCK = 1 << 20


class IntegrityError(DamaError, ValueError):
    """A file that does not match its folder's checksum manifest, or a manifest that cannot be read."""


def file_digest(path: str | Path) -> str:
    """The sha256 of a file, hex, read in 1 MiB blocks (a multi-GB model never sits in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def describe_files(folder: str | Path, exclude: tuple[str, ...] = ()) -> dict[str, dict]:
    """{relative posix path: {"bytes", "sha256"}} for every file under `folder` except `exclude`."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name not in exclude:
            files[name] = {"bytes": path.stat().st_size, "sha256": file_digest(path)}
    return files


def write_manifest(folder: str | Path, name: str, format: str) -> Path:
    """Describe every other file in `folder` in `folder/name`; call it after the last file is written."""
    folder = Path(folder)
    manifest = {"format": format, "files": describe_files(folder, exclude=(name,))}
    atomic_write_text(folder / name, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return folder / name


def read_manifest(
    folder: str | Path, name: str, format: str, error: type[DamaError] = IntegrityError
) -> dict[str, dict] | None:
    """The manifest's file records, None when the folder has no manifest, `error` when it is unreadable."""
    path = Path(folder) / name
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: not valid JSON ({err}); the folder was damaged after it was written") from None
    if not isinstance(manifest, dict) or manifest.get("format") != format:
        raise error(f"{path}: not a {format} checksum manifest")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise error(f"{path}: lists no files")
    for file_name, record in files.items():
        if not (isinstance(record, dict) and isinstance(record.get("bytes"), int) and record.get("sha256")):
            raise error(f"{path}: the entry for {file_name!r} has no bytes/sha256")
    return files


def verify_files(
    folder: str | Path, files: dict[str, dict], error: type[DamaError] = IntegrityError, fix: str = ""
) -> None:
    """Raise `error` naming the first listed file that is missing, of another size or another digest.

    `fix` ends each message: what the user should do (re-export, retrain, resume from an earlier one).
    """
    folder = Path(folder)
    tail = f"; {fix}" if fix else ""
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise error(f"{folder}: {name} is missing{tail}")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise error(
                f"{folder}: {name} is {size} bytes, expected {expected['bytes']} (truncated or replaced){tail}"
            )
        if file_digest(path) != expected["sha256"]:
            raise error(f"{folder}: {name} does not match its sha256 checksum (corrupt){tail}")


def verify_manifest(
    folder: str | Path, name: str, format: str, error: type[DamaError] = IntegrityError, fix: str = ""
) -> bool:
    """Verify `folder` against its manifest; False when it has none (written before manifests existed)."""
    files = read_manifest(folder, name, format, error)
    if files is None:
        return False
    verify_files(folder, files, error, fix)
    return True


def read_json_object(path: str | Path, error: type[DamaError] = IntegrityError, fix: str = "") -> dict:
    """A JSON object from `path`, or `error` naming the file (missing, not JSON, not an object)."""
    path, tail = Path(path), f"; {fix}" if fix else ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: missing{tail}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: not valid JSON ({err}){tail}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: holds {type(data).__name__}, not a JSON object{tail}")
    return data
