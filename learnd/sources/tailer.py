"""Sources are tailed: one SourceTailer per configured log turns appended bytes into complete lines, exactly once.

It knows a file by device + inode and a fingerprint of its first line, and survives rename rotation,
copytruncate, truncation, the bot supervisor's in-place rewrite, deletion and re-creation, and symlinks.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from learnd.sources.files import (
    FINGERPRINT_MAX_BYTES,
    READ_CHUNK_BYTES,
    fingerprint,
    identity_hash,
    is_compressed,
    rotated_siblings,
    starts_with,
)
from learnd.sources.framing import Line, LineFraming, rewrite_alignments

_FINISHED_KEPT: Final = 64


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a source's reading stands: the file (device, inode, fingerprint of its first line) and the offset."""

    path: str
    dev: int
    ino: int
    fp_hash: bytes
    fp_len: int
    offset: int
    size: int = field(compare=False)  # informative only: a growing partial line is no reason to commit
    window_seq: int = 0


@dataclass(frozen=True, slots=True)
class TailEvent:
    """Something that happened to a source's file, for the log and status (`rotated`, `truncated`, ...)."""

    source: str
    event: str
    detail: dict[str, object]


@dataclass(slots=True)
class _OpenFile:
    handle: BinaryIO
    dev: int
    ino: int
    fp_hash: bytes = b""
    fp_len: int = 0
    offset: int = 0
    overlong_from: int = -1  # start of a line known to exceed max_line_bytes, still waiting for its newline
    overlong_scanned: int = 0
    drain_deadline: float | None = None

    @property
    def key(self) -> str:
        return self.fp_hash.hex() if self.fp_len else f"ino:{self.dev}:{self.ino}"


@dataclass(slots=True)
class TailerStatus:
    state: str = "starting"  # waiting_for_file | following | draining_rotated
    size: int = 0


