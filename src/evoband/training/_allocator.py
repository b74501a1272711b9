"""glibc's memory allocator tuned for training processes.

Every training step allocates and frees the same activation and gradient buffers. glibc serves a
block above its mmap threshold with a fresh ``mmap`` (and its first touch with page faults), and
raises that threshold as large blocks are freed, unless ``MALLOC_TRIM_THRESHOLD_`` or another
allocator setting is given: then it stays at 128 KiB. Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_``
in its workers, which made training there about 1.4x slower than in a plain process
(``benchmarks/scaling.py``). A fixed threshold above any tensor of a small network, with freed
memory kept for reuse, is faster in every process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 32 << 20
"""Blocks below 32 MiB come from the heap and are reused, not mapped afresh for every step."""

TRIM_THRESHOLD = 128 << 20
"""Freed heap memory up to 128 MiB is kept for the next step instead of given back at once."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned: bool | None = None
"""Whether this process's allocator is tuned; None until the first call."""


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds in this process (the first call does it, later ones
    return its outcome); False where there is no glibc (macOS, Windows, musl), which changes
    nothing."""
    global _tuned
    if _tuned is None:
        _tuned = _set_thresholds()
    return _tuned


def _set_thresholds() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError) as exc:
        logger.debug("glibc's mallopt is not available: %s", exc)
        return False
