"""Lines as the sources frame them: bytes become Lines (whole, over-long or a last fragment) with a stable hash,
the same for the live tailer and a whole-file read; and where a rewritten file's first lines sit among those read.
Pure: bytes and hashes in, Lines and positions out.
"""

from __future__ import annotations

import itertools
import struct
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Final, overload

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
    cut_length: int = 0  # such a fragment's full length when longer than the head `raw` keeps of it


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
        kept = raw[: self.keep_bytes]
        cut = len(raw) if len(kept) < len(raw) else 0
        return Line(self.source, file_key, offset, kept, line_hash(raw), unterminated=True, cut_length=cut)


_HASH_BYTES: Final = 8


class LineWindow(Sequence[int]):
    """The hashes of a source's last `size` lines read, oldest first: what a rewrite's kept tail is recognised by.

    One flat ring of 64-bit integers, 8 bytes a line, where a deque of Python ints costs about 40 and leaves each
    int wherever the allocator put it among the lines' short-lived objects, holding those pages for good.
    """

    __slots__ = ("_hashes", "_size", "_start")

    def __init__(self, hashes: Iterable[int], size: int) -> None:
        if size <= 0:
            self._hashes = array("q")
        elif isinstance(hashes, array) and hashes.typecode == "q":
            self._hashes = hashes[-size:]  # a copy: the caller's array stays its own
        else:
            self._hashes = array("q", list(hashes)[-size:])
        self._size = max(size, 0)
        self._start = 0  # where the oldest hash sits once the ring is full and wraps around

    def append(self, value: int) -> None:
        """Add the newest line's hash, dropping the oldest when the window is full."""
        hashes = self._hashes
        if len(hashes) < self._size:
            hashes.append(value)
        elif self._size:
            hashes[self._start] = value
            self._start = (self._start + 1) % self._size

    def extend(self, values: Iterable[int]) -> None:
        """Add the newest lines' hashes, oldest of them first: the same as appending each, in one go."""
        size = self._size
        fresh = array("q", values)
        if not size or not fresh:
            return
        hashes = self._hashes
        room = size - len(hashes)
        if room > 0:
            hashes.extend(fresh[:room])
            del fresh[:room]
        count = len(fresh)
        if not count:
            return
        if count >= size:
            self._hashes, self._start = fresh[-size:], 0
            return
        start = self._start
        head = min(count, size - start)
        hashes[start : start + head] = fresh[:head]
        hashes[: count - head] = fresh[head:]
        self._start = (start + count) % size

    def __len__(self) -> int:
        return len(self._hashes)

    def count(self, value: int) -> int:
        """How many of the window's lines have the hash `value`: its 8 bytes looked for in the ring's bytes, at
        whole items only (array.count makes an int object of every item it compares, 30 times slower here)."""
        data = self._hashes.tobytes()
        pattern = array("q", (value,)).tobytes()
        found = 0
        position = data.find(pattern)
        while position >= 0:
            if position % _HASH_BYTES:
                position = data.find(pattern, position + 1)  # straddles two items
                continue
            found += 1
            position = data.find(pattern, position + _HASH_BYTES)
        return found

    def __iter__(self) -> Iterator[int]:
        start = self._start
        return itertools.chain(self._hashes[start:], self._hashes[:start])

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> list[int]: ...

    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            return list(self)[index]
        count = len(self._hashes)
        if not -count <= index < count:
            raise IndexError("line window index out of range")
        return self._hashes[(self._start + index) % count]


def rewrite_alignments(
    window: Sequence[int], fresh: Sequence[int], *, late_lines: int | None = None, ended: bool = False
) -> list[int]:
    """Every place in `window` where a rewritten file's first lines may sit, earliest first; empty when none.

    `window` holds the hashes of the last lines read from the source, oldest first; `fresh` the hashes of the
    rewritten file's first lines. A supervisor that keeps a file's last N lines leaves a file that starts with a
    run of the window's tail, so each answer is a start index whose run matches `fresh` up to the end of the window
    (or of `fresh`). More than one start matches when the window holds a run twice (a rewrite's kept tail is read
    again, so a later rewrite finds it in both places) or when lines repeat; the caller follows every candidate
    until the file tells them apart. With none, the file is no rewrite of what was read.

    With `late_lines`, when no run reaches that far, a run that stops matching `fresh` before the window's end is
    an answer too if the lines after it in the window are fewer than it matched, or no more than `late_lines`: lines
    the writer added to the old file after the copy was taken (the bot appending while `sed -i` or the supervisor
    worked, or through its old descriptor after a rename-over). A new file that merely begins with a line the window
    holds further back (a start-up banner) matches a short run followed by many lines, and is not taken for a copy.

    With `ended`, `fresh` is all the file will ever give (it was drained, or rewritten under the reader): a run that
    matches all of it but stops short of the window's end is judged like one that stops matching there.
    """
    if not fresh:
        return []
    first = fresh[0]
    size = len(window)
    starts: list[int] = []
    diverged: list[int] = []
    for start in range(size):
        if window[start] != first:
            continue
        overlap = min(size - start, len(fresh))
        matched = 1
        while matched < overlap and window[start + matched] == fresh[matched]:
            matched += 1
        if matched == overlap and not (ended and start + matched < size):
            starts.append(start)
        elif late_lines is not None and _kept_short_of_the_end(size - start - matched, matched, late_lines):
            diverged.append(start)
    if not starts:
        starts = diverged
    if len(starts) > 2 * MAX_ALIGNMENTS_KEPT:
        # A flood of identical lines (blank ones, say) would make following every candidate quadratic. The earliest
        # decide ties among repeats; the latest are where a kept tail read twice sits.
        starts = starts[:MAX_ALIGNMENTS_KEPT] + starts[-MAX_ALIGNMENTS_KEPT:]
    return starts