class SourceTailer:
    """Follows one configured path. `poll()` returns the next complete lines and advances an in-memory position;
    `checkpoint()` says where that position is, for the store to commit together with what the lines changed."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        checkpoint: Checkpoint | None,
        window: Iterable[int],
        window_lines: int,
        max_line_bytes: int,
        keep_bytes: int,
        rotation_grace_s: float,
        start_at_end: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.path = path
        self._committed = checkpoint
        self._window: deque[int] = deque(window, maxlen=window_lines)
        self._window_seq = checkpoint.window_seq if checkpoint else 0
        self._framing = LineFraming(name, max_line_bytes, keep_bytes)
        self._grace = rotation_grace_s
        self._start_at_end = start_at_end
        self._clock = clock
        self._current: _OpenFile | None = None
        self._rotated: _OpenFile | None = None
        # Drained after the current rotated file, in order: rotated copies younger than it (rotated more than once,
        # read whole), or that file itself when a copy of its unread lines had to be drained first.
        # Held open from the moment they are found: a further rotation renames them, and a name would then point
        # at another file.
        self._younger: deque[_OpenFile] = deque()
        # Rotated files drained to their end (identity -> first-line fingerprint), so that a later look for younger
        # copies does not queue one again; the fingerprint tells a reused inode from the file itself.
        self._finished: dict[tuple[int, int], bytes] = {}
        self._last_position: Checkpoint | None = checkpoint
        # After a reset, the window as it was, and how far the new file's lines have matched it so far.
        self._align_window: list[int] | None = None
        self._align_file: _OpenFile | None = None
        # Where in the snapshot each candidate alignment expects the next line, earliest candidate first.
        self._align_positions: list[int] | None = None
        self._align_known: set[int] | None = None
        self._align_left = 0
        self.status = TailerStatus()
        self.events: list[TailEvent] = []
        self.seen_files: dict[bytes, tuple[int, int]] = {}
        # Hold the file from the start, not from the first poll: a rotation in between (a backfill's history read
        # can take minutes) is then seen as one and the renamed file drained, instead of never known at all.
        with contextlib.suppress(FileNotFoundError):
            self._open(os.stat(path))

    # Public ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        for opened in (self._current, self._rotated, *self._younger):
            if opened is not None:
                opened.handle.close()
        self._current = self._rotated = None
        self._younger.clear()

    def checkpoint(self) -> Checkpoint | None:
        """The position after the last line handed out, or None before any file was seen."""
        opened = self._rotated or self._current
        if opened is None:
            return self._last_position
        self._last_position = Checkpoint(
            path=str(self.path),
            dev=opened.dev,
            ino=opened.ino,
            fp_hash=opened.fp_hash,
            fp_len=opened.fp_len,
            offset=opened.offset,
            size=self.status.size,
            window_seq=self._window_seq,
        )
        return self._last_position

    def take_seen_files(self) -> dict[bytes, tuple[int, int]]:
        """File identities read since the last call, with how far each was read (for sibling backfill)."""
        seen, self.seen_files = self.seen_files, {}
        return seen

    def pending_bytes(self) -> int:
        opened = self._current
        return max(0, self.status.size - opened.offset) if opened else 0

    def poll(self, max_lines: int) -> list[Line]:
        """Up to `max_lines` new complete lines, in file order; an incomplete last line waits for its newline."""
        lines: list[Line] = []
        if self._rotated is not None:
            self._drain_rotated(lines, max_lines)
            if self._rotated is not None:
                return lines
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._current is not None:
                self._event("file_missing", offset=self._current.offset)
                self._retire_current()
                self._drain_rotated(lines, max_lines)
            elif self.status.state != "waiting_for_file":
                self._event("waiting_for_file")
            self.status.state = "waiting_for_file"
            # A file that appears later is new content: read it whole.
            self._start_at_end = False
            return lines
        if self._current is None:
            self._open(stat)
            if self._rotated is not None:
                self._drain_rotated(lines, max_lines)
                if self._rotated is not None:
                    return lines
        else:
            current = self._current
            if (stat.st_dev, stat.st_ino) != (current.dev, current.ino):
                self._event("rotated", old_ino=current.ino, new_ino=stat.st_ino, offset=current.offset)
                self._retire_current()
                self._drain_rotated(lines, max_lines)
                if self._rotated is not None:
                    return lines
                self._open(stat)
        following = self._current
        if following is None:
            return lines
        current = following
        self.status.state = "following"
        self.status.size = stat.st_size
        size = stat.st_size
        if not current.fp_len:
            # Known by its first line as soon as it has one, read or not: a copytruncate before we read that far
            # then still finds the copy (a file never seen with a complete line has nothing to find it by).
            self._establish_fingerprint(current)
        for _attempt in range(2):
            if size < current.offset or not self._same_start(current) or not self._on_boundary(current):
                self._reset(current, size)
                if self._rotated is not None:
                    self._drain_rotated(lines, max_lines)
                    if self._rotated is not None:
                        return lines
            if not self._read(current, lines, max_lines - len(lines), size, final=False):
                break
            # The file changed between the checks above and the read: check again against what it is now.
            size = self.status.size = os.fstat(current.handle.fileno()).st_size
        return lines

    # Opening and identity ----------------------------------------------------------------------------------

    def _open(self, stat: os.stat_result) -> None:
        handle = open(self.path, "rb")  # noqa: SIM115 - held open across polls, closed in close()/_retire_current
        opened_stat = os.fstat(handle.fileno())
        current = _OpenFile(handle=handle, dev=opened_stat.st_dev, ino=opened_stat.st_ino)
        self._current = current
        self.status.size = opened_stat.st_size
        committed = self._committed
        self._committed = None  # only the first open resumes from the store's checkpoint
        if committed is not None and (committed.dev, committed.ino) == (current.dev, current.ino):
            current.fp_hash, current.fp_len, current.offset = committed.fp_hash, committed.fp_len, committed.offset
            self._event("resumed", offset=committed.offset)
            self._resume_alignment(current)
            return
        if committed is not None:
            self._event("identity_changed_while_stopped", old_ino=committed.ino, new_ino=current.ino)
            self._recover_previous(committed)
            if committed.fp_len and self._first_bytes_hash(current, committed.fp_len) == committed.fp_hash:
                # Same content under a new inode (copied or moved back): continue where we were.
                current.fp_hash, current.fp_len, current.offset = committed.fp_hash, committed.fp_len, committed.offset
                if opened_stat.st_size >= committed.offset:
                    return
                current.offset = 0
                current.fp_hash, current.fp_len = b"", 0
            self._begin_alignment(current)
            return
        if self._start_at_end:
            current.offset = self._last_line_end(current, opened_stat.st_size)
            self._establish_fingerprint(current)
            self._event("started_at_end", offset=current.offset, size=opened_stat.st_size)
        else:
            # A replacement file may be a rewrite done by rename: lines already read are recognised, not re-applied.
            self._begin_alignment(current)
        self._start_at_end = False

    def _recover_previous(self, committed: Checkpoint) -> None:
        """After a restart that finds another file at the path, finish the file we were reading if it is nearby."""
        for sibling in rotated_siblings(self.path):
            if is_compressed(sibling):
                continue
            try:
                sibling_stat = os.stat(sibling)
            except FileNotFoundError:
                continue
            same_inode = (sibling_stat.st_dev, sibling_stat.st_ino) == (committed.dev, committed.ino)
            if same_inode or starts_with(sibling, committed.fp_hash, committed.fp_len):
                try:
                    self._drain_sibling(sibling, committed.fp_hash, committed.fp_len, committed.offset)
                except FileNotFoundError:
                    continue  # compressed or removed since it was listed: look further
                # Renamed while we were stopped: the writer may still be appending through its old descriptor,
                # as after a rotation seen live, so the same grace applies from the moment we found it.
                assert self._rotated is not None
                self._rotated.drain_deadline = self._clock() + self._grace
                self._queue_younger(sibling_stat.st_dev, sibling_stat.st_ino)
                return
        self._event("previous_file_not_found", ino=committed.ino, offset=committed.offset)

    def _retire_current(self) -> None:
        """The path no longer names the file we read: finish it (drain) before reading whatever replaces it."""
        assert self._current is not None
        self._rotated = self._current
        self._rotated.drain_deadline = self._clock() + self._grace
        self._current = None
        self.status.state = "draining_rotated"
        self._queue_younger(self._rotated.dev, self._rotated.ino)

    def _queue_younger(self, dev: int, ino: int) -> None:
        """Rotated copies made after the file (dev, ino) was rotated hold lines never read: queue them, oldest first.

        Younger means later in rotation order and last written no earlier than that file, so stale copies of an
        older naming scheme lying beside it are not read again.
        """
        stats: list[tuple[Path, os.stat_result]] = []
        for sibling in rotated_siblings(self.path):
            if is_compressed(sibling):
                continue
            try:
                stats.append((sibling, os.stat(sibling)))
            except FileNotFoundError:
                continue
        identities = [(sibling_stat.st_dev, sibling_stat.st_ino) for _, sibling_stat in stats]
        if (dev, ino) not in identities:
            return
        position = identities.index((dev, ino))
        written_ns = stats[position][1].st_mtime_ns
        try:
            live = os.stat(self.path)
            live_identity: tuple[int, int] | None = (live.st_dev, live.st_ino)
        except FileNotFoundError:
            live_identity = None
        # The file we hold open as current is drained through its own descriptor once it is retired; copies younger
        # than it come after it, queued when it finishes.
        held = (self._current.dev, self._current.ino) if self._current is not None else None
        queued = {(younger.dev, younger.ino) for younger in self._younger}
        for (sibling, sibling_stat), identity in zip(stats[position + 1 :], identities[position + 1 :], strict=True):
            if identity == held:
                break
            if identity in queued or identity in ((dev, ino), live_identity):
                continue
            if sibling_stat.st_mtime_ns < written_ns:
                continue
            try:
                handle = open(sibling, "rb")  # noqa: SIM115 - closed when its drain finishes, or in close()
            except FileNotFoundError:
                self._event("rotated_file_vanished", file=str(sibling))
                continue
            opened_stat = os.fstat(handle.fileno())
            if (opened_stat.st_dev, opened_stat.st_ino) != identity:
                handle.close()  # renamed again between the listing and the open: the next look finds it
                continue
            finished = self._finished.get(identity)
            if finished is not None:
                head = fingerprint(os.pread(handle.fileno(), FINGERPRINT_MAX_BYTES, 0))
                if head is not None and head.fp_hash == finished:
                    handle.close()  # drained to its end already (it came before a copy we drained after it)
                    continue
            self._younger.append(_OpenFile(handle=handle, dev=identity[0], ino=identity[1], drain_deadline=0.0))
            self._event("rotated_file_queued", file=str(sibling))
        # Keep the queue in rotation order: a file already queued to be read again (after its copy, see
        # _drain_copy_first) may sit later in that order than the copies found now. Files gone from the listing
        # keep their place at the end.
        rank = {identity: index for index, identity in enumerate(identities)}
        self._younger = deque(sorted(self._younger, key=lambda queued: rank.get((queued.dev, queued.ino), len(rank))))

    def _drain_rotated(self, lines: list[Line], max_lines: int) -> None:
        while (rotated := self._rotated) is not None:
            size = os.fstat(rotated.handle.fileno()).st_size
            if rotated.fp_len and (size < rotated.offset or not self._same_start(rotated)):
                self._drain_copy_first(rotated)
                continue
            self._read(rotated, lines, max_lines - len(lines), size, final=False)
            if rotated.offset < size and len(lines) < max_lines:
                # A last line without its newline: the writer may still finish it through its old descriptor.
                deadline = rotated.drain_deadline or 0.0
                if self._clock() < deadline:
                    return
                self._read(rotated, lines, max_lines - len(lines), size, final=True)
            if rotated.offset < size or self._writer_may_still_append(rotated):
                return
            # Rotated again while this one drained (or waited out its grace): those copies come next, in order.
            self._queue_younger(rotated.dev, rotated.ino)
            self._event("rotated_file_drained", offset=rotated.offset)
            if rotated.fp_len:
                self._finished[(rotated.dev, rotated.ino)] = rotated.fp_hash
                if len(self._finished) > _FINISHED_KEPT:
                    del self._finished[next(iter(self._finished))]
            rotated.handle.close()
            self._rotated = self._younger.popleft() if self._younger else None
            if self._rotated is not None and not self._younger and self._holds_the_path():
                # The newest rotated copy (nothing rotated after it but the file still at the path) is the one the
                # writer may still hold open: it gets the grace too.
                self._rotated.drain_deadline = self._clock() + self._grace

    def _holds_the_path(self) -> bool:
        """Whether the file held as current is still the one the path names (not rotated away meanwhile)."""
        if self._current is None:
            return False
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (stat.st_dev, stat.st_ino) == (self._current.dev, self._current.ino)

    def _writer_may_still_append(self, rotated: _OpenFile) -> bool:
        """Within the grace period after a rename or deletion, the writer may still append through its old
        descriptor until it reopens (logrotate `create` with a postrotate signal). Once the path names a file
        with content, or a younger rotated copy exists, the writer has moved on."""
        if self._younger or self._clock() >= (rotated.drain_deadline or 0.0):
            return False
        # Another rotation while we waited moved a file we never opened aside: queue it, and stop waiting.
        self._queue_younger(rotated.dev, rotated.ino)
        if self._younger:
            return False
        try:
            moved_on = os.stat(self.path).st_size > 0
        except FileNotFoundError:
            moved_on = False
        if not moved_on and self._current is not None:
            # A younger file we already hold (opened at start, renamed since) has content: the writer moved on.
            moved_on = os.fstat(self._current.handle.fileno()).st_size > 0
        return not moved_on or os.fstat(rotated.handle.fileno()).st_size > rotated.offset

    def _drain_copy_first(self, rotated: _OpenFile) -> None:
        """The file was truncated or rewritten in place before it was renamed away: finish it from the copy
        copytruncate left (if any), then read it again from 0, recognising the lines a rewrite kept."""
        self._event("rotated_file_truncated", offset=rotated.offset)
        fp_hash, fp_len, offset = rotated.fp_hash, rotated.fp_len, rotated.offset
        rotated.offset = 0
        rotated.fp_hash, rotated.fp_len = b"", 0
        rotated.overlong_from = -1
        self._begin_alignment(rotated)  # a rewrite in place keeps lines already read
        for sibling in rotated_siblings(self.path):
            if is_compressed(sibling):
                continue
            try:
                sibling_stat = os.stat(sibling)
            except FileNotFoundError:
                continue
            if (sibling_stat.st_dev, sibling_stat.st_ino) == (rotated.dev, rotated.ino):
                continue
            if sibling_stat.st_size > offset and starts_with(sibling, fp_hash, fp_len):
                try:
                    self._drain_sibling(sibling, fp_hash, fp_len, offset)
                except FileNotFoundError:
                    continue  # compressed or removed since it was listed: look further
                self._younger.appendleft(rotated)
                return

    def _same_start(self, opened: _OpenFile) -> bool:
        if not opened.fp_len:
            return True
        return self._first_bytes_hash(opened, opened.fp_len) == opened.fp_hash

    def _on_boundary(self, opened: _OpenFile) -> bool:
        # A line we read ended exactly here; anything else means the bytes under our offset changed.
        if opened.offset == 0:
            return True
        return os.pread(opened.handle.fileno(), 1, opened.offset - 1) == b"\n"

    @staticmethod
    def _first_bytes_hash(opened: _OpenFile, length: int) -> bytes:
        data = os.pread(opened.handle.fileno(), length, 0)
        return identity_hash(data) if len(data) == length else b""

    def _establish_fingerprint(self, opened: _OpenFile) -> None:
        if opened.fp_len:
            return
        found = fingerprint(os.pread(opened.handle.fileno(), FINGERPRINT_MAX_BYTES, 0))
        if found is not None:
            opened.fp_hash, opened.fp_len = found.fp_hash, found.fp_len

    @staticmethod
    def _last_line_end(opened: _OpenFile, size: int) -> int:
        position = size
        while position > 0:
            start = max(0, position - READ_CHUNK_BYTES)
            block = os.pread(opened.handle.fileno(), position - start, start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            position = start
        return 0

    def _reset(self, opened: _OpenFile, size: int) -> None:
        """The file shrank or its start changed under the same inode: truncation, copytruncate or in-place rewrite."""
        kind = "truncated" if size < opened.offset else "rewritten"
        self._event(kind, offset=opened.offset, size=size)
        self._recover_copy(opened)
        opened.offset = 0
        opened.fp_hash, opened.fp_len = b"", 0
        opened.overlong_from = -1
        self._begin_alignment(opened)

    def _recover_copy(self, opened: _OpenFile) -> None:
        """copytruncate copies the file aside before truncating it: read what we had not read yet from the copy."""
        if not opened.fp_len:
            return
        for sibling in rotated_siblings(self.path):
            if not is_compressed(sibling) and starts_with(sibling, opened.fp_hash, opened.fp_len):
                try:
                    if os.stat(sibling).st_size > opened.offset:
                        self._drain_sibling(sibling, opened.fp_hash, opened.fp_len, opened.offset)
                except FileNotFoundError:
                    # logrotate compressed or removed the copy in between: its lines are the history backfill's.
                    self._event("rotated_file_vanished", file=str(sibling))
                return

    def _drain_sibling(self, sibling: Path, fp_hash: bytes, fp_len: int, offset: int) -> None:
        handle = open(sibling, "rb")  # noqa: SIM115 - closed when the drain finishes
        sibling_stat = os.fstat(handle.fileno())
        self._rotated = _OpenFile(
            handle=handle,
            dev=sibling_stat.st_dev,
            ino=sibling_stat.st_ino,
            fp_hash=fp_hash,
            fp_len=fp_len,
            offset=offset,
            drain_deadline=self._clock(),
        )
        self._event("draining_rotated", file=str(sibling), offset=offset, size=sibling_stat.st_size)

    def _begin_alignment(self, opened: _OpenFile) -> None:
        """Lines of `opened` from here on may repeat lines already read: compare them with the window first."""
        if not self._window:
            return
        self._align_file = opened
        self._align_window = list(self._window)
        self._align_positions = None
        self._align_known = None
        self._align_left = len(self._align_window)

    def _resume_alignment(self, opened: _OpenFile) -> None:
        """After a restart inside the kept tail of a rewrite, go on marking the lines the window already holds.

        The alignment is not in the checkpoint; it is found again from the file: when every line before the
        committed offset repeats a run of the older window and that run does not reach the window's end, the
        rewrite's kept tail is not finished yet. Only a file with at most half the window's lines is read.
        """
        if opened.offset == 0:
            # Committed right after a reset (a rewrite seen half done): whatever the file holds now may repeat.
            self._begin_alignment(opened)
            return
        window = list(self._window)
        limit = len(window) // 2
        if not limit:
            return
        read: list[Line] = []
        fd = opened.handle.fileno()
        position = 0
        while position < opened.offset:
            block = os.pread(fd, min(READ_CHUNK_BYTES, opened.offset - position), position)
            cursor = self._framing.split(
                block, 0, read, chunk_offset=position, file_key=opened.key, budget=limit + 1 - len(read)
            )
            if len(read) > limit:
                return
            if cursor == 0:
                return  # a line longer than a read: an over-long line, never part of a kept tail we could align
            position += cursor
        if any(line.too_long for line in read):
            return  # an over-long line is never part of a kept tail we could align
        hashes = [line.hash for line in read]
        count = len(hashes)
        if window[-count:] != hashes:
            return
        older = window[:-count]
        starts = rewrite_alignments(older, hashes)
        # The earliest candidate decides (see _duplicate_marks): when its run already reached the window's end,
        # so did every later one's, and the kept tail is finished.
        if not starts or starts[0] + count >= len(older):
            return
        self._align_file = opened
        self._align_window = older
        self._align_positions = [start + count for start in starts if start + count < len(older)]
        self._align_known = None
        self._align_left = len(older)
        self._event("rewrite_alignment_resumed", start=starts[0], candidates=len(starts), read=count, window=len(older))

    # Reading -----------------------------------------------------------------------------------------------

    def _read(self, opened: _OpenFile, lines: list[Line], budget: int, size: int, *, final: bool) -> bool:
        """Append up to `budget` complete lines from `opened` (between its offset and `size`) to `lines`.

        True when it stopped because the current file was truncated or rewritten under it (nothing of that read
        is handed out); the caller checks the file again.
        """
        changed = False
        if budget <= 0:
            return changed
        fd = opened.handle.fileno()
        first_new = len(lines)
        framing = self._framing
        window_chunk = max(READ_CHUNK_BYTES, framing.max_line_bytes + 1)
        while budget > 0 and opened.offset < size:
            if opened.overlong_from >= 0:
                if self._finish_overlong(opened, lines, size):
                    budget -= 1
                    continue
                if final:
                    # A rotated or deleted file ending inside an over-long line: hand it out, or its drain never ends.
                    length = size - opened.overlong_from
                    head = os.pread(fd, min(framing.keep_bytes, length), opened.overlong_from)
                    lines.append(framing.overlong(opened.key, opened.overlong_from, head, length, unterminated=True))
                    opened.offset = size
                    opened.overlong_from = -1
                break
            start = opened.offset
            wanted = min(window_chunk, size - start)
            chunk = os.pread(fd, wanted, start)
            if len(chunk) < wanted:
                size = start + len(chunk)  # shrunk since it was measured: what is there is all there is
            if not chunk:
                break
            if opened is self._current and not self._same_start(opened):
                # Truncated or rewritten since poll() checked it: these bytes may not follow our offset's line.
                changed = True
                break
            cursor = 0
            while budget > 0:
                count = len(lines)
                # A file without its fingerprint yet gets it from its first line, which is framed alone: the lines
                # after it carry the fingerprint as their file key.
                cursor = framing.split(
                    chunk, cursor, lines, chunk_offset=start, file_key=opened.key, budget=budget if opened.fp_len else 1
                )
                if len(lines) == count:
                    break
                budget -= len(lines) - count
                opened.offset = start + cursor
                self._establish_fingerprint(opened)
            if budget <= 0:
                break
            tail = len(chunk) - cursor
            if cursor == 0 or tail > 0:
                if tail > framing.max_line_bytes:
                    opened.overlong_from = start + cursor
                    opened.overlong_scanned = start + len(chunk)
                    continue
                if start + len(chunk) >= size:
                    if final and tail > 0:
                        lines.append(framing.fragment(opened.key, start + cursor, chunk[cursor:]))
                        opened.offset = size
                    break
        self._after_read(opened, lines, first_new)
        return changed

    def _finish_overlong(self, opened: _OpenFile, lines: list[Line], size: int) -> bool:
        """Scan on for the newline ending an over-long line; False while it has not arrived yet."""
        fd = opened.handle.fileno()
        while opened.overlong_scanned < size:
            block = os.pread(fd, min(READ_CHUNK_BYTES, size - opened.overlong_scanned), opened.overlong_scanned)
            if not block:
                return False
            newline = block.find(b"\n")
            if newline >= 0:
                end = opened.overlong_scanned + newline
                length = end - opened.overlong_from
                # The head never reaches past the line's own end, whatever quarantine_keep_bytes says.
                head = os.pread(fd, min(self._framing.keep_bytes, length), opened.overlong_from)
                lines.append(self._framing.overlong(opened.key, opened.overlong_from, head, length))
                opened.offset = end + 1
                opened.overlong_from = -1
                if opened.fp_len == 0:
                    self._establish_fingerprint(opened)
                return True
            opened.overlong_scanned += len(block)
        return False

    def _after_read(self, opened: _OpenFile, lines: list[Line], first_new: int) -> None:
        """Mark lines a rewrite put back as duplicates, then remember the new lines' hashes."""
        fresh = lines[first_new:]
        if not fresh:
            return
        if self._align_window is not None and opened is self._align_file:
            for index, is_duplicate in enumerate(self._duplicate_marks([line.hash for line in fresh])):
                if is_duplicate:
                    lines[first_new + index] = _as_duplicate(fresh[index])
        for line in fresh:
            self._window.append(line.hash)
        self._window_seq += len(fresh)
        if opened.fp_len:
            self.seen_files[opened.fp_hash] = (opened.fp_len, opened.offset)

    def _duplicate_marks(self, hashes: list[int]) -> list[bool]:
        """Which of these lines (the next ones read after a reset) were read before it.

        Every candidate alignment is followed line by line; one whose run stops matching before the window's end
        is dropped, since a kept tail runs to the end of what was read. The earliest surviving candidate decides
        (the longest overlap: where repeated lines leave it open, a repeat is likelier than a new line). A line
        no candidate matches is new, and so is everything after it.
        """
        snapshot = self._align_window
        assert snapshot is not None
        if self._align_positions is None and self._align_known is None:
            starts = rewrite_alignments(snapshot, hashes)
            if not starts:
                self._align_known = set(snapshot)
                self._event("rewrite_unaligned", window=len(snapshot))
            else:
                self._align_positions = starts
                self._event("rewrite_aligned", start=starts[0], candidates=len(starts), window=len(snapshot))
        marks: list[bool] = []
        if self._align_known is not None:
            for value in hashes:
                marks.append(self._align_left > 0 and value in self._align_known)
                self._align_left -= 1
            if self._align_left <= 0:
                self._align_window = self._align_known = None
            return marks
        positions = self._align_positions
        assert positions is not None
        size = len(snapshot)
        for value in hashes:
            positions = [position + 1 for position in positions if position < size and snapshot[position] == value]
            marks.append(bool(positions))
        if not positions or positions[0] >= size:
            self._align_window = None
            self._align_positions = None
        else:
            self._align_positions = positions
        return marks

    def _event(self, event: str, **detail: object) -> None:
        self.events.append(TailEvent(self.name, event, detail))


def _as_duplicate(line: Line) -> Line:
    return Line(line.source, line.file_key, line.offset, line.raw, line.hash, line.too_long, True, line.unterminated)
