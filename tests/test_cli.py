"""The command line as an operator uses it: real subprocesses on a simulated home."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from learnd.config import load_settings
from learnd.devtools.simulate import simulate
from learnd.errors import ConfigError, LearndError, StateError
from learnd.views.execution import execution_document
from learnd.views.schedule import schedule_document
from learnd.views.signals import signals_document
from learnd.views.status import collect_status
from tests.bot_rows import write_trading_day


def learnd(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARND_")}
    env["LEARND_METRICS_ENABLED"] = "false"
    return subprocess.run(
        [sys.executable, "-m", "learnd", "--home", str(home), "--log-format", "json", *args],
        check=check,
        capture_output=True,
        env=env,
        timeout=120,
    )


@pytest.fixture(scope="module")
def learned_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    simulate(home, trades=300, seed=11)
    learnd(home, "backfill")
    return home


def test_help_explains_every_command() -> None:
    """`learnd --help` lists the commands, how settings are layered and the exit statuses; `run --help` says what
    SIGHUP does."""
    result = subprocess.run([sys.executable, "-m", "learnd", "--help"], check=True, capture_output=True)
    text = result.stdout.decode()
    for command in ("run", "backfill", "status", "weights", "evaluate", "schedule", "signals", "execution", "report"):
        assert command in text
    assert "LEARND_" in text
    assert "$LEARND_CONFIG" in text
    assert "exit status: 0 ok" in text and "3 configuration error" in text
    run = subprocess.run([sys.executable, "-m", "learnd", "run", "--help"], check=True, capture_output=True)
    assert "SIGHUP reloads the configuration" in " ".join(run.stdout.decode().split())


def test_weights_json_is_canonical_and_stable(learned_home: Path) -> None:
    """weights --json: the documented shape, sorted keys, byte-identical on a second call."""
    first = learnd(learned_home, "weights", "--json").stdout
    assert first == learnd(learned_home, "weights", "--json").stdout
    document = orjson.loads(first)
    assert document["trades_learned"] == 300
    entry = document["strategies"]["equity"]["entry"]["options_flow"]
    assert {"multiplier", "samples", "by_regime"} <= entry.keys()
    exit_view = next(iter(document["strategies"]["equity"]["exit"].values()))
    assert {"multiplier", "samples", "win_rate", "mean_pnl_pct"} <= exit_view.keys()


def test_report_prints_markdown_and_draws_the_chart(learned_home: Path) -> None:
    """report: the latest daily report as Markdown, plus a PNG of the multipliers over event time."""
    from datetime import UTC, datetime

    from learnd.config import load_settings
    from learnd.service.engine import Engine
    from learnd.service.scheduler import replay_history

    settings = load_settings(home=learned_home, environ={})
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        assert replay_history(engine, engine.calendar, datetime.now(UTC)).failed == 0
    finally:
        engine.close()
    result = learnd(learned_home, "report")
    assert result.stdout.startswith(b"# Daily report")
    chart = learned_home / "data" / "reports" / "multipliers-equity.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A strategy with nothing moved yet: the report all the same, a note instead of the chart, and exit 0.
    quiet = learnd(learned_home, "report", "--strategy", "nosuch")
    assert quiet.returncode == 0
    assert quiet.stdout.startswith(b"# Daily report")
    assert b"chart: none (no entry multiplier changes for strategy 'nosuch'" in quiet.stdout


@pytest.mark.parametrize(
    "command",
    [("status",), ("schedule", "--from", "2026-11-25T21:30:00+00:00"), ("signals",), ("execution",)],
    ids=lambda command: command[0],
)
def test_json_output_is_the_view_s_document(learned_home: Path, command: tuple[str, ...]) -> None:
    """`<command> --json` prints its view's document (tests/views/ check the contents) as indented JSON with
    sorted keys and a final newline."""
    settings = load_settings(home=learned_home, environ={})
    views: dict[str, Callable[[], dict[str, Any]]] = {
        "status": lambda: collect_status(settings),
        "schedule": lambda: schedule_document(settings, datetime(2026, 11, 25, 21, 30, tzinfo=UTC), 5),
        "signals": lambda: signals_document(settings),
        "execution": lambda: execution_document(settings),
    }
    printed = learnd(learned_home, *command, "--json").stdout
    assert printed == orjson.dumps(views[command[0]](), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


@pytest.mark.parametrize("command", ["status", "schedule", "signals", "execution"])
def test_text_output_is_the_view_rendered(learned_home: Path, command: str) -> None:
    """Without --json the same commands print readable text, not JSON."""
    printed = learnd(learned_home, command).stdout.decode()
    assert printed.endswith("\n")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(printed)


@pytest.mark.parametrize(
    ("error", "status"),
    [(StateError("store refused"), 4), (ConfigError("bad key"), 3), (LearndError("other"), 1)],
)
def test_an_error_raised_inside_the_daemons_task_group_exits_with_its_own_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: LearndError, status: int
) -> None:
    """The daemon's tasks run in a TaskGroup, which wraps what they raise in an ExceptionGroup; the exit status is
    still the error's own. The seam faked here is the daemon's entry (service.daemon.serve), raising as a task
    would."""
    from learnd import cli
    from learnd.service import daemon

    async def failing_serve(*args: object, **kwargs: object) -> int:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [error])

    monkeypatch.setattr(daemon, "serve", failing_serve)
    (tmp_path / "logs").mkdir()
    assert cli.main(["--home", str(tmp_path), "--set", "metrics_enabled=false", "run"]) == status


def test_an_unknown_error_inside_the_task_group_is_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything unexpected propagates (the process exits non-zero and systemd restarts it)."""
    from learnd import cli
    from learnd.service import daemon

    async def failing_serve(*args: object, **kwargs: object) -> int:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [RuntimeError("bug")])

    monkeypatch.setattr(daemon, "serve", failing_serve)
    (tmp_path / "logs").mkdir()
    with pytest.raises(ExceptionGroup):
        cli.main(["--home", str(tmp_path), "--set", "metrics_enabled=false", "run"])


