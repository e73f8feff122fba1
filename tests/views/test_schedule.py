"""views.schedule: each job's next runs (UTC and exchange time, with their periods) from the exchange calendar,
and its last run and failures from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from learnd.config import Settings
from learnd.sessions.exchange import to_epoch_us
from learnd.store.database import Batch, JobRun, Store
from learnd.views.schedule import render_schedule, schedule_document
from tests.conftest import build_settings

THANKSGIVING_EVE = datetime(2026, 11, 25, 21, 30, tzinfo=UTC)  # after Wednesday's daily run


@pytest.fixture
def settings(home: Path) -> Settings:
    return build_settings(home, overrides={"schedule.daily_enabled": True})


def test_next_runs_skip_thanksgiving_and_honour_the_early_close(settings: Settings) -> None:
    """From Thanksgiving eve: the next daily runs are Friday 13:15 and Monday 16:15 in New York (UTC alongside),
    and the week's run is Friday's."""
    document = schedule_document(settings, THANKSGIVING_EVE, 2)
    assert (document["exchange"], document["timezone"]) == ("XNYS", "America/New_York")
    assert document["from"] == "2026-11-25T21:30:00+00:00"
    daily, weekly = document["jobs"]["daily"], document["jobs"]["weekly"]
    assert daily["next_runs"] == ["2026-11-27T18:15:00+00:00", "2026-11-30T21:15:00+00:00"]
    assert daily["next_runs_exchange"] == ["2026-11-27T13:15:00-05:00", "2026-11-30T16:15:00-05:00"]
    assert daily["next_periods"] == ["2026-11-27", "2026-11-30"]
    assert weekly["next_runs"] == ["2026-11-27T18:15:00+00:00", "2026-12-04T21:15:00+00:00"]
    assert weekly["next_periods"] == ["2026-W48", "2026-W49"]


def test_enabled_follows_the_settings(settings: Settings) -> None:
    """A disabled job is listed with its runs all the same, marked disabled."""
    jobs = schedule_document(settings, THANKSGIVING_EVE, 1)["jobs"]
    assert (jobs["daily"]["enabled"], jobs["weekly"]["enabled"]) == (True, False)
    assert len(jobs["weekly"]["next_runs"]) == 1


def test_a_start_in_another_zone_is_the_same_moment_in_utc(settings: Settings) -> None:
    """--from with a New York offset lists the same runs as the same moment in UTC."""
    new_york = THANKSGIVING_EVE.astimezone(timezone(timedelta(hours=-5)))
    document = schedule_document(settings, new_york, 2)
    assert document == schedule_document(settings, THANKSGIVING_EVE, 2)


def test_without_a_start_the_runs_follow_now(settings: Settings) -> None:
    """No start: runs after the current time, the first within a week of it."""
    before = datetime.now(UTC)
    document = schedule_document(settings, None, 1)
    start = datetime.fromisoformat(document["from"])
    assert before <= start <= datetime.now(UTC)
    first = datetime.fromisoformat(document["jobs"]["daily"]["next_runs"][0])
    assert start < first < start + timedelta(days=7)


def test_without_a_store_no_job_has_run(settings: Settings) -> None:
    """A home learnd never ran on: last_run is None and nothing failed (and no store is created)."""
    jobs = schedule_document(settings, THANKSGIVING_EVE, 1)["jobs"]
    assert [(jobs[job]["last_run"], jobs[job]["failed_runs"]) for job in ("daily", "weekly")] == [(None, 0), (None, 0)]
    assert not settings.db_path.exists()


def due(day: int) -> int:
    """When November `day`'s daily run of 2026 was due (16:15 New York), in epoch microseconds."""
    return to_epoch_us(datetime(2026, 11, day, 21, 15, tzinfo=UTC))


def test_the_last_run_and_the_failures_come_from_the_store(settings: Settings) -> None:
    """The latest run by due time, with its status and the last line of its detail; failures counted."""
    store = Store.open(settings.db_path)
    store.commit(
        Batch(
            job_runs=[
                JobRun("daily", "2026-11-24", "failed", due(24), "Traceback ...\nOSError: disk full"),
                JobRun("daily", "2026-11-25", "failed", due(25), "Traceback ...\nValueError: bad"),
                JobRun("daily", "2026-11-23", "ok", due(23), "data/reports/daily/2026-11-23.json"),
            ]
        )
    )
    store.close()
    jobs = schedule_document(settings, THANKSGIVING_EVE, 1)["jobs"]
    assert jobs["daily"]["last_run"] == {
        "period": "2026-11-25",
        "status": "failed",
        "due": "2026-11-25T21:15:00+00:00",
        "detail": "ValueError: bad",
    }
    assert jobs["daily"]["failed_runs"] == 2
    assert (jobs["weekly"]["last_run"], jobs["weekly"]["failed_runs"]) == (None, 0)


def test_render_schedule_lists_each_job_s_runs_and_last_run(settings: Settings) -> None:
    """One block per job: its name (marked when disabled), a line per next run in UTC and exchange time, and
    the last run."""
    text = render_schedule(schedule_document(settings, THANKSGIVING_EVE, 2))
    assert text.splitlines() == [
        "exchange XNYS (America/New_York), runs after 2026-11-25T21:30:00+00:00",
        "",
        "daily:",
        "  2026-11-27   2026-11-27T18:15:00+00:00  (2026-11-27T13:15:00-05:00 exchange time)",
        "  2026-11-30   2026-11-30T21:15:00+00:00  (2026-11-30T16:15:00-05:00 exchange time)",
        "  last run: never",
        "",
        "weekly (disabled):",
        "  2026-W48     2026-11-27T18:15:00+00:00  (2026-11-27T13:15:00-05:00 exchange time)",
        "  2026-W49     2026-12-04T21:15:00+00:00  (2026-12-04T16:15:00-05:00 exchange time)",
        "  last run: never",
    ]
