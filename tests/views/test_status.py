"""views.status: per source, the committed offset set against the file as it is now (size, lag split into
complete pending lines and a partial last line, the file's state), the line counts, and whether a daemon owns
the home; on a hand-made home whose four sources are each in another state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from learnd.config import Settings
from learnd.service.backfill import run_backfill
from learnd.service.engine import Engine
from learnd.views.status import collect_status, render_status
from tests.bot_rows import append, close_row, line, open_row, order_row
from tests.conftest import build_settings, home_owned

GARBAGE = b"not json\n"
PARTIAL = b'{"ts": "2026-03-02T15:30:00+00:00", "type": "attrib'


@pytest.fixture
def settings(home: Path) -> Settings:
    """Every source read and committed once, then:
    - attribution (4 closes, one of them repeated, an open row, a garbage line) gets one more complete line and
      the first bytes of another;
    - orders is replaced by a new file (rotated: the daemon would drain the old one, then read this from 0);
    - exit is truncated below its committed offset (an epoch reset);
    - signals never existed.
    """
    logs = home / "logs"
    closes = [close_row(f"2026-03-02T15:0{minute}:00+00:00", "AMD", 0.5) for minute in range(4)]
    append(logs / "attribution.jsonl", [open_row("2026-03-02T14:59:00+00:00", "AMD"), *closes, closes[1]])
    with open(logs / "attribution.jsonl", "ab") as handle:
        handle.write(GARBAGE)
    append(logs / "orders.jsonl", [order_row(f"2026-03-02T16:0{minute}:00+00:00", "AMD", qty=1) for minute in range(3)])
    (logs / "exit.jsonl").write_bytes(b'{"ts": "2026-03-02T15:00:00+00:00", "msg": "exit_check"}\n' * 5)
    learned = build_settings(home)
    run_backfill(learned, progress="none")

    with open(logs / "attribution.jsonl", "ab") as handle:
        handle.write(line(close_row("2026-03-02T15:20:00+00:00", "AMD", 0.1)) + PARTIAL)
    os.rename(logs / "orders.jsonl", logs / "orders.jsonl.1")
    append(logs / "orders.jsonl", [order_row("2026-03-02T17:00:00+00:00", "AMD", qty=2)])
    os.truncate(logs / "exit.jsonl", 20)
    return learned


def test_a_followed_source_splits_its_lag_into_pending_lines_and_a_partial_one(settings: Settings) -> None:
    """Following: offset is what was committed, lag what came since; of that, the complete line is pending
    and the unterminated one partial. Counts are per outcome: applied, quarantined, duplicate, ignored."""
    status = collect_status(settings)["sources"]["attribution"]
    path = settings.source("attribution").path
    size = path.stat().st_size
    pending = len(line(close_row("2026-03-02T15:20:00+00:00", "AMD", 0.1)))
    assert status == {
        "path": str(path),
        "kind": "attribution",
        "state": "following",
        "size": size,
        "offset": size - pending - len(PARTIAL),
        "lag_bytes": pending + len(PARTIAL),
        "pending_bytes": pending,
        "partial_bytes": len(PARTIAL),
        "lines_applied": 4,
        "lines_quarantined": 1,
        "lines_duplicate": 1,
        "lines_ignored": 1,
    }


def test_a_replaced_file_is_read_from_its_start(settings: Settings) -> None:
    """Another file at the path (rotated or re-created): file_replaced, and all of it is lag."""
    status = collect_status(settings)["sources"]["orders"]
    size = settings.source("orders").path.stat().st_size
    assert (status["state"], status["offset"], status["size"], status["lag_bytes"]) == ("file_replaced", 0, size, size)
    assert status["lines_applied"] == 3


def test_a_file_shorter_than_its_offset_is_truncated(settings: Settings) -> None:
    """The same file cut below the committed offset: truncated, read again from 0; its 20 bytes end in no
    newline, so they are partial."""
    status = collect_status(settings)["sources"]["exit"]
    assert (status["state"], status["offset"], status["size"]) == ("truncated", 0, 20)
    assert (status["lag_bytes"], status["pending_bytes"], status["partial_bytes"]) == (20, 0, 20)
    assert status["lines_ignored"] == 5


def test_a_missing_file_is_waited_for(settings: Settings) -> None:
    """No file at the path: waiting_for_file, nothing to read, nothing counted."""
    status = collect_status(settings)["sources"]["signals"]
    assert status["state"] == "waiting_for_file"
    assert (status["size"], status["offset"], status["lag_bytes"], status["lines_applied"]) == (0, 0, 0, 0)


def test_a_home_never_read_is_not_started(home: Path) -> None:
    """Without a store, every existing file is not_started with all of it pending; nothing is created."""
    append(home / "logs" / "orders.jsonl", [order_row("2026-03-02T16:00:00+00:00", "AMD", qty=1)])
    settings = build_settings(home)
    report = collect_status(settings)
    orders: dict[str, Any] = report["sources"]["orders"]
    size = settings.source("orders").path.stat().st_size
    assert (orders["state"], orders["offset"], orders["lag_bytes"], orders["pending_bytes"]) == (
        "not_started",
        0,
        size,
        size,
    )
    assert report["daemon_running"] is False
    assert not settings.state_dir.exists()


def test_status_says_whether_a_daemon_owns_the_home(settings: Settings) -> None:
    """daemon_running and the owner's record follow the home lock."""
    assert (collect_status(settings)["daemon_running"], collect_status(settings)["daemon"]) == (False, None)
    with home_owned(settings) as owner:
        report = collect_status(settings)
    assert report["daemon_running"] is True
    assert report["daemon"] == owner == f"pid {os.getpid()} (daemon)"
    assert report["home"] == str(settings.home)


