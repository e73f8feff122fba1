"""Exports: JSON files the bot and operators read, derived from what the store committed, written atomically.

A reader never sees a half-written file (temp file, fsync, rename); append-only journals are replayed
from the store so a crash between commit and write loses nothing and repeats nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson


def json_bytes(document: Any) -> bytes:
    """A document as the JSON files learnd writes: indented, keys sorted, one trailing newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_json_atomic(path: Path, document: Any) -> None:
    """Replace `path` with `document` as indented JSON: temp file in the same directory, fsync, rename, fsync dir."""
    write_bytes_atomic(path, json_bytes(document))


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` so that a reader sees either the old or the new content, never a mix.

    `durable` also flushes the file and its directory to disk before returning: the files the bot reads. Reports
    skip it (a job catch-up writes hundreds; they are as durable as the store's last commits, which the
    synchronous=NORMAL store may also lose to a power cut, and then runs again).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # One fixed temp name: the home lock makes this process the only writer, and a temp file a kill left
    # behind is simply overwritten next time instead of piling up.
    temp = path.with_name(f".{path.name}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if not durable:
        return
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Journal:
    """An append-only JSON Lines export of store rows that carry a sequence number (`seq`).

    On first use it reads the file's last line to learn the last `seq` written, so rows committed but not yet
    written before a crash are appended exactly once on the next run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last_seq: int | None = None

    @property
    def last_seq(self) -> int:
        if self._last_seq is None:
            self._last_seq = _last_seq_in(self.path)
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
            with open(self.path, "ab") as handle:
                if handle.tell() and not _ends_with_newline(self.path):
                    # A crash mid-append left a torn last line: start ours on a line of its own.
                    handle.write(b"\n")
                handle.write(b"".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
            self._last_seq = last
        return len(lines)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _last_seq_in(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            tail = handle.read()
    except FileNotFoundError:
        return 0
    for line in reversed(tail.splitlines()):
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line from a crash mid-append: the rows before it decide
        if isinstance(document, dict) and isinstance(document.get("seq"), int):
            return int(document["seq"])
    return 0
