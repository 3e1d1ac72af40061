"""The one base class of every error a user can fix.

The CLI prints a `DamaError` as a single line (`error: <message>`) and exits with code 2; anything
else is a bug and keeps its traceback. So a message must name the item (file, line, cell, key) and
say what to do about it. Library modules define their own subclasses (`ManifestError`, ...) that also
inherit the builtin they replace (`ValueError`, `RuntimeError`), so older `except` clauses still work.
"""

from __future__ import annotations

import errno


class DamaError(Exception):
    """An error whose message is the whole story: printed without a traceback, exit code 2."""


class UserError(DamaError):
    """A user error raised by a command itself (bad flag combinations and the like)."""


class DiskFullError(DamaError, OSError):
    """Not enough free space to write something; nothing half-written is left behind."""


def describe_os_error(err: OSError) -> str | None:
    """A one-line explanation for the OS errors a user can act on, or None for the others."""
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    if err.errno == errno.ENOSPC:
        return f"no space left on the device{where}; free some space (`dama cache prune`) and rerun"
    if err.errno == errno.EDQUOT:
        return f"disk quota exceeded{where}; free some space (`dama cache prune`) and rerun"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}; choose a folder you can write to"
    if err.errno == errno.EROFS:
        return f"read-only file system{where}; choose a folder you can write to"
    if isinstance(err, FileNotFoundError):
        return f"file not found{where}"
    return None
