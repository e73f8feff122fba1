"""Sources are tailed: one SourceTailer per configured log turns appended bytes into complete lines, exactly once.

It knows a file by device + inode and by its identity (its first whole lines, up to 4 KiB, as far as they were read),
and survives rename rotation (with writers still on the old file), rename-over, copytruncate, truncation, the bot
supervisor's in-place rewrite, deletion and re-creation, inode reuse and symlinks; rotated copies it did not follow
are read through the CopyReader.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Final

from learnd.sources.copies import CopyReader
from learnd.sources.files import (
    FINGERPRINT_MAX_BYTES,
    READ_CHUNK_BYTES,
    Identity,
    KnownFiles,
    history_identities,
    identity_hash,
    identity_through,
    is_compressed,
    prefix_identities,
    rotated_siblings,
    starts_with,
)
from learnd.sources.framing import (
    KeptTail,
    Line,
    LineFraming,
    LineWindow,
    as_duplicate,
    line_hash,
    rewrite_alignments,
)

# What a restart reads of a file's start for its first line, most of the time (a line up to max_line_bytes may be
# longer: a read then looks as far as a framing read would).
_HEAD_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a source's reading stands: the file (device, inode, identity) and the offset."""

    path: str
    dev: int
    ino: int
    fp_hash: bytes
    fp_len: int
    offset: int
    size: int = field(compare=False)  # informative only: a growing partial line is no reason to commit
    window_seq: int = 0
    # When the file named here was replaced at the path (rotated, renamed over), or is the replacement and has not
    # been compared with the lines read yet: the window seq at which the replacement was seen, so that a restart
    # knows how many of the window's last lines the old file gave after it (see KeptTail); -1 otherwise.
    replaced_at_seq: int = -1


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
    fp_hash: bytes = b""  # identity (fp_hash, fp_len): its start through what was read, up to 4 KiB
    fp_len: int = 0
    offset: int = 0
    overlong_from: int = -1  # start of a line known to exceed max_line_bytes, still waiting for its newline
    overlong_scanned: int = 0
    drain_deadline: float | None = None
    identity_complete: bool = False  # taken from its full first 4 KiB: reading further changes it no more
    first_line: bytes = b""  # the hash its lines carry as their file key (the shortest identity, stable)
    # The rotated copies beside it when it was opened: older than it, whatever becomes of its name.
    copies_before: frozenset[tuple[int, int]] = frozenset()
    # Where it is when the source's path is a symlink to it ("": the path itself): a restart after the link was
    # pointed elsewhere finds it there, not among the link's rotated siblings.
    target: str = ""
    # The rotated copy's path it was opened at ("": the source's path): what a quarantine entry of its lines names.
    name: str = ""

    @property
    def key(self) -> str:
        return self.first_line.hex() if self.first_line else f"ino:{self.dev}:{self.ino}"

    @property
    def identity(self) -> Identity | None:
        return Identity(self.fp_hash, self.fp_len) if self.fp_len else None

    def forget_identity(self) -> None:
        """Its content changed under the same inode (truncated or rewritten): known afresh from what is read next."""
        self.fp_hash, self.fp_len = b"", 0
        self.identity_complete = False
        self.first_line = b""


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
        known: KnownFiles | None = None,
        rescan_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`known` is what the store knows of the source's files (shared with whoever else reads them and commits
        their changes); without it the tailer begins to follow the source now: the rotated copies beside it are
        history."""
        self.name = name
        self.path = path
        self.events: list[TailEvent] = []
        if known is None:
            read: dict[Identity, int] = {}
            if checkpoint is not None and checkpoint.fp_len:
                read[Identity(checkpoint.fp_hash, checkpoint.fp_len)] = checkpoint.offset
            known = KnownFiles(read, history_identities(path))
        self.known = known
        self._committed = checkpoint
        self._window = LineWindow(window, window_lines)
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
        # The file the path named before the last rotation, and how many lines it gave after that: a trimmed copy
        # renamed over the path is aligned allowing for them (the bot wrote them after the copy was taken).
        self._retired: _OpenFile | None = None
        self._retired_lines = 0
        # Whether that file had no name left when it was replaced (renamed over, deleted): only then may the file
        # at the path be a trimmed copy of it. After a rename it is a new file, whatever lines it repeats.
        self._retired_unnamed = False
        self._copies = CopyReader(
            path,
            self.known,
            source=name,
            max_line_bytes=max_line_bytes,
            keep_bytes=keep_bytes,
            grace_s=rotation_grace_s,
            rescan_s=rescan_s,
            clock=clock,
            event=self._event,
        )
        self._last_position: Checkpoint | None = checkpoint
        self._origins: dict[str, str] = {}  # see origin()
        # After a reset, the window as it was, and how far the new file's lines have matched it so far.
        self._alignment: KeptTail | None = None
        self._align_file: _OpenFile | None = None
        # Lines of that file read but not handed out: they match the earliest candidate run, which has not reached
        # the end of the window yet (see KeptTail.undecided). The checkpoint stays before them.
        self._held: list[Line] = []
        self.status = TailerStatus()
        # Hold the file from the start, not from the first poll: a rotation in between (a backfill's history read
        # can take minutes) is then seen as one and the renamed file drained, instead of never known at all.
        try:
            self._open(os.stat(path))
        except FileNotFoundError:
            # No file yet: whatever appears at the path is new content, read whole.
            self._start_at_end = False

    # Public ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        for opened in (self._current, self._rotated, *self._younger):
            if opened is not None:
                opened.handle.close()
        self._current = self._rotated = self._retired = None
        self._younger.clear()
        self._copies.close()

    def origin(self, file_key: str) -> str | None:
        """The path of the rotated copy whose lines carry `file_key`, when this tailer read them from one (None:
        the source's own file)."""
        return self._origins.get(file_key) or self._copies.origins.get(file_key)

    def checkpoint(self) -> Checkpoint | None:
        """The position after the last line handed out, or None before any line was. With no file open (the path
        missing), the last file's position, or, when the file itself was never seen (only rotated copies read, or
        the path missing when looked at), a position at no file (device and inode 0), which a restart takes as
        waiting for the file: a file that appears while learnd is stopped is new content, read whole. Either way
        with the line count the window has reached."""
        opened = self._rotated or self._current
        if opened is None:
            if self._last_position is None and (self._window_seq or self.status.state == "waiting_for_file"):
                self._last_position = Checkpoint(
                    path=str(self.path), dev=0, ino=0, fp_hash=b"", fp_len=0, offset=0, size=0
                )
            if self._last_position is not None and self._last_position.window_seq != self._window_seq:
                self._last_position = replace(self._last_position, window_seq=self._window_seq)
            return self._last_position
        self._last_position = Checkpoint(
            path=opened.target or str(self.path),
            dev=opened.dev,
            ino=opened.ino,
            fp_hash=opened.fp_hash,
            fp_len=opened.fp_len,
            offset=self._handed_out_through(opened),
            size=self.status.size,
            window_seq=self._window_seq,
            replaced_at_seq=self._replaced_at_seq(opened),
        )
        return self._last_position

    def _replaced_at_seq(self, opened: _OpenFile) -> int:
        if opened is self._retired:
            return self._window_seq - self._retired_lines
        alignment = self._alignment
        if alignment is not None and alignment.positions is None and self._align_file is opened:
            return self._window_seq - alignment.late_lines  # to be compared with the lines read, at the restart too
        return -1

    def copy_alignment(self) -> KeptTail:
        """A comparison of a copy never seen with the lines last read: a trimmed copy of them may turn up later."""
        return KeptTail(self._window, late_lines=self._retired_lines)

    @property
    def has_backlog(self) -> bool:
        """Rotated copies with lines still to read: poll again at once rather than waiting for news."""
        return self._copies.has_backlog

    def pending_bytes(self) -> int:
        """Bytes of the current file not handed out yet (lines held back included)."""
        opened = self._current
        return max(0, self.status.size - self._handed_out_through(opened)) if opened else 0

    def _handed_out_through(self, opened: _OpenFile) -> int:
        """The offset after the last line of `opened` handed out: before the lines held back, if any."""
        return self._held[0].offset if self._held and opened is self._align_file else opened.offset

    def poll(self, max_lines: int) -> list[Line]:
        """Up to `max_lines` new complete lines, in file order; an incomplete last line waits for its newline. Lines
        held back (see _after_read) come out with the read that tells them, beyond `max_lines`."""
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
            if self._rotated is None:
                self._read_copies(lines, max_lines)
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
        for _attempt in range(2):
            if size < current.offset or not self._same_start(current) or not self._on_boundary(current):
                self._reset(current, size, lines)
                if self._rotated is not None:
                    self._drain_rotated(lines, max_lines)
                    if self._rotated is not None:
                        return lines
            if self._read_copies(lines, max_lines):
                return lines  # a copy's lines are older than the current file's: they go first
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
        current.copies_before = frozenset(self._sibling_keys())
        if os.path.islink(self.path):
            current.target = os.path.realpath(self.path)
        self._current = current
        self.status.size = opened_stat.st_size
        committed = self._committed
        self._committed = None  # only the first open resumes from the store's checkpoint
        if committed is not None and (committed.dev, committed.ino) == (0, 0):
            # Committed while waiting for the file, which had never been seen (only rotated copies were read): a
            # file there now is new content, read whole.
            committed = None
        if committed is not None and committed.replaced_at_seq >= 0:
            # Stopped while finishing a replaced file, or before comparing its replacement with the lines read: the
            # window's last lines include what the old file gave after the replacement.
            self._retired_lines = committed.window_seq - committed.replaced_at_seq
        if committed is not None and (committed.dev, committed.ino) == (current.dev, current.ino):
            # The same inode; whether it still holds the same file (an inode is reused by the next file created)
            # is checked against its identity at the first poll.
            self._take_identity(current, committed)
            self._event("resumed", offset=committed.offset)
            self._resume_alignment(current, compare=committed.replaced_at_seq >= 0)
            return
        if committed is not None:
            self._event("identity_changed_while_stopped", old_ino=committed.ino, new_ino=current.ino)
            renamed = self._recover_previous(committed)
            if committed.fp_len and self._first_bytes_hash(current, committed.fp_len) == committed.fp_hash:
                # Same content under a new inode (copied or moved back): continue where we were.
                self._take_identity(current, committed)
                if opened_stat.st_size >= committed.offset:
                    if self._rotated is None and _held_when_stopped(committed):
                        self._begin_alignment(current, late_lines=self._retired_lines)
                    return
                current.offset = 0
                current.forget_identity()
            if not renamed:
                # The old file is gone: this one may be a trimmed copy of it renamed over the path.
                self._begin_alignment(current, late_lines=self._retired_lines)
            return
        if self._start_at_end:
            current.offset = self._last_line_end(current, opened_stat.st_size)
            # What is skipped counts as read: a copy of this file made later is read on from here, not whole.
            self._extend_identity(current, b"", current.offset)
            self._event("started_at_end", offset=current.offset, size=opened_stat.st_size)
        elif self._retired is not None and self._retired_unnamed:
            # A rewrite done by rename (sed -i, a trimming script): lines already read are recognised, not re-applied.
            self._begin_alignment(current, late_lines=self._retired_lines)
        self._start_at_end = False

    def _recover_previous(self, committed: Checkpoint) -> bool:
        """After a restart that finds another file at the path, finish the file we were reading if it is nearby;
        whether it was found under another name (renamed, not copied). A symlinked path's last target is looked
        for first where it was (the link was pointed elsewhere while learnd was stopped)."""
        target = Path(committed.path)
        if committed.path != str(self.path) and target.is_absolute() and os.path.islink(self.path):
            try:
                target_stat = os.stat(target)
            except FileNotFoundError:
                pass
            else:
                if (target_stat.st_dev, target_stat.st_ino) == (committed.dev, committed.ino):
                    try:
                        self._drain_previous(target, target_stat, committed, same_inode=True, target=committed.path)
                    except FileNotFoundError:
                        pass  # removed since: look among the siblings
                    else:
                        return True
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
                    self._drain_previous(sibling, sibling_stat, committed, same_inode=same_inode)
                except FileNotFoundError:
                    continue  # compressed or removed since it was listed: look further
                return same_inode
        self._event("previous_file_not_found", ino=committed.ino, offset=committed.offset)
        return False

    def _drain_previous(
        self, found: Path, found_stat: os.stat_result, committed: Checkpoint, *, same_inode: bool, target: str = ""
    ) -> None:
        """Finish the file read before the restart, found at `found` (the same inode, or a copy of its start;
        `target`: a symlink's last target, where a restart looks for it again)."""
        self._drain_sibling(found, committed.fp_hash, committed.fp_len, committed.offset)
        # Renamed while we were stopped: the writer may still be appending through its old descriptor, as after a
        # rotation seen live, so the same grace applies from the moment we found it.
        assert self._rotated is not None
        self._rotated.target = target
        self._rotated.drain_deadline = self._clock() + self._grace
        self._retired = self._rotated
        self._retired_unnamed = not same_inode
        if same_inode and _held_when_stopped(committed):
            # Stopped while its first lines were held back: they are compared again, in the renamed file.
            self._begin_alignment(self._rotated, late_lines=self._retired_lines)
        self._queue_younger(found_stat.st_dev, found_stat.st_ino)

    def _retire_current(self) -> None:
        """The path no longer names the file we read: finish it (drain) before reading whatever replaces it."""
        assert self._current is not None
        self._rotated = self._retired = self._current
        self._retired_lines = 0
        self._retired_unnamed = os.fstat(self._current.handle.fileno()).st_nlink == 0
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
        retired = self._rotated
        if retired is not None and (retired.dev, retired.ino) == (dev, ino) and not retired.name:
            # The name it was renamed to, if it is among the copies: what a quarantine entry of its lines names.
            retired.name = next(
                (str(sibling) for sibling, found in stats if (found.st_dev, found.st_ino) == (dev, ino)), ""
            )
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
        # than it (after it in rotation order, or not there yet when it was opened) come after it.
        current = self._current
        held = (current.dev, current.ino) if current is not None else None
        queued = {(younger.dev, younger.ino) for younger in self._younger}
        for (sibling, sibling_stat), identity in zip(stats[position + 1 :], identities[position + 1 :], strict=True):
            if identity == held:
                break
            if current is not None and identity not in current.copies_before:
                continue
            if identity in queued or identity in ((dev, ino), live_identity):
                continue
            if sibling_stat.st_mtime_ns < written_ns:
                continue
            try:
                handle = open(sibling, "rb")  # noqa: SIM115 - closed when its drain finishes, or in close()
            except FileNotFoundError:
                self._event("rotated_file_vanished", file=str(sibling))
                continue
            except OSError as error:
                # No permission, a directory of that name: nothing to read there (audit reports it unreadable).
                self._event("rotated_file_unreadable", file=str(sibling), error=str(error))
                continue
            opened_stat = os.fstat(handle.fileno())
            if (opened_stat.st_dev, opened_stat.st_ino) != identity:
                handle.close()  # renamed again between the listing and the open: the next look finds it
                continue
            younger = _OpenFile(handle=handle, dev=identity[0], ino=identity[1], drain_deadline=0.0, name=str(sibling))
            ladder = prefix_identities(os.pread(handle.fileno(), FINGERPRINT_MAX_BYTES, 0), final=True)
            known = self.known.position(ladder)
            if known is not None:
                # Read before (drained ahead of a copy of it, or found by the CopyReader): on from there, if at all.
                if known[1] >= opened_stat.st_size:
                    handle.close()
                    continue
                younger.fp_hash, younger.fp_len, younger.offset = known[0].fp_hash, known[0].fp_len, known[1]
                younger.first_line = ladder[0].fp_hash
            self._younger.append(younger)
            self._event("rotated_file_queued", file=str(sibling), offset=younger.offset)
        # Keep the queue in rotation order: a file already queued to be read again (after its copy, see
        # _drain_copy_first) may sit later in that order than the copies found now. Files gone from the listing
        # keep their place at the end.
        rank = {identity: index for index, identity in enumerate(identities)}
        self._younger = deque(sorted(self._younger, key=lambda queued: rank.get((queued.dev, queued.ino), len(rank))))

    def _drain_rotated(self, lines: list[Line], max_lines: int) -> None:
        while (rotated := self._rotated) is not None:
            if self._read_copies(lines, max_lines, before=rotated):
                return  # copies older than this file hold older lines: they come first
            size = os.fstat(rotated.handle.fileno()).st_size
            if rotated.fp_len and (size < rotated.offset or not self._same_start(rotated)):
                self._settle_held(rotated, lines)
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
            self._settle_held(rotated, lines)  # nothing comes after its last line now
            # Rotated again while this one drained (or waited out its grace): those copies come next, in order.
            self._queue_younger(rotated.dev, rotated.ino)
            self._event("rotated_file_drained", offset=rotated.offset)
            rotated.handle.close()
            self._rotated = self._younger.popleft() if self._younger else None
            if self._rotated is not None and not self._younger and (self._current is None or self._holds_the_path()):
                # The newest rotated copy (nothing rotated after it but the file at the path, which we either hold
                # or have not opened yet) is the one the writer may still hold open: it gets the grace too.
                self._rotated.drain_deadline = self._clock() + self._grace

    def _sibling_keys(self) -> list[tuple[int, int]]:
        keys = []
        for sibling in rotated_siblings(self.path):
            with contextlib.suppress(FileNotFoundError):
                stat = os.stat(sibling)
                keys.append((stat.st_dev, stat.st_ino))
        return keys

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
        """Within the grace period after a rename, a rename-over or a deletion, a writer may still append through its
        old descriptor until it reopens (logrotate `create` with a postrotate signal), and another writer may fill
        the new file meanwhile: the new file having data ends nothing. Only a younger rotated copy does (the
        writers moved on, twice)."""
        if self._younger or self._clock() >= (rotated.drain_deadline or 0.0):
            return False
        # Another rotation while we waited moved a file we never opened aside: queue it, and stop waiting.
        self._queue_younger(rotated.dev, rotated.ino)
        return not self._younger

    def _drain_copy_first(self, rotated: _OpenFile) -> None:
        """The file was truncated or rewritten in place before it was renamed away: finish it from the copy
        copytruncate left (if any), then read it again from 0, recognising the lines a rewrite kept."""
        self._event("rotated_file_truncated", offset=rotated.offset)
        fp_hash, fp_len, offset = rotated.fp_hash, rotated.fp_len, rotated.offset
        rotated.offset = 0
        rotated.forget_identity()
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

    def _take_identity(self, opened: _OpenFile, committed: Checkpoint) -> None:
        """Resume `opened` where the checkpoint says, known by the checkpoint's identity."""
        opened.fp_hash, opened.fp_len, opened.offset = committed.fp_hash, committed.fp_len, committed.offset
        if committed.fp_len:
            ladder = prefix_identities(os.pread(opened.handle.fileno(), committed.fp_len, 0), final=True)
            opened.first_line = ladder[0].fp_hash if ladder else b""

    def _extend_identity(self, opened: _OpenFile, chunk: bytes, start: int) -> None:
        """Make the identity of `opened` cover what has now been read of its first 4 KiB (see identity_through), and
        record how far it is read. `chunk` holds the bytes just read from content offset `start`: the identity is
        taken only from bytes that are still the ones read, so a rewrite racing the read is found at the next poll
        (the old identity no longer matches) instead of being taken for the file."""
        identity = opened.identity
        if not opened.identity_complete and opened.offset > opened.fp_len:
            limit = min(opened.offset, FINGERPRINT_MAX_BYTES)
            head = os.pread(opened.handle.fileno(), limit, 0)
            intact = len(head) == limit and (
                identity is None or identity_hash(head[: identity.fp_len]) == identity.fp_hash
            )
            if intact and (start >= limit or head[start:limit] == chunk[: limit - start]):
                ladder = prefix_identities(head, final=True)
                found = identity_through(ladder, opened.offset)
                if found is not None and (identity is None or found.fp_len > identity.fp_len):
                    opened.fp_hash, opened.fp_len = found.fp_hash, found.fp_len
                    opened.first_line = ladder[0].fp_hash
                    self.known.record(found, opened.offset, replaces=identity)
                    identity = found
                opened.identity_complete = limit == FINGERPRINT_MAX_BYTES
        if identity is not None:
            self.known.record(identity, opened.offset)

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

    def _reset(self, opened: _OpenFile, size: int, lines: list[Line]) -> None:
        """The file shrank or its start changed under the same inode: truncation, copytruncate or in-place rewrite."""
        kind = "truncated" if size < opened.offset else "rewritten"
        self._event(kind, offset=opened.offset, size=size)
        self._settle_held(opened, lines)  # what it held ended where it was read
        self._recover_copy(opened)
        self._copies.rescan()  # a copy this did not find (compressed at once, say) is the CopyReader's
        opened.offset = 0
        opened.forget_identity()
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
        ladder = prefix_identities(os.pread(handle.fileno(), FINGERPRINT_MAX_BYTES, 0), final=True)
        known = self.known.position(ladder)
        if known is not None and known[1] > offset:
            # The CopyReader read on in this copy (it found it before a poll showed why): go on from there.
            (fp_hash, fp_len), offset = (known[0].fp_hash, known[0].fp_len), known[1]
        self._rotated = _OpenFile(
            handle=handle,
            dev=sibling_stat.st_dev,
            ino=sibling_stat.st_ino,
            fp_hash=fp_hash,
            fp_len=fp_len,
            offset=offset,
            drain_deadline=self._clock(),
            first_line=ladder[0].fp_hash if ladder else b"",
            name=str(sibling),
        )
        self._event("draining_rotated", file=str(sibling), offset=offset, size=sibling_stat.st_size)

    def _begin_alignment(self, opened: _OpenFile, *, late_lines: int = 0) -> None:
        """Lines of `opened` from here on may repeat lines already read: compare them with the window first.
        `late_lines`: how many of the window's last lines the file it replaces gave after it was replaced."""
        if not self._window:
            return
        window: Sequence[int] = self._window
        pending = self._alignment
        if pending is not None and self._align_file is opened and pending.positions and not pending.finished:
            # Reset again inside the kept tail of the last reset (a second rewrite before the tailer read the first
            # one's tail again to its end): the lines that tail still holds, which its comparison still expects,
            # were read before too. The window ends with the part read again; they follow it.
            window = [*self._window, *pending.window[pending.positions[0] :]]
        self._align_file = opened
        self._alignment = KeptTail(window, late_lines=late_lines)

    def _resume_alignment(self, opened: _OpenFile, *, compare: bool) -> None:
        """After a restart inside the kept tail of a rewrite, go on marking the lines the window already holds.

        The alignment is not in the checkpoint; it is found again from the file: when every line before the
        committed offset repeats a run of the older window and that run does not reach the window's end, the
        rewrite's kept tail is not finished yet. Such a file's first line is in the window twice: at the start of
        the run it repeats and among the window's last lines, which it gave. A file whose first line the window
        holds once or not at all (the common case at every start: a long file's first line left the window long
        ago, a short one's was read once) is told from that line alone; otherwise only a file with at most half the
        window's lines is read.
        """
        if opened.offset == 0:
            if compare:
                # Committed right after a reset (a rewrite seen half done) or a rename-over: what the file holds now
                # may repeat lines read.
                self._begin_alignment(opened, late_lines=self._retired_lines)
            return
        limit = len(self._window) // 2
        if not limit:
            return
        fd = opened.handle.fileno()
        head = os.pread(fd, min(_HEAD_BYTES, opened.offset), 0)
        newline = head.find(b"\n")
        if newline < 0 and len(head) < opened.offset:
            head = os.pread(fd, min(READ_CHUNK_BYTES, opened.offset), 0)  # a first line longer than most
            newline = head.find(b"\n")
        # No newline in the first read, or an over-long first line: never part of a kept tail we could align.
        if newline < 0 or newline > self._framing.max_line_bytes:
            return
        if self._window.count(line_hash(head[:newline])) < 2:
            return
        if _lines_exceed(fd, opened.offset, limit):
            return  # counted, not framed and hashed
        window = list(self._window)
        read: list[Line] = []
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
        self._alignment = KeptTail(older, positions=[start + count for start in starts if start + count < len(older)])
        self._event("rewrite_alignment_resumed", start=starts[0], candidates=len(starts), read=count, window=len(older))

    # Reading -----------------------------------------------------------------------------------------------

    def _read(self, opened: _OpenFile, lines: list[Line], budget: int, size: int, *, final: bool) -> bool:
        """Append up to `budget` complete lines from `opened` (between its offset and `size`) to `lines`; while its
        first lines are held back (see _after_read), read on: the lines after them tell them.

        True when it stopped because the current file was truncated or rewritten under it (nothing of that read
        is handed out); the caller checks the file again.
        """
        step = budget
        while True:
            offset = opened.offset
            changed = self._read_some(opened, lines, step, size, final=final, hand_out=budget)
            if changed or not self._held or opened is not self._align_file or opened.offset == offset:
                return changed
            step = max(budget, len(self._held))  # in steps as long as what is held: a few comparisons, whatever budget

    def _read_some(
        self, opened: _OpenFile, lines: list[Line], budget: int, size: int, *, final: bool, hand_out: int
    ) -> bool:
        """One read of _read's: up to `budget` lines, some perhaps held back, `hand_out` at most handed out."""
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
                # A file without an identity yet gets it from its first line, which is framed alone: the lines after
                # it carry that line's hash as their file key.
                cursor = framing.split(
                    chunk, cursor, lines, chunk_offset=start, file_key=opened.key, budget=budget if opened.fp_len else 1
                )
                if len(lines) == count:
                    break
                budget -= len(lines) - count
                opened.offset = start + cursor
                self._extend_identity(opened, chunk, start)
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
        self._after_read(opened, lines, first_new, hand_out)
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
                self._extend_identity(opened, b"", opened.offset)
                return True
            opened.overlong_scanned += len(block)
        return False

    def _after_read(self, opened: _OpenFile, lines: list[Line], first_new: int, budget: int) -> None:
        """Mark lines a rewrite put back as duplicates, hold back those that cannot be told yet (after the ones held
        before; once told, up to `budget` of them are handed out and the rest read again), then remember the hashes
        of the lines handed out."""
        if len(lines) == first_new:
            return
        if self._alignment is not None and opened is self._align_file:
            fresh = self._held + lines[first_new:]
            hashes = [line.hash for line in fresh]
            if self._alignment.undecided(hashes):
                if not self._held:
                    self._event("rewrite_alignment_held", lines=len(fresh), window=len(self._alignment.window))
                self._held = fresh
                del lines[first_new:]
                if opened.identity is not None:
                    # Nothing of the file is handed out yet: a copy of it found later is read whole and compared.
                    self.known.forget(opened.identity)
                return
            self._held = []
            compared = hashes
            if len(fresh) > budget:
                # Told by lines beyond the budget: those are read again, and marked then as the comparison says.
                opened.offset = fresh[budget].offset
                opened.overlong_from = -1
                fresh, hashes = fresh[:budget], hashes[:budget]
            marks = self._duplicate_marks(hashes, compared=compared)
            lines[first_new:] = [as_duplicate(line) if seen else line for line, seen in zip(fresh, marks, strict=True)]
        self._hand_out(opened, lines[first_new:])

    def _settle_held(self, opened: _OpenFile, lines: list[Line]) -> None:
        """`opened` ends where it was read (drained, or truncated or rewritten under us): if it holds lines back, its
        run is judged as it stands (see rewrite_alignments, `ended`), and they are appended to `lines`."""
        if not self._held or opened is not self._align_file:
            return
        held, self._held = self._held, []
        marks = self._duplicate_marks([line.hash for line in held], ended=True)
        settled = [as_duplicate(line) if seen else line for line, seen in zip(held, marks, strict=True)]
        lines.extend(settled)
        self._hand_out(opened, settled)

    def _hand_out(self, opened: _OpenFile, lines: list[Line]) -> None:
        """Remember the hashes of lines of `opened` handed out, and how far the file is read."""
        self._remember(lines)
        if opened.name and lines:
            self._origins[opened.key] = opened.name
        if opened is self._retired:
            self._retired_lines += len(lines)
        self._extend_identity(opened, b"", opened.offset)  # after a last fragment or over-long line too

    def _remember(self, lines: list[Line]) -> None:
        self._window.extend([line.hash for line in lines])
        self._window_seq += len(lines)

    def _read_copies(self, lines: list[Line], max_lines: int, *, before: _OpenFile | None = None) -> bool:
        """Read rotated copies that hold lines never read (older than `before`, or than the current file); True while
        some are left."""
        first_new = len(lines)
        held = {(opened.dev, opened.ino) for opened in (self._current, self._rotated, *self._younger) if opened}
        self._copies.read(
            lines,
            max_lines - first_new,
            held=held,
            window=self._window,
            late_lines=self._retired_lines,
            before=(before.dev, before.ino) if before is not None else None,
            there_before=before.copies_before if before is not None else frozenset(),
        )
        self._remember(lines[first_new:])
        return self._copies.has_backlog

    def _duplicate_marks(
        self, hashes: list[int], *, ended: bool = False, compared: list[int] | None = None
    ) -> list[bool]:
        """Which of these lines (the next ones read after a reset or a replacement) were read before it; `ended`
        when the file gives no line after them; `compared`, the lines the first comparison looks at (these and
        those read after them)."""
        alignment = self._alignment
        assert alignment is not None
        was_open = alignment.positions is None
        alignment.begin(hashes if compared is None else compared, ended=ended)
        marks = alignment.marks(hashes)
        if was_open and alignment.aligned_at:
            self._event("rewrite_aligned", start=alignment.aligned_at[0], window=len(alignment.window))
        elif was_open:
            self._event("rewrite_unaligned", window=len(alignment.window))
        if alignment.finished:
            self._alignment = None
        return marks

    def _event(self, event: str, **detail: object) -> None:
        self.events.append(TailEvent(self.name, event, detail))


def _held_when_stopped(committed: Checkpoint) -> bool:
    """Whether the checkpoint was taken before its file, a replacement, was compared with the lines read: at offset 0,
    its first lines held back (see SourceTailer._after_read) or not read at all yet (the path replaced, then no poll
    before the stop). Its lines are compared when it is read, wherever it is found."""
    return committed.offset == 0 and committed.replaced_at_seq >= 0


def _lines_exceed(fd: int, end: int, limit: int) -> bool:
    """Whether the bytes before `end` (a line boundary) hold more than `limit` lines: their newlines counted."""
    count = 0
    position = 0
    while position < end:
        block = os.pread(fd, min(READ_CHUNK_BYTES, end - position), position)
        if not block:
            return False
        count += block.count(b"\n")
        if count > limit:
            return True
        position += len(block)
    return False
