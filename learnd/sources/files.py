"""The file layer under the sources: a file's content (plain or gzip), its identity (its first whole lines, up to
4 KiB), what the store knows of a source's files, its rotated siblings, and whole-file reads framed as the tailer
frames the live file. The tailer follows the live file with it; backfill, audit and evaluate read current files and
rotated copies through it.
"""

from __future__ import annotations

import gzip
import os
import re
import sys
import zlib
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path
from typing import IO, Final

from learnd.errors import LearndError
from learnd.sources.framing import Line, LineFraming

FINGERPRINT_MAX_BYTES: Final = 4096
READ_CHUNK_BYTES: Final = 1 << 20
# Lines framed at a time by a whole-file read: handed on while still in the CPU cache (a megabyte's worth of
# Lines at once made reading about a tenth slower).
_LINES_PER_SPLIT: Final = 64
# What a gzip file still being written (or damaged) raises part-way through.
UNREADABLE: Final = (EOFError, gzip.BadGzipFile, zlib.error)


# Identity ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """What a file is, whatever its name: the hash of its first `fp_len` bytes (a run of whole lines within its first
    4 KiB) and that length."""

    fp_hash: bytes
    fp_len: int


def identity_hash(data: bytes) -> bytes:
    """The 16-byte hash a file's first bytes are known by."""
    return blake2b(data, digest_size=16).digest()


def prefix_identities(head: bytes, *, final: bool) -> tuple[Identity, ...]:
    """Every identity a file starting with `head` (its first FINGERPRINT_MAX_BYTES, or all of it) can be known by,
    shortest first: its start through each line end within the first 4 KiB.

    A first line longer than 4 KiB is known by its first 4 KiB; with `final` (a rotated copy, which gets no more
    bytes), content that is one short unterminated fragment is known by all of it, so that it is read once.
    """
    window = head[:FINGERPRINT_MAX_BYTES]
    found: list[Identity] = []
    hasher = blake2b(digest_size=16)
    start = 0
    while (newline := window.find(b"\n", start)) >= 0:
        hasher.update(window[start : newline + 1])
        start = newline + 1
        found.append(Identity(hasher.copy().digest(), start))
    if not found and window and (final or len(window) == FINGERPRINT_MAX_BYTES):
        found.append(Identity(identity_hash(window), len(window)))
    return tuple(found)


def identify(head: bytes) -> Identity | None:
    """The identity of a finished file (a rotated copy) starting with `head`: the longest of its prefix identities."""
    found = prefix_identities(head, final=True)
    return found[-1] if found else None


def identity_through(ladder: Sequence[Identity], offset: int) -> Identity | None:
    """The identity of a file with prefix identities `ladder` (taken as final), read through `offset`: its start up
    to the last line end within what was read and within 4 KiB. A copy of the file made after the read holds those
    bytes too and is known by it; a file that only begins the same way is not."""
    found = None
    for identity in ladder:
        if identity.fp_len > offset:
            break
        found = identity
    return found


def starts_with(path: Path, fp_hash: bytes, fp_len: int) -> bool:
    """Whether the plain file at `path` has the identity (fp_hash, fp_len); False when it is gone or cannot be read
    (no permission, a directory of that name: a file learnd cannot read is not the one it was reading)."""
    if not fp_len:
        return False
    try:
        with open(path, "rb") as handle:
            return identity_hash(handle.read(fp_len)) == fp_hash
    except OSError:
        return False


class KnownFiles:
    """What the store knows of one source's files: how far each file identity was read, and the identities of the
    rotated copies that were already there when learnd began to follow the source (its history, which only a
    backfill reads). Changes since the last `take_changes()` are what the next commit writes."""

    def __init__(
        self, read: dict[Identity, int] | None = None, history: Iterable[Identity] = (), *, following: bool = True
    ) -> None:
        self.read: dict[Identity, int] = dict(read or {})
        self.history = frozenset(history)
        # False for a home no learnd of this version has followed yet: every copy it did not read is history.
        self.following = following
        self._changed: dict[Identity, int] = {}
        self._dropped: set[Identity] = set()

    def position(self, ladder: Sequence[Identity]) -> tuple[Identity, int] | None:
        """The most specific known identity among a file's prefix identities, and how far it was read."""
        for identity in reversed(ladder):
            offset = self.read.get(identity)
            if offset is not None:
                return identity, offset
        return None

    def offset(self, identity: Identity) -> int:
        return self.read.get(identity, 0)

    def is_history(self, ladder: Sequence[Identity]) -> bool:
        """A copy that was there when learnd began to follow the source (it may have grown or been compressed since)."""
        return not self.following or any(identity in self.history for identity in ladder)

    def record(self, identity: Identity, offset: int, *, replaces: Identity | None = None) -> None:
        """The file known by `identity` has been read through `offset`. When reading further made its identity longer,
        the shorter one it `replaces` is forgotten: another file beginning the same way must not inherit its offset."""
        if replaces is not None and replaces != identity and replaces in self.read:
            del self.read[replaces]
            self._changed.pop(replaces, None)
            self._dropped.add(replaces)
        self.read[identity] = offset
        self._changed[identity] = offset
        self._dropped.discard(identity)

    def forget(self, identity: Identity) -> None:
        """The file known by `identity` counts as not read at all (its first lines were read but held back)."""
        if identity in self.read:
            del self.read[identity]
            self._changed.pop(identity, None)
            self._dropped.add(identity)

    def take_changes(self) -> tuple[dict[Identity, int], set[Identity]]:
        """Identities read (with their offsets) and identities forgotten since the last call."""
        changed, dropped = self._changed, self._dropped
        self._changed, self._dropped = {}, set()
        return changed, dropped


