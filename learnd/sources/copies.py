"""Rotated copies the tailer does not hold open, read live: a copy known by its identity is read on from where that
identity was read to, and a copy never seen is read whole unless it is history (there when learnd began to follow
the source; only a backfill reads those). Plain or gzip, with a bounded amount of work per poll.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from learnd.sources.files import (
    UNREADABLE,
    DecompressedFile,
    HistoryFile,
    Identity,
    KnownFiles,
    LineReader,
    identity_through,
    inspect_file,
    rotated_siblings,
    unread_start,
)
from learnd.sources.framing import KeptTail, Line, as_duplicate

# Content inflated per step while moving to where a gzip copy's unread lines begin (tens of milliseconds): the
# daemon's loop serves its signals, timers and other sources in between.
SKIP_STEP_BYTES: Final = 8 << 20
# File systems stamp times from a coarse clock (a tick of a few milliseconds): a directory changed just after a look
# can carry the same mtime as before it, so a directory changed around the last look is looked at again.
_COARSE_CLOCK_NS: Final = 50_000_000


@dataclass(slots=True)
class _Reading:
    """A copy being read: its lines are handed out in budgets, its position recorded as they are."""

    found: HistoryFile
    start: int
    known_as: Identity | None  # the identity the store knows it by so far (None: never seen)
    final: bool  # its last fragment can never end now: hand it out
    handle: DecompressedFile | None = None
    reader: LineReader | None = None
    lines: Generator[Line, None, None] | None = None
    # A copy never seen may still begin with lines read from another file (a trimmed copy renamed over the path and
    # rotated away before a poll saw it): those are marked as duplicates.
    kept: KeptTail | None = None


class CopyReader:
    """Finds rotated copies of one source that hold lines not read yet, and reads them, oldest first.

    The siblings are looked at again when the directory changes, when the tailer asks (a truncation or rewrite may
    have left a copy), and every `rescan_s` (a copy still written through an old descriptor grows without a directory
    change). A copy that is one unterminated fragment short of its end gets that fragment once it is gzip, or once it
    has not changed for the grace.
    """

    def __init__(
        self,
        path: Path,
        known: KnownFiles,
        *,
        source: str,
        max_line_bytes: int,
        keep_bytes: int,
        grace_s: float,
        rescan_s: float,
        clock: Callable[[], float],
        event: Callable[..., None],
    ) -> None:
        self.path = path
        self.known = known
        self._source = source
        self._max_line_bytes = max_line_bytes
        self._keep_bytes = keep_bytes
        self._grace = grace_s
        self._rescan = rescan_s
        self._clock = clock
        self._event = event
        self._queue: deque[_Reading] = deque()
        self._reading: _Reading | None = None
        self._scan_due = True
        self._next_scan = 0.0
        self._directory_mtime_ns = -1
        self._scanned_at_ns = 0
        # Copies looked at and found to hold nothing more to read, by (dev, ino): their size and mtime then.
        self._settled: dict[tuple[int, int], tuple[int, int]] = {}
        # When each copy was first seen at its present size and mtime (a plain copy quiet for the grace is final).
        self._quiet_since: dict[tuple[int, int], tuple[int, int, float]] = {}
        # The path each copy read here had, by the file key its lines carry (what a quarantine entry names).
        self.origins: dict[str, str] = {}

    @property
    def has_backlog(self) -> bool:
        """Copies found with lines still to read (the caller polls again at once rather than waiting)."""
        return self._reading is not None or bool(self._queue)

    def rescan(self) -> None:
        """Look at the siblings at the next read (something may have left a copy: a truncation, a rewrite)."""
        self._scan_due = True

    def close(self) -> None:
        if self._reading is not None:
            self._close(self._reading)
            self._reading = None
        self._queue.clear()

    def read(
        self,
        out: list[Line],
        budget: int,
        *,
        held: set[tuple[int, int]],
        window: Sequence[int],
        late_lines: int,
        before: tuple[int, int] | None = None,
        there_before: frozenset[tuple[int, int]] = frozenset(),
    ) -> None:
        """Append up to `budget` lines of copies with unread lines to `out`; `held` are the files the tailer holds
        open and reads itself (its current, rotated and queued files), `window` the hashes of the last lines read
        and `late_lines` how many of them came from a replaced file after its replacement (see KeptTail). With
        `before` (the rotated file the tailer is about to drain), only copies older than that file are looked for:
        before it in rotation order or, when it has no name left, among `there_before` (the copies that were there
        when the tailer opened it). Their lines come first.
        """
        if not self.has_backlog and self._should_scan():
            self._scan(held, before, there_before)
        while budget > 0 and self.has_backlog:
            if self._reading is None:
                self._reading = self._queue.popleft()
                if not self._open(self._reading):
                    self._reading = None
                    continue
                if self._reading.known_as is None and self._reading.start == 0:
                    self._reading.kept = KeptTail(window, late_lines=late_lines)
            reading = self._reading
            if reading.lines is None and not self._position(reading):
                return  # still inflating towards its unread lines: the next poll goes on
            count = len(out)
            if self._pull(reading, out, budget):
                self._finish(reading)
                self._reading = None
            budget -= len(out) - count

    # Finding copies ----------------------------------------------------------------------------------------

    def _should_scan(self) -> bool:
        try:
            directory_mtime_ns = os.stat(self.path.parent).st_mtime_ns
        except FileNotFoundError:
            return False
        now = self._clock()
        changed = directory_mtime_ns != self._directory_mtime_ns
        # As git treats racily clean files: a change stamped no earlier than just before the last look may be one
        # that look missed.
        racy = directory_mtime_ns >= self._scanned_at_ns - _COARSE_CLOCK_NS
        if self._scan_due or changed or racy or now >= self._next_scan:
            self._scan_due = False
            self._directory_mtime_ns = directory_mtime_ns
            self._scanned_at_ns = time.time_ns()
            self._next_scan = now + self._rescan
            return True
        return False

    def _scan(
        self, held: set[tuple[int, int]], before: tuple[int, int] | None, there_before: frozenset[tuple[int, int]]
    ) -> None:
        current = inspect_file(self.path, is_current=True)
        siblings: list[tuple[Path, os.stat_result]] = []
        for sibling in rotated_siblings(self.path):
            try:
                siblings.append((sibling, os.stat(sibling)))
            except FileNotFoundError:
                continue
        visible = {(stat.st_dev, stat.st_ino) for _, stat in siblings}
        if before is not None:
            self._scan_due = True  # the younger ones are looked at once that file is finished
            if before in visible:
                siblings = siblings[: [(stat.st_dev, stat.st_ino) for _, stat in siblings].index(before)]
            else:
                # Renamed over or deleted: a copy that came later (a trimmed copy renamed over the path and rotated
                # on) waits until that file is finished, and is then aligned with what it gave.
                siblings = [(sibling, stat) for sibling, stat in siblings if (stat.st_dev, stat.st_ino) in there_before]
        for sibling, stat in siblings:
            key = (stat.st_dev, stat.st_ino)
            if key in held or self._settled.get(key) == (stat.st_size, stat.st_mtime_ns):
                continue
            found = inspect_file(sibling, is_current=False)
            if found is None or found.error or (found.dev, found.ino) != key:
                continue  # gone, renamed again or a gzip file still being written: the next look finds it
            if current is not None and found.is_copy_of(current):
                # copytruncate between its copy and its truncation: the lines are the current file's for now, and
                # the copy's once that file is truncated, which changes nothing the copy's size and mtime show.
                continue
            start = unread_start(found, self.known, current, history=False)
            if start is None:
                self._settled[key] = (found.disk_bytes, found.mtime_ns)
                continue
            position = self.known.position(found.ladder)
            self._queue.append(_Reading(found, start, position[0] if position else None, final=self._is_final(found)))
        # Copies gone from the directory are forgotten (an inode number may come back as another file).
        self._settled = {key: value for key, value in self._settled.items() if key in visible}
        self._quiet_since = {key: value for key, value in self._quiet_since.items() if key in visible}

    def _is_final(self, found: HistoryFile) -> bool:
        if found.is_compressed:
            return True
        key = (found.dev, found.ino)
        now = self._clock()
        size, mtime_ns, since = self._quiet_since.get(key, (-1, -1, now))
        if (size, mtime_ns) != (found.disk_bytes, found.mtime_ns):
            since = now
        self._quiet_since[key] = (found.disk_bytes, found.mtime_ns, since)
        return now - since >= self._grace

    # Reading one copy ----------------------------------------------------------------------------------------

    def _open(self, reading: _Reading) -> bool:
        found = reading.found
        try:
            handle = DecompressedFile(found.path)
        except FileNotFoundError:
            self._scan_due = True
            return False
        stat = handle.stat()
        if (stat.st_dev, stat.st_ino) != (found.dev, found.ino):
            handle.close()  # the name points at another file now: look again
            self._scan_due = True
            return False
        reading.handle = handle
        self._event("copy_reading", file=str(found.path), offset=reading.start, known=reading.known_as is not None)
        return True

    def _position(self, reading: _Reading) -> bool:
        """Move towards the copy's unread lines, a bounded step at a time; True once its lines can be read."""
        assert reading.handle is not None
        try:
            if not reading.handle.skip_towards(reading.start, max_bytes=SKIP_STEP_BYTES):
                return False
        except UNREADABLE as problem:
            self._give_up(reading, f"unreadable before content offset {reading.start}: {problem}")
            return False
        found = reading.found
        self.origins[found.ladder[0].fp_hash.hex()] = str(found.path)
        reading.reader = LineReader(
            reading.handle,
            source=self._source,
            file_key=found.ladder[0].fp_hash.hex(),
            start=reading.start,
            max_line_bytes=self._max_line_bytes,
            keep_bytes=self._keep_bytes,
        )
        reading.lines = reading.reader.lines(final=reading.final)
        return True

    def _pull(self, reading: _Reading, out: list[Line], budget: int) -> bool:
        """Hand out up to `budget` lines and record how far the copy is read; True at its end."""
        assert reading.lines is not None and reading.reader is not None
        finished = False
        pulled: list[Line] = []
        for _ in range(budget):
            line = next(reading.lines, None)
            if line is None:
                finished = True
                break
            pulled.append(line)
        kept = reading.kept
        if kept is not None and pulled:
            hashes = [line.hash for line in pulled]
            # First lines only a run short of the window's end matches are told by the lines after them: read on
            # (past the budget, a window's worth at most) until they are, or the copy ends there.
            while not finished and kept.undecided(hashes):
                line = next(reading.lines, None)
                if line is None:
                    finished = True
                    break
                pulled.append(line)
                hashes.append(line.hash)
            marks = kept.marks(hashes, ended=finished)
            pulled = [as_duplicate(line) if repeated else line for line, repeated in zip(pulled, marks, strict=True)]
            if kept.finished:
                reading.kept = None
        out.extend(pulled)
        reader = reading.reader
        identity = identity_through(reading.found.ladder, reader.offset)
        if identity is not None and reader.offset > reading.start:
            self.known.record(identity, reader.offset, replaces=reading.known_as)
            reading.known_as = identity
        return finished

    def _finish(self, reading: _Reading) -> None:
        assert reading.reader is not None
        found = reading.found
        error = reading.reader.error
        self._event("copy_read", file=str(found.path), offset=reading.reader.offset, error=error or None)
        # Read to its end, or damaged (a gzip file still being written grows, and is looked at again then).
        if error or reading.final or reading.reader.offset >= found.disk_bytes:
            self._settled[(found.dev, found.ino)] = (found.disk_bytes, found.mtime_ns)
        self._close(reading)

    def _give_up(self, reading: _Reading, error: str) -> None:
        self._event("copy_unreadable", file=str(reading.found.path), error=error)
        found = reading.found
        self._settled[(found.dev, found.ino)] = (found.disk_bytes, found.mtime_ns)  # until it changes
        self._close(reading)
        self._reading = None

    @staticmethod
    def _close(reading: _Reading) -> None:
        if reading.lines is not None:
            reading.lines.close()
        if reading.handle is not None:
            reading.handle.close()
