"""The hand-back of freed heap after a burst: measured on this process's own resident size (Linux)."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest

from learnd.service.memory import MMAP_THRESHOLD_BYTES, keep_large_blocks_apart, release_free_memory


def resident_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
def test_freed_heap_goes_back_to_the_system() -> None:
    # Blocks over pymalloc's small-object limit come from the C heap; one kept past them stops glibc's own trim
    # of the heap's top, so only the explicit hand-back can return the middle.
    burst = [bytes(2000) + bytes([i % 256]) for i in range(40_000)]
    kept_after = bytes(2000) + b"kept"
    del burst
    before = resident_bytes()
    assert release_free_memory() is True
    after = resident_bytes()
    assert before - after > 40_000_000, (before, after)
    assert kept_after.endswith(b"kept")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ]


def mapped_bytes() -> int:
    """Bytes glibc holds in blocks with a mapping of their own (mallinfo2, glibc 2.33 and later)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().hblkhd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2 are Linux's")
def test_a_large_block_keeps_its_own_mapping_after_a_larger_one_was_freed() -> None:
    """Without the fixed threshold, freeing the 4 MiB block raises glibc's threshold past 1 MiB and the next
    1 MiB block comes from the heap; with it, that block is mapped apart and goes back whole when freed."""
    assert keep_large_blocks_apart() is True
    freed = bytearray(4 << 20)
    del freed
    before = mapped_bytes()
    block = bytearray(1 << 20)
    assert mapped_bytes() - before >= 1 << 20
    assert len(block) > MMAP_THRESHOLD_BYTES
    del block
    assert mapped_bytes() == before
