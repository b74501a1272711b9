"""Bounds of the image loader (evoband.training._data): decompression bombs, entries that are not
regular files, and data sets too large for the available memory."""

from __future__ import annotations

import logging
import os
import stat
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evoband.core._errors import DataError, EvobandError
from evoband.training import _data as data
from evoband.training._data import DataSource, load_data

LOGGER = "evoband.training._data"
TIMEOUT = 30.0  # a load of the tiny set takes well under a second; a hang fails instead


def _bomb_png(path: Path, width: int, height: int) -> None:
    """A valid 8x8 PNG whose header claims ``width x height`` pixels (with a correct CRC)."""
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path)
    raw = bytearray(path.read_bytes())
    assert raw[12:16] == b"IHDR"
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    path.write_bytes(bytes(raw))


def _load_with_timeout(root: Path, release: Path | None = None) -> DataSource:
    """``load_data(root)`` in a thread, failing the test if it does not finish in time.

    ``release``: a FIFO the load may block on; opened for writing on a timeout so that the
    blocked thread ends instead of outliving the test.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["source"] = load_data(root)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(TIMEOUT)
    if worker.is_alive():
        if release is not None:
            os.close(os.open(release, os.O_WRONLY | os.O_NONBLOCK))
            worker.join(5.0)
        pytest.fail(f"load_data({root}) did not finish within {TIMEOUT} s (blocked opening?)")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    source = outcome["source"]
    assert isinstance(source, DataSource)
    return source


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --- decompression bombs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "side",
    [
        pytest.param(20000, id="over_twice_the_limit_error"),
        pytest.param(14000, id="over_the_limit_warning"),
    ],
)
def test_decompression_bomb_is_a_one_line_data_error_naming_the_file(
    tiny_image_root: Path, side: int
) -> None:
    assert Image.MAX_IMAGE_PIXELS is not None and side * side > Image.MAX_IMAGE_PIXELS
    bomb = tiny_image_root / "train" / "b" / "005.png"
    _bomb_png(bomb, side, side)

    with pytest.raises(DataError) as info:
        load_data(tiny_image_root)

    message = str(info.value)
    assert str(bomb) in message
    assert "decompression bomb" in message
    assert f"{side * side} pixels" in message
    assert "remove it or replace it with a smaller copy" in message
    assert "MAX_IMAGE_PIXELS" in message
    assert "\n" not in message
    assert isinstance(info.value, EvobandError)


def test_decompression_bomb_as_first_image_is_caught_reading_its_header(
    tiny_image_root: Path,
) -> None:
    # the first image's header sizes the memory estimate, so the bomb is met there
    bomb = tiny_image_root / "train" / "a" / "000.png"
    _bomb_png(bomb, 20000, 20000)

    with pytest.raises(DataError, match="decompression bomb") as info:
        load_data(tiny_image_root)
    assert str(bomb) in str(info.value)


def test_bomb_header_helper_makes_a_png_pillow_accepts_below_the_limit(tmp_path: Path) -> None:
    # guards the test itself: the patched header (and CRC) is read, not rejected as damaged
    path = tmp_path / "claims.png"
    _bomb_png(path, 300, 200)
    with Image.open(path) as image:
        assert image.size == (300, 200)


# --- entries that are not regular files ---------------------------------------------------------


def _make_fifo(path: Path) -> str:
    os.mkfifo(path)
    return "FIFO"


def _make_socket(path: Path) -> str:
    os.mknod(path, stat.S_IFSOCK | 0o600)
    return "socket"


def _make_directory(path: Path) -> str:
    path.mkdir()
    (path / "inner.png").write_bytes(b"")
    return "directory"


def _make_broken_link(path: Path) -> str:
    path.symlink_to(path.parent / "gone.png")
    return "broken symbolic link"


def _make_link_loop(path: Path) -> str:
    path.symlink_to(path)
    return "symbolic link loop"


def _make_link_to_fifo(path: Path) -> str:
    os.mkfifo(path.parent / "pipe")
    path.symlink_to(path.parent / "pipe")
    return "FIFO"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.parametrize(
    "make",
    [
        _make_fifo,
        _make_socket,
        _make_directory,
        _make_broken_link,
        _make_link_loop,
        _make_link_to_fifo,
    ],
    ids=["fifo", "socket", "directory", "broken_link", "link_loop", "link_to_fifo"],
)
def test_entry_that_is_not_a_regular_file_is_skipped_with_a_warning(
    tiny_image_root: Path, caplog: pytest.LogCaptureFixture, make
) -> None:
    odd = tiny_image_root / "train" / "b" / "x.png"
    kind = make(odd)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        source = _load_with_timeout(tiny_image_root, release=odd if kind == "FIFO" else None)

    assert len(source.train) == 36 and len(source.test) == 12
    skipped = [w for w in _warnings(caplog) if w.startswith("Skipping")]
    assert len(skipped) == 1
    assert str(odd) in skipped[0] and kind in skipped[0]
    assert "only regular files" in skipped[0]


def test_fifo_directory_and_broken_link_together(
    tiny_image_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tiny_image_root / "train" / "a"
    os.mkfifo(folder / "x.png")
    (folder / "y.png").mkdir()
    (folder / "z.png").symlink_to(folder / "missing.png")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        source = _load_with_timeout(tiny_image_root, release=folder / "x.png")

    assert len(source.train) == 36
    text = "\n".join(_warnings(caplog))
    for name in ("x.png", "y.png", "z.png"):
        assert str(folder / name) in text


def test_symlink_to_a_regular_image_is_followed(tiny_image_root: Path) -> None:
    target = tiny_image_root / "train" / "a" / "000.png"
    (tiny_image_root / "train" / "a" / "linked.png").symlink_to(target)

    source = _load_with_timeout(tiny_image_root)

    assert len(source.train) == 37


def test_class_folder_of_only_special_entries_holds_no_images(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    for name in ("a", "b"):
        (root / "train" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "train" / name / "0.png")
    (root / "train" / "c").mkdir()
    os.mkfifo(root / "train" / "c" / "x.png")

    with pytest.raises(DataError, match="holds no images") as info:
        _load_with_timeout(root, release=root / "train" / "c" / "x.png")
    assert str(root / "train" / "c") in str(info.value)


def test_read_image_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    # the guard on the open descriptor, for a FIFO that appears after the folder was listed
    fifo = tmp_path / "late.png"
    os.mkfifo(fifo)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            data.read_image(fifo)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(TIMEOUT)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("read_image blocked on a FIFO")
    error = outcome.get("error")
    assert isinstance(error, DataError)
    assert str(fifo) in str(error) and "not a regular file" in str(error)


# --- decoded size against the available memory --------------------------------------------------


def _no_decoding(path: Path, image_size=None) -> np.ndarray:
    raise AssertionError(f"{path} was decoded before the memory check refused the set")


def test_data_set_larger_than_available_memory_is_refused_with_the_numbers(
    tiny_image_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "available_memory", lambda: 20_000)
    monkeypatch.setattr(data, "read_image", _no_decoding)
    # 36 train + 12 test images, 8 x 8 x 3 values, 5 bytes each (float32 + the uint8 kept)
    needed = 48 * 8 * 8 * 3 * data.BYTES_PER_VALUE

    with pytest.raises(DataError) as info:
        load_data(tiny_image_root)

    message = str(info.value)
    assert "\n" not in message
    assert str(tiny_image_root) in message
    assert "48 images" in message
    assert f"{needed} bytes" in message
    assert f"{int(20_000 * data.MEMORY_FRACTION)} bytes" in message
    assert "20000 bytes" in message
    assert "--image_size" in message and "fewer images" in message


def test_smaller_image_size_fits_where_the_stored_size_does_not(
    tiny_image_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stored 8x8: 46080 bytes; at 4x4: 11520 bytes; half of 30000 allowed
    monkeypatch.setattr(data, "available_memory", lambda: 30_000)

    with pytest.raises(DataError, match="46080 bytes"):
        load_data(tiny_image_root)
    source = load_data(tiny_image_root, image_size=(4, 4))

    assert source.input_shape == (3, 4, 4)


def test_memory_fraction_is_a_module_setting(
    tiny_image_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "available_memory", lambda: 50_000)
    monkeypatch.setattr(data, "MEMORY_FRACTION", 1.0)
    assert len(load_data(tiny_image_root).train) == 36  # 46080 <= 50000

    monkeypatch.setattr(data, "MEMORY_FRACTION", 0.5)
    with pytest.raises(DataError, match="50% of the 50000 bytes"):
        load_data(tiny_image_root)


def test_unknown_available_memory_skips_the_check(
    tiny_image_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "available_memory", lambda: None)

    assert len(load_data(tiny_image_root).train) == 36


def test_estimate_counts_every_image_at_the_target_size(tiny_image_root: Path) -> None:
    train = data._list_image_files(tiny_image_root / "train", ("a", "b", "c"))
    test = data._list_image_files(tiny_image_root / "test", ("a", "b", "c"))

    assert data.estimate_decoded_bytes([train, test], None) == (48, 48 * 8 * 8 * 3 * 5)
    assert data.estimate_decoded_bytes([train, []], (16, 10)) == (36, 36 * 16 * 10 * 3 * 5)


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="reads Linux's /proc/meminfo")
def test_available_memory_reads_the_machine() -> None:
    available = data.available_memory()

    assert available is not None and available > 0
