"""Tests for bench.commands.wall_times: real subprocesses, timed from start to exit."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench import commands


def test_a_command_is_timed_from_start_to_exit_once_per_repeat() -> None:
    times = commands.wall_times([sys.executable, "-c", "import time; time.sleep(0.06)"], 3)
    assert len(times) == 3
    assert all(0.06 <= elapsed < 5.0 for elapsed in times)


def test_a_failing_command_raises_with_its_status() -> None:
    with pytest.raises(subprocess.CalledProcessError) as raised:
        commands.wall_times([sys.executable, "-c", "raise SystemExit(3)"], 2)
    assert raised.value.returncode == 3


def test_a_command_past_the_timeout_is_killed_and_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "_COMMAND_TIMEOUT_S", 0.5)
    started = time.perf_counter()
    with pytest.raises(subprocess.TimeoutExpired):
        commands.wall_times([sys.executable, "-c", "import time; time.sleep(30)"], 1)
    assert time.perf_counter() - started < 10.0
