"""Benchmark: the commands an operator types, `learnd status`, `learnd weights` and `learnd schedule`, each a whole
subprocess on the caught-up big home, against starting Python and importing learnd's command line.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Final

from bench.homes import BaseHome, generated_home
from bench.plan import Plan
from bench.processes import caught_up_home, child_env, cli_args
from bench.report import Figure, Section, median

TARGET_S: Final = 0.3
COMMANDS: Final = ("status", "weights", "schedule")
_TIMEOUT_S: Final = 7200.0
_COMMAND_TIMEOUT_S: Final = 120.0


def wall_times(command: list[str], repeats: int) -> list[float]:
    """Seconds from start to exit of `command`, once per repeat; raises if it fails or runs past the timeout.

    The exit is awaited by a blocking wait, the timeout kept by a timer that kills the command: subprocess.run with
    a timeout polls for the exit with sleeps of up to 50 ms, which put every figure on the next 50 ms step (0.115,
    0.165, 0.215 s).
    """
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        process = subprocess.Popen(command, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        timer = threading.Timer(_COMMAND_TIMEOUT_S, process.kill)
        timer.start()
        try:
            status = process.wait()
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - started
        if elapsed >= _COMMAND_TIMEOUT_S:
            raise subprocess.TimeoutExpired(command, _COMMAND_TIMEOUT_S)
        if status != 0:
            raise subprocess.CalledProcessError(status, command)
        times.append(elapsed)
    return times


def run(plan: Plan, base: BaseHome) -> Section:
    section = Section("commands", "quick commands on the caught-up big home")
    home, logs = caught_up_home(generated_home(base, plan.big_bytes, plan.big_sessions), _TIMEOUT_S)
    baseline_s = wall_times([sys.executable, "-c", "import learnd.cli"], plan.commands_repeats)
    baseline = median(baseline_s)
    runs: dict[str, list[float]] = {}
    for command in COMMANDS:
        runs[command] = wall_times(cli_args(home, logs, command), plan.commands_repeats)
        value = median(runs[command])
        section.figures.append(
            Figure(command, value, "s", baseline, value / baseline, f"<= {TARGET_S:g} s", value <= TARGET_S)
        )
    section.detail = {"home": home.name, "baseline_s": baseline_s, "runs_s": runs}
    return section
