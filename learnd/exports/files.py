"""Exports: JSON files the bot and operators read, derived from what the store committed, written atomically.

A reader never sees a half-written file (temp file, fsync, rename); append-only journals are replayed
from the store so a crash between commit and write loses nothing and repeats nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson

# A journal's end is read in parts of this size, as far back as its last whole row begins.
_TAIL_BYTES: Final = 65_536


def json_bytes(document: Any) -> bytes:
    """A document as the JSON files learnd writes: indented, keys sorted, one trailing newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_json_atomic(path: Path, document: Any) -> None:
    """Replace `path` with `document` as indented JSON: temp file in the same directory, fsync, rename, fsync dir."""
    write_bytes_atomic(path, json_bytes(document))


def write_bytes_atomic(
    path: Path, data: bytes, *, durable: bool = True, replaced: Callable[[], None] | None = None
) -> None:
    """Replace `path` with `data` so that a reader sees either the old or the new content, never a mix.

    `durable` also flushes the file and its directory to disk before returning: the files the bot reads. Reports
    skip it (a job catch-up writes hundreds; they are as durable as the store's last commits, which the
    synchronous=NORMAL store may also lose to a power cut, and then runs again). `replaced` is called as soon as
    the path holds `data`, before the directory is flushed (which may still fail).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # One fixed temp name: the home lock makes this process the only writer, and a temp file a kill left
    # behind is simply overwritten next time instead of piling up.
    temp = path.with_name(f".{path.name}.tmp")
    try:
        with open(temp, "wb") as handle:
            _keep_access(path, handle.fileno())
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if replaced is not None:
        replaced()
    if not durable:
        return
    fsync_directory(path.parent)


def _keep_access(path: Path, handle: int) -> None:
    """Give the file about to replace `path` the mode of the one it replaces, and its owner and group as far as
    this process may: the bot (perhaps another user, perhaps under a stricter umask than learnd's) must go on
    reading the file it read. A new file takes the process's umask."""
    try:
        was = os.stat(path)
    except FileNotFoundError:
        return
    os.fchmod(handle, stat.S_IMODE(was.st_mode))
    may_chown = _may_chown()
    uid = was.st_uid if may_chown and was.st_uid != os.geteuid() else -1
    own_group = was.st_gid == os.getegid() or was.st_gid in os.getgroups()
    gid = was.st_gid if (may_chown or own_group) and was.st_gid != os.getegid() else -1
    if (uid, gid) != (-1, -1):
        os.fchown(handle, uid, gid)


@cache
def _may_chown() -> bool:
    """Whether this process may give a file to another owner: CAP_CHOWN in its effective set (root usually has it;
    root in a container or unit that dropped it does not, and fchown would fail)."""
    status = Path("/proc/self/status")
    if status.exists():  # Linux; elsewhere the user id says
        for line in status.read_bytes().splitlines():
            if line.startswith(b"CapEff:"):
                return bool(int(line.split()[1], 16) & 1 << _CAP_CHOWN)
    return os.geteuid() == 0


_CAP_CHOWN: Final = 0


def fsync_directory(directory: Path) -> None:
    """Flush a directory's entries (a file created or renamed in it) to disk."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class Journal:
    """An append-only JSON Lines export of store rows that carry a sequence number (`seq`).

    On first use it reads the file's last line to learn the last `seq` written, so rows committed but not yet
    written before a crash are appended exactly once on the next run. A mark beside it (`.<name>.seq`, written
    after each append) keeps that seq too: a journal an operator rotated by renaming it (a new empty file in its
    place) goes on after the last row written, instead of getting the store's rows again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mark_path = journal_mark(path)
        self._last_seq: int | None = None

    @property
    def last_seq(self) -> int:
        if self._last_seq is None:
            self._last_seq = max(_last_seq_in(self.path), _read_mark(self.mark_path))
        return self._last_seq

    def append(self, rows: Iterable[tuple[int, bytes]]) -> int:
        """Append rows (seq, JSON object bytes) newer than the file's last seq; returns how many were written."""
        last = self.last_seq
        lines: list[bytes] = []
        for seq, body in rows:
            if seq <= last:
                continue
            document = orjson.loads(body)
            document["seq"] = seq
            lines.append(orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n")
            last = seq
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            try:
                with open(self.path, "a+b") as handle:
                    # A crash or a full disk mid-append left a torn last line: it goes (its row is among those
                    # appended again), so that every line of the file is a whole row.
                    _cut_torn_tail(handle)
                    handle.write(b"".join(lines))
                    handle.flush()
                    os.fsync(handle.fileno())
                if created:
                    # The store drops what a journal holds: a new journal's name must outlast a power cut too.
                    fsync_directory(self.path.parent)
            except BaseException:
                self._last_seq = None  # some rows may be in: the file says which, next time
                raise
            self._last_seq = last
            # Not flushed: without it (a power cut) the file's own last row says as much, unless it was rotated.
            write_bytes_atomic(self.mark_path, b"%d\n" % last, durable=False)
        return len(lines)


def journal_mark(path: Path) -> Path:
    """Where a journal keeps the seq of the last row it wrote (see Journal)."""
    return path.with_name(f".{path.name}.seq")


def _read_mark(path: Path) -> int:
    try:
        text = path.read_bytes().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


def _cut_torn_tail(handle: BinaryIO) -> None:
    """Truncate a file open for reading and appending after its last newline."""
    size = handle.seek(0, os.SEEK_END)
    if not size:
        return
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return  # whole, as nearly always
    end = size
    keep = 0
    while end > 0:
        start = max(0, end - _TAIL_BYTES)
        handle.seek(start)
        found = handle.read(end - start).rfind(b"\n")
        if found >= 0:
            keep = start + found + 1
            break
        end = start
    if keep < size:
        handle.truncate(keep)
    handle.seek(0, os.SEEK_END)


def _last_seq_in(path: Path) -> int:
    """The seq of the file's last whole row (0 without one); read from the end, as far back as that row goes."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            span = _TAIL_BYTES
            while True:
                handle.seek(max(0, size - span))
                tail = handle.read()
                lines = tail.splitlines()
                if size > span:
                    lines = lines[1:]  # the first may begin before the part read
                for line in reversed(lines):
                    try:
                        document = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # a torn last line from a crash mid-append: the rows before it decide
                    if isinstance(document, dict) and isinstance(document.get("seq"), int):
                        return int(document["seq"])
                if size <= span:
                    return 0
                span *= 4
    except FileNotFoundError:
        return 0