def test_render_status_shows_the_daemon_and_a_row_per_source(settings: Settings) -> None:
    """The table has the home, the daemon line, a header and each source's state, offset, size, lag and counts."""
    report = collect_status(settings)
    text = render_status(report)
    lines = text.splitlines()
    assert lines[0] == f"home   {settings.home}"
    assert lines[1] == "daemon not running"
    # The source table runs to the blank line before the weights file's line.
    rows = {row.split()[0]: row.split() for row in lines[4 : lines.index("", 4)]}
    assert lines[-1].startswith(f"export {settings.signal_weights_path}: learnd's")
    assert rows.keys() == {"attribution", "exit", "signals", "orders"}
    attribution = report["sources"]["attribution"]
    assert rows["attribution"] == [
        "attribution",
        "following",
        str(attribution["offset"]),
        str(attribution["size"]),
        str(attribution["lag_bytes"]),
        "4",
        "1",
        "1",
    ]
    assert rows["signals"][1] == "waiting_for_file"


def test_status_says_whose_the_weights_file_is(home: Path) -> None:
    """Before learnd wrote it: unknown; after a backfill: learnd's; removed: missing; after another writer: changed
    (none undone yet: no daemon ran), and once the engine has put its file back the count stays at one."""
    append(home / "logs" / "attribution.jsonl", [close_row("2026-03-02T15:10:04+00:00", "AMD", 0.5)])
    settings = build_settings(home, sources=("attribution",))
    assert collect_status(settings)["export"]["is_learnds"] is None
    run_backfill(settings, progress="none")
    assert collect_status(settings)["export"] == {
        "path": str(settings.signal_weights_path),
        "is_learnds": True,
        "exists": True,
        "foreign_writes_count": 0,
        "last_foreign_write": None,
    }
    saved = settings.signal_weights_path.read_bytes()
    settings.signal_weights_path.unlink()
    assert "missing (learnd writes it at its next export)" in render_status(collect_status(settings))
    settings.signal_weights_path.write_bytes(saved)
    settings.signal_weights_path.write_bytes(b'{"entry_weights": {}}')
    assert collect_status(settings)["export"]["is_learnds"] is False
    text = render_status(collect_status(settings))
    assert "changed since learnd wrote it; changes by other writers undone by the daemon: 0" in text
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        assert engine.keep_export() is not None  # found (the record says what learnd wrote last)
        engine.commit()  # the first export of this process puts learnd's file back
    finally:
        engine.close()
    export = collect_status(settings)["export"]
    assert export["is_learnds"] is True and export["foreign_writes_count"] == 1
    # Described against what learnd would write (this process had not written yet): its keys are missing.
    assert export["last_foreign_write"]["keys_dropped_count"] >= 5
    assert "learnd's; changes by other writers undone by the daemon: 1" in render_status(collect_status(settings))
