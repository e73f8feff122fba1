"""Memory during and after a burst of work (a history read, a backlog, a job catch-up): the cyclic garbage collector
kept from walking a burst's objects over and over, and freed memory given back to the system after it (glibc keeps
freed heap for reuse, so without this an idle daemon stays at its peak resident size).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import ctypes

# While a burst runs, the cyclic garbage collector looks at the youngest objects after this many allocations instead
# of Python's 700. A burst builds tens of thousands of records, dicts and lists that live until it is done with them,
# and none of them form cycles (reference counting frees them), yet each look walked them: 12 % of a catch-up's CPU
# on the 100 MB bench home (1,107 collections; 33 at 10,000). At 10,000 a weekly report of the five-year home still
# outgrew it: 205 collections took 1.6-2.3 s of its catch-up; 4 at this threshold, 0.06 s, and the same peak RSS. A
# `learnd backfill` of the bot's two real days ran 125 collections (about 32 ms of its CPU, half of it one full
# collection while the trades were learned) and none at this threshold, 0.5 MiB more at its peak.
BURST_GC_THRESHOLD: Final = 100_000

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


@contextmanager
def collecting_garbage_less_often(*, survivors_to_oldest: bool = False) -> Iterator[None]:
    """Raise the collector's first threshold to BURST_GC_THRESHOLD for what runs inside; the thresholds in force
    before come back after.

    With `survivors_to_oldest` (a one-shot command, which exits right after), what the burst left alive joins the
    oldest generation at the end, where the young collection that the restored threshold sets off at once would put
    it, without that collection's walk over all of it (12 ms at the end of a backfill of the bot's two real days)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(BURST_GC_THRESHOLD, thresholds[0]), *thresholds[1:])
    try:
        yield
    finally:
        if survivors_to_oldest:
            # freeze() moves every tracked object aside and zeroes the young count; unfreeze() puts them all in the
            # oldest generation.
            gc.freeze()
            gc.unfreeze()
        gc.set_threshold(*thresholds)


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    # Imported here: only the daemon hands memory back, and ctypes.util is a few ms of a one-shot command's start.
    import ctypes
    import ctypes.util

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