# Rotated siblings ----------------------------------------------------------------------------------------------

_NUMBERED = re.compile(r"^\.(\d+)(\.gz)?$")
# A date, then any time parts logrotate's dateformat may add (`-%H`, `-%H%M%S`, `-%s`, `-%H-%M`).
# Each time part after the first begins with its separator, so a name can be split one way only (an optional
# separator made a long run of digits try every split: exponential time on a name that then did not match).
_DATED = re.compile(r"^[.-](\d{4}-?\d{2}-?\d{2})([-_T]?\d*(?:[-_T]\d+)*)(\.gz)?$")
_DIGITS = re.compile(r"\d+")


def is_compressed(path: Path) -> bool:
    return path.suffix == ".gz"


def rotated_siblings(path: Path) -> list[Path]:
    """Rotated copies of `path` beside it (`name.1`, `name.2.gz`, `name-20260301`, `name.2026-03-01.gz`,
    `name-20260301-1772461950`), oldest first.

    Numbered copies count down in age (`.3` is older than `.1`); dated copies count up. Dated copies precede
    numbered ones when both exist, since logrotate's numbered scheme keeps the freshest copies. When `path` is a
    symbolic link, the copies beside the file it points to count too: logrotate, configured on the real file,
    leaves them there.
    """
    places = [path]
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if target != path:
            places.append(target)
    numbered: list[tuple[int, Path]] = []
    dated: list[tuple[tuple[str, tuple[int, ...]], Path]] = []
    for place in places:
        try:
            names = os.listdir(place.parent)
        except FileNotFoundError:
            continue
        for name in names:
            if not name.startswith(place.name) or name == place.name:
                continue
            suffix = name[len(place.name) :]
            match = _NUMBERED.match(suffix)
            if match:
                numbered.append((int(match.group(1)), place.parent / name))
                continue
            match = _DATED.match(suffix)
            if match:
                # Ordered by the date, then by each time part as a number.
                times = tuple(int(part) for part in _DIGITS.findall(match.group(2)))
                dated.append(((match.group(1).replace("-", ""), times), place.parent / name))
    found = [p for _, p in sorted(dated)] + [p for _, p in sorted(numbered, key=lambda item: (-item[0], item[1]))]
    return list(dict.fromkeys(found))


# Content -------------------------------------------------------------------------------------------------------


class HistoryError(LearndError):
    """A rotated file whose content cannot be read to its end (a damaged or half-written gzip file)."""


class DecompressedFile:
    """A file's content as bytes (gzip inflated on the fly), with how far into the file on disk reading has got."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()/__exit__
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="rb") if is_compressed(path) else None
        self._failure: BaseException | None = None

    def __enter__(self) -> DecompressedFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()
        self._raw.close()

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of content; b"" at the end. A damaged or unfinished gzip file yields what inflates
        before the damage, then raises (EOFError, BadGzipFile, zlib.error) on the next read."""
        if self._gzip is None:
            return self._raw.read(size)
        if self._failure is not None:
            raise self._failure
        pieces: list[bytes] = []
        wanted = size
        while wanted > 0:
            try:
                piece = self._gzip.read1(wanted)
            except UNREADABLE as failure:
                if not pieces:
                    raise
                self._failure = failure
                break
            if not piece:
                break
            pieces.append(piece)
            wanted -= len(piece)
        return b"".join(pieces)

    def seek(self, offset: int) -> None:
        """Move to a content offset (a gzip file inflates everything before it)."""
        if self._gzip is not None:
            self._gzip.seek(offset)
        else:
            self._raw.seek(offset)

    def skip_towards(self, offset: int, *, max_bytes: int) -> bool:
        """Move towards a content offset inflating at most `max_bytes` (a gzip file), so that a caller can stop or
        serve others in between; True once there (or at the end of the content). Raises like read()."""
        if self._gzip is None:
            self._raw.seek(offset)
            return True
        position = self._gzip.tell()
        if position >= offset:
            return True
        skipped = self._gzip.read(min(max_bytes, offset - position))
        return not skipped or position + len(skipped) >= offset

    def stat(self) -> os.stat_result:
        return os.fstat(self._raw.fileno())

    def disk_position(self) -> int:
        """Bytes of the file on disk consumed so far (compressed bytes for gzip), for progress."""
        return self._raw.tell()


