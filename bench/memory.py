"""Benchmark 4: peak RSS (VmHWM) of `learnd backfill` (a subprocess, jobs on) on a small home and on the big home,
both ending today, against the interpreter with learnd.cli imported. The big home's run is the one throughput or
history ran last in this process, if any.
"""

from __future__ import annotations

import sys
from typing import Final

from bench.homes import BaseHome, generated_home
from bench.plan import Plan
from bench.processes import backfill_home, run_for_peak_rss
from bench.report import Figure, Section

TARGET_MIB: Final = 150.0
TARGET_GROWTH: Final = 1.2
_TIMEOUT_S: Final = 7200.0


def run(plan: Plan, base: BaseHome) -> Section:
    section = Section("memory", "peak RSS of `learnd backfill`")
    # The bare interpreter with the CLI imported; sleeps so the 10 ms sampler sees its resident set.
    baseline = run_for_peak_rss([sys.executable, "-c", "import time, learnd.cli; time.sleep(0.3)"], 60)
    peaks = {}
    run_dirs = {}
    for label, size in (("small", plan.memory_small_bytes), ("big", plan.big_bytes)):
        home = generated_home(base, size, plan.sessions_for(size))
        run_dir, backfill = backfill_home(home, f"memory-{label}", _TIMEOUT_S, reuse=True)
        peaks[label] = (home, backfill.peak)
        run_dirs[label] = run_dir.name
    figures = []
    for label, (home, peak) in peaks.items():
        figures.append(
            Figure(
                f"{label} home {home.size_bytes / 1e6:,.1f} MB: MiB",
                peak.rss_mib,
                "MiB",
                baseline.rss_mib,
                peak.rss_mib / baseline.rss_mib,
                f"<= {TARGET_MIB:g} MiB",
                peak.rss_mib <= TARGET_MIB,
            )
        )
    growth = peaks["big"][1].rss_mib / peaks["small"][1].rss_mib
    figures.append(Figure("big/small", growth, "x", None, growth, f"<= {TARGET_GROWTH}", growth <= TARGET_GROWTH))
    section.figures = figures
    section.detail = {
        "baseline_mib": baseline.rss_mib,
        "python": sys.version.split()[0],
        "runs": {
            label: {
                "bytes": home.size_bytes,
                "sessions": home.sessions,
                "mib": peak.rss_mib,
                "wall_s": peak.wall_s,
                "run_dir": run_dirs[label],
            }
            for label, (home, peak) in peaks.items()
        },
    }
    return section
