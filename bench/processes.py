"""The measured processes: the real daemon and `learnd backfill` in subprocesses (jobs on, as shipped), their CPU,
memory and JSON log events, and the store read-only from outside (offsets and line counts).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson

from bench.homes import WORK_DIR, GeneratedHome, fresh_run_dir, learnd_digest
from bench.report import median
from learnd.config import Settings, load_settings
from learnd.errors import StateError
from learnd.store.database import Store

_TERM_TIMEOUT_S: Final = 10.0
# How many periods of each job make "the start" and "the end" of history.
EDGE_PERIODS: Final = 10
_JOB_EVENTS: Final = ("job_ran", "job_failed")
_CAUGHT_UP: Final = ".caught_up"
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def source_overrides(logs: Mapping[str, Path]) -> dict[str, str]:
    """Settings overrides that point each default source at `logs` and disable the sources not given. Metrics stay
    on, as shipped, on a port the system picks (daemons measured side by side would fight over the default one)."""
    overrides = {"metrics_port": "0"}
    for name in ("attribution", "exit", "signals", "orders"):
        if name in logs:
            overrides[f"sources.{name}.path"] = str(logs[name])
        else:
            overrides[f"sources.{name}.enabled"] = "false"
    return overrides


def bench_settings(home: Path, logs: Mapping[str, Path], **extra: str) -> Settings:
    return load_settings(home=home, environ={}, overrides={**source_overrides(logs), **extra})


def cli_args(home: Path, logs: Mapping[str, Path], *command: str, **extra: str) -> list[str]:
    """`python -m learnd --home HOME --set ... COMMAND` for these logs."""
    args = [sys.executable, "-m", "learnd", "--home", str(home), "--log-format", "json"]
    for key, value in {**source_overrides(logs), **extra}.items():
        args += ["--set", f"{key}={value}"]
    return [*args, *command]


def child_env() -> dict[str, str]:
    """The environment of a measured learnd process: the caller's, without its LEARND_* settings, and with Python's
    bytecode cache on (a host that sets PYTHONDONTWRITEBYTECODE would otherwise make every start compile learnd
    from source, which no installed learnd does: pip compiles it at install)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARND_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(LEARND_METRICS_PORT="0", LEARND_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    return env


@dataclass
class Daemon:
    """A running `learnd run` whose output goes to files in its home (a pipe nobody reads would block it)."""

    process: subprocess.Popen[bytes]
    output: IO[bytes]

    @classmethod
    def start(cls, home: Path, logs: Mapping[str, Path], *, backfill: bool = True, **extra: str) -> Daemon:
        output = open(home / "daemon.log", "wb")  # noqa: SIM115 - closed by stop()
        command = cli_args(home, logs, "run", *(["--backfill"] if backfill else []), **extra)
        process = subprocess.Popen(command, env=child_env(), stdout=output, stderr=subprocess.STDOUT)
        return cls(process, output)

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def require_running(self) -> None:
        """Raise with the end of the daemon's log if it has exited."""
        if self.process.poll() is not None:
            self.output.flush()
            tail = Path(self.output.name).read_bytes()[-400:].decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"daemon exited with {self.process.returncode}: {tail[-1] if tail else ''}")

    def cpu_s(self) -> float:
        """User + system CPU seconds used so far (/proc/PID/stat utime + stime)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_mib(self) -> float:
        """The resident set now (VmRSS)."""
        return proc_status_kib(self.pid, "VmRSS") / 1024

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after a timeout; returns the exit status."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=_TERM_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
            return self.process.wait(timeout=_TERM_TIMEOUT_S)
        finally:
            self.output.close()


@dataclass(frozen=True, slots=True)
class Peak:
    """A finished child: exit status, peak resident set (MiB), wall time, and when it started (wall clock, to place
    its log events)."""

    status: int
    rss_mib: float
    wall_s: float
    started: datetime


def proc_status_kib(pid: int, field: str) -> int:
    """One `kB` field of /proc/PID/status (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run_for_peak_rss(command: list[str], timeout_s: float, output: Path | None = None) -> Peak:
    """Run `command` to completion and return its peak RSS, sampled from /proc every 10 ms; its stdout goes to
    `output` (its stderr beside it, `.err`), or nowhere.

    The peak is VmHWM, the high-water mark of the process's current image (reset by exec), not wait4's ru_maxrss:
    Linux carries the forking parent's peak into the child's across exec, and the bench process is larger than
    what it measures. VmHWM never decreases, so the last sample misses at most 10 ms.
    """
    with ExitStack() as stack:
        stdout: IO[bytes] | int = subprocess.DEVNULL
        stderr: IO[bytes] | int = subprocess.DEVNULL
        if output is not None:
            stdout = stack.enter_context(open(output, "wb"))
            stderr = stack.enter_context(open(output.with_suffix(".err"), "wb"))
        started_at = datetime.now(UTC)
        started = time.monotonic()
        process = subprocess.Popen(command, env=child_env(), stdout=stdout, stderr=stderr)
        peak_kib = 0
        try:
            while process.poll() is None and time.monotonic() - started < timeout_s:
                peak_kib = max(peak_kib, proc_status_kib(process.pid, "VmHWM"))
                time.sleep(0.01)
        finally:
            if process.poll() is None:
                process.kill()
            status = process.wait(timeout=_TERM_TIMEOUT_S)
        return Peak(status, peak_kib / 1024, time.monotonic() - started, started_at)


@dataclass(frozen=True, slots=True)
class BackfillRun:
    """A finished `learnd backfill` subprocess: its peak and its JSON log events, in order."""

    peak: Peak
    events: list[dict[str, Any]]

    def finished(self) -> dict[str, Any]:
        """The `backfill_finished` event: what was read, applied and run."""
        return next(event for event in self.events if event["event"] == "backfill_finished")


def backfill_process(
    home: Path, logs: Mapping[str, Path], timeout_s: float, *, profile: Path | None = None
) -> BackfillRun:
    """`learnd backfill` on `logs` with its state under `home`, to completion (optionally under cProfile, into
    `profile`); raises with the end of its stderr if it fails."""
    command = cli_args(home, logs, "backfill", "--progress", "none")
    if profile is not None:
        command = [command[0], "-m", "cProfile", "-o", str(profile), *command[1:]]
    output = home / "backfill.log"
    peak = run_for_peak_rss(command, timeout_s, output)
    if peak.status != 0:
        tail = output.with_suffix(".err").read_bytes()[-400:].decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"learnd backfill exited with {peak.status}: {tail[-1] if tail else ''}")
    events = []
    with open(output, "rb") as handle:
        for line in handle:
            if line.startswith(b"{"):
                events.append(orjson.loads(line))
    return BackfillRun(peak, events)


