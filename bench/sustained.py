"""Benchmark 6: the four sources appended at a steady rate each; lag (bytes not yet committed, read from the
store read-only) sampled every second must not grow, and every line written must be counted in the store.
"""

from __future__ import annotations

import threading
import time

from bench.appender import Appender, seed_logs, upcoming
from bench.homes import BaseHome, fresh_run_dir
from bench.plan import Plan
from bench.processes import Daemon, bench_settings, committed, wait_caught_up, wait_quiet
from bench.report import Figure, Section, median
from learnd.config import Settings
from learnd.devtools.simulate import LOG_FILES

_WINDOW_S = 10
_TICK_S = 0.01
_CATCH_UP_S = 120.0
# Lag sampled at a random phase of the commit cycle: "no growth" allows twice the first window, or 256 KiB.
_GROWTH_ALLOWANCE = 2.0
_LAG_FLOOR_BYTES = 256 * 1024


def _sample_lag(settings: Settings, started: float, samples: list[tuple[float, int]], stop: threading.Event) -> None:
    """Every second: (seconds since start, bytes written and not yet committed)."""
    while not stop.wait(1.0 - (time.monotonic() - started) % 1.0):
        sizes = {source.name: source.path.stat().st_size for source in settings.sources}
        offsets, _ = committed(settings)
        lag = sum(max(0, size - offsets.get(name, 0)) for name, size in sizes.items())
        samples.append((time.monotonic() - started, lag))


def run(plan: Plan, base: BaseHome) -> Section:
    section = Section("sustained", f"4 sources x {plan.sustained_lines_per_s:g} lines/s")
    home = fresh_run_dir("sustained")
    logs = seed_logs(base, home, LOG_FILES, empty=True)
    per_source = int(plan.sustained_s * plan.sustained_lines_per_s)
    appender = Appender(logs, {name: upcoming(base, name, per_source) for name in LOG_FILES})
    settings = bench_settings(home, logs)
    daemon = Daemon.start(home, logs)
    samples: list[tuple[float, int]] = []
    stop_sampling = threading.Event()
    try:
        wait_caught_up(settings, daemon, 60)
        wait_quiet(daemon, 300)
        cpu_before = daemon.cpu_s()
        started = time.monotonic()
        # Sampled on a thread: reading the store takes a while, and the writer must not pause for it.
        sampler = threading.Thread(target=_sample_lag, args=(settings, started, samples, stop_sampling), daemon=True)
        sampler.start()
        while any(appender.remaining(name) for name in LOG_FILES):
            now = time.monotonic()
            if now - started > plan.sustained_s * 2 + 10 or not daemon.is_running():
                break
            due = int((now - started) * plan.sustained_lines_per_s)
            for name in LOG_FILES:
                appender.append(name, due - appender.written[name])
            time.sleep(_TICK_S)
        stop_sampling.set()
        sampler.join(timeout=10)
        written_s = time.monotonic() - started
        daemon.require_running()
        cpu_used = daemon.cpu_s() - cpu_before
        drain_s: float | None = None
        try:
            drain_s = wait_caught_up(settings, daemon, _CATCH_UP_S)
        except TimeoutError:
            section.error = f"the daemon did not drain the backlog within {_CATCH_UP_S:g} s of the writes ending"
        _, counted = committed(settings)
    finally:
        stop_sampling.set()
        appender.close()
        status = daemon.stop()
    window_s = min(_WINDOW_S, plan.sustained_s / 3)
    first = median([lag for at, lag in samples if at <= window_s])
    last = median([lag for at, lag in samples if at > written_s - window_s])
    written = sum(appender.written.values())
    lost = written - sum(counted.values())
    allowed = max(first * _GROWTH_ALLOWANCE, _LAG_FLOOR_BYTES)
    section.figures = [
        Figure(
            "lag KiB last/first 10 s",
            last / 1024,
            "KiB",
            first / 1024,
            last / first if first else None,
            "no growth",
            last <= allowed,
        ),
        Figure(
            "lines lost" if drain_s is not None else "lines not yet counted",
            lost,
            "lines",
            written,
            lost / written,
            "0",
            lost == 0,
        ),
        Figure(
            "rate achieved",
            written / written_s,
            "lines/s",
            4 * plan.sustained_lines_per_s,
            written / written_s / (4 * plan.sustained_lines_per_s),
        ),
        Figure("daemon cpu %", 100 * cpu_used / written_s, "%"),
    ]
    section.detail = {
        "written": appender.written,
        "counted": counted,
        "lag_samples": samples,
        "drain_after_stop_s": drain_s,
        "daemon_exit_status": status,
    }
    return section
