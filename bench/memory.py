"""Benchmark 4: peak RSS of `learnd backfill` (a subprocess; wait4's ru_maxrss of that child) on a small and a
big home, against the interpreter with learnd.cli imported.
"""

from __future__ import annotations

import sys

from bench.homes import BaseHome, fresh_run_dir, generated_home
from bench.plan import Plan
from bench.processes import NO_JOBS, cli_args, run_for_peak_rss
from bench.report import Figure, Section

TARGET_MIB = 150.0
TARGET_GROWTH = 1.2
_TIMEOUT_S = 3600.0


def run(plan: Plan, base: BaseHome) -> Section:
    section = Section("memory", "peak RSS of `learnd backfill`")
    # The bare interpreter with the CLI imported; sleeps so the 10 ms sampler sees its resident set.
    baseline = run_for_peak_rss([sys.executable, "-c", "import time, learnd.cli; time.sleep(0.3)"], 60)
    peaks = {}
    for label, size in (("small", plan.memory_small_bytes), ("big", plan.memory_big_bytes)):
        home = generated_home(base, size)
        run_dir = fresh_run_dir(f"memory-{label}")
        peak = run_for_peak_rss(cli_args(run_dir, home.logs, "backfill", **NO_JOBS), _TIMEOUT_S)
        if peak.status != 0:
            section.error = f"learnd backfill on the {label} home exited with {peak.status}"
        peaks[label] = (home.size_bytes, peak)
    figures = []
    for label, (size, peak) in peaks.items():
        figures.append(
            Figure(
                f"{label} home {size / 1e6:.0f} MB: MiB",
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
            label: {"bytes": size, "mib": peak.rss_mib, "wall_s": peak.wall_s} for label, (size, peak) in peaks.items()
        },
    }
    return section
