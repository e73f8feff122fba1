"""`python -m bench` (make bench): every benchmark, each figure a ratio against a baseline measured in the same
run; prints a table and writes bench/results.json.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import structlog

from bench import commands, history, idle, latency, loop, memory, rescan, sustained, throughput
from bench.homes import BaseHome, prune_stale
from bench.plan import Plan
from bench.report import Section, render, write_results

RESULTS: Final = Path(__file__).resolve().parent / "results.json"
# In this order, the homes and the caught-up store are built once and shared.
BENCHMARKS: Final[dict[str, Callable[[Plan, BaseHome], Section]]] = {
    "throughput": throughput.run,
    "history": history.run,
    "memory": memory.run,
    "rescan": rescan.run,
    "commands": commands.run,
    "loop": loop.run,
    "latency": latency.run,
    "idle": idle.run,
    "sustained": sustained.run,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes and short runs (a smoke run)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only this benchmark")
    parser.add_argument("--gb", type=float, default=1.0, help="size of the big home in GB (default 1)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed of the base home")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one more backfill to bench/work/throughput.pstats"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default bench/results.json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks in order; exit 1 when one of them failed to run (a missed target is not)."""
    args = _parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every benchmark's `finally` stops the daemons and children it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.gb <= 0:
        raise SystemExit("--gb: must be positive")
    # The in-process backfills would otherwise print a line per quarantined record.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    plan = Plan.build(quick=args.quick, gb=args.gb, seed=args.seed)
    started = datetime.now(UTC)
    # Every home ends at the last session before today, as a bot's history does.
    base = BaseHome(plan.seed, started.date())
    prune_stale(base.end_day)
    sections: list[Section] = []
    for name in args.only or list(BENCHMARKS):
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        clock = time.monotonic()
        try:
            if name == "throughput":
                section = throughput.run(plan, base, profile=args.profile)
            else:
                section = BENCHMARKS[name](plan, base)
        except Exception as error:  # noqa: BLE001 - one failed benchmark is reported; the others still run
            traceback.print_exc()
            section = Section(name, name, error=f"{type(error).__name__}: {error}")
        section.detail["seconds"] = round(time.monotonic() - clock, 1)
        sections.append(section)
        print(f"bench: {name} done in {section.detail['seconds']} s", file=sys.stderr, flush=True)
        write_results(args.out, sections, started, plan.quick, sys.argv[1:] if argv is None else list(argv))
    sys.stdout.write(render(sections, started, plan.quick))
    return 1 if any(section.error for section in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
