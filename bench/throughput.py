"""Benchmark 1: end-to-end `learnd backfill` (a subprocess, start-up and job catch-up included) on the big home
(all four sources, five years of sessions ending today) against a bare read + orjson.loads of the same files,
alternating the two in each repeat so both see the same machine noise.

A third pass measures a floor: the least per-line work any pure-Python learnd must do (see `floor_read`). Its
ratio bounds what a faster pipeline could reach on this machine, measured rather than argued.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

import orjson

from bench.homes import WORK_DIR, BaseHome, fresh_run_dir, generated_home
from bench.plan import Plan
from bench.processes import backfill_home, backfill_process, job_catch_up
from bench.report import Figure, Section, median
from learnd.records.components import COMPONENT_ALIASES
from learnd.sources.framing import line_hash

TARGET_RATIO: Final = 0.1
PROFILE: Final = WORK_DIR / "throughput.pstats"
_TIMEOUT_S: Final = 7200.0


def bare_read(paths: list[Path]) -> int:
    """The baseline: every line read and decoded, nothing else; returns the line count."""
    count = 0
    for path in paths:
        with open(path, "rb") as handle:
            for line in handle:
                try:  # noqa: SIM105 - contextlib.suppress would add a context manager per line to the baseline
                    orjson.loads(line)
                except orjson.JSONDecodeError:
                    pass
                count += 1
    return count


def floor_read(paths: list[Path]) -> int:
    """Less than learnd must do per line, and no more than plain Python allows: hash the line for the rewrite
    window, decode it, and sum a signal's or trade's components under their canonical names. No timestamp,
    no validation, no record, no learner, no ledger, no commit. Returns the line count."""
    names = COMPONENT_ALIASES
    count = 0
    for path in paths:
        with open(path, "rb") as handle:
            for line in handle:
                count += 1
                raw = line[:-1]
                line_hash(raw)
                try:
                    row = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                holder = (row.get("cluster") or row.get("context")) if type(row) is dict else None
                if type(holder) is not dict:
                    continue
                meta = holder.get("composite_meta", holder)
                components = meta.get("components") if type(meta) is dict else None
                if type(components) is dict:
                    totals: dict[str, float] = {}
                    for key, value in components.items():
                        name = names.get(key)
                        if name is not None and type(value) is float:
                            totals[name] = totals.get(name, 0.0) + value
    return count


def run(plan: Plan, base: BaseHome, *, profile: bool = False) -> Section:
    section = Section("throughput", "end-to-end `learnd backfill` vs read + orjson.loads")
    home = generated_home(base, plan.big_bytes, plan.big_sessions)
    size = home.size_bytes
    paths = list(home.logs.values())
    learnd_s: list[float] = []
    bare_s: list[float] = []
    floor_s: list[float] = []
    split: list[dict[str, float]] = []
    lines = 0
    for _ in range(plan.throughput_repeats):
        started = time.perf_counter()
        lines = bare_read(paths)
        bare_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        floor_read(paths)
        floor_s.append(time.perf_counter() - started)
        _, backfill = backfill_home(home, "throughput", _TIMEOUT_S, reuse=False)
        learnd_s.append(backfill.peak.wall_s)
        catch_up = job_catch_up(backfill)
        split.append({"ingest_s": catch_up.ingest_s, "jobs_s": catch_up.jobs_s})
        read = backfill.finished()["lines_count"]
        if read != lines:
            section.error = f"backfill read {read} lines, the files hold {lines}"
    if profile:
        # Apart from the timed runs: cProfile slows the process down.
        backfill_process(fresh_run_dir("throughput-profile"), home.logs, _TIMEOUT_S, profile=PROFILE)
    learnd_rate = lines / median(learnd_s)
    bare_rate = lines / median(bare_s)
    ratio = learnd_rate / bare_rate
    section.figures += [
        Figure("lines/s", learnd_rate, "lines/s", bare_rate, ratio, f">= {TARGET_RATIO}x", ratio >= TARGET_RATIO),
        Figure("MB/s", size / 1e6 / median(learnd_s), "MB/s", size / 1e6 / median(bare_s), ratio),
        Figure("floor lines/s", lines / median(floor_s), "lines/s", bare_rate, lines / median(floor_s) / bare_rate),
    ]
    section.detail = {
        "home": home.directory.name,
        "home_bytes": size,
        "sessions": home.sessions,
        "lines": lines,
        "learnd_s": learnd_s,
        "learnd_split": split,
        "baseline_s": bare_s,
        "floor_s": floor_s,
    }
    return section
