"""errors: learnd's small exception tree, and the exit status each kind gives `python -m learnd` (2 usage,
3 config, 4 state, 1 any other LearndError), provoked in real subprocesses."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from learnd.errors import ConfigError, LearndError, RecordError, StateError, UsageError
from learnd.service.backfill import run_backfill
from tests.bot_rows import append, close_row
from tests.conftest import build_settings
from tests.test_cli import learnd


@pytest.mark.parametrize("kind", [ConfigError, UsageError, RecordError, StateError])
def test_each_kind_derives_from_learnd_error(kind: type[LearndError]) -> None:
    """ConfigError, UsageError, RecordError and StateError are LearndErrors (and so Exceptions), and none is
    another."""
    assert issubclass(kind, LearndError)
    assert issubclass(LearndError, Exception)
    others = {ConfigError, UsageError, RecordError, StateError} - {kind}
    assert not any(issubclass(kind, other) for other in others)


def test_record_error_carries_its_reason_and_detail() -> None:
    """A RecordError keeps the quarantine reason and its detail apart, and says both."""
    error = RecordError("bad_timestamp", "ts='yesterday'")
    assert (error.reason, error.detail) == ("bad_timestamp", "ts='yesterday'")
    assert str(error) == "bad_timestamp: ts='yesterday'"


def test_record_error_without_detail_is_its_reason() -> None:
    """Without a detail the message is the bare reason, with no dangling separator."""
    error = RecordError("missing_timestamp")
    assert (error.reason, error.detail, str(error)) == ("missing_timestamp", "", "missing_timestamp")


def _nothing(home: Path) -> None:
    (home / "logs").mkdir()
    (home / "logs" / "file").write_bytes(b"")  # a file, where a directory might be named


def _garbage_store(home: Path) -> None:
    (home / "logs").mkdir()
    (home / "state").mkdir()
    (home / "state" / "learnd.db").write_bytes(os.urandom(4096))


def _damaged_learner_state(home: Path) -> None:
    """A store whose trade learner state is no longer JSON (a bit flipped on disk, a bad restore)."""
    append(home / "logs" / "attribution.jsonl", [close_row("2026-03-02T15:00:00+00:00", "AMD", 0.5)])
    run_backfill(build_settings(home), progress="none")
    with sqlite3.connect(home / "state" / "learnd.db") as db:
        db.execute("UPDATE learner_state SET state = ? WHERE name = 'trades'", (b"{not json",))
    db.close()


@pytest.mark.parametrize(
    ("prepare", "args", "status", "message"),
    [
        pytest.param(
            _nothing,
            ("--set", "commit_interval_ms=-5", "status"),
            3,
            "configuration error: commit_interval_ms",
            id="config-invalid-setting",
        ),
        pytest.param(
            _nothing,
            ("schedule", "--from", "2026-11-25T21:30:00"),
            2,
            "usage error: --from",
            id="usage-time-without-offset",
        ),
        pytest.param(_nothing, ("schedule", "--from", "tomorrow"), 2, "usage error: --from", id="usage-time-not-iso"),
        pytest.param(
            _nothing, ("--set", "commit_interval_ms", "status"), 2, "usage error: --set", id="usage-set-without-value"
        ),
        pytest.param(
            _nothing,
            ("simulate", "--out", "sim", "--trades", "0"),
            2,
            "usage error: --trades",
            id="usage-no-trades",
        ),
        pytest.param(_nothing, ("verify", "--keep", "."), 2, "usage error: --keep", id="usage-keep-existing-directory"),
        pytest.param(_nothing, ("verify", "--trades", "0"), 2, "usage error: --trades", id="usage-verify-no-trades"),
        pytest.param(
            _nothing, ("simulate", "--out", "sim", "--seed", "-1"), 2, "usage error: --seed", id="usage-negative-seed"
        ),
        pytest.param(
            _nothing, ("evaluate", "--bootstrap", "0"), 2, "usage error: --bootstrap", id="usage-no-resamples"
        ),
        pytest.param(_nothing, ("schedule", "--count", "0"), 2, "usage error: --count", id="usage-no-runs"),
        pytest.param(
            _nothing, ("report", "--day", "2026-13-01", "--no-chart"), 2, "usage error: --day", id="usage-no-such-day"
        ),
        pytest.param(
            _nothing,
            ("report", "--day", "../weekly/2026-W07", "--no-chart"),
            2,
            "usage error: --day",
            id="usage-day-not-a-date",
        ),
        pytest.param(
            _nothing, ("report", "--week", "2026-W54", "--no-chart"), 2, "usage error: --week", id="usage-no-such-week"
        ),
        pytest.param(_garbage_store, ("status",), 4, "state error: ", id="state-garbage-store"),
        pytest.param(_nothing, ("--home", "typo", "status"), 3, "configuration error: home ", id="config-no-home"),
        pytest.param(
            _nothing,
            ("--set", "sources.extra.kind=orders", "--set", "sources.extra.path=logs", "status"),
            3,
            "configuration error: sources.extra.path: ",
            id="config-source-is-a-directory",
        ),
        pytest.param(
            _nothing, ("--home", "typo", "backfill"), 3, "configuration error: home ", id="config-no-home-to-fill"
        ),
        pytest.param(
            _damaged_learner_state,
            ("backfill",),
            4,
            "state error: the trades learner's stored state cannot be read",
            id="state-damaged-learner-state",
        ),
        pytest.param(_nothing, ("signals",), 4, "state error: ", id="state-no-store-yet"),
        pytest.param(
            _nothing,
            ("--set", "paths.state_dir=logs/file/state", "backfill"),
            4,
            "state error: the state directory ",
            id="state-directory-not-writable",
        ),
        pytest.param(
            _nothing,
            ("--set", "paths.state_dir=logs/file/state", "backfill", "--from-scratch"),
            4,
            "state error: the state directory ",
            id="state-directory-not-writable-for-a-rebuild",
        ),
        pytest.param(
            _nothing, ("report", "--day", "1999-01-04", "--no-chart"), 1, "1999-01-04", id="other-missing-report"
        ),
        pytest.param(
            _nothing,
            ("schedule", "--from", "2100-01-01T00:00:00+00:00"),
            1,
            "covered years 1990..2050",
            id="other-calendar-error",
        ),
    ],
)
def test_each_error_kind_has_its_exit_status(
    tmp_path: Path, prepare: Callable[[Path], None], args: tuple[str, ...], status: int, message: str
) -> None:
    """`python -m learnd` exits 2 on a UsageError (an argument argparse accepts but learnd cannot use, as argparse's
    own usage errors exit), 3 on a ConfigError, 4 on a StateError, 1 on any other LearndError, and says what went
    wrong on stderr in one line, without a traceback."""
    prepare(tmp_path)
    result = learnd(tmp_path, *args, check=False)
    stderr = result.stderr.decode()
    assert result.returncode == status, stderr
    assert message in stderr
    assert stderr.startswith("learnd: ")
    assert "Traceback" not in stderr
    assert result.stdout == b""
