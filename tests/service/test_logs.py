"""service.logs: JSON lines on stdout when it is not a TTY, the console renderer on a TTY (a real pty), and the
format setting overriding either; every line carries its event name, level, UTC time and fields.

Each case runs in a subprocess: structlog's configuration is process-wide.
"""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]

# Logs a few events the way learnd's modules do; argv: the format, then the level name.
_PROGRAM = """
import logging, sys
import structlog
from learnd.service.logs import configure_logging

configure_logging(sys.argv[1], getattr(logging, sys.argv[2]))
log = structlog.get_logger("learnd.test")
log.debug("poll_skipped", source="orders")
structlog.contextvars.bind_contextvars(home="/srv/bot")
log.info("checkpoint_committed", source="attribution", offset=4096, lines=3)
log.warning("record_quarantined", source="exit", offset=17, reason="invalid_json")
try:
    raise ValueError("disk on fire")
except ValueError:
    log.exception("write_failed", path="state/learnd.db")
"""
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_piped(log_format: str, level: str = "INFO") -> str:
    """The program's stdout through a pipe (not a TTY), as under systemd."""
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM, log_format, level],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout


def run_on_tty(log_format: str) -> str:
    """The program's stdout on a pseudo-terminal, as in an operator's shell; ANSI colours stripped."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _PROGRAM, log_format, "INFO"], cwd=ROOT, stdout=terminal, stderr=subprocess.PIPE
        )
        os.close(terminal)
        terminal = -1
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError as error:
                if error.errno != errno.EIO:  # EIO: the other end is closed, everything was read
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    return _ANSI.sub("", b"".join(chunks).decode().replace("\r\n", "\n"))


def events(output: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in output.splitlines()]


@pytest.mark.parametrize("log_format", ["auto", "json"])
def test_json_lines_when_stdout_is_not_a_tty(log_format: str) -> None:
    """Each event is one JSON object per line, with its event name, level and fields (bound context included)."""
    lines = events(run_piped(log_format))
    assert [(line["event"], line["level"]) for line in lines] == [
        ("checkpoint_committed", "info"),
        ("record_quarantined", "warning"),
        ("write_failed", "error"),
    ]
    committed = lines[0]
    assert {key: committed[key] for key in ("source", "offset", "lines", "home")} == {
        "source": "attribution",
        "offset": 4096,
        "lines": 3,
        "home": "/srv/bot",
    }
    assert lines[1]["reason"] == "invalid_json"


def test_every_line_carries_a_utc_iso_timestamp() -> None:
    """`timestamp` is ISO-8601 in UTC (a `Z` suffix), close to now."""
    for line in events(run_piped("json")):
        stamp = str(line["timestamp"])
        assert stamp.endswith("Z")
        moment = datetime.fromisoformat(stamp)
        assert moment.utcoffset() == timedelta(0)
        assert abs(datetime.now(moment.tzinfo) - moment) < timedelta(minutes=5)


def test_an_exception_is_logged_with_its_traceback() -> None:
    """log.exception puts the formatted traceback in the event, so journald keeps it with the line."""
    failed = events(run_piped("json"))[-1]
    assert failed["path"] == "state/learnd.db"
    assert "Traceback" in str(failed["exception"])
    assert "ValueError: disk on fire" in str(failed["exception"])


def test_debug_events_appear_only_at_debug_level() -> None:
    """The level filters: the debug event is dropped at INFO and written at DEBUG."""
    assert "poll_skipped" not in run_piped("json", "INFO")
    assert events(run_piped("json", "DEBUG"))[0]["event"] == "poll_skipped"


def test_console_on_a_tty() -> None:
    """On a terminal `auto` renders readable lines (level, event name, key=value fields), not JSON."""
    output = run_on_tty("auto")
    lines = [line for line in output.splitlines() if "checkpoint_committed" in line]
    assert len(lines) == 1
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(lines[0])
    assert "[info" in lines[0]
    for field in ("source=attribution", "offset=4096", "lines=3", "home=/srv/bot"):
        assert field in lines[0]
    assert "record_quarantined" in output
    assert "ValueError: disk on fire" in output


def test_json_format_overrides_a_tty() -> None:
    """`json` writes JSON lines even on a terminal."""
    assert [line["event"] for line in events(run_on_tty("json"))] == [
        "checkpoint_committed",
        "record_quarantined",
        "write_failed",
    ]


def test_console_format_overrides_a_pipe() -> None:
    """`console` writes readable lines even when stdout is a pipe."""
    output = _ANSI.sub("", run_piped("console"))
    first = output.splitlines()[0]
    assert "checkpoint_committed" in first
    assert "source=attribution" in first
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(first)


# With no level given, JSON keeps debug (the per-period events) and the console shows info and up.
_DEFAULT_LEVEL_PROGRAM = """
import sys
from learnd.service.logs import configure_logging
import structlog
configure_logging(sys.argv[1])
log = structlog.get_logger("test")
log.debug("job_ran", period="2026-03-02")
log.info("jobs_caught_up", periods=1)
"""


def emitted_at_default_level(log_format: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _DEFAULT_LEVEL_PROGRAM, log_format],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout.decode()


def test_json_logs_keep_the_per_period_events_at_debug() -> None:
    lines = [orjson.loads(line) for line in emitted_at_default_level("json").splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [("job_ran", "debug"), ("jobs_caught_up", "info")]


def test_the_console_leaves_the_debug_lines_out() -> None:
    text = emitted_at_default_level("console")
    assert "jobs_caught_up" in text and "job_ran" not in text
