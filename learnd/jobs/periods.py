"""Jobs run on the exchange calendar: the daily batch after each session's close (plus a grace period) and the
weekly long-term job after the week's last session. Reports are built from what the store committed (ledger,
weight changes, end-of-session snapshots), so a backfill and a live daemon that saw the same lines write the
same files. The scheduler (APScheduler 3.x on the daemon's loop) only decides when.
"""

from __future__ import annotations

import asyncio
import sqlite3
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from learnd.config import Settings
from learnd.exports.files import write_bytes_atomic, write_json_atomic
from learnd.jobs.reports import (
    daily_report,
    evidence_sessions,
    render_daily_markdown,
    render_weekly_markdown,
    weekly_report,
)
from learnd.learning.execution import NAME as EXECUTION_LEARNER
from learnd.learning.execution import aggregates_from_rows, execution_summary, render_execution
from learnd.learning.signals import NAME as SIGNAL_LEARNER
from learnd.learning.signals import episodes_from_rows, open_episodes_from_state, render_signals, signal_summary
from learnd.learning.trades import TradeLearner, change_document
from learnd.records.parse import ExitOutcome, Record, TradeEntry, TradeOutcome
from learnd.service.engine import Engine, execution_params, signal_params
from learnd.sessions.exchange import ExchangeCalendar, from_epoch_us, to_epoch_us
from learnd.store.database import Store
from learnd.store.ledger import record_of

log = structlog.get_logger("learnd.jobs")

DAILY: Final = "daily"
WEEKLY: Final = "weekly"
JOBS: Final = (DAILY, WEEKLY)
# Signal patterns need history: the weekly report looks at the last four weeks of episodes and orders.
_WEEKLY_SIGNAL_WINDOW_DAYS: Final = 28


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
    """Runs of `job` due in (start, end], in order."""
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


def trade_learner(engine: Engine) -> TradeLearner | None:
    return next((learner for learner in engine.learners if isinstance(learner, TradeLearner)), None)


def run_period(engine: Engine, calendar: ExchangeCalendar, period: Period, *, export: bool = True) -> Path:
    """Run one job period now: close the sessions it covers in the learner (committed), then write its report.

    Synchronous on purpose: on the daemon's loop nothing else (ingest, commit, another job) runs meanwhile.
    """
    last_session = calendar.session_index(to_epoch_us(period.due - grace(engine.settings)))
    learner = trade_learner(engine)
    if learner is not None:
        rows, changes = learner.close_through(last_session)
        engine.ingestor.add_rows(learner.name, rows)
        engine.ingestor.add_changes(change_document(change) for change in changes)
        engine.commit(export=export)
    if period.job == DAILY:
        return write_daily_report(engine.store, engine.settings, calendar, date.fromisoformat(period.label))
    target = write_weekly_report(engine.store, engine.settings, calendar, period.label, last_session)
    suggestions = orjson.loads(target.read_bytes())["signals"]["suggestions"]
    if suggestions:
        # Logged like any learning update, at the week's close in event time; applied to nothing unless
        # signals.suggestions_enabled (each one says so in `applies_to_weights`).
        close_us = calendar.closes_us[last_session]
        engine.ingestor.add_changes(_suggestion_document(item, close_us, period.label) for item in suggestions)
        engine.commit(export=export)
    return target


def _suggestion_document(suggestion: dict[str, Any], event_us: int, week: str) -> dict[str, Any]:
    return {
        "event_us": event_us,
        "event_ts": from_epoch_us(event_us).isoformat(),
        "model": "signals",
        "strategy": suggestion["strategy"],
        "component": "+".join(suggestion["pattern"])
        if isinstance(suggestion["pattern"], list)
        else suggestion["pattern"],
        "regime": suggestion["regime"],
        "old": None,
        "new": None,
        "reason": (
            f"signal_pattern_suggestion week={week} metric={suggestion['metric']} "
            f"direction={suggestion['direction']} value={suggestion['value']} bound={suggestion['bound']} "
            f"strategy_average={suggestion['strategy_average']} applies_to_weights={suggestion['applies_to_weights']}"
        ),
        "samples": suggestion["samples"],
    }


