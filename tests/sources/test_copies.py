"""The CopyReader: rotated copies the tailer does not hold, found and read (more through the tailer in
test_tailer.py)."""

from __future__ import annotations

import os
from pathlib import Path

from learnd.sources.copies import CopyReader
from learnd.sources.files import KnownFiles
from learnd.sources.framing import Line, line_hash
from tests.bot_process import BotProcess
from tests.sources.test_tailer import GRACE_S, FakeClock, copy_aside, names, numbered, raws


def copy_reader(path: Path, clock: FakeClock) -> CopyReader:
    """A CopyReader of the orders source at `path` that knows no file."""
    return CopyReader(
        path,
        KnownFiles(),
        source="orders",
        max_line_bytes=1 << 20,
        keep_bytes=4096,
        grace_s=GRACE_S,
        rescan_s=1.0,
        clock=clock,
        event=lambda *_, **__: None,
    )


def test_a_copy_never_read_that_was_the_current_files_start_when_seen_is_read_once_that_file_is_truncated(
    home: Path,
) -> None:
    """copytruncate with nothing read yet: the CopyReader looks at the siblings after the tailer took the file's size
    (empty) and before the truncation, and finds a copy of the current file, whose lines are that file's. After the
    truncation the copy is the only place they are: it is read whole. (The CopyReader is driven alone here: a tailer
    reads the current file in the same poll, so this race cannot be laid out in one thread.)"""
    path = home / "logs" / "orders.jsonl"
    path.touch()
    clock = FakeClock()
    copies = copy_reader(path, clock)
    out: list[Line] = []
    with BotProcess(path) as bot:
        bot.write(numbered(1, 30))
        copy_aside(path, compressed=False)
        copies.read(out, 100, held=set(), window=[], late_lines=0)
        assert out == []  # a copy of the current file: whoever reads that file reads these lines
        os.truncate(path, 0)
        bot.write(numbered(31, 32))
    clock.now += GRACE_S + 1  # the next look at the siblings, the copy quiet for the grace
    copies.read(out, 100, held=set(), window=[], late_lines=0)
    copies.close()
    assert raws(out) == names(1, 30)


BANNER = b"=== bot started ==="


def read_copy_aside(home: Path, content: bytes, window: list[int], budget: int) -> list[Line]:
    """A copy never read (`orders.jsonl.1`, holding `content`) read by a CopyReader `budget` lines a poll, against
    the lines last read (`window`), the current file empty."""
    path = home / "logs" / "orders.jsonl"
    path.touch()
    path.with_name("orders.jsonl.1").write_bytes(content)
    clock = FakeClock()
    clock.now += GRACE_S + 1
    copies = copy_reader(path, clock)
    out: list[Line] = []
    try:
        while True:
            count = len(out)
            copies.read(out, budget, held=set(), window=window, late_lines=0)
            if len(out) == count and not copies.has_backlog:
                return out
    finally:
        copies.close()


def test_a_copy_read_one_line_a_poll_that_begins_with_the_banner_is_new(home: Path) -> None:
    """A new file's copy begins with the banner the window holds at the old file's start: read one line at a time,
    the banner is told by the line after it (new), not marked duplicate at once."""
    window = [line_hash(BANNER), *(line_hash(raw) for raw in names(1, 30))]
    out = read_copy_aside(home, BANNER + b"\n" + numbered(50, 52), window, budget=1)
    assert [(line.raw, line.duplicate) for line in out] == [(BANNER, False), *((raw, False) for raw in names(50, 52))]


def test_a_copy_of_only_the_banner_is_new(home: Path) -> None:
    """A copy holding nothing but the banner ends there: its run, short of the end of what was read, is no kept tail."""
    window = [line_hash(BANNER), *(line_hash(raw) for raw in names(1, 30))]
    out = read_copy_aside(home, BANNER + b"\n", window, budget=5)
    assert [(line.raw, line.duplicate) for line in out] == [(BANNER, False)]


def test_a_trimmed_copy_read_one_line_a_poll_is_still_a_kept_tail(home: Path) -> None:
    """A copy keeping the last 5 lines read, then new ones, read one line at a time: the 5 are duplicates."""
    window = [line_hash(raw) for raw in names(1, 30)]
    out = read_copy_aside(home, numbered(26, 32), window, budget=1)
    assert raws(out) == names(26, 32)
    assert [line.duplicate for line in out] == [True] * 5 + [False] * 2