def test_an_unknown_error_beside_a_known_one_in_the_task_group_is_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tasks failed, one with a state error and one with a bug: the whole group propagates (the bug's traceback
    is shown), rather than the state error's exit status alone. The seam is the daemon's entry, as above."""
    from learnd import cli
    from learnd.service import daemon

    async def failing_serve(*args: object, **kwargs: object) -> int:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [StateError("store refused"), RuntimeError("bug")])

    monkeypatch.setattr(daemon, "serve", failing_serve)
    (tmp_path / "logs").mkdir()
    with pytest.raises(ExceptionGroup) as raised:
        cli.main(["--home", str(tmp_path), "--set", "metrics_enabled=false", "run"])
    assert [type(error) for error in raised.value.exceptions] == [StateError, RuntimeError]


def test_a_one_shot_command_runs_with_the_collector_looking_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-shot command (here status) runs with the collector's first threshold raised, and the thresholds are
    back after it; the daemon keeps Python's (its handler sees them unchanged)."""
    import gc

    from learnd import cli
    from learnd.service import daemon
    from learnd.service.memory import BURST_GC_THRESHOLD
    from learnd.views import status

    before = gc.get_threshold()
    seen: dict[str, tuple[int, int, int]] = {}
    collect = status.collect_status

    def collect_status(*args: Any, **kwargs: Any) -> dict[str, Any]:
        seen["status"] = gc.get_threshold()
        return collect(*args, **kwargs)

    async def serve(*args: object, **kwargs: object) -> int:
        seen["run"] = gc.get_threshold()
        return 0

    monkeypatch.setattr(status, "collect_status", collect_status)
    monkeypatch.setattr(daemon, "serve", serve)
    (tmp_path / "logs").mkdir()
    assert cli.main(["--home", str(tmp_path), "status", "--json"]) == 0
    assert gc.get_threshold() == before
    assert cli.main(["--home", str(tmp_path), "--set", "metrics_enabled=false", "run"]) == 0
    assert seen == {"status": (max(BURST_GC_THRESHOLD, before[0]), *before[1:]), "run": before}


