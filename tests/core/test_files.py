"""Tests of evoband.core._files: atomic writes, JSON and plain Python values."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from evoband.core._files import builtin, write_atomic, write_json


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    write_atomic(path, lambda fh: fh.write(b"old"))
    temporary: list[str] = []

    def half(fh: IO[bytes]) -> None:
        temporary.append(fh.name)
        fh.write(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    assert Path(temporary[0]).parent == tmp_path  # written beside the target, then renamed
    write_atomic(path, lambda fh: fh.write(b"new"))
    assert path.read_bytes() == b"new"
    plain_file = tmp_path / "plain.txt"
    plain_file.write_bytes(b"")  # the permissions any file gets here (not private like tempfile's)
    assert path.stat().st_mode & 0o777 == plain_file.stat().st_mode & 0o777


def test_builtin_turns_numpy_scalars_into_python_ones() -> None:
    values = [np.int64(3), np.float32(0.5), np.bool_(True), np.str_("adam")]
    plain = [builtin(v) for v in values]
    assert plain == [3, 0.5, True, "adam"]
    assert [type(v) for v in plain] == [int, float, bool, str]
    assert builtin("relu") == "relu" and builtin(7) == 7


def test_write_json_handles_numpy_and_paths(tmp_path: Path) -> None:
    write_json(tmp_path / "x.json", {"a": np.int64(3), "b": np.float32(0.5), "p": Path("/x")})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 3, "b": 0.5, "p": "/x"}
    with pytest.raises(TypeError):
        write_json(tmp_path / "y.json", {"a": object()})


def test_the_folder_is_synced_after_each_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evoband.core._files as files_module

    synced: list[Path] = []
    monkeypatch.setattr(files_module, "fsync_directory", synced.append)
    write_atomic(tmp_path / "a.txt", lambda fh: fh.write(b"a"))
    assert synced == [tmp_path] and (tmp_path / "a.txt").read_bytes() == b"a"


@pytest.mark.parametrize(("code", "raises"), [(errno.EINVAL, False), (errno.EIO, True)])
def test_folder_sync_ignores_only_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, raises: bool
) -> None:
    from evoband.core._files import fsync_directory

    def failing(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing)
    if raises:
        with pytest.raises(OSError):
            fsync_directory(tmp_path)
    else:
        fsync_directory(tmp_path)
    fsync_directory(tmp_path / "missing")  # a folder that cannot be opened: nothing to sync
