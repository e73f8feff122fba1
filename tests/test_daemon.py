"""The real daemon in a subprocess: real appends, real SIGTERM and SIGKILL, compared with a one-shot backfill."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from learnd.backfill import run_backfill
from learnd.config import Settings, load_settings
from learnd.store import Store

SOURCES = {
    "attribution": "logs/attribution.jsonl",
    "exit": "logs/exit.jsonl",
    "signals": "logs/signals.jsonl",
    "orders": "logs/orders.jsonl",
}


def daemon_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARND_")}
    env.update(
        LEARND_HOME=str(home),
        LEARND_METRICS_ENABLED="false",
        LEARND_POLL_INTERVAL_MS="100",
        LEARND_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


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


def record_lines(seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """A deterministic mixed stream of (source, line) across all four sources, with some garbage."""
    rng = random.Random(seed)
    for index in range(count):
        ts = f"2026-03-{2 + index // 5000:02d}T15:{(index // 60) % 60:02d}:{index % 60:02d}.{index:06d}+00:00"
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
    return load_settings(home=home, environ={}, overrides={"metrics_enabled": "false"})


def wait_caught_up(home: Path, timeout_s: float = 30.0) -> None:
    """Until every source's committed offset equals its file size."""
    settings = settings_for(home)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if settings.db_path.exists():
            store = Store.open(settings.db_path, readonly=True)
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
    assert summary["lines_count"] == 200


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