# The last backfill of each generated home in this process and its state directory: benchmarks that measure the
# same run (throughput's last repeat, history's longest home, memory's big home) share it rather than repeat it.
_latest: dict[Path, tuple[Path, BackfillRun]] = {}


def backfill_home(home: GeneratedHome, name: str, timeout_s: float, *, reuse: bool) -> tuple[Path, BackfillRun]:
    """A backfill of `home` on a fresh store in run directory `name`, or with `reuse` the last one this process
    ran of that home; returns the state directory and the run."""
    if reuse and home.directory in _latest:
        return _latest[home.directory]
    run_dir = fresh_run_dir(name)
    latest = _latest[home.directory] = (run_dir, backfill_process(run_dir, home.logs, timeout_s))
    return latest


@dataclass(frozen=True, slots=True)
class CatchUp:
    """One backfill split in two: start-up and ingest, then the job catch-up (and the exports after it); and each
    period's cost in order, per job, the first period left out.

    The backfill logs `job_ran` as each period commits, so the time between two is the later period's cost. No
    event marks the end of ingest: the first period's own cost is taken as the median of the first ones of its job.
    """

    ingest_s: float
    jobs_s: float
    periods: int
    failed: int
    costs_s: dict[str, list[float]]
    # Each period's CPU, per job, every period, as `job_ran` logs it (`cpu_ms`): the wall time between two periods
    # also holds whatever else the machine ran meanwhile.
    cpu_costs_s: dict[str, list[float]] = field(default_factory=dict)

    def edge_s(self, job: str, *, end: bool, cpu: bool = False) -> float:
        """The median cost (wall, or with `cpu` CPU) of the first (or last) periods of `job`: ten, or half of them
        when there are fewer than twenty, so that start and end never share a period."""
        costs = (self.cpu_costs_s if cpu else self.costs_s).get(job, [])
        count = max(1, min(EDGE_PERIODS, len(costs) // 2))
        return median(costs[-count:] if end else costs[:count])


def job_catch_up(backfill: BackfillRun) -> CatchUp:
    """Ingest and job catch-up of one backfill, from its log events' timestamps and its start."""

    def seconds(event: dict[str, Any]) -> float:
        return (datetime.fromisoformat(event["timestamp"]) - backfill.peak.started).total_seconds()

    finished = backfill.finished()
    finished_s = seconds(finished)
    jobs = [event for event in backfill.events if event["event"] in _JOB_EVENTS]
    if not jobs:
        return CatchUp(finished_s, 0.0, 0, 0, {})
    moments = [seconds(event) for event in jobs]
    costs: dict[str, list[float]] = {}
    for event, previous, moment in zip(jobs[1:], moments, moments[1:], strict=False):
        costs.setdefault(event["job"], []).append(moment - previous)
    cpu_costs: dict[str, list[float]] = {}
    for event in jobs:
        if "cpu_ms" in event:
            cpu_costs.setdefault(event["job"], []).append(float(event["cpu_ms"]) / 1e3)
    failed = sum(event["event"] == "job_failed" for event in jobs)
    if "jobs_s" in finished:
        # learnd times its two phases itself; start-up (before the ingest) counts with the ingest.
        jobs_s = float(finished["jobs_s"])
        return CatchUp(finished_s - jobs_s, jobs_s, len(jobs), failed, costs, cpu_costs)
    first_costs = costs.get(jobs[0]["job"], [])
    first_s = median(first_costs[:EDGE_PERIODS]) if first_costs else 0.0
    return CatchUp(moments[0] - first_s, finished_s - moments[0] + first_s, len(jobs), failed, costs, cpu_costs)


def store_bytes(settings: Settings) -> int:
    """The size of the store: the SQLite database and its WAL and shared-memory files."""
    return sum(path.stat().st_size for path in settings.state_dir.glob(settings.db_path.name + "*"))


def caught_up_home(home: GeneratedHome, timeout_s: float) -> tuple[Path, dict[str, Path]]:
    """A home holding its own copy of `home`'s logs and a store that has applied them all, jobs run (cached per
    learnd source: a store written by another version may not load). Benchmarks may append to its logs."""
    prefix = f"caught-up-{home.directory.name}-"
    directory = WORK_DIR / (prefix + learnd_digest())
    logs = {name: directory / "logs" / path.name for name, path in home.logs.items()}
    if not (directory / _CAUGHT_UP).exists():
        for stale in WORK_DIR.glob(prefix + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        (directory / "logs").mkdir(parents=True)
        for name, path in home.logs.items():
            shutil.copyfile(path, logs[name])
        backfill_process(directory, logs, timeout_s)
        (directory / _CAUGHT_UP).touch()
    return directory, logs


def committed(settings: Settings) -> tuple[dict[str, int], dict[str, int]]:
    """Per source: the committed offset and the committed line count, read-only ({} before the first commit)."""
    try:
        store = Store.open(settings.db_path, readonly=True)
    except StateError:
        return {}, {}
    try:
        offsets = {name: checkpoint.offset for name, checkpoint in store.checkpoints().items()}
        lines: dict[str, int] = {}
        for (name, _, _), count in store.line_counts().items():
            lines[name] = lines.get(name, 0) + count
    finally:
        store.close()
    return offsets, lines


def lag_bytes(settings: Settings) -> int:
    """Bytes present in the sources and not yet committed."""
    offsets, _ = committed(settings)
    return sum(max(0, source.path.stat().st_size - offsets.get(source.name, 0)) for source in settings.sources)


def wait_caught_up(settings: Settings, daemon: Daemon, timeout_s: float) -> float:
    """Seconds until every source's committed offset reaches its size; raises if the daemon dies or time runs out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        daemon.require_running()
        if settings.db_path.exists() and lag_bytes(settings) == 0:
            return time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError(f"daemon did not catch up within {timeout_s} s")


def wait_quiet(daemon: Daemon, timeout_s: float, window_s: float = 0.5, busy_share: float = 0.05) -> float:
    """Seconds until the daemon uses under `busy_share` of a core over `window_s` (start-up jobs done)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        daemon.require_running()
        before = daemon.cpu_s()
        time.sleep(window_s)
        if daemon.cpu_s() - before < busy_share * window_s:
            return time.monotonic() - started
    raise TimeoutError(f"daemon still busy after {timeout_s} s")