_WITH_AN_EXIT_HANDLER = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("teardown ran"))
sys.argv[0] = "learnd"
from learnd.cli import program
program()
"""


@pytest.mark.parametrize(
    ("command", "status", "torn_down"),
    [
        (("backfill", "--progress", "none"), 0, False),
        (("status", "--json"), 0, False),
        (("--set", "no_such_key=1", "weights", "--json"), 3, False),  # a configuration error's status all the same
        (("audit", "--json"), 0, True),
    ],
)
def test_a_backfill_or_a_quick_command_leaves_without_the_interpreter_s_teardown(
    tmp_path: Path, command: tuple[str, ...], status: int, torn_down: bool
) -> None:
    """As a program, a backfill and the quick commands exit at once with their status and all their output; the
    other commands (here audit) exit as Python does, running what was registered for the exit."""
    (tmp_path / "logs").mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARND_")}
    env["LEARND_METRICS_ENABLED"] = "false"
    result = subprocess.run(
        [sys.executable, "-c", _WITH_AN_EXIT_HANDLER, "--home", str(tmp_path), "--log-format", "json", *command],
        check=False,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == status
    assert ("teardown ran" in result.stderr.decode()) == torn_down
    if "backfill" in command:
        assert result.stdout.decode().endswith(" job periods run\n")
    elif status == 0:
        assert orjson.loads(result.stdout)
    else:
        assert "learnd: configuration error: no_such_key" in result.stderr.decode()


_IMPORTED_BY = """
import sys
from learnd.cli import main
status = main(sys.argv[1:])
sys.stderr.write(" ".join(sorted(sys.modules)))
sys.exit(status)
"""


@pytest.mark.parametrize(
    ("command", "not_imported"),
    [
        ("status", {"structlog", "asyncio", "numpy", "subprocess"}),
        ("weights", {"structlog", "asyncio"}),
        ("schedule", {"structlog", "asyncio", "numpy", "subprocess"}),
    ],
)
def test_a_quick_command_imports_only_what_it_reads_with(
    learned_home: Path, command: str, not_imported: set[str]
) -> None:
    """status, weights and schedule log nothing and never start a loop: structlog and asyncio stay out of them, and
    numpy (the learner's) and subprocess (only `report --open` runs a program) out of status and schedule; none of
    them loads pandas for the calendar."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARND_")}
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTED_BY, "--home", str(learned_home), command, "--json"],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    modules = set(result.stderr.decode().split())
    assert "learnd.cli" in modules
    assert orjson.loads(result.stdout)
    assert not modules & (not_imported | _NEVER_AT_START)


# Nothing a start needs without a config file: the calendar's library (its table is shipped), importlib.metadata
# (the table's library version is read beside the package) and the TOML parser.
_NEVER_AT_START = {"pandas", "exchange_calendars", "importlib.metadata", "tomllib"}


def test_a_backfill_whose_job_periods_fail_says_so_exits_1_and_the_next_one_runs_them(tmp_path: Path) -> None:
    """Job periods that fail (their reports cannot be written: data/reports is a file) are logged as job_failed
    and left pending: the backfill counts them in its summary and exits 1; once the cause is gone, the next
    backfill runs every one of them and exits 0."""
    write_trading_day(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "reports").write_bytes(b"not a directory\n")
    first = learnd(tmp_path, "backfill", "--progress", "none", check=False)
    assert first.returncode == 1, first.stderr
    found = re.search(rb"; (\d+) job periods run, (\d+) of them failed \(logged as job_failed", first.stdout)
    assert found is not None, first.stdout
    periods = int(found.group(1))
    assert periods > 1 and int(found.group(2)) == periods  # every session and week since 2026-03-02
    failures = [entry for entry in _log_entries(first.stdout) if entry.get("event") == "job_failed"]
    assert len(failures) == periods
    (tmp_path / "data" / "reports").unlink()
    second = learnd(tmp_path, "backfill", "--progress", "none", check=False)
    assert second.returncode == 0, second.stderr
    assert second.stdout.rstrip().endswith(b"; %d job periods run" % periods)
    assert not [entry for entry in _log_entries(second.stdout) if entry.get("event") == "job_failed"]
    assert (tmp_path / "data" / "reports" / "daily" / "2026-03-02.json").is_file()


