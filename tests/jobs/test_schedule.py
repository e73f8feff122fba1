"""jobs.schedule: which daily and weekly runs are due, next, and still pending, on the NYSE calendar around
Thanksgiving 2026 (no session on 2026-11-26, a 13:00 close on 2026-11-27) and weeks whose Friday is a holiday."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from learnd.config import Settings
from learnd.jobs.schedule import (
    DAILY,
    WEEKLY,
    Period,
    due_periods,
    enabled_jobs,
    grace,
    last_session,
    next_periods,
    pending_periods,
)
from learnd.records.parse import parse_event_us
from learnd.sessions.exchange import ExchangeCalendar, to_epoch_us
from learnd.sessions.tables import calendar_for
from learnd.store.database import Batch, JobRun, LedgerRow, Store
from tests.conftest import build_settings


def utc(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return build_settings(tmp_path)


@pytest.fixture
def calendar(settings: Settings) -> ExchangeCalendar:
    return calendar_for(settings)


def runs(periods: list[Period]) -> list[tuple[str, datetime]]:
    return [(period.label, period.due) for period in periods]


def test_daily_runs_skip_thanksgiving_and_follow_the_early_close(
    settings: Settings, calendar: ExchangeCalendar
) -> None:
    """Thanksgiving week: a run 15 minutes after each close, none for the holiday, 13:15 New York on Friday."""
    periods = due_periods(calendar, settings, DAILY, utc(11, 23, 21, 15), utc(12, 1, 22))
    assert runs(periods) == [
        ("2026-11-24", utc(11, 24, 21, 15)),
        ("2026-11-25", utc(11, 25, 21, 15)),
        ("2026-11-27", utc(11, 27, 18, 15)),
        ("2026-11-30", utc(11, 30, 21, 15)),
        ("2026-12-01", utc(12, 1, 21, 15)),
    ]
    assert all(period.job == DAILY for period in periods)


def test_due_periods_window_excludes_its_start_and_includes_its_end(
    settings: Settings, calendar: ExchangeCalendar
) -> None:
    """Runs due in (start, end]: consecutive windows never run a period twice or skip one."""
    start, end = utc(11, 25, 21, 15), utc(11, 30, 21, 15)
    assert [period.label for period in due_periods(calendar, settings, DAILY, start, end)] == [
        "2026-11-27",
        "2026-11-30",
    ]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(utc(11, 23), utc(12, 1), [("2026-W48", utc(11, 27, 18, 15))], id="thanksgiving-early-close"),
        pytest.param(utc(6, 15), utc(6, 20), [("2026-W25", utc(6, 18, 20, 15))], id="juneteenth-friday"),
        pytest.param(utc(6, 29), utc(7, 4), [("2026-W27", utc(7, 2, 20, 15))], id="independence-day-observed"),
        pytest.param(
            utc(3, 22, year=2027), utc(3, 27, year=2027), [("2027-W12", utc(3, 25, 20, 15, 2027))], id="good-friday"
        ),
        pytest.param(utc(12, 7), utc(12, 12), [("2026-W50", utc(12, 11, 21, 15))], id="ordinary-week"),
    ],
)
def test_weekly_run_follows_the_week_s_last_session(
    settings: Settings,
    calendar: ExchangeCalendar,
    start: datetime,
    end: datetime,
    expected: list[tuple[str, datetime]],
) -> None:
    """The weekly job runs after the ISO week's last session: Thursday's close when Friday is a holiday, the
    early close when Friday closes early."""
    assert runs(due_periods(calendar, settings, WEEKLY, start, end)) == expected


def test_next_daily_periods_after_thanksgiving_eve(settings: Settings, calendar: ExchangeCalendar) -> None:
    """After Wednesday's run, the next ones are Friday's early close, then Monday's."""
    periods = next_periods(calendar, settings, DAILY, utc(11, 25, 21, 30), 2)
    assert runs(periods) == [("2026-11-27", utc(11, 27, 18, 15)), ("2026-11-30", utc(11, 30, 21, 15))]


def test_next_weekly_periods_chain_week_after_week(settings: Settings, calendar: ExchangeCalendar) -> None:
    """Each next run is strictly after the one before: W48 on Friday's early close, then W49."""
    periods = next_periods(calendar, settings, WEEKLY, utc(11, 25, 21, 30), 2)
    assert runs(periods) == [("2026-W48", utc(11, 27, 18, 15)), ("2026-W49", utc(12, 4, 21, 15))]


def test_next_period_asked_at_a_due_time_is_the_one_after(settings: Settings, calendar: ExchangeCalendar) -> None:
    """`after` is exclusive: asked at 2026-11-27 18:15 UTC, the next daily run is Monday's."""
    (period,) = next_periods(calendar, settings, DAILY, utc(11, 27, 18, 15), 1)
    assert period.label == "2026-11-30"


def test_grace_comes_from_the_settings(tmp_path: Path) -> None:
    """schedule.grace_minutes moves every run after its close by that much."""
    settings = build_settings(tmp_path, overrides={"schedule.grace_minutes": 40})
    assert grace(settings) == timedelta(minutes=40)
    periods = next_periods(calendar_for(settings), settings, DAILY, utc(11, 25, 21, 30), 2)
    assert runs(periods) == [("2026-11-25", utc(11, 25, 21, 40)), ("2026-11-27", utc(11, 27, 18, 40))]