def replay_history(engine: Engine, calendar: ExchangeCalendar, now: datetime) -> int:
    """Backfill's part: run the daily and weekly jobs for every trading day and week from the first trade to the
    last one due by `now`, in event order, recording each run so the daemon does not repeat it."""
    return JobRunner(engine, calendar, clock=lambda: now).run_all_due(export=False)


def write_daily_report(store: Store, settings: Settings, calendar: ExchangeCalendar, day: date) -> Path:
    """data/reports/daily/D.json and D.md from the committed ledger, changes and end-of-session snapshot."""
    index = calendar.session_of_day(day)
    start_us, end_us = calendar.session_bounds_us(index)
    trades = [record for record in _records(store, "trade", start_us, end_us) if isinstance(record, TradeOutcome)]
    exits = [record for record in _records(store, "exit", start_us, end_us) if isinstance(record, ExitOutcome)]
    changes = [orjson.loads(body) for body in store.changes_between(start_us, end_us)]
    late = _late_trades(store, calendar.closes_us[index])
    report = daily_report(
        day, trades, exits, (), changes, late_trades=late, model_snapshot=_snapshot(store, calendar.closes_us[index])
    )
    next_day = calendar.sessions[index + 1]
    report["signals"] = _signals_section(store, settings, start_us, end_us)
    report["execution_quality"] = _execution_section(store, settings, calendar, (day, next_day), end_us)
    target = settings.data_dir / "reports" / "daily" / f"{day.isoformat()}.json"
    write_json_atomic(target, report)
    markdown = render_daily_markdown(report) + _sections_markdown(report)
    write_bytes_atomic(target.with_suffix(".md"), markdown.encode())
    return target


def _signals_section(store: Store, settings: Settings, start_us: int, end_us: int) -> dict[str, Any]:
    """Signal episodes that began in [start, end), joined to entries and outcomes known by `end`: the same set
    whether the report is written right after the close (some episodes still open) or by a later backfill."""
    params = signal_params(settings)
    episodes = episodes_from_rows(store.learner_rows(SIGNAL_LEARNER, since_us=start_us, until_us=end_us))
    # As of the report: an episode the close left open counts as it stood, like the closed one a backfill sees.
    episodes += [
        replace(episode, is_open=False)
        for episode in open_episodes_from_state(store.learner_state(SIGNAL_LEARNER), params)
        if start_us <= episode.first_us < end_us
    ]
    entries = [r for r in _records(store, "entry", start_us, end_us) if isinstance(r, TradeEntry)]
    outcomes = [r for r in _records(store, "trade", start_us, end_us) if isinstance(r, TradeOutcome)]
    return signal_summary(episodes, entries, outcomes, params)


def _execution_section(
    store: Store, settings: Settings, calendar: ExchangeCalendar, days: tuple[date, date], end_us: int
) -> dict[str, Any]:
    """Execution quality of the orders dated (exchange time) in [days[0], days[1])."""
    low, high = days[0].isoformat(), days[1].isoformat()
    rows = [row for row in store.learner_rows(EXECUTION_LEARNER) if low <= row[0].split("|", 1)[0] < high]
    outcomes = [r for r in _records(store, "trade", None, end_us) if isinstance(r, TradeOutcome)]
    return execution_summary(aggregates_from_rows(rows), outcomes, execution_params(settings, calendar))


def _sections_markdown(report: dict[str, Any]) -> str:
    parts = []
    if "signals" in report:
        parts.append(f"\n## Signal episodes\n\n```\n{render_signals(report['signals'])}```\n")
    if "execution_quality" in report:
        parts.append(f"\n## Execution quality\n\n```\n{render_execution(report['execution_quality'])}```\n")
    return "".join(parts)


