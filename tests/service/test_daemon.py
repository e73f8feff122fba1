"""The real daemon in a subprocess: real appends, real SIGTERM and SIGKILL, compared with a one-shot backfill."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import gzip
import itertools
import os
import pty
import random
import select
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from learnd.config import Settings, load_settings
from learnd.devtools.simulate import simulate
from learnd.devtools.verify import daemon_environment
from learnd.errors import StateError
from learnd.learning import trades as trades_module
from learnd.service import daemon as daemon_module
from learnd.service.backfill import run_backfill
from learnd.service.daemon import _STEP_LINES as STEP_LINES
from learnd.service.daemon import Respawn, ServiceHook, serve
from learnd.service.daemon import _keep_signals as keep_signals
from learnd.service.daemon import _signals_kept as signals_kept
from learnd.service.engine import Engine
from learnd.store.database import Store
from learnd.store.lock import HomeLock

SOURCES = {
    "attribution": "logs/attribution.jsonl",
    "exit": "logs/exit.jsonl",
    "signals": "logs/signals.jsonl",
    "orders": "logs/orders.jsonl",
}


def daemon_env(home: Path) -> dict[str, str]:
    """These tests are about reading exactly once; the wall-clock jobs have their own tests (test_jobs.py)."""
    return daemon_environment(home)


def start_daemon(home: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "learnd", "run", *extra],
        env=daemon_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def reap(process: subprocess.Popen[bytes]) -> None:
    """Kill the daemon if it still runs and close its pipes."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def wait_for_log(process: subprocess.Popen[bytes], event: str, timeout_s: float = 20.0) -> dict[str, object]:
    """Read the daemon's JSON log lines until one with this event name appears."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"daemon exited before {event}: {process.stderr.read() if process.stderr else b''!r}")
        entry = orjson.loads(line)
        if entry.get("event") == event:
            return dict(entry)
    raise AssertionError(f"no {event} within {timeout_s}s")


def record_lines(seed: int, count: int, *, in_event_order: bool = False) -> Iterator[tuple[str, bytes]]:
    """A deterministic mixed stream of (source, line) across all four sources, with some garbage. Its times go
    back now and then (each hour's minutes repeat), unless `in_event_order`: then they only grow, a second a line
    from 2026-03-02 14:30 UTC."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    for index in range(count):
        ts = f"2026-03-{2 + index // 5000:02d}T15:{(index // 60) % 60:02d}:{index % 60:02d}.{index:06d}+00:00"
        if in_event_order:
            ts = (start + timedelta(seconds=index)).isoformat(timespec="microseconds")
        choice = rng.random()
        if choice < 0.3:
            row: dict[str, object] = {
                "ts": ts,
                "type": "attribution",
                "trade_id": f"close_AMD_{ts}",
                "symbol": "AMD",
                "pnl_usd": 1.0,
                "pnl_pct": round(rng.uniform(-2, 2), 4),
                "market_regime": "mixed",
                "context": {"components": {"flow": 1.0, "dark_pool": 0.3}},
            }
            yield "attribution", orjson.dumps(row)
        elif choice < 0.5:
            yield "exit", orjson.dumps({"ts": ts, "msg": "exit_check", "symbol": "AMD"})
        elif choice < 0.8:
            cluster = {"ticker": "AMD", "direction": "bullish", "composite_score": 3.0, "composite_meta": {}}
            yield "signals", orjson.dumps({"ts": ts, "type": "signal", "cluster": cluster})
        elif choice < 0.97:
            yield "orders", orjson.dumps({"ts": ts, "type": "order", "symbol": "AMD", "qty": 3, "side": "buy"})
        else:
            yield rng.choice(list(SOURCES)), b"not json at all {" + str(index).encode()


def append_chunks(home: Path, lines: list[tuple[str, bytes]], rng: random.Random) -> None:
    """Append the lines, each source's bytes cut into random pieces (lines split anywhere), flushed per piece."""
    per_source: dict[str, bytes] = {}
    for source, line in lines:
        per_source[source] = per_source.get(source, b"") + line + b"\n"
    for source, data in per_source.items():
        position = 0
        with open(home / SOURCES[source], "ab") as handle:
            while position < len(data):
                step = rng.randint(1, 400)
                handle.write(data[position : position + step])
                handle.flush()
                position += step


def settings_for(home: Path) -> Settings:
    return load_settings(
        home=home,
        environ={},
        overrides={
            "metrics_enabled": "false",
            "schedule.daily_enabled": "false",
            "schedule.weekly_enabled": "false",
        },
    )


def wait_caught_up(home: Path, timeout_s: float = 30.0) -> None:
    """Until every source's committed offset equals its file size."""
    settings = settings_for(home)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            store = Store.open(settings.db_path, readonly=True)
        except StateError:
            store = None  # the daemon has not created its store yet
        if store is not None:
            try:
                checkpoints = store.checkpoints()
            finally:
                store.close()
            sizes = {name: (home / path).stat().st_size for name, path in SOURCES.items()}
            if all(name in checkpoints and checkpoints[name].offset == size for name, size in sizes.items()):
                return
        time.sleep(0.05)
    raise AssertionError("daemon did not catch up")


def store_fingerprint(home: Path) -> dict[str, object]:
    store = Store.open(settings_for(home).db_path, readonly=True)
    try:
        return store.fingerprint()
    finally:
        store.close()


def backfill_copy(home: Path, tmp_path: Path) -> Path:
    """A fresh home holding the same log bytes, learned by one run_backfill."""
    reference = tmp_path / "reference"
    shutil.copytree(home / "logs", reference / "logs")
    run_backfill(settings_for(reference))
    return reference


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    (path / "logs").mkdir(parents=True)
    for relative in SOURCES.values():
        (path / relative).touch()
    return path


def test_sigterm_commits_and_exits_zero_within_five_seconds(home: Path) -> None:
    """SIGTERM: the daemon commits what it read, logs a summary and exits 0 well within 5 s."""
    append_chunks(home, list(record_lines(1, 200)), random.Random(1))
    process = start_daemon(home, "--backfill")
    try:
        wait_for_log(process, "daemon_started")
        wait_caught_up(home)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=10)
        elapsed = time.monotonic() - started
        summary = wait_for_log(process, "daemon_stopped")
    finally:
        reap(process)
    assert status == 0
    assert elapsed < 5.0
    uptime = summary["uptime_s"]
    assert isinstance(uptime, float)
    assert uptime > 0
    counts = store_fingerprint(home)["counts"]
    assert isinstance(counts, list)
    assert sum(count for _, count in counts) == 200