@pytest.mark.parametrize(
    ("period", "session_day"),
    [
        (Period(DAILY, "2026-11-27", utc(11, 27, 18, 15)), date(2026, 11, 27)),
        (Period(WEEKLY, "2026-W48", utc(11, 27, 18, 15)), date(2026, 11, 27)),
        (Period(WEEKLY, "2026-W25", utc(6, 18, 20, 15)), date(2026, 6, 18)),
    ],
)
def test_last_session_is_the_period_s_last_trading_day(
    settings: Settings, calendar: ExchangeCalendar, period: Period, session_day: date
) -> None:
    """A daily period covers its day; a weekly one ends with the week's last session (Thursday before a holiday)."""
    assert calendar.sessions[last_session(calendar, settings, period)] == session_day


@pytest.mark.parametrize(
    ("daily", "weekly", "jobs"),
    [(True, True, [DAILY, WEEKLY]), (True, False, [DAILY]), (False, True, [WEEKLY]), (False, False, [])],
)
def test_enabled_jobs_follow_the_settings(tmp_path: Path, daily: bool, weekly: bool, jobs: list[str]) -> None:
    """Each job runs only when its switch is on, daily before weekly."""
    overrides = {"schedule.daily_enabled": daily, "schedule.weekly_enabled": weekly}
    assert enabled_jobs(build_settings(tmp_path, overrides=overrides)) == jobs


NOW = utc(12, 2, 12)  # Wednesday before the close: 2026-12-01 is the latest daily run due


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "state" / "learnd.db")
    yield opened
    opened.close()


def first_trade(store: Store, ts: str) -> None:
    row = LedgerRow("trade", f"close_AMD_{ts}", "equity", "AMD", parse_event_us(ts), "attribution", 0, b"{}")
    store.commit(Batch(ledger=[row]))


def ran(store: Store, job: str, period: str, status: str, due: datetime) -> None:
    store.commit(Batch(job_runs=[JobRun(job, period, status, to_epoch_us(due), "")]))


def pending(store: Store, settings: Settings, calendar: ExchangeCalendar, job: str) -> list[str]:
    return [period.label for period in pending_periods(store, calendar, settings, job, NOW)]


def test_with_no_run_and_no_trade_only_the_latest_due_run_is_pending(
    store: Store, settings: Settings, calendar: ExchangeCalendar
) -> None:
    """A fresh home has no history to report on: just the latest due day and week."""
    assert pending(store, settings, calendar, DAILY) == ["2026-12-01"]
    assert pending(store, settings, calendar, WEEKLY) == ["2026-W48"]


def test_a_job_that_never_ran_is_pending_from_the_first_trade_s_session(
    store: Store, settings: Settings, calendar: ExchangeCalendar
) -> None:
    """Every run since the first trade's session is pending, that session's own included, the holiday not."""
    first_trade(store, "2026-11-24T15:00:00+00:00")
    assert pending(store, settings, calendar, DAILY) == [
        "2026-11-24",
        "2026-11-25",
        "2026-11-27",
        "2026-11-30",
        "2026-12-01",
    ]
    assert pending(store, settings, calendar, WEEKLY) == ["2026-W48"]


@pytest.mark.parametrize(
    ("ts", "first_day"),
    [
        pytest.param("2026-11-24T23:30:00+00:00", "2026-11-24", id="after-its-run"),
        pytest.param("2026-11-26T16:00:00+00:00", "2026-11-25", id="on-the-holiday"),
    ],
)
def test_the_first_trade_s_session_is_pending_whenever_the_trade_came(
    store: Store, settings: Settings, calendar: ExchangeCalendar, ts: str, first_day: str
) -> None:
    """A first trade after its session's run time, or on a holiday (the session before it), still gets that
    session's run."""
    first_trade(store, ts)
    assert pending(store, settings, calendar, DAILY)[0] == first_day


def test_runs_after_the_last_success_are_pending(store: Store, settings: Settings, calendar: ExchangeCalendar) -> None:
    """Periods up to the last successful run are done; the ones due after it are pending."""
    first_trade(store, "2026-11-24T15:00:00+00:00")
    ran(store, DAILY, "2026-11-24", "ok", utc(11, 24, 21, 15))
    ran(store, DAILY, "2026-11-25", "ok", utc(11, 25, 21, 15))
    ran(store, WEEKLY, "2026-W48", "ok", utc(11, 27, 18, 15))
    assert pending(store, settings, calendar, DAILY) == ["2026-11-27", "2026-11-30", "2026-12-01"]
    assert pending(store, settings, calendar, WEEKLY) == []


def test_a_failed_run_stays_pending(store: Store, settings: Settings, calendar: ExchangeCalendar) -> None:
    """A failure is retried, before the last success as after it; failures alone leave everything since the first
    trade."""
    first_trade(store, "2026-11-24T15:00:00+00:00")
    ran(store, DAILY, "2026-11-24", "failed", utc(11, 24, 21, 15))
    ran(store, WEEKLY, "2026-W48", "failed", utc(11, 27, 18, 15))
    assert pending(store, settings, calendar, DAILY)[:2] == ["2026-11-24", "2026-11-25"]
    assert pending(store, settings, calendar, WEEKLY) == ["2026-W48"]
    ran(store, DAILY, "2026-11-25", "ok", utc(11, 25, 21, 15))
    ran(store, DAILY, "2026-11-27", "failed", utc(11, 27, 18, 15))
    assert pending(store, settings, calendar, DAILY) == ["2026-11-24", "2026-11-27", "2026-11-30", "2026-12-01"]


def test_nothing_is_pending_before_the_first_run_is_due(
    store: Store, settings: Settings, calendar: ExchangeCalendar
) -> None:
    """A first trade today, before today's close: its run is not due yet."""
    first_trade(store, "2026-12-02T10:00:00+00:00")
    assert pending(store, settings, calendar, DAILY) == []
