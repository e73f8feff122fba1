"""When the jobs run: the daily batch after each session's close (plus a grace period) and the weekly long-term job
after the week's last session, on the exchange calendar; which runs are due and which are still pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from learnd.config import Settings
from learnd.sessions.exchange import ExchangeCalendar, from_epoch_us, to_epoch_us
from learnd.store.database import Store

DAILY: Final = "daily"
WEEKLY: Final = "weekly"
JOBS: Final = (DAILY, WEEKLY)
_LABEL_SEARCH: Final = timedelta(days=10)


@dataclass(frozen=True, slots=True)
class Period:
    """One run of a job: the day (`2026-11-27`) or ISO week (`2026-W48`) it covers, and when it is due (UTC)."""

    job: str
    label: str
    due: datetime


def grace(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.schedule.grace_minutes)


def due_periods(
    calendar: ExchangeCalendar, settings: Settings, job: str, start: datetime, end: datetime
) -> list[Period]:
    """Runs of `job` due in (start, end], in order (none when `end` is not after `start`: a wall clock set back
    behind the last run)."""
    if end <= start:
        return []
    if job == DAILY:
        runs = calendar.daily_runs_between(start, end, grace(settings))
        return [Period(DAILY, day.isoformat(), due) for day, due in runs]
    return [Period(WEEKLY, label, due) for label, due in calendar.weekly_runs_between(start, end, grace(settings))]


def next_periods(calendar: ExchangeCalendar, settings: Settings, job: str, after: datetime, count: int) -> list[Period]:
    """The next `count` runs of `job` strictly after `after`."""
    periods: list[Period] = []
    moment = after
    for _ in range(count):
        if job == DAILY:
            day, due = calendar.next_daily_run(moment, grace(settings))
            periods.append(Period(DAILY, day.isoformat(), due))
        else:
            label, due = calendar.next_weekly_run(moment, grace(settings))
            periods.append(Period(WEEKLY, label, due))
        moment = due
    return periods


def last_session(calendar: ExchangeCalendar, settings: Settings, period: Period) -> int:
    """The index of the last trading session a period covers (its day, or its week's last session)."""
    return calendar.session_index(to_epoch_us(period.due - grace(settings)))


def pending_periods(
    store: Store, calendar: ExchangeCalendar, settings: Settings, job: str, now: datetime
) -> list[Period]:
    """Runs of `job` due by `now` that have not succeeded, in order: those that failed before the last success
    and every one after it (failed runs are retried here); for a job that never ran, every one since the first
    trade in the ledger, or with an empty ledger only the latest due run."""
    succeeded = store.last_success(job)
    if succeeded is not None:
        label, succeeded_us = succeeded
        failed = [
            Period(job, failed_label, from_epoch_us(due_us))
            for failed_label, due_us in store.failed_periods(job, succeeded_us)
        ]
        # The periods after the last one that ran, by label: its due time was worked out with the grace then in
        # force, and compared with a new grace's it re-ran that period (a longer grace) or skipped some (a shorter).
        start = _close_of(calendar, settings, job, label, from_epoch_us(succeeded_us))
        return failed + [period for period in due_periods(calendar, settings, job, start, now) if period.label > label]
    first = next(iter(store.ledger("trade")), None)
    if first is not None:
        # From the start of the first trade's session, so that session's own run is included.
        session_start_us, _ = calendar.session_bounds_us(calendar.session_index(first.event_us))
        return due_periods(calendar, settings, job, from_epoch_us(session_start_us), now)
    lookback = timedelta(days=15 if job == WEEKLY else 5)
    return due_periods(calendar, settings, job, now - lookback, now)[-1:]


def _close_of(calendar: ExchangeCalendar, settings: Settings, job: str, label: str, due: datetime) -> datetime:
    """The close of period `label`'s last session, found among the runs near `due` (its due time when it ran, under
    whatever grace was then in force); `due` itself when none there has that label."""
    # A grace is at most a few days: a week either side holds the period under any of them.
    for period in due_periods(calendar, settings, job, due - _LABEL_SEARCH, due + _LABEL_SEARCH):
        if period.label == label:
            return period.due - grace(settings)
    return due


def enabled_jobs(settings: Settings) -> list[str]:
    jobs = []
    if settings.schedule.daily_enabled:
        jobs.append(DAILY)
    if settings.schedule.weekly_enabled:
        jobs.append(WEEKLY)
    return jobs
