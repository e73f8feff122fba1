"""Lines as the sources frame them: bytes become Lines (whole, over-long or a last fragment) with a stable hash,
the same for the live tailer and a whole-file read; and where a rewritten file's first lines sit among those read.
Pure: bytes and hashes in, Lines and positions out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Final

from learnd.values import value_class

# Candidate alignments kept from each end (earliest, latest) when a rewritten file could start in many places.
MAX_ALIGNMENTS_KEPT: Final = 16
# The same value as int.from_bytes(digest, "big", signed=True), one call cheaper; line_hash runs on every line.
_unpack_signed_64: Final[Callable[[bytes], tuple[int]]] = struct.Struct(">q").unpack


def line_hash(raw: bytes) -> int:
    """A stable 64-bit signed hash of a line's bytes (without its newline), as SQLite stores integers."""
    return _unpack_signed_64(blake2b(raw, digest_size=8).digest())[0]


@value_class
class Line:
    """One complete line read from a source (without its newline), where it came from, and how it ended."""

    source: str
    file_key: str
    offset: int
    raw: bytes
    hash: int
    too_long: int = 0  # the line's full length when over max_line_bytes; `raw` then holds only its head
    duplicate: bool = False  # already read before an in-place rewrite put it back in the file
    unterminated: bool = False  # the last bytes of a rotated or deleted file that never got their newline


@dataclass(frozen=True, slots=True)
class LineFraming:
    """How one source's bytes become Lines. The tailer's reads of the live file and a whole-file read of a rotated
    copy both go through it, so the same bytes give the same Line (offset, head, hash) whichever read them."""

    source: str
    max_line_bytes: int
    keep_bytes: int

    def split(
        self, chunk: bytes, cursor: int, out: list[Line], *, chunk_offset: int, file_key: str, budget: int
    ) -> int:
        """Append to `out` up to `budget` newline-terminated lines of `chunk` from `cursor`, and return the cursor
        after the last of them; what follows waits for its newline. `chunk` starts at content offset `chunk_offset`.
        """
        # The per-line path of the tailer and of every backfill: names bound once, one find and one slice a line.
        source = self.source
        max_line = self.max_line_bytes
        append = out.append
        while budget > 0:
            newline = chunk.find(b"\n", cursor)
            if newline < 0:
                break
            length = newline - cursor
            if length > max_line:
                append(self.overlong(file_key, chunk_offset + cursor, chunk[cursor : cursor + self.keep_bytes], length))
            else:
                raw = chunk[cursor:newline]
                append(Line(source, file_key, chunk_offset + cursor, raw, line_hash(raw)))
            cursor = newline + 1
            budget -= 1
        return cursor

    def overlong(self, file_key: str, offset: int, head: bytes, length: int, *, unterminated: bool = False) -> Line:
        """A line of `length` bytes, more than max_line_bytes: only its head is kept (keep_bytes at most, never past
        the line's end), hashed together with the length, since the rest is never held."""
        head = head[: min(self.keep_bytes, length)]
        hashed = line_hash(head + length.to_bytes(8, "big"))
        return Line(self.source, file_key, offset, head, hashed, too_long=length, unterminated=unterminated)

    def fragment(self, file_key: str, offset: int, raw: bytes) -> Line:
        """The last bytes of a file that can never get their newline now (rotated away, deleted, read to its end)."""
        return Line(self.source, file_key, offset, raw[: self.keep_bytes], line_hash(raw), unterminated=True)


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
