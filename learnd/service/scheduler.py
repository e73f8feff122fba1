"""The job runner: runs due periods on the daemon's loop (catch-up at start, then each next due time, one at a
time, with APScheduler 3.x deciding when). For each period the engine closes the sessions in the learners and
commits, the job builds its documents from the store, and the engine writes them and commits the run.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

import structlog

from learnd.errors import ExportsFailed, StopRequested
from learnd.jobs.longrun import LongRun
from learnd.jobs.periods import RECORD_SPAN_US, JobOutput, load_longrun, run_period
from learnd.jobs.schedule import JOBS, Period, enabled_jobs, last_session, next_periods, pending_periods
from learnd.service.engine import Engine
from learnd.service.memory import collecting_garbage_less_often, release_free_memory
from learnd.sessions.exchange import CalendarError, ExchangeCalendar, to_epoch_us
from learnd.store.database import JobRun, Store
from learnd.store.ledger import RecordCache

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = structlog.get_logger("learnd.jobs")

# How often a period waiting for a replay in steps to end looks again.
_REPLAY_WAIT_S: Final = 0.01
# When the next run cannot be named (a wall clock outside the calendar's years), the job looks again after this.
_CLOCK_RETRY: Final = timedelta(hours=1)

# A catch-up's progress: (periods run, periods due); called before the first period and after each.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class HistoryJobs:
    """What a backfill's job catch-up took up: every period pending, in event order (`periods`), and how many of
    them failed (`failed`: logged as job_failed and recorded as failed; they run again at the next start or
    backfill)."""

    periods: int
    failed: int


def replay_history(
    engine: Engine, calendar: ExchangeCalendar, now: datetime, *, on_progress: Progress | None = None
) -> HistoryJobs:
    """Backfill's part: run the daily and weekly jobs for every trading day and week from the first trade to the
    last one due by `now`, in event order, recording each run so the daemon does not repeat it."""
    runner = JobRunner(engine, calendar, clock=lambda: now, on_progress=on_progress)
    periods = runner.run_all_due(export=False)
    return HistoryJobs(periods=periods, failed=runner.failure_count)


def execute_period(
    engine: Engine,
    calendar: ExchangeCalendar,
    period: Period,
    longrun: LongRun,
    *,
    records: RecordCache | None = None,
    export: bool = True,
) -> str:
    """Run one period now, in one go (backfill): close the sessions it covers in the learners (committed), build
    its documents, then write them and commit its changes with the record of the run. Returns the report's path."""
    engine.close_sessions(last_session(calendar, engine.settings, period), export=export)
    output = run_period(engine.store, engine.settings, calendar, period, longrun, records=records)
    return _commit(engine, period, output, export=export)


