"""A bot stand-in for the live benchmarks: appends prepared lines to the logs at a steady rate."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import orjson

from bench.homes import BaseHome, stream_lines


def seed_logs(base: BaseHome, home: Path, names: tuple[str, ...], *, empty: bool = False) -> dict[str, Path]:
    """Logs for a live run under `home/logs`: the base home's lines in the sessions ending at the last one before
    today (copy 0 of the live map), or empty files."""
    logs = {name: home / "logs" / f"{name}.jsonl" for name in names}
    logs[names[0]].parent.mkdir(parents=True, exist_ok=True)
    for name, path in logs.items():
        path.write_bytes(b"" if empty else base.moved_copy(name, 0, base.live_map))
    return logs


def upcoming(base: BaseHome, name: str, count: int) -> list[bytes]:
    """The next `count` lines the bot would append to one log after copy 0, in the sessions from today on."""
    return list(islice(stream_lines(base, name, 1), count))


def closed_trades(base: BaseHome, count: int) -> list[bytes]:
    """`count` distinct, well-formed closed-trade lines that come after copy 0, in event order."""
    seen: set[str] = set()
    trades: list[bytes] = []
    lines: Iterator[bytes] = stream_lines(base, "attribution", 1)
    for line in lines:
        if len(trades) >= count:
            break
        if b'"trade_id":"close_' not in line:
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict) and row["trade_id"] not in seen:
            seen.add(row["trade_id"])
            trades.append(line)
    return trades


class Appender:
    """Open logs (unbuffered, append mode) and the prepared lines still to write to each."""

    def __init__(self, logs: Mapping[str, Path], lines: Mapping[str, list[bytes]]) -> None:
        self._handles: dict[str, BinaryIO] = {name: open(logs[name], "ab", buffering=0) for name in lines}  # noqa: SIM115
        self._lines = {name: list(values) for name, values in lines.items()}
        self.written = dict.fromkeys(lines, 0)

    def remaining(self, name: str) -> int:
        return len(self._lines[name]) - self.written[name]

    def append(self, name: str, count: int) -> int:
        """Write the next `count` lines of `name` in one write; returns how many were written."""
        start = self.written[name]
        chunk = self._lines[name][start : start + count]
        if chunk:
            self._handles[name].write(b"".join(chunk))
            self.written[name] = start + len(chunk)
        return len(chunk)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
