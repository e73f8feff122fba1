"""Tests for learnd.backfill and learnd.rebuild: rotated history (plain and gzip) read once, progress, and the
--from-scratch rebuild that swaps a new store generation in only when it is complete (real subprocess, SIGKILL)."""

from __future__ import annotations

import gzip
import os
import shutil
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from learnd.config import Settings
from learnd.devtools.simulate import simulate
from learnd.service.backfill import BackfillProgress, drain, read_history, run_backfill
from learnd.service.engine import Engine
from learnd.store.database import Store
from tests.conftest import settings_for

SOURCES = ("attribution", "exit", "signals", "orders")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated bot home (every log, garbage and duplicates included), written once for the module."""
    out = tmp_path_factory.mktemp("template")
    simulate(out, trades=60, seed=11)
    return out / "logs"


def lines_of(template: Path, name: str) -> list[bytes]:
    return (template / f"{name}.jsonl").read_bytes().splitlines(keepends=True)


def split_into_history(home: Path, template: Path) -> None:
    """Each log as four pieces: a dated gzip copy (oldest), a numbered gzip copy, a plain .1, the current file."""
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        lines = lines_of(template, name)
        cuts = [0, len(lines) // 4, len(lines) // 2, 3 * len(lines) // 4, len(lines)]
        pieces = [b"".join(lines[a:b]) for a, b in pairwise(cuts)]
        with gzip.open(logs / f"{name}.jsonl-20260301.gz", "wb") as handle:
            handle.write(pieces[0])
        with gzip.open(logs / f"{name}.jsonl.2.gz", "wb") as handle:
            handle.write(pieces[1])
        (logs / f"{name}.jsonl.1").write_bytes(pieces[2])
        (logs / f"{name}.jsonl").write_bytes(pieces[3])


def one_file_home(home: Path, template: Path) -> None:
    (home / "logs").mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        shutil.copyfile(template / f"{name}.jsonl", home / "logs" / f"{name}.jsonl")


def fingerprint(settings: Settings, *, checkpoints: bool = True) -> dict[str, object]:
    store = Store.open(settings.db_path, readonly=True)
    try:
        result = store.fingerprint()
    finally:
        store.close()
    if not checkpoints:
        del result["checkpoints"]
    return result


@pytest.mark.parametrize("sources", [("attribution", "signals", "orders"), ("exit",)])
def test_plain_and_gzip_rotated_siblings_backfill_like_one_file(
    tmp_path: Path, template: Path, sources: tuple[str, ...]
) -> None:
    """History split over dated/numbered gzip and plain copies learns exactly what one file with the same lines does.

    Checkpoints are left out of the comparison: they name the current file, which differs (a quarter of the lines
    versus all of them). The trade learner's per-session rows snapshot attribution and exit records as they
    interleave, which depends on batch boundaries between sources (in the daemon too), so those two sources are
    compared in separate homes; counts, ledger, learner state and rows must then be identical.
    """
    disabled = {f"sources.{name}.enabled": "false" for name in SOURCES if name not in sources}
    split = settings_for(tmp_path / "split", **disabled)
    split_into_history(split.home, template)
    whole = settings_for(tmp_path / "whole", **disabled)
    one_file_home(whole.home, template)
    split_report = run_backfill(split, progress="none")
    whole_report = run_backfill(whole, progress="none")
    assert split_report.history_files_count == 3 * len(sources)
    assert split_report.lines_count == whole_report.lines_count == sum(len(lines_of(template, n)) for n in sources)
    assert split_report.applied_count == whole_report.applied_count > 0
    assert fingerprint(split, checkpoints=False) == fingerprint(whole, checkpoints=False)


def test_backfill_twice_applies_nothing_the_second_time(tmp_path: Path, template: Path) -> None:
    settings = settings_for(tmp_path)
    split_into_history(tmp_path, template)
    run_backfill(settings, progress="none")
    before = fingerprint(settings)
    again = run_backfill(settings, progress="none")
    assert (again.lines_count, again.history_files_count, again.commit_count) == (0, 0, 0)
    assert fingerprint(settings) == before


def test_copies_of_what_was_read_live_apply_nothing(tmp_path: Path, template: Path) -> None:
    """Plain and gzip copies of a file read live (same first line, same content) are recognised by identity."""
    settings = settings_for(tmp_path)
    one_file_home(tmp_path, template)
    run_backfill(settings, progress="none")
    before = fingerprint(settings)
    logs = tmp_path / "logs"
    for name in SOURCES:
        shutil.copyfile(logs / f"{name}.jsonl", logs / f"{name}.jsonl.1")
        with gzip.open(logs / f"{name}.jsonl.2.gz", "wb") as handle:
            handle.write((logs / f"{name}.jsonl").read_bytes())
    report = run_backfill(settings, progress="none")
    assert report.lines_count == 0
    assert fingerprint(settings) == before


@pytest.mark.parametrize("compressed", [False, True])
def test_copytruncate_copy_applies_only_lines_not_read_live(tmp_path: Path, template: Path, compressed: bool) -> None:
    """Lines read live, then more appended, copied aside (plain or gzip) and the file truncated while stopped:
    the copy's unread tail and the new file's lines are applied once, like one file holding them all."""
    lines = lines_of(template, "attribution")
    third = len(lines) // 3
    first, later, fresh = lines[:third], lines[third : 2 * third], lines[2 * third :]
    settings = settings_for(tmp_path / "rotated", **{f"sources.{n}.enabled": "false" for n in SOURCES[1:]})
    live = settings.home / "logs" / "attribution.jsonl"
    live.parent.mkdir(parents=True)
    live.write_bytes(b"".join(first))
    run_backfill(settings, progress="none")
    with open(live, "ab") as handle:
        handle.write(b"".join(later))
    if compressed:
        with gzip.open(live.with_name("attribution.jsonl.1.gz"), "wb") as handle:
            handle.write(live.read_bytes())
    else:
        shutil.copyfile(live, live.with_name("attribution.jsonl.1"))
    with open(live, "r+b") as handle:
        handle.truncate(0)
        handle.write(b"".join(fresh))
    report = run_backfill(settings, progress="none")
    assert report.lines_count == len(later) + len(fresh)
    whole = settings_for(tmp_path / "whole", **{f"sources.{n}.enabled": "false" for n in SOURCES[1:]})
    (whole.home / "logs").mkdir(parents=True)
    (whole.home / "logs" / "attribution.jsonl").write_bytes(b"".join(lines))
    run_backfill(whole, progress="none")
    assert fingerprint(settings, checkpoints=False) == fingerprint(whole, checkpoints=False)


def test_rename_rotations_while_stopped_are_read_once_and_the_tailer_takes_over(tmp_path: Path, template: Path) -> None:
    """The file last read was renamed twice (and grew first) while learnd was stopped: backfill reads its rest and
    the younger copy; a daemon's tailer opening afterwards reads nothing already applied, then new lines."""
    lines = lines_of(template, "exit")
    a, b, c, d = (len(lines) * eighths // 8 for eighths in (2, 3, 5, 7))
    settings = settings_for(tmp_path, **{f"sources.{n}.enabled": "false" for n in SOURCES if n != "exit"})
    live = tmp_path / "logs" / "exit.jsonl"
    live.parent.mkdir()
    live.write_bytes(b"".join(lines[:a]))
    run_backfill(settings, progress="none")
    with open(live, "ab") as handle:
        handle.write(b"".join(lines[a:b]))
    os.rename(live, live.with_name("exit.jsonl.2"))
    live.write_bytes(b"".join(lines[b:c]))
    os.rename(live, live.with_name("exit.jsonl.1"))
    live.write_bytes(b"".join(lines[c:d]))
    report = run_backfill(settings, progress="none")
    assert report.lines_count == d - a
    with open(live, "ab") as handle:
        handle.write(b"".join(lines[d:]))
    engine = Engine(settings, start_at_end=True, purpose="daemon")
    try:
        drain(engine, 1000)
        assert engine.totals.lines_count == len(lines) - d
    finally:
        engine.close()
    whole = settings_for(tmp_path / "whole", **{f"sources.{n}.enabled": "false" for n in SOURCES if n != "exit"})
    (whole.home / "logs").mkdir(parents=True)
    (whole.home / "logs" / "exit.jsonl").write_bytes(b"".join(lines))
    run_backfill(whole, progress="none")
    assert fingerprint(settings, checkpoints=False) == fingerprint(whole, checkpoints=False)


@pytest.mark.parametrize("rotation", ["renamed", "compressed"])
def test_a_copy_rotated_on_between_the_plan_and_its_read_is_planned_again(
    tmp_path: Path, template: Path, rotation: str
) -> None:
    """logrotate runs after the history read planned exit.jsonl.1 and before it opened it (the history read's
    stop check is the seam: it runs right before each copy is opened). Renamed (delaycompress: .1 -> .2, the
    current file -> .1, a new current file) the name .1 holds another file; compressed (.1 -> .2.gz) it holds
    none. Either way the source is planned again and every line is applied once: the store ends as a backfill of
    the lines in one file makes it."""
    lines = lines_of(template, "exit")
    a, b, c = (len(lines) * quarters // 4 for quarters in (1, 2, 3))
    only_exit = {f"sources.{n}.enabled": "false" for n in SOURCES if n != "exit"}
    settings = settings_for(tmp_path, **only_exit)
    logs = tmp_path / "logs"
    logs.mkdir()
    live, copy = logs / "exit.jsonl", logs / "exit.jsonl.1"
    copy.write_bytes(b"".join(lines[:a]))
    live.write_bytes(b"".join(lines[a:b]))
    rotated: list[str] = []

    def rotate_once() -> bool:
        if not rotated:
            rotated.append(rotation)
            if rotation == "renamed":
                os.rename(copy, logs / "exit.jsonl.2")
                os.rename(live, copy)
                live.write_bytes(b"".join(lines[b:c]))
            else:
                with gzip.open(logs / "exit.jsonl.2.gz", "wb") as handle:
                    handle.write(copy.read_bytes())
                copy.unlink()
        return False

    engine = Engine(settings, start_at_end=False, purpose="backfill")
    try:
        with capture_logs() as logs_seen:
            read_history(engine, BackfillProgress("none"), rotate_once)
        drain(engine, 1000)
    finally:
        engine.close()
    assert rotated == [rotation]
    whole = settings_for(tmp_path / "whole", **only_exit)
    (whole.home / "logs").mkdir(parents=True)
    (whole.home / "logs" / "exit.jsonl").write_bytes(b"".join(lines[: c if rotation == "renamed" else b]))
    run_backfill(whole, progress="none")
    assert fingerprint(settings, checkpoints=False) == fingerprint(whole, checkpoints=False)
    assert [entry["file"] for entry in logs_seen if entry["event"] == "history_file_moved"] == [str(copy)]


def test_progress_logs_bytes_rate_and_eta_when_not_on_a_tty() -> None:
    now = [0.0]
    meter = BackfillProgress("log", clock=lambda: now[0], log_every_s=5.0)
    meter.add_total(1000)
    with capture_logs() as logs:
        now[0] = 1.0
        meter.advance(100, 10)  # within the interval: no line
        now[0] = 6.0
        meter.advance(200, 20)
    meter.close()
    assert logs == [
        {
            "event": "backfill_progress",
            "log_level": "info",
            "bytes_done": 300,
            "bytes_total": 1000,
            "lines_done": 30,
            "lines_per_s": 5.0,
            "eta_s": 14.0,
        }
    ]


def test_progress_bar_counts_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    meter = BackfillProgress("bar")
    meter.add_total(2048)
    meter.advance(2048, 7)
    meter.close()
    assert "2.00k" in capsys.readouterr().err


def test_job_catch_up_progress_is_logged_periodically_when_not_on_a_tty() -> None:
    """Not on a TTY the catch-up's periods are a `jobs_progress` line every interval (not one per period), and
    none at the end (the caller's summary line says it is done)."""
    now = [0.0]
    meter = BackfillProgress("log", clock=lambda: now[0], log_every_s=5.0)
    with capture_logs() as logs:
        for done in range(101):
            now[0] = done * 0.25
            meter.jobs(done, 100)
    meter.close()
    assert [(entry["event"], entry["periods_done"], entry["periods_total"]) for entry in logs] == [
        ("jobs_progress", done, 100) for done in (20, 40, 60, 80)
    ]


def test_job_catch_up_bar_counts_periods_after_the_history_bar(capsys: pytest.CaptureFixture[str]) -> None:
    """On a terminal the history read is one bar, the catch-up another (in periods), each closed when done."""
    meter = BackfillProgress("bar")
    meter.add_total(2048)
    meter.advance(2048, 7)
    for done in range(4):
        meter.jobs(done, 3)
    meter.close()
    err = capsys.readouterr().err
    assert "backfill" in err and "2.00k" in err
    assert "jobs" in err and "3/3" in err and "period" in err


# --from-scratch ------------------------------------------------------------------------------------------------


def order_line(index: int, padding: int = 0) -> bytes:
    return b'{"ts":"2026-03-02T15:10:04.090+00:00","type":"order","symbol":"AMD","qty":%d,"pad":"%s"}\n' % (
        index,
        b"x" * padding,
    )


def test_over_long_lines_and_a_last_fragment_of_a_gzip_copy_are_quarantined_once(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        max_line_bytes="200",
        quarantine_keep_bytes="16",
        **{f"sources.{n}.enabled": "false" for n in SOURCES if n != "orders"},
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    content = order_line(1) + order_line(2, padding=300) + order_line(3) + order_line(4, padding=3_000_000)
    with gzip.open(logs / "orders.jsonl.1.gz", "wb") as handle:
        handle.write(content + b'{"ts":"2026-03-02T15:1')
    (logs / "orders.jsonl").write_bytes(order_line(5))
    report = run_backfill(settings, progress="none")
    assert (report.applied_count, report.quarantined_count, report.lines_count) == (3, 3, 6)
    store = Store.open(settings.db_path, readonly=True)
    try:
        counts = {kind: n for (_, outcome, kind), n in store.line_counts().items() if outcome == "quarantined"}
        bodies = [orjson.loads(body) for _, _, body in store.quarantine_rows(0)]
    finally:
        store.close()
    assert counts == {"line_too_long": 2, "unterminated_line": 1}
    # Each line's length is its whole length (a fragment's too: it said 16, what was kept of it, and not truncated).
    fragment = len(b'{"ts":"2026-03-02T15:1')
    assert [body["length"] for body in bodies] == [
        len(order_line(2, 300)) - 1,
        len(order_line(4, 3_000_000)) - 1,
        fragment,
    ]
    assert [body["truncated"] for body in bodies] == [True, True, True]
    assert all(len(body["raw_text"]) <= 16 for body in bodies)
    # Each names the file it was read from, the rotated copy (not the source's current file), at its offset there.
    assert [(body["path"], body["offset"]) for body in bodies] == [
        (str(logs / "orders.jsonl.1.gz"), len(order_line(1))),
        (str(logs / "orders.jsonl.1.gz"), len(order_line(1) + order_line(2, 300) + order_line(3))),
        (str(logs / "orders.jsonl.1.gz"), len(content)),
    ]
    assert run_backfill(settings, progress="none").lines_count == 0


def test_a_gzip_copy_still_being_written_is_read_up_to_its_end_then_finished_later(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, **{f"sources.{n}.enabled": "false" for n in SOURCES if n != "orders"})
    logs = tmp_path / "logs"
    logs.mkdir()
    content = b"".join(order_line(index, padding=index % 50) for index in range(3000))
    compressed = gzip.compress(content)
    (logs / "orders.jsonl.1.gz").write_bytes(compressed[: len(compressed) // 2])
    (logs / "orders.jsonl").write_bytes(order_line(99999))
    first = run_backfill(settings, progress="none")
    assert 0 < first.history_lines_count < 3000
    (logs / "orders.jsonl.1.gz").write_bytes(compressed)
    second = run_backfill(settings, progress="none")
    assert first.history_lines_count + second.history_lines_count == 3000
    assert first.lines_count + second.lines_count == 3001


def outcome_counts(settings: Settings, source: str) -> dict[str, int]:
    store = Store.open(settings.db_path, readonly=True)
    try:
        counts: dict[str, int] = {}
        for (name, outcome, _kind), count in store.line_counts().items():
            if name == source:
                counts[outcome] = counts.get(outcome, 0) + count
        return counts
    finally:
        store.close()


@pytest.mark.parametrize("batch_lines", [1, 2000])
def test_a_copy_never_read_that_begins_with_the_banner_is_read_as_new_whatever_the_batch(
    tmp_path: Path, template: Path, batch_lines: int
) -> None:
    """A bot restarted while learnd was stopped wrote a file that begins with its banner (which the lines read hold
    at the old file's start) and was rotated away: a backfill reads that copy whole. Its banner is told by the line
    after it, in the same batch or the next (new: quarantined), never counted as a duplicate."""
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    banner = b"=== bot started ===\n"
    orders = lines_of(template, "orders")
    (home / "logs" / "orders.jsonl").write_bytes(banner + b"".join(orders[:-1]))
    settings = settings_for(home, backfill_batch_lines=batch_lines)
    run_backfill(settings)
    before = outcome_counts(settings, "orders")
    (home / "logs" / "orders.jsonl.1").write_bytes(banner + orders[-1])
    run_backfill(settings)
    after = outcome_counts(settings, "orders")
    assert after.get("duplicate", 0) == before.get("duplicate", 0)
    assert after["quarantined"] == before["quarantined"] + 1
    assert sum(after.values()) == sum(before.values()) + 2


def test_learnd_s_own_export_a_kill_kept_unrecorded_is_no_foreign_write_to_a_backfill(
    tmp_path: Path, template: Path
) -> None:
    """A backfill killed between its export's rename and its guard record's leaves learnd's own file with the record
    of the export before; the next backfill, with new lines to learn, finds the file learnd's (as the daemon does:
    compared with the model it was written from, before the new lines move it), logs no foreign write and counts
    none."""
    home = tmp_path / "bot"
    (home / "logs").mkdir(parents=True)
    settings = settings_for(home)
    thirds = {name: lines_of(template, name) for name in SOURCES}

    def append_third(part: int) -> None:
        for name, lines in thirds.items():
            cut = len(lines) // 3
            with open(home / "logs" / f"{name}.jsonl", "ab") as handle:
                handle.write(b"".join(lines[part * cut : (part + 1) * cut if part < 2 else None]))

    record = settings.state_dir / "signal_weights.guard.json"
    append_third(0)
    run_backfill(settings, progress="none")
    earlier_record = record.read_bytes()
    append_third(1)
    run_backfill(settings, progress="none")
    assert record.read_bytes() != earlier_record
    record.write_bytes(earlier_record)  # the kill: the export renamed, its record not written
    append_third(2)
    with capture_logs() as logs:
        run_backfill(settings, progress="none")
    assert [entry for entry in logs if entry["event"] == "export_changed_by_another_writer"] == []
    assert orjson.loads(record.read_bytes())["foreign_writes_count"] == 0


def test_a_file_named_like_a_rotated_copy_that_cannot_be_read_stalls_nothing(tmp_path: Path, template: Path) -> None:
    """A name of a rotated copy that cannot be opened (here a directory; a copy without read permission is the same
    error) is known by its stat and skipped: the backfill, and a daemon's engine reading live, take every line of
    every readable file, other sources included, instead of raising at every start."""
    home = tmp_path / "bot"
    one_file_home(home, template)
    (home / "logs" / "orders.jsonl.2").mkdir()
    settings = settings_for(home)
    run_backfill(settings, progress="none")
    engine = Engine(settings, start_at_end=True, purpose="daemon")
    extra = b'{"ts": "2026-03-20T15:00:00+00:00", "type": "order", "symbol": "ZZZ"}\n'
    try:
        (home / "logs" / "signals.jsonl.2").mkdir()
        drain(engine, 1000)
        # A copytruncate of orders beside the unreadable name: the tailer's own look at the copies passes it by.
        orders = home / "logs" / "orders.jsonl"
        with orders.open("ab") as handle:
            handle.write(extra)
        shutil.copyfile(orders, home / "logs" / "orders.jsonl.1")
        os.truncate(orders, 0)
        drain(engine, 1000)
        counts = engine.store.line_counts()
    finally:
        engine.close()
    for name in SOURCES:
        read = sum(count for (source, _, _), count in counts.items() if source == name)
        assert read == len(lines_of(template, name)) + (name == "orders"), name


def test_the_first_export_over_the_bot_s_own_weights_keeps_them_and_says_so(tmp_path: Path, template: Path) -> None:
    """The bot's weights file, as its own learner left it, is replaced by learnd's first export: its content is kept
    as signal_weights.json.before-learnd and the takeover logged with how the two differ."""
    home = tmp_path / "bot"
    one_file_home(home, template)
    settings = settings_for(home)
    settings.state_dir.mkdir(parents=True)
    bots = b'{"entry_weights": {"weight_bands": {"dark_pool": {"current": 1.7, "sample_count": 120}}}}\n'
    settings.signal_weights_path.write_bytes(bots)
    with capture_logs() as logs:
        run_backfill(settings, progress="none")
    kept = settings.signal_weights_path.with_name("signal_weights.json.before-learnd")
    assert kept.read_bytes() == bots
    (taken,) = [entry for entry in logs if entry["event"] == "export_taken_over"]
    assert taken["kept"] == str(kept) and taken["parsed"] is True and taken["log_level"] == "warning"


def test_a_symlinked_log_rotated_beside_its_target_loses_no_line(tmp_path: Path) -> None:
    """logs/orders.jsonl links to a file in another directory, and logrotate (configured on the real file) renames
    it there while learnd is stopped: the copy beside the target is the rest of the file learnd was reading, and
    its unread lines are read (they were lost: rotated copies were looked for beside the link only)."""
    home = tmp_path / "bot"
    (home / "logs").mkdir(parents=True)
    real = tmp_path / "var" / "orders.jsonl"
    real.parent.mkdir()
    rows = [orjson.dumps({"ts": f"2026-03-02T15:{minute:02d}:00+00:00", "type": "order", "symbol": "X"}) + b"\n"
            for minute in range(13)]  # fmt: skip
    real.write_bytes(b"".join(rows[:5]))
    (home / "logs" / "orders.jsonl").symlink_to(real)
    settings = settings_for(home)
    run_backfill(settings, progress="none")
    with real.open("ab") as handle:
        handle.write(b"".join(rows[5:10]))
    real.rename(real.with_name("orders.jsonl.1"))
    real.write_bytes(b"".join(rows[10:]))
    run_backfill(settings, progress="none")
    store = Store.open(settings.db_path, readonly=True)
    try:
        assert store.line_counts()[("orders", "applied", "order")] == 13
    finally:
        store.close()


def test_a_backfill_that_finds_another_writer_s_change_says_it_put_its_file_back(
    tmp_path: Path, template: Path
) -> None:
    """Another writer changed the weights file while learnd was stopped: the next backfill logs the change and, once
    its export has put learnd's file back, `export_restored` (the restore went unsaid once the change was found
    before the first export)."""
    home = tmp_path / "bot"
    one_file_home(home, template)
    settings = settings_for(home)
    run_backfill(settings, progress="none")
    settings.signal_weights_path.write_bytes(b'{"entry_weights": {}}\n')
    with capture_logs() as logs:
        run_backfill(settings, progress="none")
    events = [entry["event"] for entry in logs if entry["event"].startswith("export_")]
    assert events == ["export_changed_by_another_writer", "export_restored"]
    assert b"learnd" in settings.signal_weights_path.read_bytes()