def processing_state_applied(home: Path) -> int:
    """Lines applied, summed over sources, as state/learning_processing_state.json says."""
    document = orjson.loads((home / "state" / "learning_processing_state.json").read_bytes())
    return sum(source["lines_applied"] for source in document["sources"].values())


def wait_for_processing_state(home: Path, applied: int, timeout_s: float = 5.0) -> None:
    """Wait until learning_processing_state.json says `applied` lines were applied; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while processing_state_applied(home) != applied and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processing_state_applied(home) == applied


def test_processing_state_catches_up_while_idle_and_at_shutdown(home: Path) -> None:
    """learning_processing_state.json is written at most once a second while lines stream in, but it never stays
    behind: once the lines stop it shows the last commit within about a second, and again after SIGTERM."""
    lines = list(record_lines(3, 3000))
    applied = sum(1 for source, line in lines if not line.startswith(b"not json") and source != "exit")
    process = start_daemon(home, "--backfill")
    try:
        wait_for_log(process, "daemon_started")
        rng = random.Random(3)
        for start in range(0, len(lines), 100):
            append_chunks(home, lines[start : start + 100], rng)
            time.sleep(0.02)
        wait_caught_up(home)
        wait_for_processing_state(home, applied)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    assert processing_state_applied(home) == applied


def test_a_processing_state_left_behind_by_a_kill_is_written_at_start(home: Path) -> None:
    """Killed between a commit and its exports, learnd left learning_processing_state.json behind its store: the
    restarted daemon brings it up to date once it has caught up, with no new line to read (it stayed behind until
    one came)."""
    lines = list(record_lines(5, 400))
    append_chunks(home, lines, random.Random(5))
    subprocess.run([sys.executable, "-m", "learnd", "backfill"], env=daemon_env(home), check=True, capture_output=True)
    applied = processing_state_applied(home)
    assert applied > 0
    state = home / "state" / "learning_processing_state.json"
    document = orjson.loads(state.read_bytes())
    for source in document["sources"].values():
        source["lines_applied"] = 0  # as the export before the last commit had it
    state.write_bytes(orjson.dumps(document))
    process = start_daemon(home)
    try:
        wait_for_log(process, "caught_up")
        wait_for_processing_state(home, applied)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)


def test_sigkill_at_random_moments_ends_equal_to_one_backfill(home: Path, tmp_path: Path) -> None:
    """Appends while the daemon runs, SIGKILL at random moments, restarts: the end state equals one backfill."""
    rng = random.Random(7)
    stream = list(record_lines(7, 3000))
    chunks = [stream[index : index + 250] for index in range(0, len(stream), 250)]
    process = start_daemon(home, "--backfill")
    try:
        for number, chunk in enumerate(chunks):
            append_chunks(home, chunk, rng)
            if number % 2 == 1:
                time.sleep(rng.uniform(0.0, 0.8))
                reap(process)
                # Restarted as systemd would: the same command line.
                process = start_daemon(home, "--backfill")
        wait_for_log(process, "daemon_started")
        wait_caught_up(home)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    reference = backfill_copy(home, tmp_path)
    assert store_fingerprint(home) == store_fingerprint(reference)


def test_second_daemon_on_same_home_exits_with_clear_message(home: Path) -> None:
    """Only one daemon owns a home: a second one exits non-zero naming the owner."""
    first = start_daemon(home)
    try:
        wait_for_log(first, "daemon_started")
        second = subprocess.run(
            [sys.executable, "-m", "learnd", "run"], check=False, env=daemon_env(home), capture_output=True, timeout=30
        )
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=10)
        reap(first)
    assert second.returncode == 4
    assert b"in use by another learnd" in second.stderr


def test_without_backfill_a_new_source_starts_at_its_end(home: Path) -> None:
    """`run` without --backfill skips what is already in a file without a checkpoint, and says so."""
    append_chunks(home, list(record_lines(3, 100)), random.Random(3))
    process = start_daemon(home)
    try:
        event = wait_for_log(process, "source_started_at_end")
        wait_caught_up(home)
        append_chunks(
            home, [("attribution", orjson.dumps({"ts": "2026-03-03T15:00:00+00:00", "type": "x"}))], random.Random(4)
        )
        wait_caught_up(home)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        reap(process)
    assert event["offset"] == event["size"]
    counts = store_fingerprint(home)["counts"]
    assert isinstance(counts, list)
    assert sum(count for (source, _, _), count in counts if source == "attribution") == 1


def test_sighup_reload_adds_a_source_without_losing_a_line(home: Path) -> None:
    """SIGHUP re-reads the config: a source added to learnd.toml is tailed from its start, nothing lost."""
    extra = home / "logs" / "orders2.jsonl"
    extra.write_bytes(
        b"".join(
            orjson.dumps({"ts": f"2026-03-02T15:00:0{i}+00:00", "type": "order", "symbol": "X"}) + b"\n"
            for i in range(5)
        )
    )
    process = start_daemon(home, "--backfill")
    try:
        wait_for_log(process, "daemon_started")
        (home / "config").mkdir()
        (home / "config" / "learnd.toml").write_text(
            '[sources.orders2]\nkind = "orders"\npath = "logs/orders2.jsonl"\n'
        )
        process.send_signal(signal.SIGHUP)
        applied = wait_for_log(process, "reload_applied")
        with extra.open("ab") as handle:
            handle.write(orjson.dumps({"ts": "2026-03-02T15:00:09+00:00", "type": "order", "symbol": "X"}) + b"\n")
        deadline = time.monotonic() + 20
        counts: dict[tuple[str, str, str], int] = {}
        while time.monotonic() < deadline:
            store = Store.open(settings_for(home).db_path, readonly=True)
            try:
                counts = store.line_counts()
            finally:
                store.close()
            if counts.get(("orders2", "applied", "order"), 0) == 6:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    assert applied["added"] == ["orders2"]
    assert counts[("orders2", "applied", "order")] == 6


def test_sighup_with_a_bad_config_is_rejected_and_the_daemon_goes_on(home: Path) -> None:
    """A reload whose config names a component the bot does not have (which only the engine can check), is not
    UTF-8, adds a source at a directory or changes the exchange calendar is rejected and logged; the daemon keeps its
    settings, goes on learning and stops cleanly."""
    process = start_daemon(home, "--backfill")
    try:
        wait_for_log(process, "daemon_started")
        (home / "config").mkdir()
        config = home / "config" / "learnd.toml"
        config.write_text('[bot]\npinned_components = ["flow"]\n')
        process.send_signal(signal.SIGHUP)
        rejected = [wait_for_log(process, "reload_rejected")]
        config.write_bytes(b"commit_interval_ms = 20\n# caf\xe9\n")
        process.send_signal(signal.SIGHUP)
        rejected.append(wait_for_log(process, "reload_rejected"))
        # A new source whose path is a directory; another exchange calendar (the jobs' periods are the old one's).
        config.write_text('[sources.extra]\nkind = "orders"\npath = "logs"\n')
        process.send_signal(signal.SIGHUP)
        rejected.append(wait_for_log(process, "reload_rejected"))
        config.write_text('[schedule]\nexchange = "XLON"\n')
        process.send_signal(signal.SIGHUP)
        rejected.append(wait_for_log(process, "reload_rejected"))
        config.unlink()  # for this test's own reads of the home's settings
        append_chunks(
            home,
            [("orders", orjson.dumps({"ts": "2026-03-02T15:00:00+00:00", "type": "order", "symbol": "X"}))],
            random.Random(5),
        )
        wait_caught_up(home)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    assert "bot.pinned_components: 'flow' is not an entry component" in str(rejected[0]["error"])
    assert "not UTF-8" in str(rejected[1]["error"])
    assert "sources.extra.path: " in str(rejected[2]["error"]) and "is a directory" in str(rejected[2]["error"])
    assert "schedule.exchange: 'XLON' (running with 'XNYS') takes a restart" in str(rejected[3]["error"])
    counts = store_fingerprint(home)["counts"]
    assert isinstance(counts, list)
    assert sum(count for (source, _, _), count in counts if source == "orders") == 1


def test_sd_notify_ready_watchdog_and_stopping_in_order(home: Path, tmp_path: Path) -> None:
    """Under systemd: READY=1 once the store is open, WATCHDOG=1 beats from the loop, STOPPING=1 on SIGTERM."""
    address = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(address))
    receiver.settimeout(0.2)
    env = daemon_env(home) | {"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "400000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "learnd", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 3:
            try:
                messages.append(receiver.recv(4096).decode())
            except TimeoutError:
                continue
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        while True:
            try:
                messages.append(receiver.recv(4096).decode())
            except TimeoutError:
                break
    finally:
        reap(process)
        receiver.close()
    kinds = [next(part for part in ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=") if part in m) for m in messages]
    assert kinds[0] == "READY=1"
    assert kinds.count("WATCHDOG=1") >= 3
    assert kinds[-1] == "STOPPING=1"


def test_metrics_endpoint_serves_counters_on_loopback(home: Path) -> None:
    """The running daemon serves Prometheus metrics on 127.0.0.1 with per-source line counters."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    append_chunks(home, list(record_lines(5, 50)), random.Random(5))
    env = daemon_env(home) | {"LEARND_METRICS_ENABLED": "true", "LEARND_METRICS_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "learnd", "run", "--backfill"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_log(process, "metrics_serving")
        wait_caught_up(home)
        body = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and 'learnd_lines_total{outcome="applied",source="signals"}' not in body:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                body = response.read().decode()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    assert 'learnd_lines_total{outcome="applied",source="signals"}' in body
    assert "learnd_commit_duration_seconds_bucket" in body
    assert 'learnd_multiplier{component="options_flow",regime="*",strategy="equity"}' in body
    assert "learnd_signal_candidates " in body


def test_run_backfill_reads_rotated_history_before_tailing(home: Path) -> None:
    """`run --backfill` applies rotated copies (gzip too) before following the current files; nothing twice."""
    lines = list(record_lines(9, 300))
    old = [line for source, line in lines[:200] if source == "signals"]
    new = [line for source, line in lines[200:] if source == "signals"]
    with gzip.open(home / "logs" / "signals.jsonl.1.gz", "wb") as handle:
        handle.write(b"".join(line + b"\n" for line in old))
    (home / "logs" / "signals.jsonl").write_bytes(b"".join(line + b"\n" for line in new))
    process = start_daemon(home, "--backfill")
    try:
        history = wait_for_log(process, "history_read")
        wait_caught_up(home)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    counts = store_fingerprint(home)["counts"]
    assert isinstance(counts, list)
    assert sum(count for (source, _, _), count in counts if source == "signals") == len(old) + len(new)
    assert history["files_count"] == 1
    assert history["lines_count"] == len(old)


async def test_a_task_that_outlives_shutdown_timeout_is_cancelled_and_the_daemon_exits_zero(home: Path) -> None:
    """shutdown_timeout_s bounds the stop: a service still busy after it (here one that ignores the stop event;
    the seam is the `services` hook) is cancelled, what was read is committed, and serve returns 0."""
    append_chunks(home, list(record_lines(5, 50)), random.Random(5))
    settings = dataclasses.replace(settings_for(home), shutdown_timeout_s=0.3)
    cancelled = asyncio.Event()

    async def stubborn(engine: object, stop: asyncio.Event) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = asyncio.get_running_loop()
    loop.call_later(1.0, os.kill, os.getpid(), signal.SIGTERM)
    started = time.monotonic()
    status = await serve(settings, backfill=True, services=(stubborn,))
    assert status == 0
    assert cancelled.is_set()
    assert time.monotonic() - started < 1.0 + 0.3 + 2.0
    counts = store_fingerprint(home)["counts"]
    assert isinstance(counts, list)
    assert sum(count for _, count in counts) == 50


async def test_a_backlog_is_learned_in_steps_that_leave_the_loop_free_between_them(home: Path) -> None:
    """However large the backlog and commit_batch_lines, the ingest hands the event loop back every _STEP_LINES
    lines or sooner (signals, the watchdog's beats and the jobs run between two steps). Counted, not timed: a
    service (the seam) that takes a turn whenever the loop is free records the lines learned at each turn."""
    write_backlog(home, 6_000)
    settings = dataclasses.replace(settings_for(home), commit_batch_lines=5_000)
    seen: list[int] = []

    async def turns(engine: Engine, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Lines read so far: those committed and those still pending.
            seen.append(engine.totals.lines_count + engine.ingestor.pending_lines)
            if engine.totals.lines_count >= 6_000:
                os.kill(os.getpid(), signal.SIGTERM)
                await stop.wait()
            await asyncio.sleep(0)

    assert await serve(settings, backfill=True, services=(turns,)) == 0
    assert seen[-1] == 6_000
    steps = [later - earlier for earlier, later in itertools.pairwise(seen)]
    assert max(steps) <= STEP_LINES, max(steps)
    # The first step may come before the service's first turn.
    assert sum(step > 0 for step in steps) >= 6_000 // STEP_LINES - 1


async def test_the_watch_steps_longer_while_the_logs_are_quiet_and_a_change_still_wakes_the_ingest(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once no log changed for _WATCH_IDLE_AFTER_MS the watch takes the longer step (its loop wakes ten times less
    often); a line appended then is learned all the same, with the poll timer an hour away, and the short step
    comes back with it. The idle time is patched to 0.3 s (the seam: the module's constant)."""
    lines = list(record_lines(4, 70))
    append_chunks(home, lines[:50], random.Random(4))
    monkeypatch.setattr(daemon_module, "_WATCH_IDLE_AFTER_MS", 300)
    settings = dataclasses.replace(settings_for(home), poll_interval_ms=3_600_000)
    steps: list[int] = []

    async def quiet_then_append(engine: Engine, stop: asyncio.Event) -> None:
        def step_events() -> list[int]:
            return [int(entry["step_ms"]) for entry in logs if entry["event"] == "watch_step"]

        deadline = time.monotonic() + 10.0
        while engine.totals.lines_count < 50 or step_events()[-1:] != [daemon_module._WATCH_IDLE_STEP_MS]:
            assert time.monotonic() < deadline, (engine.totals.lines_count, step_events())
            await asyncio.sleep(0.01)
        before = len(step_events())
        append_chunks(home, lines[50:], random.Random(5))
        while engine.totals.lines_count < 70 or len(step_events()) == before:
            assert time.monotonic() < deadline, (engine.totals.lines_count, step_events())
            await asyncio.sleep(0.01)
        steps.extend(step_events()[before - 1 : before + 1])
        os.kill(os.getpid(), signal.SIGTERM)

    with capture_logs() as logs:
        assert await serve(settings, backfill=True, services=(quiet_then_append,)) == 0
    assert steps == [daemon_module._WATCH_IDLE_STEP_MS, daemon_module._WATCH_STEP_MS]
    assert daemon_module._WATCH_IDLE_STEP_MS >= 10 * daemon_module._WATCH_STEP_MS


def late_trade_home(home: Path) -> tuple[int, bytes]:
    """A simulated home (300 trades) and a late trade for it: a copy of its 250th close row from the end under a
    trade id of its own, as old as that trade. Returns the home's line count and the late line."""
    simulate(home, trades=300, seed=41, garbage=False)
    lines = sum(path.read_bytes().count(b"\n") for path in (home / "logs").iterdir())
    closes = [line for line in (home / SOURCES["attribution"]).read_bytes().splitlines() if b'"close_' in line]
    row = orjson.loads(closes[-250])
    row["trade_id"] += "_late"
    return lines, orjson.dumps(row) + b"\n"


def replaying_turns(lines: int, late: bytes, home: Path, *, stop_at_first: bool) -> tuple[ServiceHook, list[int]]:
    """A service (the seam) that takes a turn whenever the loop is free: once the daemon learned the home's `lines`,
    it appends `late`, counts the turns at which a replay is due or under way, and sends SIGTERM once the late line
    is committed, or with `stop_at_first` at the first such turn."""
    counted = [0]

    async def turns(engine: Engine, stop: asyncio.Event) -> None:
        appended = False
        while not stop.is_set():
            if not appended and engine.totals.lines_count >= lines:
                with open(home / SOURCES["attribution"], "ab") as handle:
                    handle.write(late)
                appended = True
            if engine.ingestor.replaying:
                counted[0] += 1
                if stop_at_first:
                    os.kill(os.getpid(), signal.SIGTERM)
            if engine.totals.lines_count > lines:
                os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0)

    return turns, counted


async def test_a_late_trade_is_relearned_in_steps_with_the_loop_free_between_them(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trade older than 250 the daemon learned arrives: the trades after it are relearned a step at a time (a
    step per trade here: REPLAY_STEP_S patched to 0, and no checkpoints, so all of them), and the loop takes other
    turns between two steps (signals, the watchdog's beats, the jobs): counted, not timed. The store then holds
    what one backfill of the same lines holds."""
    lines, late = late_trade_home(home)
    monkeypatch.setattr(trades_module, "REPLAY_STEP_S", 0.0)
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 10**9)
    turns, counted = replaying_turns(lines, late, home, stop_at_first=False)
    assert await serve(settings_for(home), backfill=True, services=(turns,)) == 0
    assert counted[0] >= 250
    assert store_fingerprint(home) == store_fingerprint(backfill_copy(home, tmp_path))


async def test_sigterm_in_the_middle_of_a_replay_stops_at_once_and_the_next_start_learns_its_lines(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while a late trade's replay runs in steps: the daemon stops after the step at hand, exits 0 and
    commits nothing of that batch (half a replay is no state to keep); the exports stay those of the last commit.
    The next start reads the late line again and ends as one backfill of the same lines."""
    lines, late = late_trade_home(home)
    monkeypatch.setattr(trades_module, "REPLAY_STEP_S", 0.0)
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 10**9)
    turns, counted = replaying_turns(lines, late, home, stop_at_first=True)
    weights = settings_for(home).signal_weights_path
    assert await serve(settings_for(home), backfill=True, services=(turns,)) == 0
    # The signal is handled a turn or two after it was sent; the replay needed some 250 steps.
    assert 1 <= counted[0] <= 10
    attribution = home / SOURCES["attribution"]
    store = Store.open(settings_for(home).db_path, readonly=True)
    try:
        assert store.checkpoints()["attribution"].offset == attribution.stat().st_size - len(late)
    finally:
        store.close()
    exported = weights.read_bytes()
    run_backfill(settings_for(home))
    assert weights.read_bytes() != exported  # the late trade moved something once learned
    assert store_fingerprint(home) == store_fingerprint(backfill_copy(home, tmp_path))


async def test_a_reload_with_new_learning_parameters_relearns_in_steps_and_ends_as_a_backfill_with_them(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGHUP with new learning parameters: the trade learner relearns all of history under them a step at a time
    (a step per trade: REPLAY_STEP_S patched to 0), the loop taking other turns between two (a service, the seam,
    counts them); the store then holds what one backfill with those parameters holds."""
    lines, _ = late_trade_home(home)
    monkeypatch.setattr(trades_module, "REPLAY_STEP_S", 0.0)

    def eager(path: Path) -> Settings:
        extra = {"learning.min_effective_samples": "50", "learning.max_step_per_trade": "0.05"}
        return dataclasses.replace(
            settings_for(path), learning=load_settings(home=path, environ={}, overrides=extra).learning
        )

    counted = 0

    async def turns(engine: Engine, stop: asyncio.Event) -> None:
        nonlocal counted
        sent_at = None
        while not stop.is_set():
            if sent_at is None and engine.totals.lines_count >= lines:
                os.kill(os.getpid(), signal.SIGHUP)
                sent_at = time.monotonic()
            if engine.ingestor.replaying:
                counted += 1
            elif counted or (sent_at is not None and time.monotonic() - sent_at > 60.0):
                os.kill(os.getpid(), signal.SIGTERM)  # relearned and committed (in the same step), or never
                await stop.wait()
            await asyncio.sleep(0)

    assert await serve(settings_for(home), backfill=True, reload_settings=lambda: eager(home), services=(turns,)) == 0
    assert counted >= 250
    reference = tmp_path / "reference"
    shutil.copytree(home / "logs", reference / "logs")
    run_backfill(eager(reference))
    relearned, expected = store_fingerprint(home), store_fingerprint(reference)
    states = [
        {name: orjson.loads(body) for name, body in fingerprint.pop("learners")}  # type: ignore[attr-defined]
        for fingerprint in (relearned, expected)
    ]
    # The one difference: the relearn is counted (as two replays, as before it ran in steps).
    assert [state["trades"]["counts"].pop("replays") for state in states] == [2, 0]
    assert states[0] == states[1]
    assert relearned == expected


async def test_a_state_error_inside_the_daemon_leaves_serve_as_itself(home: Path) -> None:
    """An error raised in one of the daemon's tasks (here a service, the seam) leaves serve as that error, in the
    TaskGroup's ExceptionGroup, after the home is closed: the command line turns it into its exit status (4)."""
    append_chunks(home, list(record_lines(6, 50)), random.Random(6))

    async def failing(engine: Engine, stop: asyncio.Event) -> None:
        raise StateError("the store says no")

    with pytest.raises(ExceptionGroup) as raised:
        await serve(settings_for(home), backfill=True, services=(failing,))
    assert raised.group_contains(StateError, match="the store says no")
    assert not (home / "state" / "learnd.lock").exists() or HomeLock(home / "state" / "learnd.lock").holder() is None


class EventLog:
    """The daemon's JSON log read on a thread of its own, so the pipe never fills (a daemon blocked writing its log
    could not handle a signal), with a way to wait for an event."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.events: list[str] = []
        self.entries: list[dict[str, object]] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                entry = orjson.loads(line)
                self.entries.append(entry)
                self.events.append(str(entry.get("event")))
                self._changed.notify_all()
        with self._changed:
            self.events.append("<end of output>")
            self._changed.notify_all()

    def wait(self, event: str, timeout_s: float = 60.0, *, count: int = 1) -> dict[str, object]:
        """Until the `count`th `event`; returns it."""

        def seen() -> bool:
            return self.events.count(event) >= count or "<end of output>" in self.events

        with self._changed:
            if not self._changed.wait_for(seen, timeout_s):
                raise AssertionError(f"no {event} (x{count}) within {timeout_s} s")
            found = [entry for entry in self.entries if entry.get("event") == event]
            if len(found) < count:
                raise AssertionError(f"the daemon's output ended before {event} (x{count})")
            return found[count - 1]

    def finished(self) -> list[str]:
        self._thread.join(timeout=10)
        return self.events


@pytest.mark.parametrize("state", ["reading_history", "ingesting"])
def test_sigterm_while_reading_history_or_ingesting_exits_zero_within_five_seconds_and_loses_nothing(
    home: Path, tmp_path: Path, state: str
) -> None:
    """SIGTERM while `run --backfill` reads rotated gzip history, or while it ingests a large backlog: exit 0
    within 5 s, before the work was done; a restart finishes it, and the state equals one backfill of the bytes."""
    per_source: dict[str, list[bytes]] = {}
    # In event order: a replay (of out-of-order trades) counts once per batch, and batches differ between runs.
    for source, line in record_lines(21, 60_000, in_event_order=True):
        per_source.setdefault(source, []).append(line + b"\n")
    for source, source_lines in per_source.items():
        path = home / SOURCES[source]
        cut = len(source_lines) * 9 // 10 if state == "reading_history" else 0
        with gzip.open(path.with_name(path.name + ".1.gz"), "wb") as handle:
            handle.write(b"".join(source_lines[:cut]))
        path.write_bytes(b"".join(source_lines[cut:]))
    env = {**daemon_env(home), "LEARND_BACKFILL_BATCH_LINES": "500", "LEARND_COMMIT_BATCH_LINES": "500"}
    command = [sys.executable, "-m", "learnd", "run", "--backfill"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        log = EventLog(process)
        if state == "reading_history":
            log.wait("history_file_reading")
        else:
            log.wait("history_read")
            time.sleep(0.3)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=10)
        elapsed = time.monotonic() - started
        events = log.finished()
    finally:
        reap(process)
    assert status == 0
    assert elapsed < 5.0
    assert "daemon_stopped" in events
    assert "caught_up" not in events, "the backlog was read before the signal: nothing was interrupted"
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        EventLog(process).wait("caught_up")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    assert store_fingerprint(home) == store_fingerprint(backfill_copy(home, tmp_path))


def bot_optimizer_save(path: Path) -> bytes:
    """What FORMATS.md says the bot's optimizer writes when it saves the file it loaded: the keys it knows (learnd's
    effective_weights and the rest dropped), a default bucket added, and here its own learner's pull toward 0.7."""
    document = orjson.loads(path.read_bytes())
    saved = {"entry_weights": document["entry_weights"], "exit_model": document["exit_model"]}
    for band in saved["entry_weights"]["weight_bands"].values():
        band["current"] = 0.7
    for buckets in saved["entry_weights"]["regime_beta_distributions"].values():
        buckets["NEUTRAL"] = {"alpha": 1.0, "beta": 1.0}
    return orjson.dumps(saved, option=orjson.OPT_INDENT_2)


def rewrite_in_place_slowly(path: Path, data: bytes) -> None:
    """A foreign writer's non-atomic save: the same file truncated, then written in two parts 0.2 s apart."""
    with open(path, "r+b") as handle:
        handle.truncate(0)
        handle.write(data[: len(data) // 2])
        handle.flush()
        time.sleep(0.2)
        handle.write(data[len(data) // 2 :])


def scrape_metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return None


def test_a_foreign_rewrite_of_the_weights_file_is_undone_within_two_seconds(home: Path) -> None:
    """The bot's optimizer rewrites state/signal_weights.json in place, non-atomically, with no new trade coming:
    the daemon logs what changed (keys dropped, multipliers moved), puts its own file back within 2 s, and counts
    it in metrics and in `learnd status`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    append_chunks(home, list(record_lines(11, 300)), random.Random(11))
    weights = home / "state" / "signal_weights.json"
    env = daemon_env(home) | {"LEARND_METRICS_ENABLED": "true", "LEARND_METRICS_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "learnd", "run", "--backfill"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_log(process, "caught_up")
        learnds = weights.read_bytes()
        rewrite_in_place_slowly(weights, bot_optimizer_save(weights))
        rewritten = time.monotonic()
        while weights.read_bytes() != learnds and time.monotonic() - rewritten < 2.0:
            time.sleep(0.02)
        assert weights.read_bytes() == learnds
        warning = wait_for_log(process, "export_changed_by_another_writer")
        wait_for_log(process, "export_restored")
        deadline = time.monotonic() + 5.0
        while scrape_metric(port, "learnd_export_foreign_writes_total") != 1.0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert scrape_metric(port, "learnd_export_foreign_writes_total") == 1.0
        status = subprocess.run(
            [sys.executable, "-m", "learnd", "status", "--json"], env=daemon_env(home), capture_output=True, check=True
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    assert warning["level"] == "warning"
    keys_dropped = warning["keys_dropped"]
    assert isinstance(keys_dropped, list) and "effective_weights" in keys_dropped
    assert warning["multipliers_moved_count"] == 21 + 4  # every band, the legacy aliases' too
    export = orjson.loads(status.stdout)["export"]
    assert export["foreign_writes_count"] == 1
    assert export["is_learnds"] is True
    assert export["last_foreign_write"]["keys_added_count"] > 0


def test_with_the_export_configured_elsewhere_the_bots_own_file_is_left_alone(home: Path) -> None:
    """paths.signal_weights points learnd at its own file: the bot's state/signal_weights.json is never written or
    restored (learnd does not fight a file it does not own), while a change to learnd's file is undone."""
    (home / "state").mkdir()
    bots_file = home / "state" / "signal_weights.json"
    bots_own = b'{"entry_weights": {"base_weights": {}}, "written_by": "the bot"}\n'
    bots_file.write_bytes(bots_own)
    append_chunks(home, list(record_lines(12, 300)), random.Random(12))
    learnds_file = home / "state" / "learnd_weights.json"
    env = daemon_env(home) | {"LEARND_PATHS__SIGNAL_WEIGHTS": "state/learnd_weights.json"}
    process = subprocess.Popen(
        [sys.executable, "-m", "learnd", "run", "--backfill"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_log(process, "caught_up")
        learnds = learnds_file.read_bytes()
        bots_file.write_bytes(bots_own + b" ")
        learnds_file.write_bytes(b"{}")
        wait_for_log(process, "export_restored")
        time.sleep(1.0)  # several more rounds of the watch
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    assert learnds_file.read_bytes() == learnds
    assert bots_file.read_bytes() == bots_own + b" "


def read_terminal(master: int, until: bytes, timeout_s: float) -> bytes:
    """What a terminal shows (the pty's output) until `until` appears, the child closes it, or time runs out."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while until not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every copy of the terminal's other end is closed
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_on_a_terminal_the_catch_up_shows_bars_then_one_summary_each_and_what_was_learned(tmp_path: Path) -> None:
    """`learnd run --backfill` on a terminal (a real pty): the history read and the job catch-up are progress bars
    followed by one summary line each (history_read, jobs_caught_up), no line per period or per file, then a
    short summary of what was learned."""
    home = tmp_path / "home"
    first = datetime.now(UTC).date() - timedelta(days=35)
    simulate(home, 300, seed=9, start=first)
    logs = home / "logs"
    (logs / "signals.jsonl").rename(logs / "signals.jsonl.1")  # rotated history for the first bar
    (logs / "signals.jsonl").touch()
    env = {key: value for key, value in daemon_env(home).items() if key != "LEARND_LOG_FORMAT"}
    env.update(LEARND_SCHEDULE__DAILY_ENABLED="true", LEARND_SCHEDULE__WEEKLY_ENABLED="true")
    master, terminal = pty.openpty()
    # A terminal has a size (a pty starts at 0 x 0, where a bar has no room to be drawn).
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "learnd", "run", "--backfill"], env=env, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    try:
        shown = read_terminal(master, b"learnd weights", 120.0)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        shown += read_terminal(master, b"daemon_stopped", 5.0)
    finally:
        reap(process)
        os.close(master)
    text = shown.decode(errors="replace")
    assert "backfill: 100%" in text and "jobs: 100%" in text and "period/s" in text  # the two bars, finished
    assert text.count("history_read") == 1 and text.count("jobs_caught_up") == 1
    assert "job_ran" not in text and "history_file_read" not in text
    assert "learned from 300 closed trades" in text


def write_backlog(home: Path, lines: int) -> None:
    """`lines` records, in event order, already in the current files when the daemon starts."""
    per_source: dict[str, list[bytes]] = {}
    for source, line in record_lines(31, lines, in_event_order=True):
        per_source.setdefault(source, []).append(line + b"\n")
    for source, source_lines in per_source.items():
        (home / SOURCES[source]).write_bytes(b"".join(source_lines))


def stop_within_five_seconds(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the daemon exits 0 well within 5 s."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5.0


def start_on_backlog(home: Path, lines: int, respawn_after_growth_mib: str) -> subprocess.Popen[bytes]:
    """`run --backfill` on a home whose current files hold `lines` records (write_backlog)."""
    write_backlog(home, lines)
    env = {**daemon_env(home), "LEARND_RESPAWN_AFTER_GROWTH_MIB": respawn_after_growth_mib}
    return subprocess.Popen(
        [sys.executable, "-m", "learnd", "run", "--backfill"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_a_daemon_grown_by_its_start_up_respawns_in_place_smaller_and_learns_on(home: Path, tmp_path: Path) -> None:
    """A start-up burst (here 40,000 lines of backlog) that leaves the daemon more than respawn_after_growth_mib
    above its size at open: once caught up it executes itself afresh. Same pid, the home lock handed over (nobody
    else could take the home meanwhile), nothing read twice; the new image tails on, and it never respawns again.
    The state equals one backfill of the bytes. (How much smaller the new image idles is a figure: bench idle.)"""
    process = start_on_backlog(home, 40_000, "1")
    try:
        log = EventLog(process)
        respawning = log.wait("respawning")
        first_stop = log.wait("daemon_stopped")
        second = log.wait("daemon_started", count=2)
        log.wait("caught_up", count=2)
        assert first_stop["respawning"] is True and first_stop["lines_count"] == 40_000
        assert second["respawned"] is True
        assert process.poll() is None  # the same process: exec, not a child
        assert (home / "state" / "learnd.lock").read_text() == f"pid {process.pid} (daemon)\n"
        grown = respawning["grown_mib"]
        assert isinstance(grown, float) and grown > 1.0
        append_chunks(home, list(record_lines(32, 300, in_event_order=True)), random.Random(32))
        wait_caught_up(home)
        stop_within_five_seconds(process)
        events = log.finished()
    finally:
        reap(process)
    assert events.count("respawning") == 1 and events.count("daemon_started") == 2
    last_stop = [entry for entry in log.entries if entry.get("event") == "daemon_stopped"][-1]
    assert last_stop["respawning"] is False and last_stop["lines_count"] == 300
    assert store_fingerprint(home) == store_fingerprint(backfill_copy(home, tmp_path))


def test_a_respawn_runs_with_the_settings_in_effect_not_an_edit_never_reloaded(home: Path) -> None:
    """The configuration file edited while the daemon runs, with no reload (SIGHUP) and here made invalid: the
    image after a respawn runs with the settings the one before ran with (it read the file again and exited 3, and
    under systemd's Restart= failed again at every start)."""
    (home / "config").mkdir()
    (home / "config" / "learnd.toml").write_text("commit_interval_ms = 50\n")
    process = start_on_backlog(home, 40_000, "1")
    try:
        log = EventLog(process)
        log.wait("daemon_started")
        (home / "config" / "learnd.toml").write_text('commit_interval_ms = "fast"\n')
        log.wait("respawning")
        second = log.wait("daemon_started", count=2)
        log.wait("caught_up", count=2)
        assert second["respawned"] is True and process.poll() is None
        stop_within_five_seconds(process)
        events = log.finished()
    finally:
        reap(process)
    assert events.count("daemon_stopped") == 2 and process.returncode == 0


@pytest.mark.parametrize("limit_mib", ["0", "100000"])
def test_a_daemon_within_its_respawn_limit_or_with_respawn_off_keeps_running_as_it_is(
    home: Path, limit_mib: str
) -> None:
    process = start_on_backlog(home, 5_000, limit_mib)
    try:
        log = EventLog(process)
        log.wait("caught_up")
        if limit_mib != "0":
            kept = log.wait("start_up_burst_kept")
            assert kept["limit_mib"] == 100000.0
        else:
            time.sleep(0.5)  # long enough for a respawn check to have run, were there one
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        events = log.finished()
    finally:
        reap(process)
    assert "respawning" not in events and events.count("daemon_started") == 1
    assert ("start_up_burst_kept" in events) == (limit_mib != "0")


@pytest.mark.parametrize("moment", ["respawning", "daemon_stopped"])
def test_sigterm_as_the_daemon_respawns_exits_zero_within_five_seconds_and_loses_nothing(
    home: Path, tmp_path: Path, moment: str
) -> None:
    """SIGTERM the moment the daemon says it respawns (the old image then stops for good), or once the old image
    has stopped for the respawn (the signal waits, blocked, for the new image, which stops as soon as it handles
    it): the process exits 0 well within 5 s, never respawns twice, and the state equals one backfill."""
    process = start_on_backlog(home, 20_000, "1")
    try:
        log = EventLog(process)
        log.wait(moment)
        stop_within_five_seconds(process)
        events = log.finished()
    finally:
        reap(process)
    assert events.count("respawning") == 1
    if moment == "daemon_stopped":
        assert events.count("daemon_started") == 2, "the new image was to get the signal"
    assert events[-1] == "<end of output>" and events[-2] == "daemon_stopped"
    assert store_fingerprint(home) == store_fingerprint(backfill_copy(home, tmp_path))


def test_the_signals_an_image_kept_are_read_once_and_their_pipe_closed() -> None:
    """The pipe a respawning image leaves (Respawn.signals_fd): the stop and reload signals in it, in order; other
    bytes are no signal of the daemon's; the pipe is closed after."""
    read_end, write_end = os.pipe()
    os.write(write_end, bytes([signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGINT]))
    os.close(write_end)
    assert signals_kept(read_end) == [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]
    with pytest.raises(OSError):
        os.fstat(read_end)


async def test_a_reload_heard_as_the_daemon_respawns_is_handed_to_the_next_image() -> None:
    """A SIGHUP the old image's loop heard once its ingest had stopped for the respawn (nobody left to apply it): it
    goes in the pipe the next image reads first, which applies it (it was dropped)."""
    reload_requested = asyncio.Event()
    reload_requested.set()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    try:
        read_end = await keep_signals(asyncio.Event(), reload_requested)
        assert read_end is not None
        assert signals_kept(read_end) == [signal.SIGHUP]
    finally:
        signal.set_wakeup_fd(wakeup)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT])
def test_a_signal_while_the_daemon_starts_waits_for_its_handlers(home: Path, signum: int) -> None:
    """A SIGHUP or a Ctrl-C while the daemon still imports and reads its settings (no handler yet): held until its
    handlers are in place, then handled as any other (a reload; a clean stop, exit 0). The SIGHUP's default action
    killed the process, and the SIGINT printed a KeyboardInterrupt traceback. The command line blocks them first
    thing; here (the seam, for a signal sent at a known point) the process starts with them blocked, as it would be
    from there on, and gets the signal at once."""
    # The child inherits the mask this thread has when it starts it.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    try:
        process = start_daemon(home)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        log = EventLog(process)
        process.send_signal(signum)
        if signum == signal.SIGHUP:
            log.wait("reload_applied")
            assert process.poll() is None
            stop_within_five_seconds(process)
        assert process.wait(timeout=30) == 0
        log.finished()
        assert process.stderr is not None
        assert b"Traceback" not in process.stderr.read()
    finally:
        reap(process)


def test_a_hand_over_that_is_none_is_refused() -> None:
    assert Respawn.from_environ_value("5:6") == Respawn(5, 6)
    handed = Respawn(5, 6, '{"home": "/srv/bot", "table": {"commit_interval_ms": "20"}}')
    assert Respawn.from_environ_value(handed.environ_value()) == handed
    for value in ("", "5", "five:6", "5:-6", "5:6:not base64!"):
        with pytest.raises(StateError, match="LEARND_RESPAWNED"):
            Respawn.from_environ_value(value)


def test_a_daemon_handed_descriptors_it_does_not_have_exits_4(home: Path) -> None:
    """LEARND_RESPAWNED naming descriptors the process does not have: a state error (exit 4), the home untouched."""
    env = {**daemon_env(home), "LEARND_RESPAWNED": "97:98"}
    result = subprocess.run(
        [sys.executable, "-m", "learnd", "run"], env=env, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 4
    assert result.stderr.startswith(b"learnd: state error: the signals the previous image kept (descriptor 98)")


def test_exports_that_cannot_be_written_at_the_stop_are_logged_and_the_stop_is_clean(home: Path) -> None:
    """SIGTERM while the weights file cannot be written (here its directory is a file; a full disk is the same
    error): what was read is committed, the failure is logged as `exports_failed_at_stop`, and the daemon exits 0
    (it ended with a traceback and status 1); the next start writes the exports first."""
    (home / "blocker").write_bytes(b"")
    env = daemon_env(home) | {"LEARND_PATHS__SIGNAL_WEIGHTS": "blocker/signal_weights.json"}
    process = subprocess.Popen(
        [sys.executable, "-m", "learnd", "run", "--backfill"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_log(process, "daemon_started")
        process.send_signal(signal.SIGTERM)
        failed = wait_for_log(process, "exports_failed_at_stop")
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    assert failed["error_type"] == "NotADirectoryError"


async def test_a_stop_whose_clean_mark_cannot_be_written_is_a_clean_stop(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM when the disk is full: the store's clean-stop mark cannot be written (the seam: Store._set_meta
    raises what SQLite raises then). The daemon says so, logs `daemon_stopped` and exits 0 (it exited 4, "the store
    failed", without the summary line); the store was closed, and the next start opens it."""
    write_backlog(home, 200)
    settings = settings_for(home)
    real_set_meta = Store._set_meta

    def full_disk(store: Store, key: str, value: str) -> None:
        if (key, value) == ("clean_shutdown", "1"):
            raise sqlite3.OperationalError("database or disk is full")
        real_set_meta(store, key, value)

    monkeypatch.setattr(Store, "_set_meta", full_disk)

    async def stop_when_read(engine: Engine, stop: asyncio.Event) -> None:
        while engine.totals.lines_count < 200:
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        await stop.wait()

    with capture_logs() as logs:
        assert await serve(settings, backfill=True, services=(stop_when_read,)) == 0
    events = [entry["event"] for entry in logs]
    assert events.index("clean_shutdown_not_recorded") < events.index("daemon_stopped")
    monkeypatch.undo()
    store = Store.open(settings.db_path)
    try:
        assert store.checkpoints()["attribution"].offset > 0
    finally:
        store.close()
