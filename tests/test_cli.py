"""The command line as an operator uses it: real subprocesses on a simulated home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from learnd.devtools.simulate import simulate


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
    """`learnd --help` lists the commands and how settings are layered."""
    result = subprocess.run([sys.executable, "-m", "learnd", "--help"], check=True, capture_output=True)
    text = result.stdout.decode()
    for command in ("run", "backfill", "status", "weights", "evaluate", "schedule", "signals", "execution", "report"):
        assert command in text
    assert "LEARND_" in text


def test_status_json_has_the_documented_fields(learned_home: Path) -> None:
    """status --json: per source path, offset, size, lag and line counts, and whether a daemon runs."""
    document = orjson.loads(learnd(learned_home, "status", "--json").stdout)
    assert document["daemon_running"] is False
    attribution = document["sources"]["attribution"]
    for field in ("path", "offset", "size", "lag_bytes", "pending_bytes", "lines_applied", "lines_quarantined"):
        assert field in attribution
    assert attribution["lag_bytes"] == 0
    assert attribution["lines_applied"] > 0


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
        replay_history(engine, engine.calendar, datetime.now(UTC))
    finally:
        engine.close()
    result = learnd(learned_home, "report")
    assert result.stdout.startswith(b"# Daily report")
    chart = learned_home / "data" / "reports" / "multipliers-equity.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schedule_json_lists_next_runs_around_the_holiday(tmp_path: Path) -> None:
    """schedule --json --from: next daily runs skip Thanksgiving and honour the early close."""
    result = learnd(tmp_path, "schedule", "--json", "--from", "2026-11-25T21:30:00+00:00", "--count", "2")
    jobs = orjson.loads(result.stdout)["jobs"]
    assert jobs["daily"]["next_runs"] == ["2026-11-27T18:15:00+00:00", "2026-11-30T21:15:00+00:00"]
    assert jobs["weekly"]["next_runs"][0] == "2026-11-27T18:15:00+00:00"
    assert jobs["daily"]["last_run"] is None