def write_weekly_report(store: Store, settings: Settings, calendar: ExchangeCalendar, week: str, index: int) -> Path:
    """data/reports/weekly/YYYY-Www.json and .md over the ledger up to the week's last session `index` (all of it,
    or the last schedule.weekly_window_sessions sessions)."""
    _, end_us = calendar.session_bounds_us(index)
    # The whole ledger by default; schedule.weekly_window_sessions bounds each week's cost on very long histories.
    window = settings.schedule.weekly_window_sessions
    since_us = calendar.session_bounds_us(max(0, index - window))[0] if window else None
    trades = [record for record in _records(store, "trade", since_us, end_us) if isinstance(record, TradeOutcome)]
    report = weekly_report(
        week,
        trades,
        session_of=calendar.session_index,
        current_session=index,
        model_snapshot=_snapshot(store, calendar.closes_us[index]),
        last_evidence_session=evidence_sessions(trades, calendar.session_index),
        half_life_sessions=settings.learning.half_life_sessions,
    )
    window_start_us = end_us - _WEEKLY_SIGNAL_WINDOW_DAYS * 86_400_000_000
    report["signals"] = _signals_section(store, settings, window_start_us, end_us)
    first_day = from_epoch_us(window_start_us).date()
    report["execution_quality"] = _execution_section(
        store, settings, calendar, (first_day, calendar.sessions[index + 1]), end_us
    )
    target = settings.data_dir / "reports" / "weekly" / f"{week}.json"
    write_json_atomic(target, report)
    markdown = render_weekly_markdown(report) + _sections_markdown(report)
    write_bytes_atomic(target.with_suffix(".md"), markdown.encode())
    return target


def _records(store: Store, kind: str, since_us: int | None, until_us: int | None) -> Iterator[Record]:
    for row in store.ledger(kind, since_us=since_us, until_us=until_us):
        yield record_of(row)


def _snapshot(store: Store, until_us: int) -> dict[str, Any] | None:
    """The entry model as of the latest session close at or before `until_us`."""
    latest = store.latest_learner_row("trades", "session|", until_us)
    if latest is None:
        return None
    snapshot: dict[str, Any] = orjson.loads(latest)["entry"]
    return snapshot


def _late_trades(store: Store, arrival_close_us: int) -> list[TradeOutcome]:
    late: list[TradeOutcome] = []
    for key, _, _ in store.learner_rows("trades", since_us=arrival_close_us, until_us=arrival_close_us + 1):
        if key.startswith("late|"):
            row = store.ledger_row("trade", key.removeprefix("late|"))
            if row is not None:
                record = record_of(row)
                if isinstance(record, TradeOutcome):
                    late.append(record)
    return late


def record_run(store: Store, period: Period, status: str, detail: str) -> None:
    store.record_job_run(period.job, period.label, status, to_epoch_us(period.due), detail)


def pending_periods(
    store: Store, calendar: ExchangeCalendar, settings: Settings, job: str, now: datetime
) -> list[Period]:
    """Runs of `job` due by `now` that have not succeeded, in order: those after the last success (failed runs
    are retried here); for a job that never ran, every one since the first trade in the ledger, or with an empty
    ledger only the latest due run."""
    succeeded = [due_us for _, status, due_us, _ in store.job_runs(job) if status == "ok"]
    if succeeded:
        return due_periods(calendar, settings, job, from_epoch_us(max(succeeded)), now)
    first = next(iter(store.ledger("trade")), None)
    if first is not None:
        # From the start of the first trade's session, so that session's own run is included.
        session_start_us, _ = calendar.session_bounds_us(calendar.session_index(first.event_us))
        return due_periods(calendar, settings, job, from_epoch_us(session_start_us), now)
    lookback = timedelta(days=15 if job == WEEKLY else 5)
    return due_periods(calendar, settings, job, now - lookback, now)[-1:]


def enabled_jobs(settings: Settings) -> list[str]:
    jobs = []
    if settings.schedule.daily_enabled:
        jobs.append(DAILY)
    if settings.schedule.weekly_enabled:
        jobs.append(WEEKLY)
    return jobs