# A source's files ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryFile:
    """One file of a source as found on disk: a rotated copy or the current file."""

    path: Path
    ladder: tuple[Identity, ...]  # its prefix identities (empty: empty, or a current file with no complete line yet)
    is_current: bool
    is_compressed: bool
    disk_bytes: int
    dev: int
    ino: int
    mtime_ns: int
    error: str = ""  # why its content cannot be read (a damaged or half-written gzip file)

    @property
    def identity(self) -> Identity | None:
        """The longest of its prefix identities: what it is known by once read (or copied) whole."""
        return self.ladder[-1] if self.ladder else None

    def is_copy_of(self, other: HistoryFile) -> bool:
        """Whether this file's content, as far as its identity reaches, is the start of `other`'s (a copy of it, or
        the same file compressed); two files that only begin with the same line are not copies."""
        return self.identity is not None and self.identity in other.ladder


def inspect_file(path: Path, *, is_current: bool) -> HistoryFile | None:
    """`path` as a file of its source (its prefix identities from its decompressed start); None when it is gone."""
    error = ""
    try:
        with DecompressedFile(path) as handle:
            stat = handle.stat()
            try:
                head = handle.read(FINGERPRINT_MAX_BYTES)
            except UNREADABLE as problem:
                head, error = b"", f"unreadable: {problem}"
    except FileNotFoundError:
        return None
    except OSError as problem:
        # No permission, a directory of that name: known by its name and stat, reported, never read (like a damaged
        # gzip copy), so one such file stalls no source.
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        head, error = b"", f"unreadable: {problem.strerror or problem}"
    return HistoryFile(
        path=path,
        # The current file is still written: a last fragment is no part of what it is known by.
        ladder=prefix_identities(head, final=not is_current),
        is_current=is_current,
        is_compressed=is_compressed(path),
        disk_bytes=stat.st_size,
        dev=stat.st_dev,
        ino=stat.st_ino,
        mtime_ns=stat.st_mtime_ns,
        error=error,
    )


def source_files(path: Path) -> list[HistoryFile]:
    """The rotated copies of `path`, oldest first, then `path` itself; files that vanish meanwhile are left out."""
    found: list[HistoryFile] = []
    for candidate in [*rotated_siblings(path), path]:
        inspected = inspect_file(candidate, is_current=candidate == path)
        if inspected is not None:
            found.append(inspected)
    return found


def history_identities(path: Path) -> list[Identity]:
    """The identities of the rotated copies beside `path` now: its history, when learnd begins to follow it."""
    return [found.identity for found in source_files(path) if not found.is_current and found.identity is not None]


def unread_start(found: HistoryFile, known: KnownFiles, current: HistoryFile | None, *, history: bool) -> int | None:
    """Where the lines of rotated copy `found` that were never read begin, or None when it holds none to read here.

    A copy of the current file is left to whoever reads the current file (its content is read there). A copy of a
    file read before starts where that reading stopped, whoever read it and whatever the copy is called now. A copy
    never seen starts at 0, unless it is history (there when learnd began to follow the source): only a backfill
    (`history`) reads those.
    """
    if found.error or found.identity is None or (current is not None and found.is_copy_of(current)):
        return None
    position = known.position(found.ladder)
    if position is not None:
        start = position[1]
    elif history or not known.is_history(found.ladder):
        start = 0
    else:
        return None
    return None if is_read_to_its_end(found, start) else start


def is_read_to_its_end(found: HistoryFile, start: int) -> bool:
    """Whether reading `found` from content offset `start` would find nothing."""
    if not found.is_compressed:
        return start >= found.disk_bytes
    # gzip's trailer holds the content size modulo 2**32: enough to skip a file read to its end without inflating
    # it on every look (a multi-member file only says its last member's size, so it is inflated to check).
    try:
        with open(found.path, "rb") as handle:
            handle.seek(max(0, found.disk_bytes - 4))
            trailer = handle.read(4)
    except FileNotFoundError:
        return True
    return start > 0 and len(trailer) == 4 and int.from_bytes(trailer, "little") == start % (1 << 32)


