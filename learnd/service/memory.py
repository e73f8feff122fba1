"""Freed memory back to the system after a burst of work (a history read, a backlog, a job catch-up): glibc keeps
freed heap for reuse, so without this an idle daemon stays at its peak resident size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Final

# glibc's mallopt parameter for the size from which a block gets a mapping of its own, and that size's default.
_M_MMAP_THRESHOLD: Final = -3
MMAP_THRESHOLD_BYTES: Final = 128 * 1024


def release_free_memory() -> bool:
    """Ask the C allocator to return its free pages (glibc's malloc_trim); False where there is no such call
    (another C library), which only costs resident memory."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def keep_large_blocks_apart() -> bool:
    """Keep every block of 128 KiB or more in a mapping of its own, returned to the system when freed (glibc's
    mallopt); False where there is no such call.

    That is glibc's starting rule, but the first such block freed raises the size (up to 32 MiB), after which a
    burst's large blocks (read chunks, the store's caches, a catch-up's documents) come from the heap and leave
    it holed around whatever outlives them: an idle daemon then keeps about 1.2 MiB more."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def resident_mib() -> float | None:
    """This process's resident set in MiB (VmRSS in /proc/self/status); None where there is no such file."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
