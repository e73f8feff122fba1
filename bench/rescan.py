"""Benchmark 2: the cost of picking up one closed trade appended to a small and to a big attribution log: a
one-shot backfill on the caught-up store (learnd) against rescanning the whole file (the earlier learner).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from bench.homes import WORK_DIR, BaseHome, generated_home, last_moment_us, learnd_digest, retimed
from bench.plan import Plan
from bench.processes import NO_JOBS, bench_settings
from bench.report import Figure, Section, median
from bench.throughput import bare_read
from learnd.service.backfill import run_backfill

TARGET_GROWTH = 1.5
_CAUGHT_UP = ".caught_up"


def _close_template(base: BaseHome) -> bytes:
    for line in base.logs["attribution"].splitlines(keepends=True):
        if b'"trade_id":"close_' in line:
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            return line
    raise RuntimeError("the base home holds no closed trade")


def _caught_up_home(base: BaseHome, size_bytes: int) -> tuple[Path, dict[str, Path], int]:
    """A home whose store has applied the whole attribution log (cached; built by one backfill)."""
    logs = generated_home(base, size_bytes, ("attribution",))
    # Keyed by learnd's source too: a store written by another version of learnd may not load.
    home = WORK_DIR / f"rescan-{logs.copies}x-seed{base.seed}-{base.start.isoformat()}-{learnd_digest()}"
    if not (home / _CAUGHT_UP).exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        run_backfill(bench_settings(home, logs.logs, **NO_JOBS))
        (home / _CAUGHT_UP).touch()
    return home, logs.logs, logs.size_bytes


@dataclass(frozen=True, slots=True)
class Pickup:
    """Seconds to pick up one appended trade, per repeat, on a log of `size_bytes`."""

    size_bytes: int
    learnd_s: list[float]
    rescan_s: list[float]


def _measure(base: BaseHome, size_bytes: int, repeats: int, template: bytes) -> Pickup:
    home, logs, size = _caught_up_home(base, size_bytes)
    settings = bench_settings(home, logs, **NO_JOBS)
    path = logs["attribution"]
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
        bare_read([path])
        rescan_s.append(time.perf_counter() - started)
    return Pickup(size, learnd_s, rescan_s)


def run(plan: Plan, base: BaseHome) -> Section:
    section = Section("rescan", "one appended trade: learnd one-shot vs full rescan")
    template = _close_template(base)
    small = _measure(base, plan.rescan_small_bytes, plan.rescan_repeats, template)
    big = _measure(base, plan.rescan_big_bytes, plan.rescan_repeats, template)
    figures: list[Figure] = []
    for label, result in (("small", small), ("big", big)):
        learnd, rescan = median(result.learnd_s), median(result.rescan_s)
        megabytes = result.size_bytes / 1e6
        figures.append(Figure(f"{label} log {megabytes:.0f} MB: ms", learnd * 1e3, "ms", rescan * 1e3, learnd / rescan))
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
