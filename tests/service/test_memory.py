"""The hand-back of freed heap after a burst: measured on this process's own resident size (Linux)."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from learnd.service.memory import (
    BURST_GC_THRESHOLD,
    MMAP_THRESHOLD_BYTES,
    collecting_garbage_less_often,
    release_free_memory,
    resident_mib,
)


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


_LARGE_BLOCK_PROGRAM = """
import ctypes, sys
from learnd.service.memory import keep_large_blocks_apart

class MallInfo2(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    _fields_ = [(name, ctypes.c_size_t) for name in names]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert keep_large_blocks_apart() is True
freed = bytearray(16 << 20)
del freed
before = libc.mallinfo2().hblkhd
block = bytearray(8 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2 are Linux's")
@pytest.mark.parametrize(("threshold", "mapped_apart"), [("fixed", True), ("glibc's own", False)])
def test_a_large_block_keeps_its_own_mapping_after_a_larger_one_was_freed(threshold: str, mapped_apart: bool) -> None:
    """In a fresh process (a small heap, as the daemon's at start): freeing a 16 MiB block raises glibc's own
    threshold past it, so the next 8 MiB block comes from the heap; with the threshold kept, that block gets a
    mapping of its own (mallinfo2's mapped bytes grow by it), which goes back whole when freed."""
    result = subprocess.run(
        [sys.executable, "-c", _LARGE_BLOCK_PROGRAM, "fixed" if threshold == "fixed" else "dynamic"],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    grown = int(result.stdout)
    assert (grown >= 8 << 20) is mapped_apart, grown
    assert MMAP_THRESHOLD_BYTES < 8 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_resident_mib_is_this_process_resident_set() -> None:
    """resident_mib reads VmRSS: it follows what this process holds (statm's resident pages say the same)."""
    before = resident_mib()
    assert before is not None and abs(before - resident_bytes() / 2**20) < 2.0
    held = bytearray(64 * 2**20)
    held[::4096] = b"\x01" * len(held[::4096])  # touch every page
    grown = resident_mib()
    assert grown is not None and grown - before > 60.0
    del held


def test_a_burst_runs_with_the_collector_looking_less_often_and_its_thresholds_come_back() -> None:
    """Inside, the collector's first threshold is raised (the others kept); the thresholds in force before are back
    after, and after a failure inside."""
    before = gc.get_threshold()
    with collecting_garbage_less_often():
        assert gc.get_threshold() == (BURST_GC_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), collecting_garbage_less_often():
        raise RuntimeError
    assert gc.get_threshold() == before


def test_a_higher_threshold_in_force_is_kept_inside() -> None:
    before = gc.get_threshold()
    gc.set_threshold(BURST_GC_THRESHOLD * 2, *before[1:])
    try:
        with collecting_garbage_less_often():
            assert gc.get_threshold()[0] == BURST_GC_THRESHOLD * 2
    finally:
        gc.set_threshold(*before)


def test_what_a_burst_left_alive_can_join_the_oldest_generation_without_a_collection() -> None:
    """With survivors_to_oldest, an object made inside is in the oldest generation after, nothing stays frozen, and
    the young count starts again from zero (the restored threshold sets off no collection over the burst). The
    collections are the ones this thread set off: a thread another test left running may collect meanwhile."""
    here = threading.get_ident()
    collected: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and threading.get_ident() == here:
            collected.append(info["generation"])

    gc.callbacks.append(note)
    try:
        with collecting_garbage_less_often(survivors_to_oldest=True):
            survivor = [[index] for index in range(1000)]
    finally:
        gc.callbacks.remove(note)
    assert gc.get_freeze_count() == 0
    assert gc.get_count()[0] < 100
    assert any(item is survivor for item in gc.get_objects(generation=2))
    assert collected == []