def _log_entries(output: bytes) -> list[dict[str, Any]]:
    """The JSON log lines of a command's output (its last line is the plain summary)."""
    return [orjson.loads(line) for line in output.splitlines() if line.startswith(b"{")]


def test_a_backfill_imports_neither_the_calendar_library_nor_package_metadata(tmp_path: Path) -> None:
    """A backfill of a home without a config file starts with the shipped session table and nothing it does not
    use: pandas, exchange_calendars, importlib.metadata and tomllib stay out."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "attribution.jsonl").write_bytes(b'{"ts": "2026-11-06T14:30:00+00:00"}\n')
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARND_")}
    env["LEARND_METRICS_ENABLED"] = "false"
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTED_BY, "--home", str(tmp_path), "--log-format", "json", "backfill"],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    modules = set(result.stderr.decode().split())
    assert {"learnd.service.backfill", "learnd.sessions.tables"} <= modules
    assert not modules & _NEVER_AT_START


@pytest.mark.parametrize("command", [("status",), ("weights", "--json"), ("audit",)], ids=lambda command: command[0])
def test_output_that_cannot_be_written_is_one_line_and_status_1(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A command whose output cannot be written (stdout on a full disk: /dev/full) says so in one line on stderr
    and exits 1, without a traceback."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARND_")}
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "learnd", "--home", str(tmp_path), *command],
            stdout=full,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert stderr.startswith("learnd: ") and "No space left on device" in stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1


# The seam for the Ctrl-C test, run as a process of its own (a one-shot command sets up its logging and signals for
# the process it runs in): the fifth period raises KeyboardInterrupt, as Python does in the main thread on SIGINT.
_INTERRUPTED_BACKFILL = """
import sys
from learnd import cli
from learnd.service import scheduler

real, calls = scheduler.execute_period, [0]

def interrupted(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 5:
        raise KeyboardInterrupt
    return real(*args, **kwargs)

scheduler.execute_period = interrupted
sys.exit(cli.main(["--home", sys.argv[1], "backfill", "--progress", "none"]))
"""


def test_ctrl_c_on_a_backfill_ends_it_in_one_line_and_the_next_goes_on(tmp_path: Path) -> None:
    """Ctrl-C in the middle of a one-shot backfill (here in its job catch-up): one line saying what stays, and the
    shell's status for an interrupt (130), not a KeyboardInterrupt traceback; a backfill after it finishes the work
    and ends where one uninterrupted backfill ends. (A real signal raced the catch-up, which could end first: the
    interrupt comes through a seam, above.)"""
    simulate(tmp_path / "home", trades=300, seed=11)
    shutil.copytree(tmp_path / "home", tmp_path / "reference")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARND_")}
    env["LEARND_METRICS_ENABLED"] = "false"
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_BACKFILL, str(tmp_path / "home")],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 130, result.stderr
    assert result.stderr.startswith(b"learnd: interrupted") and b"Traceback" not in result.stderr
    assert learnd(tmp_path / "home", "backfill", "--progress", "none").returncode == 0
    assert learnd(tmp_path / "reference", "backfill", "--progress", "none").returncode == 0
    for name in ("home", "reference"):
        assert learnd(tmp_path / name, "audit").returncode == 0
    weights = [learnd(tmp_path / name, "weights", "--json").stdout for name in ("home", "reference")]
    assert weights[0] == weights[1]