def _commit(engine: Engine, period: Period, output: JobOutput, *, export: bool) -> str:
    run = JobRun(period.job, period.label, "ok", to_epoch_us(period.due), str(output.report))
    try:
        engine.commit_job(run, output, export=export)
    except ExportsFailed as error:
        # The run is committed: it ran, once. The files after it are written at a later commit.
        log.error("job_exports_failed", job=period.job, period=period.label, error=str(error))
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
        on_progress: Progress | None = None,
    ) -> None:
        self.engine = engine
        self.calendar = calendar
        self._ready = ready
        self._on_progress = on_progress
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_result = on_result
        self.run_count = 0
        self.failure_count = 0
        # The jobs' long-run figures as committed, loaded at the first period and kept up to date by each one.
        self._longrun: LongRun | None = None
        # Ledger records decoded by earlier periods (their windows overlap), as far back as a period reads.
        self._records = RecordCache(span_us=RECORD_SPAN_US)
        self._reader: Store | None = None
        # One pass at a time: the daily and weekly triggers fire together after a week's last session, and each
        # pass works out what is pending before it runs anything (two at once would run each period twice).
        self._one_pass = asyncio.Lock()
        # The time the last pass worked out what was pending: a period due after it is not run yet.
        self._checked: datetime | None = None

    def run_due(self, job: str) -> int:
        """Run every pending period of `job` (coalesced: one pass, each period once, in order)."""
        return self._run(pending_periods(self.engine.store, self.calendar, self.engine.settings, job, self._clock()))

    def run_all_due(self, *, export: bool = True) -> int:
        """Run every pending period of every enabled job in event order (a day's batch before the week it ends),
        reporting progress to `on_progress`."""
        return self._run(self._all_pending(), export=export, on_progress=self._on_progress)

    async def run_all_due_yielding(self, stop: asyncio.Event, on_progress: Progress | None = None) -> int:
        """run_all_due for the daemon: each period's documents are built in a worker thread over a snapshot of the
        store (the loop keeps ingesting, beating the watchdog and handling signals meanwhile), and once `stop` is
        set the period at hand is dropped uncommitted and the rest stay pending: all of them run at the next
        start, none twice. A pass that comes while another runs waits for it, then runs what it left. Returns how
        many ran."""
        async with self._one_pass:
            return await self._pass_yielding(stop, on_progress)

    async def _pass_yielding(self, stop: asyncio.Event, on_progress: Progress | None) -> int:
        try:
            periods = self._all_pending()
        except CalendarError as error:
            # The wall clock is outside the calendar's years (a clock reset to 1970): no period can be named, and
            # learning goes on; the next due time looks again.
            log.error("jobs_clock_outside_calendar", error=str(error), now=self._clock().isoformat())
            return 0
        ran = 0
        if on_progress is not None:
            on_progress(0, len(periods))
        with collecting_garbage_less_often():
            for period in periods:
                if stop.is_set() or not await self._run_one_off_loop(period, stop, catching_up=on_progress is not None):
                    log.info("jobs_interrupted", next_period=period.label, job=period.job, ran=ran)
                    break
                ran += 1
                if on_progress is not None:
                    on_progress(ran, len(periods))
        return ran

    async def _run_one_off_loop(self, period: Period, stop: asyncio.Event, *, catching_up: bool = False) -> bool:
        """One period with its building off the loop; False when `stop` cut it short (nothing committed)."""
        # The period's CPU is counted in each thread only while it works on the period: the loop runs other tasks
        # while the worker builds.
        try:
            await self._after_replays(stop)
            started = time.thread_time()
            self.engine.close_sessions(last_session(self.calendar, self.engine.settings, period))
            cpu_s = time.thread_time() - started
            output, build_cpu_s = await asyncio.to_thread(self._build, period, stop.is_set)
            await self._after_replays(stop)
            started = time.thread_time()
            target = _commit(self.engine, period, output, export=True)
            cpu_s += build_cpu_s + time.thread_time() - started
        except StopRequested:
            self._longrun = None  # it may hold what the dropped period took in
            return False
        except Exception as error:  # noqa: BLE001 - a failing job is logged, counted and retried; it never stops the daemon
            self._failed(period, error)
            return True
        self._ran(period, target, cpu_s, catching_up=catching_up)
        return True

    async def _after_replays(self, stop: asyncio.Event) -> None:
        """Wait while a replay is under way or due (the ingest runs it in steps before its next commit; a session
        closed now would make it run at once, holding the loop); raises StopRequested when `stop` comes first."""
        while self.engine.ingestor.replaying:
            if stop.is_set():
                raise StopRequested("stopped while a replay ran; the period runs at the next start")
            await asyncio.sleep(_REPLAY_WAIT_S)

    def _build(self, period: Period, should_stop: Callable[[], bool]) -> tuple[JobOutput, float]:
        """In a worker thread: the period's output from a snapshot of the store, read through a connection of
        its own (the loop's connection keeps committing), and the CPU seconds this thread spent on it."""
        started = time.thread_time()
        if self._reader is None:
            self._reader = Store.open(self.engine.settings.db_path, readonly=True)
        with self._reader.snapshot() as store:
            if self._longrun is None:
                self._longrun = load_longrun(store, self.calendar)
            output = run_period(
                store,
                self.engine.settings,
                self.calendar,
                period,
                self._longrun,
                records=self._records,
                should_stop=should_stop,
            )
        return output, time.thread_time() - started

    def close(self) -> None:
        """Close the reader's connection (the daemon's stop)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _all_pending(self) -> list[Period]:
        now = self._checked = self._clock()
        periods = [
            period
            for job in enabled_jobs(self.engine.settings)
            for period in pending_periods(self.engine.store, self.calendar, self.engine.settings, job, now)
        ]
        periods.sort(key=lambda period: (period.due, JOBS.index(period.job)))
        return periods

    def _run(self, periods: list[Period], *, export: bool = True, on_progress: Progress | None = None) -> int:
        if on_progress is not None:
            on_progress(0, len(periods))
        with collecting_garbage_less_often():
            for done, period in enumerate(periods, start=1):
                self._run_one(period, export=export, catching_up=on_progress is not None)
                if on_progress is not None:
                    on_progress(done, len(periods))
        return len(periods)

    def _run_one(self, period: Period, *, export: bool, catching_up: bool = False) -> None:
        started = time.thread_time()
        try:
            if self._longrun is None:
                self._longrun = load_longrun(self.engine.store, self.calendar)
            target = execute_period(
                self.engine, self.calendar, period, self._longrun, records=self._records, export=export
            )
        except Exception as error:  # noqa: BLE001 - a failing job is logged, counted and retried; it never stops the daemon
            self._failed(period, error)
            return
        self._ran(period, target, time.thread_time() - started, catching_up=catching_up)

    def _ran(self, period: Period, target: str, cpu_s: float, *, catching_up: bool = False) -> None:
        self.run_count += 1
        # A catch-up logs one line per period at debug: JSON logs keep them, a console shows its progress bar.
        level = logging.DEBUG if catching_up else logging.INFO
        log.log(
            level,
            "job_ran",
            job=period.job,
            period=period.label,
            due=period.due.isoformat(),
            report=target,
            cpu_ms=round(cpu_s * 1e3, 3),
        )
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
        count = await self.run_all_due_yielding(stop, self._on_progress)
        # A long catch-up at start can pass a close: what fell due meanwhile runs now, not at its job's next due
        # time (a day or a week later).
        while not stop.is_set() and self._due_since_checked(jobs):
            count += await self.run_all_due_yielding(stop)
        # What the catch-up decoded and summed serves no later period (they are a day apart; the next one reloads
        # the long-run figures from the store): the memory goes back.
        self._records.clear()
        self._longrun = None
        self.engine.store.shrink_memory()
        self.close()  # its page cache too: the next period, a day away, opens it again
        release_free_memory()
        if count and not stop.is_set():
            log.info("jobs_caught_up", periods=count)  # a stop cut it short: jobs_interrupted said so
        # Imported here: only the daemon schedules, and a one-shot backfill or a quick command should not pay the
        # import (about 45 ms of CPU, entry points included).
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.start()
        try:
            for job in jobs:
                self._schedule_next(scheduler, job, stop)
            await stop.wait()
        finally:
            # A period running now sees `stop` and drops out uncommitted; none starts after this.
            scheduler.pause()
            scheduler.shutdown(wait=False)
            self.close()

    def _due_since_checked(self, jobs: list[str]) -> bool:
        """Whether a period of `jobs` fell due after the last pass worked out what was pending."""
        now = self._clock()
        try:
            return any(self._next_period(job).due <= now for job in jobs)
        except CalendarError:
            return False  # _schedule_next says so

    def _next_period(self, job: str) -> Period:
        """The first period of `job` due after the last pass worked out what was pending (or after now)."""
        (period,) = next_periods(self.calendar, self.engine.settings, job, self._checked or self._clock(), 1)
        return period

    def _schedule_next(self, scheduler: AsyncIOScheduler, job: str, stop: asyncio.Event) -> None:
        # Due after the last pass's look, not after now: one that fell due since is in the past, and APScheduler
        # runs it at once (no misfire grace limit) instead of the job waiting for its next due time.
        try:
            period = self._next_period(job)
        except CalendarError as error:
            # No run to name (a wall clock outside the calendar's years, or none after it): look again in a while
            # by the real clock, rather than end the daemon, which goes on learning.
            retry = datetime.now(UTC) + _CLOCK_RETRY
            log.error("job_not_scheduled", job=job, error=str(error), retry=retry.isoformat())
            self._fire_at(scheduler, job, stop, retry)
            return
        self._fire_at(scheduler, job, stop, period.due)
        log.info("job_scheduled", job=job, period=period.label, due=period.due.isoformat())

    def _fire_at(self, scheduler: AsyncIOScheduler, job: str, stop: asyncio.Event, due: datetime) -> None:
        from apscheduler.triggers.date import DateTrigger  # with AsyncIOScheduler in `service`

        scheduler.add_job(
            self._fire,
            trigger=DateTrigger(run_date=due, timezone=UTC),
            args=(scheduler, job, stop),
            id=job,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )

    async def _fire(self, scheduler: AsyncIOScheduler, job: str, stop: asyncio.Event) -> None:
        try:
            await self.run_all_due_yielding(stop)
            self._records.clear()  # kept for the periods of one run; the next one is a day away
        finally:
            # Whatever happened, the job stays on the schedule (APScheduler would otherwise drop it silently).
            self._schedule_next(scheduler, job, stop)
