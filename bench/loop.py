"""Benchmark: how long the live daemon holds its event loop while it learns one trade, on the caught-up big home,
jobs on. A late trade has the trades after it relearned (from a checkpoint, in steps of about 50 ms); an in-order
trade is learned as it comes, and is the baseline. The figure is the longest gap between two turns of a task that
takes every turn the loop gives (what a signal, a watchdog beat or a metrics scrape would wait at most), from the
append until a little after the commit. In process: serve() on the home, the probe one of its services (the
daemon's hook for tasks of its own).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Final

import orjson

from bench.homes import BaseHome, generated_home
from bench.plan import Plan
from bench.processes import bench_settings, caught_up_home
from bench.report import Figure, Section
from learnd.config import Settings
from learnd.records.parse import parse_event_us
from learnd.service.daemon import serve
from learnd.service.engine import Engine

TARGET_MS: Final = 100.0
# How deep the late trades are, as shares of the closed trades the home holds.
DEPTHS: Final = (0.01, 0.2)
_SETTLE_S: Final = 1.0  # idle before the first append; and after each commit, a quarter of it
_PHASE_TIMEOUT_S: Final = 600.0
_TIMEOUT_S: Final = 7200.0


def closes_in_event_order(path: Path) -> list[bytes]:
    """The close rows of an attribution log, oldest first by event time."""
    rows = [line for line in path.read_bytes().splitlines() if b'"close_' in line]
    return sorted(rows, key=lambda line: parse_event_us(orjson.loads(line)["ts"]))


def renamed(line: bytes, suffix: str) -> bytes:
    """The same close row under a trade id of its own (a new trade at the same moment), newline-terminated."""
    row = orjson.loads(line)
    row["trade_id"] = f"{row['trade_id']}_{suffix}"
    return orjson.dumps(row) + b"\n"


def hold_times(settings: Settings, attribution: Path, lines: list[bytes]) -> list[float]:
    """A daemon on `settings`, `lines` appended to `attribution` one at a time once it is idle: per line, the
    longest gap in seconds between two turns of the probe from the append until a little after its commit."""
    holds: list[float] = []
    failures: list[BaseException] = []

    async def probe(engine: Engine, stop: asyncio.Event) -> None:
        try:
            await asyncio.sleep(_SETTLE_S)
            for line in lines:
                holds.append(await _hold_while_learning(engine, attribution, line))
        except Exception as error:  # noqa: BLE001 - raised again by hold_times once the daemon stopped
            failures.append(error)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    try:
        status = asyncio.run(serve(settings, backfill=False, services=(probe,)))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failures:
        raise failures[0]
    if status != 0:
        raise RuntimeError(f"the daemon exited with {status}")
    return holds


async def _hold_while_learning(engine: Engine, attribution: Path, line: bytes) -> float:
    committed = engine.totals.lines_count
    with open(attribution, "ab") as handle:
        handle.write(line)
    longest = 0.0
    last = time.perf_counter()
    deadline = last + _PHASE_TIMEOUT_S
    learned_at: float | None = None
    while learned_at is None or last - learned_at < _SETTLE_S / 4:
        await asyncio.sleep(0)
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
        if learned_at is None and engine.totals.lines_count > committed:
            learned_at = now
        if now > deadline:
            raise TimeoutError(f"the daemon did not commit the appended line within {_PHASE_TIMEOUT_S:g} s")
    return longest


def run(plan: Plan, base: BaseHome) -> Section:
    section = Section("loop", "longest hold of the live daemon's event loop while it learns one trade")
    home, logs = caught_up_home(generated_home(base, plan.big_bytes, plan.big_sessions), _TIMEOUT_S)
    closes = closes_in_event_order(logs["attribution"])
    run_tag = time.time_ns()  # the home is kept between runs: each run's trades are new ones
    names = ["in order", *(f"{depth:.0%} deep" for depth in DEPTHS)]
    lines = [renamed(closes[-1], f"bench{run_tag}")]
    lines += [renamed(closes[-max(1, round(len(closes) * depth))], f"late{run_tag}") for depth in DEPTHS]
    holds = hold_times(bench_settings(home, logs, metrics_enabled="false"), logs["attribution"], lines)
    baseline_ms = holds[0] * 1e3
    section.figures.append(Figure("an in-order trade", baseline_ms, "ms"))
    for name, hold in zip(names[1:], holds[1:], strict=True):
        hold_ms = hold * 1e3
        section.figures.append(
            Figure(
                f"a late trade, {name}",
                hold_ms,
                "ms",
                baseline_ms,
                hold_ms / baseline_ms,
                f"<= {TARGET_MS:g} ms",
                hold_ms <= TARGET_MS,
            )
        )
    section.detail = {
        "home": home.name,
        "closes": len(closes),
        "holds_ms": dict(zip(names, [h * 1e3 for h in holds], strict=True)),
    }
    return section
