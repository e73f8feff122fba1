"""Freed memory back to the system after a burst of work (a history read, a backlog, a job catch-up): glibc keeps
freed heap for reuse, so without this an idle daemon stays at its peak resident size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import lru_cache


def release_free_memory() -> bool:
    """Ask the C allocator to return its free pages (glibc's malloc_trim); False where there is no such call
    (another C library), which only costs resident memory."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return function
