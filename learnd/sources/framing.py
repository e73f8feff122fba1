"""Lines as the tailer knows them: a stable hash per line, and where a rewritten file's first lines sit among the
lines already read. Pure: hashes in, positions out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from hashlib import blake2b
from typing import Final

# Candidate alignments kept from each end (earliest, latest) when a rewritten file could start in many places.
MAX_ALIGNMENTS_KEPT: Final = 16
# The same value as int.from_bytes(digest, "big", signed=True), one call cheaper; line_hash runs on every line.
_unpack_signed_64: Final[Callable[[bytes], tuple[int]]] = struct.Struct(">q").unpack


def line_hash(raw: bytes) -> int:
    """A stable 64-bit signed hash of a line's bytes (without its newline), as SQLite stores integers."""
    return _unpack_signed_64(blake2b(raw, digest_size=8).digest())[0]


def rewrite_alignments(window: Sequence[int], fresh: Sequence[int]) -> list[int]:
    """Every place in `window` where a rewritten file's first lines may sit, earliest first; empty when none.

    `window` holds the hashes of the last lines read from the source, oldest first; `fresh` the hashes of the
    rewritten file's first lines. A supervisor that keeps a file's last N lines leaves a file that starts with a
    run of the window's tail, so each answer is a start index whose run matches `fresh` up to the end of the window
    (or of `fresh`). More than one start matches when the window holds a run twice (a rewrite's kept tail is read
    again, so a later rewrite finds it in both places) or when lines repeat; the caller follows every candidate
    until the file tells them apart. With none, the caller falls back to per-line membership.
    """
    if not fresh:
        return []
    first = fresh[0]
    size = len(window)
    starts: list[int] = []
    for start in range(size):
        if window[start] != first:
            continue
        overlap = min(size - start, len(fresh))
        if all(window[start + index] == fresh[index] for index in range(overlap)):
            starts.append(start)
    if len(starts) > 2 * MAX_ALIGNMENTS_KEPT:
        # A flood of identical lines (blank ones, say) would make following every candidate quadratic. The earliest
        # decide ties among repeats; the latest are where a kept tail read twice sits.
        starts = starts[:MAX_ALIGNMENTS_KEPT] + starts[-MAX_ALIGNMENTS_KEPT:]
    return starts
