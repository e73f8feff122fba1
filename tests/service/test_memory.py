"""The hand-back of freed heap after a burst: measured on this process's own resident size (Linux)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from learnd.service.memory import release_free_memory


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