class JobRunner:
    """Runs due periods on the daemon's loop: catch-up at start, then each next due time, one at a time."""

    def __init__(
        self,
        engine: Engine,
        calendar: ExchangeCalendar,
        *,
        clock: Callable[[], datetime] | None = None,
        on_result: Callable[[str, bool], None] | None = None,
        ready: asyncio.Event | None = None,
    ) -> None:
        self.engine = engine
        self.calendar = calendar
        self._ready = ready
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_result = on_result
        self.run_count = 0
        self.failure_count = 0

    def run_due(self, job: str) -> int:
        """Run every pending period of `job` (coalesced: one pass, each period once, in order)."""
        return self._run(pending_periods(self.engine.store, self.calendar, self.engine.settings, job, self._clock()))

    def run_all_due(self, *, export: bool = True) -> int:
        """Run every pending period of every enabled job in event order (a day's batch before the week it ends)."""
        return self._run(self._all_pending(), export=export)

    async def run_all_due_yielding(self) -> int:
        """run_all_due on the daemon's loop, letting other tasks (watchdog, metrics, signals) run between periods:
        a long catch-up must not starve the watchdog."""
        periods = self._all_pending()
        for period in periods:
            self._run_one(period, export=True)
            await asyncio.sleep(0)
        return len(periods)

    def _all_pending(self) -> list[Period]:
        now = self._clock()
        periods = [
            period
            for job in enabled_jobs(self.engine.settings)
            for period in pending_periods(self.engine.store, self.calendar, self.engine.settings, job, now)
        ]
        periods.sort(key=lambda period: (period.due, JOBS.index(period.job)))
        return periods

    def _run(self, periods: list[Period], *, export: bool = True) -> int:
        for period in periods:
            self._run_one(period, export=export)
        return len(periods)

    def _run_one(self, period: Period, *, export: bool) -> None:
        try:
            target = run_period(self.engine, self.calendar, period, export=export)
            record_run(self.engine.store, period, "ok", str(target))
        except Exception as error:  # noqa: BLE001 - a failing job is logged, counted and retried; it never stops the daemon
            self._failed(period, error)
            return
        self.run_count += 1
        log.info("job_ran", job=period.job, period=period.label, due=period.due.isoformat(), report=str(target))
        if self._on_result is not None:
            self._on_result(period.job, True)

    def _failed(self, period: Period, error: Exception) -> None:
        self.failure_count += 1
        detail = "".join(traceback.format_exception(error))[-4000:]
        log.error("job_failed", job=period.job, period=period.label, error=str(error), traceback=detail)
        if self._on_result is not None:
            self._on_result(period.job, False)
        # What the job changed but could not commit (a full disk) is dropped: the learner continues from the
        # store's last commit, as after any failed write.
        self.engine.recover()
        try:
            record_run(self.engine.store, period, "failed", detail)
        except (sqlite3.OperationalError, OSError) as record_error:
            # Not even the failure could be recorded (the store cannot be written): the period stays pending and
            # is retried at the next due time all the same.
            log.error("job_failure_not_recorded", job=period.job, period=period.label, error=str(record_error))

    async def service(self, engine: Engine, stop: asyncio.Event) -> None:
        """A daemon ServiceHook: catch up, then schedule each job's next due time with APScheduler until stop."""
        jobs = enabled_jobs(engine.settings)
        if self._ready is not None:
            # A job closes sessions: run none before the lines already in the files are learned, or they'd be late.
            ready_wait = asyncio.ensure_future(self._ready.wait())
            stop_wait = asyncio.ensure_future(stop.wait())
            await asyncio.wait((ready_wait, stop_wait), return_when=asyncio.FIRST_COMPLETED)
            ready_wait.cancel()
            stop_wait.cancel()
            if stop.is_set():
                return
        count = await self.run_all_due_yielding()
        if count:
            log.info("jobs_caught_up", periods=count)
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.start()
        try:
            for job in jobs:
                self._schedule_next(scheduler, job)
            await stop.wait()
        finally:
            # Jobs are synchronous on this loop: none can be half-way through here, so nothing is cut short.
            scheduler.pause()
            scheduler.shutdown(wait=False)

    def _schedule_next(self, scheduler: AsyncIOScheduler, job: str) -> None:
        (period,) = next_periods(self.calendar, self.engine.settings, job, self._clock(), 1)
        scheduler.add_job(
            self._fire,
            trigger=DateTrigger(run_date=period.due),
            args=(scheduler, job),
            id=job,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        log.info("job_scheduled", job=job, period=period.label, due=period.due.isoformat())

    async def _fire(self, scheduler: AsyncIOScheduler, job: str) -> None:
        try:
            await self.run_all_due_yielding()
        finally:
            # Whatever happened, the job stays on the schedule (APScheduler would otherwise drop it silently).
            self._schedule_next(scheduler, job)
