"""Benchmark 2: the cost of picking up one closed trade appended to a small home and to the big home (both ending
today, jobs on): a one-shot backfill on the caught-up store (learnd) against rescanning the whole attribution and
exit logs (what the earlier learner read).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Final

import orjson

from bench.homes import BaseHome, GeneratedHome, generated_home, last_moment_us, retimed
from bench.plan import Plan
from bench.processes import bench_settings, caught_up_home
from bench.report import Figure, Section, median
from bench.throughput import bare_read
from learnd.service.backfill import run_backfill

TARGET_GROWTH: Final = 1.5
_TIMEOUT_S: Final = 7200.0
# What the earlier learner read on every run.
_RESCANNED: Final = ("attribution", "exit")


def _close_template(base: BaseHome) -> bytes:
    for line in base.logs["attribution"].data.splitlines(keepends=True):
        if b'"trade_id":"close_' in line:
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            return line
    raise RuntimeError("the base home holds no closed trade")


@dataclass(frozen=True, slots=True)
class Pickup:
    """Seconds to pick up one appended trade, per repeat, on a home of `size_bytes`."""

    size_bytes: int
    learnd_s: list[float]
    rescan_s: list[float]


def _measure(generated: GeneratedHome, repeats: int, template: bytes) -> Pickup:
    home, logs = caught_up_home(generated, _TIMEOUT_S)
    settings = bench_settings(home, logs)
    path = logs["attribution"]
    rescanned = [logs[name] for name in _RESCANNED]
    moment = last_moment_us(path)
    learnd_s: list[float] = []
    rescan_s: list[float] = []
    for _ in range(repeats):
        moment += 1_000_000
        started = time.perf_counter()
        with open(path, "ab") as handle:
            handle.write(retimed(template, moment))
        report = run_backfill(settings)
        learnd_s.append(time.perf_counter() - started)
        if report.applied_count != 1:
            raise RuntimeError(f"one appended trade: backfill applied {report.applied_count}")
        started = time.perf_counter()
        bare_read(rescanned)
        rescan_s.append(time.perf_counter() - started)
    return Pickup(generated.size_bytes, learnd_s, rescan_s)


def run(plan: Plan, base: BaseHome) -> Section:
    section = Section("rescan", "one appended trade: learnd one-shot vs full rescan")
    template = _close_template(base)
    small_home = generated_home(base, plan.rescan_small_bytes, plan.sessions_for(plan.rescan_small_bytes))
    small = _measure(small_home, plan.rescan_repeats, template)
    big = _measure(generated_home(base, plan.big_bytes, plan.big_sessions), plan.rescan_repeats, template)
    figures: list[Figure] = []
    for label, result in (("small", small), ("big", big)):
        learnd, rescan = median(result.learnd_s), median(result.rescan_s)
        megabytes = result.size_bytes / 1e6
        figures.append(
            Figure(f"{label} home {megabytes:,.1f} MB: ms", learnd * 1e3, "ms", rescan * 1e3, learnd / rescan)
        )
    learnd_growth = median(big.learnd_s) / median(small.learnd_s)
    rescan_growth = median(big.rescan_s) / median(small.rescan_s)
    figures.append(
        Figure(
            "cost big/small",
            learnd_growth,
            "x",
            rescan_growth,
            learnd_growth / rescan_growth,
            f"<= {TARGET_GROWTH}",
            learnd_growth <= TARGET_GROWTH,
        )
    )
    section.figures = figures
    section.detail = {"small": asdict(small), "big": asdict(big)}
    return section
