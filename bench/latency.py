"""Benchmark 3: latency from a closed trade's append to state/signal_weights.json counting it, with the real
daemon in a subprocess and the other three sources loaded. Baseline: writing, fsyncing and renaming a file of
the export's size in the same directory (the floor of any atomic export).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson

from bench.appender import Appender, closed_trades, seed_logs, upcoming
from bench.homes import BaseHome, fresh_run_dir
from bench.plan import Plan
from bench.processes import Daemon, bench_settings, wait_caught_up, wait_quiet
from bench.report import Figure, Section, median, percentile
from learnd.devtools.simulate import LOG_FILES

TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0
_OTHERS = ("exit", "signals", "orders")
_POLL_S = 0.0005
_FLOOR_REPEATS = 30


def atomic_write_floor(directory: Path, size: int) -> list[float]:
    """Seconds to write + fsync + rename + fsync the directory for a file of `size` bytes."""
    data = b"x" * size
    target = directory / ".bench_floor.json"
    temp = directory / ".bench_floor.json.tmp"
    times: list[float] = []
    for _ in range(_FLOOR_REPEATS):
        started = time.perf_counter()
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        times.append(time.perf_counter() - started)
    target.unlink()
    return times


def _trades_learned(path: Path) -> int:
    document = orjson.loads(path.read_bytes())
    return int(document["learnd"]["trades_learned"])


def run(plan: Plan, base: BaseHome) -> Section:
    section = Section("latency", "append -> signal_weights.json reflects the trade")
    home = fresh_run_dir("latency")
    logs = seed_logs(base, home, LOG_FILES)
    duration_s = plan.latency_trades / plan.latency_trades_per_s
    other_count = int(duration_s * plan.latency_other_lines_per_s / len(_OTHERS)) + 100
    lines = {"attribution": closed_trades(base, plan.latency_trades)} | {
        name: upcoming(base, name, other_count) for name in _OTHERS
    }
    settings = bench_settings(home, logs)
    weights = settings.state_dir / "signal_weights.json"
    daemon = Daemon.start(home, logs)
    appender = Appender(logs, lines)
    try:
        catch_up_s = wait_caught_up(settings, daemon, 300)
        quiet_s = wait_quiet(daemon, 300)
        deadline = time.monotonic() + 30
        while not weights.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        learned_before = _trades_learned(weights)
        floor = atomic_write_floor(settings.state_dir, weights.stat().st_size)
        trades = len(lines["attribution"])
        appended_at: list[float] = []
        latencies: list[float] = []
        last_stat: tuple[int, int, int] | None = None
        started = time.monotonic()
        deadline = started + duration_s * 1.5 + 20
        others_written = 0
        while time.monotonic() < deadline and len(latencies) < trades:
            now = time.monotonic()
            if len(appended_at) < trades and now >= started + len(appended_at) / plan.latency_trades_per_s:
                appender.append("attribution", 1)
                appended_at.append(time.monotonic())
            due = int((now - started) * plan.latency_other_lines_per_s) - others_written
            if due >= len(_OTHERS) and len(appended_at) < trades:
                for index, name in enumerate(_OTHERS):
                    others_written += appender.append(name, due // len(_OTHERS) + (index < due % len(_OTHERS)))
            stat = os.stat(weights)
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if key != last_stat:
                last_stat = key
                seen = time.monotonic()
                reflected = min(_trades_learned(weights) - learned_before, len(appended_at))
                latencies.extend(seen - appended_at[index] for index in range(len(latencies), reflected))
            time.sleep(_POLL_S)
        elapsed_s = time.monotonic() - started
        daemon.require_running()
    finally:
        appender.close()
        status = daemon.stop()
    floor_ms = median(floor) * 1e3
    p50 = percentile(latencies, 0.50) * 1e3
    p99 = percentile(latencies, 0.99) * 1e3
    section.figures = [
        Figure("p50 ms", p50, "ms", floor_ms, p50 / floor_ms, f"<= {TARGET_P50_MS:g} ms", p50 <= TARGET_P50_MS),
        Figure("p99 ms", p99, "ms", floor_ms, p99 / floor_ms, f"<= {TARGET_P99_MS:g} ms", p99 <= TARGET_P99_MS),
        Figure(
            "trades reflected",
            len(latencies),
            "trades",
            trades,
            len(latencies) / trades,
            "all",
            len(latencies) == trades,
        ),
    ]
    section.detail = {
        "trades_appended": len(appended_at),
        "other_lines_appended": others_written,
        "elapsed_s": elapsed_s,
        "initial_catch_up_s": catch_up_s,
        "startup_jobs_s": quiet_s,
        "floor_ms": [value * 1e3 for value in floor],
        "p90_ms": percentile(latencies, 0.90) * 1e3,
        "max_ms": max(latencies, default=float("nan")) * 1e3,
        "daemon_exit_status": status,
    }
    if status != 0:
        section.error = f"daemon exited with {status} (see {home / 'daemon.log'})"
    return section
