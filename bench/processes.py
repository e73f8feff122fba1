"""The measured processes: the real daemon and `learnd backfill` in subprocesses, their CPU and peak memory
from /proc, and the store read-only from outside (offsets and line counts).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from learnd.config import Settings, load_settings
from learnd.errors import StateError
from learnd.store.database import Store

_TERM_TIMEOUT_S: Final = 10.0
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


# The history homes start in 2000: with the scheduled jobs on, a backfill would also replay every daily and weekly
# job since then, which is measured on its own (README, bench section), not mixed into the ingest figures.
NO_JOBS: Final = {"schedule.daily_enabled": "false", "schedule.weekly_enabled": "false"}


def source_overrides(logs: Mapping[str, Path]) -> dict[str, str]:
    """Settings overrides that point each default source at `logs` and disable the sources not given."""
    overrides = {"metrics_enabled": "false"}
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
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARND_")}
    env.update(LEARND_METRICS_ENABLED="false", LEARND_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
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
    """A finished child: exit status, peak resident set (MiB) and wall time."""

    status: int
    rss_mib: float
    wall_s: float


def _vm_hwm_kib(pid: int) -> int:
    """The peak resident set of the process's current image (VmHWM; reset by exec, unlike ru_maxrss)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run_for_peak_rss(command: list[str], timeout_s: float) -> Peak:
    """Run `command` to completion and return its peak RSS, sampled from /proc every 10 ms.

    Not wait4's ru_maxrss: Linux carries the forking parent's peak into the child's across exec, and the bench
    process is larger than what it measures. VmHWM never decreases, so the last sample misses at most 10 ms.
    """
    started = time.monotonic()
    process = subprocess.Popen(command, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_kib = 0
    try:
        while process.poll() is None and time.monotonic() - started < timeout_s:
            peak_kib = max(peak_kib, _vm_hwm_kib(process.pid))
            time.sleep(0.01)
    finally:
        if process.poll() is None:
            process.kill()
        status = process.wait(timeout=_TERM_TIMEOUT_S)
    return Peak(status, peak_kib / 1024, time.monotonic() - started)


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