def _kept_short_of_the_end(after: int, matched: int, late_lines: int) -> bool:
    """Whether a run of `matched` lines that stops before the window's end, `after` lines before it, is a kept tail:
    fewer lines after it than it matched, or no more than the replaced file gave after it was replaced."""
    return after <= max(late_lines, matched - 1)


class KeptTail:
    """Which lines of a file, read after a reset or a replacement, repeat lines read before it: the kept tail of an
    in-place rewrite, a trimmed copy renamed over the path, a copy of either found later.

    Every candidate alignment in `window` (see rewrite_alignments) is followed line by line; one whose run stops
    matching is dropped. The earliest surviving candidate decides (the longest overlap: where repeated lines leave
    it open, a repeat is likelier than a new line). A line no candidate matches is new, and so is everything after
    it; a file whose first lines align nowhere is new whole, whatever lines it shares with the window (a start-up
    banner the bot writes at the top of every file, say).
    """

    def __init__(self, window: Sequence[int], *, late_lines: int = 0, positions: list[int] | None = None) -> None:
        self.window = list(window)
        self.late_lines = late_lines
        # Where in the window each candidate expects the next line, earliest candidate first; None before the first
        # lines were compared. `positions` resumes a comparison already under way (after a restart).
        self.positions = positions
        self.aligned_at: list[int] = []  # where the earliest candidate began, once the first lines were compared
        self.finished = False

    def undecided(self, hashes: Sequence[int]) -> bool:
        """Whether the file's first lines, `hashes`, cannot be told yet: the earliest candidate run matches every one of
        them but stops short of the window's end, too short to be a kept tail if the file left it there (see
        rewrite_alignments, `late_lines`). Only the lines after them say whether the run reaches the end (a kept
        tail: they were read before) or leaves it (a new file that merely begins with lines the window holds, the
        bot's start-up banner say). The caller holds them back and asks again with the lines after them, or calls
        marks(..., ended=True) when none will come. Asked only before the first marks."""
        if self.positions is not None or not hashes:
            return False
        starts = rewrite_alignments(self.window, hashes, late_lines=self.late_lines)
        if not starts:
            return False
        start, count = starts[0], len(hashes)
        after = len(self.window) - start - count
        return (
            after > 0
            and not _kept_short_of_the_end(after, count, self.late_lines)
            and self.window[start : start + count] == list(hashes)
        )

    def begin(self, hashes: Sequence[int], *, ended: bool = False) -> None:
        """Compare the file's first lines, `hashes` (all read so far: the marks may be asked for fewer of them), with
        the window: where they may sit; `ended` when the file gives no line after them (see rewrite_alignments)."""
        if self.positions is None:
            self.positions = rewrite_alignments(self.window, hashes, late_lines=self.late_lines, ended=ended)
            self.aligned_at = self.positions[:1]

    def marks(self, hashes: Sequence[int], *, ended: bool = False) -> list[bool]:
        """For each of the next lines, whether it was read before; `ended` when the file gives no line after them."""
        if self.finished:
            return [False] * len(hashes)
        window = self.window
        self.begin(hashes, ended=ended)
        positions = self.positions
        assert positions is not None
        size = len(window)
        marks: list[bool] = []
        for value in hashes:
            positions = [position + 1 for position in positions if position < size and window[position] == value]
            marks.append(bool(positions))
        self.positions = positions
        self.finished = not positions or positions[0] >= size
        return marks


def as_duplicate(line: Line) -> Line:
    """The same line, marked as read before (a rewrite or a copy put it back)."""
    return Line(
        line.source,
        line.file_key,
        line.offset,
        line.raw,
        line.hash,
        line.too_long,
        True,
        line.unterminated,
        line.cut_length,
    )
