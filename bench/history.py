"""Benchmark: `learnd backfill` (a subprocess, jobs on) on homes whose history ends today: one month, one year and
five years of sessions at the big home's density. Per home: ingest time against a bare read + orjson.loads of the
same files, the job catch-up against ingest, the cost of one period at the start and at the end of history (its CPU,
which the target is on, and the wall time between periods), peak RSS, and the store against the logs it read.

Ingest and catch-up times come from the backfill's JSON log (bench.processes.job_catch_up).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Final

from bench.homes import BaseHome, generated_home
from bench.memory import TARGET_MIB
from bench.plan import Plan
from bench.processes import EDGE_PERIODS, backfill_home, bench_settings, job_catch_up, store_bytes
from bench.report import Figure, Section
from bench.throughput import bare_read
from learnd.jobs.schedule import JOBS

TARGET_CATCH_UP: Final = 0.2
TARGET_GROWTH: Final = 1.5
_TIMEOUT_S: Final = 7200.0


def label(sessions: int) -> str:
    """`1 month`, `1 year`, `5 years` for whole months (21 sessions) or years (252), else `N sessions`."""
    for size, unit in ((252, "year"), (21, "month")):
        if sessions % size == 0:
            count = sessions // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return f"{sessions} sessions"


def run(plan: Plan, base: BaseHome) -> Section:
    section = Section("history", "`learnd backfill` of history ending today, jobs on")
    longest = max(plan.history_sessions)
    runs: dict[str, Any] = {}
    for sessions in plan.history_sessions:
        home = generated_home(base, plan.bytes_for(sessions), sessions)
        name = label(sessions)
        started = time.perf_counter()
        lines = bare_read(list(home.logs.values()))
        bare_s = time.perf_counter() - started
        run_dir, backfill = backfill_home(home, f"history-{sessions}", _TIMEOUT_S, reuse=True)
        catch_up = job_catch_up(backfill)
        logs_bytes = home.size_bytes
        store = store_bytes(bench_settings(run_dir, home.logs))
        if catch_up.failed:
            section.error = f"{name}: {catch_up.failed} job periods failed (see {run_dir / 'backfill.log'})"
        periods_run = backfill.finished()["job_periods_count"]
        if catch_up.periods != periods_run:
            section.error = f"{name}: the backfill ran {periods_run} periods and logged {catch_up.periods}"
        ratio = catch_up.jobs_s / catch_up.ingest_s
        section.figures += [
            Figure(f"{name}: ingest", catch_up.ingest_s, "s", bare_s, catch_up.ingest_s / bare_s),
            Figure(
                f"{name}: job catch-up",
                catch_up.jobs_s,
                "s",
                catch_up.ingest_s,
                ratio,
                f"<= {TARGET_CATCH_UP:g}x ingest",
                ratio <= TARGET_CATCH_UP,
            ),
            Figure(f"{name}: periods", catch_up.periods, "periods"),
        ]
        for job in JOBS:
            if job not in catch_up.costs_s:
                continue
            # The target is on the period's own CPU, as learnd logs it; the wall time between two periods, shown
            # beside it, also holds what the rest of a shared machine ran meanwhile.
            start, end = catch_up.edge_s(job, end=False), catch_up.edge_s(job, end=True)
            section.figures.append(
                Figure(f"{name}: {job} period, end, wall", end * 1e3, "ms", start * 1e3, end / start)
            )
            if job not in catch_up.cpu_costs_s:
                section.error = f"{name}: the backfill logged no CPU for its {job} periods (`cpu_ms` in job_ran)"
                continue
            start, end = catch_up.edge_s(job, end=False, cpu=True), catch_up.edge_s(job, end=True, cpu=True)
            growth = end / start
            target = f"<= {TARGET_GROWTH:g}x start" if sessions == longest else ""
            passed = growth <= TARGET_GROWTH if sessions == longest else None
            section.figures.append(
                Figure(f"{name}: {job} period, end, CPU", end * 1e3, "ms", start * 1e3, growth, target, passed)
            )
        section.figures += [
            Figure(
                f"{name}: peak RSS",
                backfill.peak.rss_mib,
                "MiB",
                target=f"<= {TARGET_MIB:g} MiB",
                passed=backfill.peak.rss_mib <= TARGET_MIB,
            ),
            Figure(
                f"{name}: store",
                store / 1e6,
                "MB",
                logs_bytes / 1e6,
                store / logs_bytes,
                "<= logs",
                store <= logs_bytes,
            ),
        ]
        runs[name] = {
            "home": home.directory.name,
            "run_dir": run_dir.name,
            "sessions": sessions,
            "logs_bytes": logs_bytes,
            "lines": lines,
            "bare_read_s": bare_s,
            "wall_s": backfill.peak.wall_s,
            "store_bytes": store,
            "backfill_finished": backfill.finished(),
            **asdict(catch_up),
        }
    section.detail = {"runs": runs, "edge_periods": EDGE_PERIODS}
    return section
