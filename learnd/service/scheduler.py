"""The job runner: runs due periods on the daemon's loop (catch-up at start, then each next due time, one at a
time, with APScheduler 3.x deciding when). For each period the engine closes the sessions in the learners and
commits, the job builds its documents from the store, and the engine writes them and commits the run.
"""

from __future__ import annotations

import asyncio
import sqlite3
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from learnd.jobs.longrun import LongRun
from learnd.jobs.periods import load_longrun, run_period
from learnd.jobs.schedule import JOBS, Period, enabled_jobs, last_session, next_periods, pending_periods
from learnd.service.engine import Engine
from learnd.sessions.exchange import ExchangeCalendar, to_epoch_us
from learnd.store.database import JobRun

log = structlog.get_logger("learnd.jobs")


def replay_history(engine: Engine, calendar: ExchangeCalendar, now: datetime) -> int:
    """Backfill's part: run the daily and weekly jobs for every trading day and week from the first trade to the
    last one due by `now`, in event order, recording each run so the daemon does not repeat it."""
    return JobRunner(engine, calendar, clock=lambda: now).run_all_due(export=False)


def execute_period(
    engine: Engine, calendar: ExchangeCalendar, period: Period, longrun: LongRun, *, export: bool = True
) -> str:
    """Run one period now: close the sessions it covers in the learners (committed), build its documents, then
    write them and commit its changes with the record of the run. Returns the report's path.

    Synchronous on purpose: on the daemon's loop nothing else (ingest, commit, another job) runs meanwhile.
    """
    engine.close_sessions(last_session(calendar, engine.settings, period), export=export)
    output = run_period(engine.store, engine.settings, calendar, period, longrun)
    run = JobRun(period.job, period.label, "ok", to_epoch_us(period.due), str(output.report))
    engine.commit_job(run, output, export=export)
    return str(output.report)


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
        # The jobs' long-run figures as committed, loaded at the first period and kept up to date by each one.
        self._longrun: LongRun | None = None

    def run_due(self, job: str) -> int:
        """Run every pending period of `job` (coalesced: one pass, each period once, in order)."""
        return self._run(pending_periods(self.engine.store, self.calendar, self.engine.settings, job, self._clock()))

    def run_all_due(self, *, export: bool = True) -> int:
        """Run every pending period of every enabled job in event order (a day's batch before the week it ends)."""
        return self._run(self._all_pending(), export=export)

    async def run_all_due_yielding(self, stop: asyncio.Event) -> int:
        """run_all_due on the daemon's loop, letting other tasks (watchdog, metrics, signals) run between periods
        (a long catch-up must not starve the watchdog), and stopping between periods once `stop` is set: the
        periods not run yet stay pending for the next start. Returns how many ran."""
        ran = 0
        for period in self._all_pending():
            if stop.is_set():
                log.info("jobs_interrupted", next_period=period.label, job=period.job, ran=ran)
                break
            self._run_one(period, export=True)
            ran += 1
            await asyncio.sleep(0)
        return ran

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
            if self._longrun is None:
                self._longrun = load_longrun(self.engine.store, self.calendar)
            target = execute_period(self.engine, self.calendar, period, self._longrun, export=export)
        except Exception as error:  # noqa: BLE001 - a failing job is logged, counted and retried; it never stops the daemon
            self._failed(period, error)
            return
        self.run_count += 1
        log.info("job_ran", job=period.job, period=period.label, due=period.due.isoformat(), report=target)
        if self._on_result is not None:
            self._on_result(period.job, True)

    def _failed(self, period: Period, error: Exception) -> None:
        self.failure_count += 1
        # The figures may hold what the failed period took in but never committed: read them again next time.
        self._longrun = None
        detail = "".join(traceback.format_exception(error))[-4000:]
        log.error("job_failed", job=period.job, period=period.label, error=str(error), traceback=detail)
        if self._on_result is not None:
            self._on_result(period.job, False)
        # What the job changed but could not commit (a full disk) is dropped: the learner continues from the
        # store's last commit, as after any failed write.
        self.engine.recover()
        try:
            self.engine.store.record_job_run(
                JobRun(period.job, period.label, "failed", to_epoch_us(period.due), detail)
            )
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
        count = await self.run_all_due_yielding(stop)
        if count:
            log.info("jobs_caught_up", periods=count)
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.start()
        try:
            for job in jobs:
                self._schedule_next(scheduler, job, stop)
            await stop.wait()
        finally:
            # Jobs are synchronous on this loop: none can be half-way through here, so nothing is cut short.
            scheduler.pause()
            scheduler.shutdown(wait=False)

    def _schedule_next(self, scheduler: AsyncIOScheduler, job: str, stop: asyncio.Event) -> None:
        (period,) = next_periods(self.calendar, self.engine.settings, job, self._clock(), 1)
        scheduler.add_job(
            self._fire,
            trigger=DateTrigger(run_date=period.due),
            args=(scheduler, job, stop),
            id=job,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        log.info("job_scheduled", job=job, period=period.label, due=period.due.isoformat())

    async def _fire(self, scheduler: AsyncIOScheduler, job: str, stop: asyncio.Event) -> None:
        try:
            await self.run_all_due_yielding(stop)
        finally:
            # Whatever happened, the job stays on the schedule (APScheduler would otherwise drop it silently).
            self._schedule_next(scheduler, job, stop)
