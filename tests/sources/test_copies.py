"""The CopyReader: rotated copies the tailer does not hold, found and read (more through the tailer in
test_tailer.py)."""

from __future__ import annotations

import os
from pathlib import Path

from learnd.sources.copies import CopyReader
from learnd.sources.files import KnownFiles
from learnd.sources.framing import Line
from tests.bot_process import BotProcess
from tests.sources.test_tailer import GRACE_S, FakeClock, copy_aside, names, numbered, raws


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
    copies = CopyReader(
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
