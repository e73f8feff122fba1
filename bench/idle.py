"""Benchmark 5: CPU the daemon uses with nothing appended, and its resident set at the end of that window, next to
a floor process running in the same window: asyncio with a watchfiles watch on the same directory and a 1 s stat
of the four logs (what any tailer needs).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.appender import seed_logs
from bench.homes import BaseHome, fresh_run_dir
from bench.plan import Plan
from bench.processes import CLOCK_TICKS, Daemon, bench_settings, child_env, proc_status_kib, wait_caught_up, wait_quiet
from bench.report import Figure, Section
from learnd.devtools.simulate import LOG_FILES

TARGET_PERCENT = 1.0
TARGET_RSS_MIB = 60.0
_SETTLE_S = 2.0

_FLOOR_PROGRAM = """
import asyncio, os, sys, watchfiles
paths = sys.argv[1:]

async def poll(stop):
    while not stop.is_set():
        for path in paths:
            os.stat(path)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass

async def main():
    stop = asyncio.Event()
    task = asyncio.create_task(poll(stop))
    async for _ in watchfiles.awatch(os.path.dirname(paths[0]), debounce=20, step=5, stop_event=stop):
        pass

asyncio.run(main())
"""


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run(plan: Plan, base: BaseHome) -> Section:
    section = Section("idle", "CPU with no appends")
    home = fresh_run_dir("idle")
    logs = seed_logs(base, home, LOG_FILES)
    settings = bench_settings(home, logs)
    daemon = Daemon.start(home, logs)
    floor = subprocess.Popen(
        [sys.executable, "-c", _FLOOR_PROGRAM, *(str(path) for path in logs.values())],
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_caught_up(settings, daemon, 300)
        wait_quiet(daemon, 300)
        time.sleep(_SETTLE_S)
        started = time.monotonic()
        daemon_before, floor_before = daemon.cpu_s(), _cpu_s(floor.pid)
        time.sleep(plan.idle_s)
        daemon_used, floor_used = daemon.cpu_s() - daemon_before, _cpu_s(floor.pid) - floor_before
        wall = time.monotonic() - started
        rss_mib, floor_rss_mib = daemon.rss_mib(), proc_status_kib(floor.pid, "VmRSS") / 1024
    finally:
        floor.kill()
        floor.wait(timeout=10)
        status = daemon.stop()
    percent = 100 * daemon_used / wall
    floor_percent = 100 * floor_used / wall
    ratio = percent / floor_percent if floor_used > 0 else None
    section.figures = [
        Figure("cpu %", percent, "%", floor_percent, ratio, f"< {TARGET_PERCENT:g} %", percent < TARGET_PERCENT),
        Figure(
            "RSS after idle",
            rss_mib,
            "MiB",
            floor_rss_mib,
            rss_mib / floor_rss_mib,
            f"<= {TARGET_RSS_MIB:g} MiB",
            rss_mib <= TARGET_RSS_MIB,
        ),
    ]
    section.detail = {
        "wall_s": wall,
        "daemon_cpu_s": daemon_used,
        "floor_cpu_s": floor_used,
        "daemon_rss_mib": rss_mib,
        "floor_rss_mib": floor_rss_mib,
        "clock_ticks_per_s": CLOCK_TICKS,
        "daemon_exit_status": status,
    }
    return section
