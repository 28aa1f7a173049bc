"""Keeping freed memory for reuse on CPU (glibc), which halves a jitted step's time.

XLA:CPU allocates a step's temporaries (tens of MB for the lecture's CNN at batch 64)
with ``malloc`` at every call and frees them at its end. glibc serves blocks above its
``mmap`` threshold with fresh pages and returns them to the system on ``free``, so each
call pays page faults on all of them, which can double a small jitted step's time
(figures in ``docs/performance.md``). :func:`keep_freed_memory` raises the
``mmap`` and trim thresholds with ``mallopt``, as ``GLIBC_TUNABLES`` would before start.
The cost: memory freed by the process stays mapped for reuse instead of going back to
the system at once. Set ``CNNJAX_NO_MALLOC_TUNING=1`` to leave malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_THRESHOLD = 1 << 30
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raises glibc's mmap and trim thresholds once per process; returns whether they are raised.

    A no-op returning False on other C libraries, or when ``CNNJAX_NO_MALLOC_TUNING=1``.
    """
    global _done
    if _done is None:
        _done = False
        if os.environ.get("CNNJAX_NO_MALLOC_TUNING", "0") not in ("", "0"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
            return False
        _done = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    return _done
