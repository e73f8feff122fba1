"""The file layer under the sources: a file's content (plain or gzip), its identity (first-line fingerprint), its
rotated siblings, and whole-file reads framed as the tailer frames the live file. The tailer follows the live file
with it; backfill, audit and evaluate read current files and rotated copies through it.
"""

from __future__ import annotations

import gzip
import os
import re
import sys
import zlib
from collections.abc import Iterator
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
_UNREADABLE: Final = (EOFError, gzip.BadGzipFile, zlib.error)


# Identity ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """What a file is, whatever its name: the hash of its first line (or first 4 KiB) and that length in bytes."""

    fp_hash: bytes
    fp_len: int


def identity_hash(data: bytes) -> bytes:
    """The 16-byte hash a file's first bytes are known by."""
    return blake2b(data, digest_size=16).digest()


def fingerprint(data: bytes) -> Identity | None:
    """Fingerprint of a file from its first bytes: the first line (or its first 4 KiB); None until it is complete."""
    newline = data.find(b"\n", 0, FINGERPRINT_MAX_BYTES)
    if newline >= 0:
        length = newline + 1
    elif len(data) >= FINGERPRINT_MAX_BYTES:
        length = FINGERPRINT_MAX_BYTES
    else:
        return None
    return Identity(identity_hash(data[:length]), length)


def identify(first_bytes: bytes) -> Identity | None:
    """The identity of content starting with `first_bytes` (at least FINGERPRINT_MAX_BYTES of it, or all of it).

    Same as the fingerprint; a file that is one short unterminated fragment (no fingerprint yet) is known by the
    hash of all of it, so a finished rotated fragment is read once.
    """
    found = fingerprint(first_bytes)
    if found is not None or not first_bytes:
        return found
    return Identity(identity_hash(first_bytes), len(first_bytes))


def starts_with(path: Path, fp_hash: bytes, fp_len: int) -> bool:
    """Whether the plain file at `path` has the fingerprint (fp_hash, fp_len); False when it is gone."""
    if not fp_len:
        return False
    try:
        with open(path, "rb") as handle:
            return identity_hash(handle.read(fp_len)) == fp_hash
    except FileNotFoundError:
        return False


# Rotated siblings ----------------------------------------------------------------------------------------------

_NUMBERED = re.compile(r"^\.(\d+)(\.gz)?$")
_DATED = re.compile(r"^[.-](\d{4}-?\d{2}-?\d{2}(?:[-_T]?\d{2,6})?)(\.gz)?$")


def is_compressed(path: Path) -> bool:
    return path.suffix == ".gz"


def rotated_siblings(path: Path) -> list[Path]:
    """Rotated copies of `path` beside it (`name.1`, `name.2.gz`, `name-20260301`, `name.2026-03-01.gz`), oldest first.

    Numbered copies count down in age (`.3` is older than `.1`); dated copies count up. Dated copies precede
    numbered ones when both exist, since logrotate's numbered scheme keeps the freshest copies.
    """
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    numbered: list[tuple[int, Path]] = []
    dated: list[tuple[str, Path]] = []
    for name in names:
        if not name.startswith(path.name) or name == path.name:
            continue
        suffix = name[len(path.name) :]
        match = _NUMBERED.match(suffix)
        if match:
            numbered.append((int(match.group(1)), path.parent / name))
            continue
        match = _DATED.match(suffix)
        if match:
            dated.append((match.group(1).replace("-", ""), path.parent / name))
    return [p for _, p in sorted(dated)] + [p for _, p in sorted(numbered, reverse=True)]


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
            except _UNREADABLE as failure:
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
    identity: Identity | None  # None: empty, or a current file whose first line is not complete yet
    is_current: bool
    is_compressed: bool
    disk_bytes: int
    dev: int
    ino: int
    mtime_ns: int
    error: str = ""  # why its content cannot be read (a damaged or half-written gzip file)


def source_files(path: Path) -> list[HistoryFile]:
    """The rotated copies of `path`, oldest first, then `path` itself; files that vanish meanwhile are left out."""
    found: list[HistoryFile] = []
    for candidate in [*rotated_siblings(path), path]:
        is_current = candidate == path
        error = ""
        try:
            with DecompressedFile(candidate) as handle:
                stat = handle.stat()
                try:
                    head = handle.read(FINGERPRINT_MAX_BYTES)
                except _UNREADABLE as problem:
                    head, error = b"", f"unreadable: {problem}"
        except FileNotFoundError:
            continue
        found.append(
            HistoryFile(
                path=candidate,
                # The current file is the tailer's: known only once its first line is complete, as the tailer knows it.
                identity=fingerprint(head) if is_current else identify(head),
                is_current=is_current,
                is_compressed=is_compressed(candidate),
                disk_bytes=stat.st_size,
                dev=stat.st_dev,
                ino=stat.st_ino,
                mtime_ns=stat.st_mtime_ns,
                error=error,
            )
        )
    return found


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

    def lines(self, *, final: bool) -> Iterator[Line]:
        """Every complete line to the end; with `final`, a last unterminated fragment too (it can never end now)."""
        framing = self._framing
        file_key = self._file_key
        buffer = b""  # content from self.offset on, not yet framed
        overlong_head: bytes | None = None  # head of a line already known to exceed max_line_bytes
        overlong_length = 0
        while True:
            try:
                chunk = self._handle.read(self._chunk)
            except _UNREADABLE as problem:
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
            except _UNREADABLE as problem:
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