class LineReader:
    """Complete lines of a file from a content offset, framed as the tailer frames them (LineFraming).

    `offset` is the content offset after the last line handed out (already when it is handed out): where the
    next read resumes.
    """

    def __init__(
        self,
        handle: DecompressedFile,
        *,
        source: str,
        file_key: str,
        start: int,
        max_line_bytes: int,
        keep_bytes: int,
        chunk_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        self._handle = handle
        self._framing = LineFraming(source, max_line_bytes, keep_bytes)
        self._file_key = file_key
        self._chunk = chunk_bytes
        self.offset = start
        self.error = ""
        handle.seek(start)

    def lines(self, *, final: bool) -> Generator[Line, None, None]:
        """Every complete line to the end; with `final`, a last unterminated fragment too (it can never end now)."""
        framing = self._framing
        file_key = self._file_key
        buffer = b""  # content from self.offset on, not yet framed
        overlong_head: bytes | None = None  # head of a line already known to exceed max_line_bytes
        overlong_length = 0
        while True:
            try:
                chunk = self._handle.read(self._chunk)
            except UNREADABLE as problem:
                # Lines before the damage are handed out; the rest waits (a gzip file being written is finished later).
                self.error = f"unreadable after content offset {self.offset + len(buffer)}: {problem}"
                return
            if not chunk:
                break
            if overlong_head is not None:
                newline = chunk.find(b"\n")
                end = newline if newline >= 0 else len(chunk)
                # With keep_bytes over max_line_bytes the head is still short: the line's next bytes complete it.
                overlong_head += chunk[: min(end, framing.keep_bytes - len(overlong_head))]
                overlong_length += end
                if newline < 0:
                    continue
                line = framing.overlong(file_key, self.offset, overlong_head, overlong_length)
                self.offset += overlong_length + 1
                overlong_head = None
                yield line
                chunk = chunk[newline + 1 :]
            buffer += chunk
            buffer_offset = self.offset
            cursor = 0
            while True:
                found: list[Line] = []
                cursor = framing.split(
                    buffer, cursor, found, chunk_offset=buffer_offset, file_key=file_key, budget=_LINES_PER_SPLIT
                )
                if not found:
                    break
                for line in found:
                    # Each ends at its newline; `raw` holds only the head of an over-long one.
                    self.offset = line.offset + (line.too_long or len(line.raw)) + 1
                    yield line
            buffer = buffer[cursor:]
            if len(buffer) > framing.max_line_bytes:
                overlong_head, overlong_length, buffer = buffer[: framing.keep_bytes], len(buffer), b""
        if not final:
            return
        if overlong_head is not None:
            line = framing.overlong(file_key, self.offset, overlong_head, overlong_length, unterminated=True)
            self.offset += overlong_length
            yield line
        elif buffer:
            line = framing.fragment(file_key, self.offset, buffer)
            self.offset += len(buffer)
            yield line


def complete_lines(path: Path) -> Iterator[bytes]:
    """Every newline-terminated line, whole and without its newline, of `path`'s rotated copies (oldest first) and
    of `path`; a last fragment is left out. Content that cannot be read raises HistoryError."""
    for found in source_files(path):
        if found.error:
            raise HistoryError(f"{found.path}: {found.error}")
        try:
            handle = DecompressedFile(found.path)
        except FileNotFoundError:
            continue
        with handle:
            # No line is over-long here: a reader of whole lines gets every line whole, however long.
            reader = LineReader(handle, source="", file_key="", start=0, max_line_bytes=sys.maxsize, keep_bytes=0)
            for line in reader.lines(final=False):
                yield line.raw
            if reader.error:
                raise HistoryError(f"{found.path}: {reader.error}")


# Counting ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineCensus:
    """Lines of one file's content counted around an offset (newline-terminated lines, plus the last fragment)."""

    content_bytes: int
    lines_before: int  # complete lines ending at or before the offset
    lines_after: int  # complete lines ending after it
    fragment_bytes: int  # bytes after the last newline
    fragment_start: int


def census(path: Path, offset: int) -> LineCensus:
    """Count the lines of `path` (decompressed) that end before and after content `offset`."""
    before = after = 0
    position = 0
    last_end = 0
    with DecompressedFile(path) as handle:
        while True:
            try:
                chunk = handle.read(READ_CHUNK_BYTES)
            except UNREADABLE as problem:
                raise HistoryError(f"{path}: unreadable after content offset {position}: {problem}") from None
            if not chunk:
                break
            split = max(0, min(len(chunk), offset - position))
            before += chunk.count(b"\n", 0, split)
            after += chunk.count(b"\n", split)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                last_end = position + newline + 1
            position += len(chunk)
    return LineCensus(
        content_bytes=position,
        lines_before=before,
        lines_after=after,
        fragment_bytes=position - last_end,
        fragment_start=last_end,
    )
