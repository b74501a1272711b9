"""Writing files atomically, and the plain Python values that JSON files and genotypes hold."""

from __future__ import annotations

import errno
import json
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is named as :func:`write_atomic`'s temporary files are (a writer killed
    before its rename leaves one behind)."""
    return bool(_TEMPORARY.match(path.name))


def temporary_path(path: Path) -> Path:
    """A unique temporary name beside ``path`` (one :func:`is_temporary` recognises)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` so that a reader sees the old file or the new one, never half of one.

    ``write`` fills a temporary file of a unique name in the same folder (so that concurrent
    writers never share one), which is flushed to disk and then renamed over ``path``; the folder
    is then synced too, so that the rename itself survives a power cut. If anything fails, the
    temporary file is removed and the error propagates: as the ``OSError`` it is when a failed
    write lies under a serializer's own error (``torch.save`` turns a full disk into a
    RuntimeError about its zip file).
    """
    tmp = temporary_path(path)
    try:
        # not tempfile: its files are private (0600), and figures and exports are shared
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        cause = _os_error_under(exc)
        if cause is not None and cause is not exc:
            raise OSError(cause.errno, cause.strerror, str(path)) from exc
        raise
    fsync_directory(path.parent)


def _os_error_under(exc: BaseException) -> OSError | None:
    """The first ``OSError`` in ``exc``'s chain of causes and contexts (``exc`` itself included)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


_NO_DIRECTORY_SYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES}
"""What ``fsync`` of a folder fails with where a platform or filesystem does not support it."""


def fsync_directory(folder: Path) -> None:
    """Sync ``folder``'s entries to disk (after a rename into it), where the platform allows it
    (not on Windows, nor on some network filesystems); a real I/O error propagates."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; nothing to sync there
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIRECTORY_SYNC:
            raise
    finally:
        os.close(fd)


def builtin(value: Any) -> Any:
    """A numpy (or torch) scalar as the Python scalar it holds; any other value unchanged."""
    return value.item() if hasattr(value, "item") else value


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically: a reader sees the old file or the new one."""
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def write_json(path: Path, data: Any) -> None:
    """Atomic, indented JSON."""
    write_text(path, json.dumps(data, indent=2, default=json_default) + "\n")


def json_default(value: Any) -> Any:
    """``json.dumps``' ``default``: numpy scalars as Python ones, paths as strings."""
    if isinstance(value, Path):
        return str(value)
    plain = builtin(value)
    if plain is value:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")  # protocol: json.dumps
    return plain
