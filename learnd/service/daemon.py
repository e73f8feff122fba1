"""The daemon: startup -> serve -> shutdown on one asyncio loop. Tails every source (watchfiles plus a poll
fallback), commits in groups, writes exports after each commit, keeps the bot's weights file learnd's, runs the
scheduled jobs, and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import structlog
import watchfiles

from learnd.config import RESPAWN_VARIABLE, Settings
from learnd.errors import LearndError, StateError
from learnd.service.backfill import BackfillProgress, read_history
from learnd.service.engine import Engine, LearnerFactory
from learnd.service.logs import uses_console
from learnd.service.memory import release_free_memory, resident_mib
from learnd.service.metrics import Metrics
from learnd.service.notify import notify_ready, watchdog_service
from learnd.service.scheduler import JobRunner
from learnd.service.summary import learned_summary, render_learned_summary

log = structlog.get_logger("learnd.daemon")

# watchfiles groups events for `step` ms and at most `debounce` ms: small values keep append-to-learn latency low.
# Its watch hands on a change one to two steps after it (once a step adds no new file to what it holds), so the
# step is most of the watch's share of the latency: on the latency benchmark's load, the median append -> export
# took 20-21 ms at 5 ms, 16 at 3 and 15 at 2, the daemon using 60, 68 and 75 % of a core (a change handed on
# sooner is a commit more). It also wakes, takes the GIL and asks its stop event every step: at 5 ms, some 0.3-0.5 %
# of a core more than at 20 ms with nothing written. So once no log has changed for _WATCH_IDLE_AFTER_MS (the bot's
# quiet hours) the watch takes the longer step, and the first change after that puts the short one back.
_WATCH_STEP_MS = 3
_WATCH_DEBOUNCE_MS = 20
_WATCH_IDLE_AFTER_MS = 10_000
_WATCH_IDLE_STEP_MS = 50
_EXPORT_STATE_EVERY_S = 1.0
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 30.0
# Lines read and learned in one step of the event loop: about 35 ms of CPU on the bot's real rows, whose closed
# trades cost most (the loop is never held for long, whatever commit_batch_lines is).
_STEP_LINES = 200
# Lines read between two hand-backs of freed memory to the system (done when the reading goes idle).
_RELEASE_AFTER_LINES = 50_000
# The weights file's watch: a stat every interval, the content hashed every few (a same-size rewrite within the
# file system's timestamp granularity leaves the stat alike), and a short wait for a writer still at it.
_GUARD_INTERVAL_S = 0.25
_GUARD_VERIFY_EVERY = 8
_GUARD_SETTLE_S = 0.1
_GUARD_SETTLE_TRIES = 3

ServiceHook = Callable[[Engine, asyncio.Event], Coroutine[Any, Any, None]]
# The signals that stop the daemon (and SIGHUP, which reloads it): on the way to a respawn, each is kept for the
# new image (see Respawn).
_HANDLED_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


@dataclass(frozen=True, slots=True)
class Respawn:
    """A daemon image handing over to the next (serve's `respawn`, which executes it): when the start-up burst
    (history, a backlog, the job catch-up) left the process more than respawn_after_growth_mib above its size once
    the home was open, it commits, exports and closes the store, and the next image, the same process afresh,
    starts from the checkpoints with nothing left to catch up and idles at its starting size.

    Both descriptors are inheritable: `lock_fd` holds the home lock, `signals_fd` reads a pipe holding the number
    of every signal that came once the old image stopped listening (whichever thread the kernel gave it to). The
    thread that executes the next image blocks the signals, so one that comes later waits for it, pending; the
    next image reads the pipe and unblocks them once it handles them. No SIGTERM is lost on the way."""

    lock_fd: int
    signals_fd: int
    # The settings the image ran with (Settings.handover): the next one runs with them too, not with what the
    # configuration file holds by then (an edit not reloaded, maybe invalid, maybe of what only a restart applies).
    settings: str = ""

    def environ_value(self) -> str:
        return f"{self.lock_fd}:{self.signals_fd}:{base64.b64encode(self.settings.encode()).decode()}"

    @classmethod
    def from_environ_value(cls, value: str) -> Respawn:
        """The hand-over as the previous image passed it (RESPAWN_VARIABLE); StateError if it is not one."""
        lock, signals, encoded = [*value.split(":", 2), "", ""][:3]
        try:
            settings = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            settings = None
        if not (lock.isdigit() and signals.isdigit()) or settings is None:
            raise StateError(
                f"{RESPAWN_VARIABLE}={value[:80]!r} is not a daemon's hand-over (LOCK_FD:SIGNALS_FD:SETTINGS)"
            )
        return cls(int(lock), int(signals), settings)


async def serve(
    settings: Settings,
    *,
    backfill: bool,
    reload_settings: Callable[[], Settings] | None = None,
    learner_factory: LearnerFactory | None = None,
    services: tuple[ServiceHook, ...] = (),
    respawn: Callable[[Respawn], NoReturn] | None = None,
    respawned: Respawn | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit status (0 after a clean shutdown).

    With `respawn` (the command line's exec), a start-up burst that left the process grown ends this image by
    calling it (see Respawn); `respawned` is what the image before handed over, and such an image never respawns.

    SIGHUP calls `reload_settings` and applies the result (sources, learning parameters) without losing a line;
    a reload that fails validation is logged and the running settings stay.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # A signal's stop is for good: it cancels a respawn not yet under way.
    signalled = asyncio.Event()

    def stop_for_good() -> None:
        signalled.set()
        stop.set()

    reload_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_for_good)
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    if respawned is not None:
        # What came while the image before stopped, then what waited blocked: handled now, in that order.
        for kept in _signals_kept(respawned.signals_fd):
            (reload_requested.set if kept == signal.SIGHUP else stop_for_good)()
    # The command line blocks them until here (a SIGHUP during the imports killed the process, a Ctrl-C printed a
    # traceback): one that came meanwhile is handled now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED_SIGNALS)
    started = time.monotonic()
    engine = Engine(
        settings,
        start_at_end=not backfill,
        purpose="daemon",
        learner_factory=learner_factory,
        inherited_lock_fd=respawned.lock_fd if respawned is not None else None,
    )
    size_at_start = resident_mib()
    metrics = Metrics()
    log.info(
        "daemon_started",
        home=str(settings.home),
        sources={source.name: str(source.path) for source in settings.sources},
        backfill=backfill,
        respawned=respawned is not None,
    )
    respawn_limit = settings.respawn_after_growth_mib if respawn is not None and respawned is None else 0.0
    respawn_due = asyncio.Event()  # set once the daemon has decided to respawn
    signals_fd: int | None = None  # set once everything is ready for the respawn
    progress = BackfillProgress("auto")
    try:
        # A change another writer made to the weights file while learnd was stopped (the record says what learnd
        # wrote last); the first export puts learnd's file back.
        engine.keep_export()
        # Rotated copies first, in a worker thread so that signals are handled meanwhile; nothing else touches the
        # engine until it returns. With --backfill all of them; otherwise every copy holding lines never applied
        # but history (there when learnd began to follow the source): the rest of a file rotated, and maybe
        # compressed, while learnd was stopped, or a copy it never saw.
        files, lines = await asyncio.to_thread(read_history, engine, progress, stop.is_set, history=backfill)
        progress.close()
        log.info("history_read", files_count=files, lines_count=lines, history=backfill)
        notify_ready(engine)
        caught_up = asyncio.Event()
        warm = asyncio.Event()  # the start-up burst is over: history and backlog learned, the job catch-up run

        def jobs_progress(done: int, total: int) -> None:
            progress.jobs(done, total)
            if done == total:
                if respawned is None:
                    # Once the runner has said it caught up and yields to the loop: the summary comes last. (A
                    # respawned image learned nothing new: the image before it said what was learned.)
                    asyncio.get_running_loop().call_soon(_report_learned, engine)
                warm.set()

        jobs = JobRunner(
            engine, engine.calendar, on_result=metrics.record_job, ready=caught_up, on_progress=jobs_progress
        )
        wake = asyncio.Event()
        wake.set()
        ingest = _IngestLoop(
            engine,
            metrics,
            wake,
            stop,
            reload_requested=reload_requested,
            reload_settings=reload_settings,
            caught_up=caught_up,
        )
        async with asyncio.TaskGroup() as tasks:
            running = [
                tasks.create_task(_watch(engine, wake, stop), name="watch"),
                tasks.create_task(_poll_timer(engine, wake, stop), name="poll_timer"),
                tasks.create_task(ingest.run(), name="ingest"),
                tasks.create_task(_guard_export(engine, stop), name="guard_export"),
            ]
            watchdog = watchdog_service(engine, stop, respawning=respawn_due.is_set)
            running.append(tasks.create_task(watchdog, name="watchdog_service"))
            for service in (metrics.service, jobs.service, *services):
                running.append(tasks.create_task(service(engine, stop), name=getattr(service, "__name__", "service")))
            if respawn_limit > 0.0 and size_at_start is not None:
                tasks.create_task(
                    _respawn_if_grown(warm, stop, size_at_start, respawn_limit, respawn_due), name="respawn_check"
                )
            tasks.create_task(_bound_shutdown(stop, settings.shutdown_timeout_s, running), name="shutdown_bound")
        # Only a clean stop commits what was read: after an unexpected error the batch may be half-built,
        # and the store's last commit is the state to restart from. The exports then show that last commit,
        # learning_processing_state.json included (the daemon throttles it while running).
        if engine.ingestor.replaying:
            # Stopped in the middle of a replay, or before one the batch asks for (its length grows with how late
            # the record came, to all of history after a reload): the lines read since the last commit are read
            # again at the next start, and the exports stay those of that commit.
            log.info("batch_dropped", lines_count=engine.ingestor.pending_lines, reason="stopped during a replay")
        else:
            engine.commit(export=False)
            try:
                engine.write_exports()
            except OSError as error:
                # What was read is committed; the exports follow it at the next start, which writes them first.
                log.error("exports_failed_at_stop", error=str(error), error_type=type(error).__name__)
        signals_fd = await _keep_signals(signalled, reload_requested) if respawn_due.is_set() else None
    finally:
        progress.close()
        totals = engine.totals
        lock_fd = engine.hand_over_lock() if signals_fd is not None else None
        try:
            engine.close()
        except (sqlite3.OperationalError, OSError) as error:
            # The store is closed all the same; only its clean-stop mark is missing (a full disk), so the next start
            # checks every page, as after a kill. A stop, not a damaged store.
            log.error("clean_shutdown_not_recorded", error=str(error), error_type=type(error).__name__)
        log.info(
            "daemon_stopped",
            uptime_s=round(time.monotonic() - started, 3),
            respawning=lock_fd is not None,
            **totals.log_fields(),
        )
    if respawn is not None and lock_fd is not None and signals_fd is not None:
        respawn(Respawn(lock_fd, signals_fd, engine.settings.handover))
    return 0


async def _keep_signals(signalled: asyncio.Event, reload_requested: asyncio.Event) -> int | None:
    """On the way to a respawn: from here on every signal's number goes to a pipe whose read end the next image
    inherits (the C-level handler writes it, in whichever thread takes the signal), and this thread, the one that
    executes the next image, blocks them (the next image gets a later one pending). None, with signals handled as
    before, when one already came for the loop: the stop is for good. A reload the loop heard and did not apply
    (its ingest had stopped for the respawn) goes in the pipe first: the next image applies it."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end)
    signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED_SIGNALS)
    # A signal the loop heard before the switch, whose handler has not run yet, runs now.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    if signalled.is_set():
        signal.set_wakeup_fd(previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED_SIGNALS)
        os.close(read_end)
        os.close(write_end)
        return None
    if reload_requested.is_set():
        os.write(write_end, bytes([signal.SIGHUP]))
    os.set_inheritable(read_end, True)
    return read_end


def _signals_kept(fd: int) -> list[int]:
    """The signal numbers the image before this one kept in its pipe (Respawn.signals_fd), which is closed."""
    try:
        os.set_blocking(fd, False)
    except OSError as error:
        raise StateError(f"the signals the previous image kept (descriptor {fd}) cannot be read: {error}") from None
    kept = bytearray()
    try:
        while chunk := _read_ready(fd):
            kept += chunk
    finally:
        os.close(fd)
    return [signum for signum in kept if signum in _HANDLED_SIGNALS]


def _read_ready(fd: int) -> bytes:
    """What a non-blocking descriptor holds now, up to 4 KiB (b"" when nothing is there or at its end)."""
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


async def _respawn_if_grown(
    warm: asyncio.Event, stop: asyncio.Event, size_at_start: float, limit_mib: float, due: asyncio.Event
) -> None:
    """Once the start-up burst is over (after the job catch-up handed its memory back), stop the daemon for a
    respawn if it grew by more than `limit_mib` since the home was opened: what a burst leaves scattered over the
    heap (Python's arenas, the allocator's holes) no release gives back, and a fresh image idles at its starting
    size. `due` is set when it does."""
    await _wait_any(warm, stop)
    size = resident_mib()
    if stop.is_set() or size is None:
        return
    growth = size - size_at_start
    if growth <= limit_mib:
        log.info("start_up_burst_kept", grown_mib=round(growth, 1), limit_mib=limit_mib)
        return
    log.info("respawning", grown_mib=round(growth, 1), limit_mib=limit_mib, resident_mib=round(size, 1))
    due.set()
    stop.set()


@dataclass(slots=True)
class _IngestLoop:
    """Reads on every wake-up until caught up, committing at most every commit_interval_ms / commit_batch_lines,
    and applies reloads between batches."""

    engine: Engine
    metrics: Metrics
    wake: asyncio.Event
    stop: asyncio.Event
    reload_requested: asyncio.Event
    reload_settings: Callable[[], Settings] | None
    caught_up: asyncio.Event
    failure_count: int = 0
    lines_at_release: int = 0

    async def run(self) -> None:
        engine = self.engine
        first_pending = 0.0
        last_state_export = 0.0
        # A commit skipped learning_processing_state.json (throttled): write it when due. At start too: a kill
        # between a commit and its exports left the file behind the store.
        state_stale = True
        while not self.stop.is_set():
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                try:
                    self._reload()
                except (sqlite3.OperationalError, OSError) as error:
                    # The commit a reload begins with failed (disk full, I/O error): the settings stay as they
                    # were, and the reload is tried again once the store takes writes.
                    self.reload_requested.set()
                    await self._survive_write_failure(error)
                    continue
            settings = engine.settings
            batch_lines = settings.commit_batch_lines
            self.wake.clear()
            # In steps: a backlog is read and learned a step at a time, the loop free (signals, the watchdog, jobs,
            # the metrics endpoint) between two of them.
            budget = min(batch_lines - engine.ingestor.pending_lines, _STEP_LINES)
            read = engine.poll(budget)
            now = time.monotonic()
            pending = engine.ingestor.pending_lines
            if pending and not first_pending:
                first_pending = now
            # A rotated copy still being inflated towards its unread lines reads nothing yet: go on at once.
            caught_up = read < budget and not engine.ingestor.has_backlog
            interval_s = settings.commit_interval_ms / 1000
            if caught_up or pending >= batch_lines or (pending and now - first_pending >= interval_s):
                if read:
                    await asyncio.sleep(0)  # the commit and its exports are a step of their own
                state_due = now - last_state_export >= _EXPORT_STATE_EVERY_S
                try:
                    if not await self._replay_in_steps():
                        return
                    report = engine.commit(processing_state=state_due)
                except (sqlite3.OperationalError, OSError) as error:
                    await self._survive_write_failure(error)
                    first_pending = 0.0
                    continue
                if report is not None:
                    if self.failure_count:
                        log.info("write_recovered", after_failures=self.failure_count)
                        self.failure_count = 0
                    self.metrics.record_commit(engine.last_commit_s)
                    if first_pending:
                        self.metrics.record_export_latency(time.monotonic() - first_pending)
                    if state_due:
                        last_state_export = now
                    state_stale = not state_due
                first_pending = 0.0
            if not caught_up:
                await asyncio.sleep(0)  # let signals, timers and jobs run between batches
                continue
            if not engine.ingestor.pending_lines and not self.caught_up.is_set():
                self.caught_up.set()  # jobs start only once what was already in the files is learned
                log.info("caught_up", **engine.totals.log_fields())
            if engine.totals.lines_count - self.lines_at_release >= _RELEASE_AFTER_LINES:
                # Idle after a burst (a backlog, a flood): the heap it grew is handed back, not kept at its peak.
                self.lines_at_release = engine.totals.lines_count
                release_free_memory()
            if state_stale:
                due_in_s = _EXPORT_STATE_EVERY_S - (time.monotonic() - last_state_export)
                if due_in_s > 0:
                    await _wait_any(self.wake, self.stop, self.reload_requested, timeout_s=due_in_s)
                    continue
                try:
                    engine.write_exports()
                except OSError as error:
                    await self._survive_write_failure(error)
                    continue
                last_state_export = time.monotonic()
                state_stale = False
            await _wait_any(self.wake, self.stop, self.reload_requested)

    async def _replay_in_steps(self) -> bool:
        """The replays the batch asks for (a late trade relearns the trades after it, from a checkpoint), a step of
        about 50 ms at a time, the loop free between two (signals, the watchdog, the metrics endpoint, the jobs);
        False when the stop came first: the replay is left unfinished and the batch uncommitted (see serve)."""
        for _ in self.engine.ingestor.replay_steps():
            await asyncio.sleep(0)
            if self.stop.is_set():
                return False
        return True

    async def _survive_write_failure(self, error: Exception) -> None:
        """Disk full or an I/O error while committing or exporting: keep the last good state, say so, retry.

        The store's transaction rolled back (or committed whole before an export failed); the in-memory
        learners and tailers are rebuilt from what is committed, so nothing is lost and nothing applies twice.
        """
        self.failure_count += 1
        delay = min(_RETRY_MAX_S, _RETRY_FIRST_S * 2 ** min(self.failure_count - 1, 6))
        log.error(
            "write_failed",
            error=str(error),
            error_type=type(error).__name__,
            retry_in_s=delay,
            failure_count=self.failure_count,
        )
        self.engine.recover()
        await _wait_for(self.stop, delay)

    def _reload(self) -> None:
        if self.reload_settings is None:
            log.warning("reload_unavailable", reason="no settings loader (started without the CLI)")
            return
        try:
            settings = self.reload_settings()
            # Engine.reload checks what only it can (the bot's component names) before it changes anything.
            changed = self.engine.reload(settings, relearn_in_steps=True)
        except LearndError as error:
            log.error("reload_rejected", error=str(error))
            return
        self.wake.set()
        log.info("reload_applied", **changed)


async def _bound_shutdown(stop: asyncio.Event, timeout_s: float, tasks: list[asyncio.Task[None]]) -> None:
    """Once `stop` is set, give the tasks `timeout_s` to finish what they are doing (a job between two steps, a
    metrics server closing), then cancel what is left, so that the process exits well within systemd's
    TimeoutStopSec. What was not committed is read again at the next start."""
    await stop.wait()
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    if pending:
        log.warning("shutdown_timed_out", timeout_s=timeout_s, tasks=sorted(task.get_name() for task in pending))
        for task in pending:
            task.cancel()


async def _wait_for(event: asyncio.Event, timeout_s: float) -> None:
    """Sleep up to `timeout_s`, waking early when `event` is set."""
    try:
        await asyncio.wait_for(event.wait(), timeout=timeout_s)
    except TimeoutError:
        return


async def _wait_any(*events: asyncio.Event, timeout_s: float | None = None) -> None:
    """Wait until one of `events` is set (or `timeout_s` passed)."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _report_learned(engine: Engine) -> None:
    """After the catch-up: what was learned, printed on a terminal, one `learned_summary` event in JSON logs."""
    model = engine.learned_model()
    if model is None:
        return
    summary = learned_summary(model)
    if uses_console(engine.settings.log_format):
        sys.stdout.write(render_learned_summary(summary))
        sys.stdout.flush()
    else:
        log.info("learned_summary", **summary)


async def _guard_export(engine: Engine, stop: asyncio.Event) -> None:
    """Keep the bot's weights file learnd's: when another writer changes it (the bot's optimizer saving, its own
    learner, a repair check), the engine logs what changed, counts it and writes learnd's file back, within about a
    second and without waiting for a new trade. Only the configured path is watched (paths.signal_weights)."""
    tick = 0
    failing = False
    while not stop.is_set():
        # A plain sleep (no waiter task per round, unlike waiting on `stop`): the loop ends one interval after it.
        await asyncio.sleep(_GUARD_INTERVAL_S)
        tick += 1
        owned = engine.weights_file.owned  # a reload may have moved the export
        if owned.is_intact(verify=tick % _GUARD_VERIFY_EVERY == 0) and not owned.restore_pending:
            continue
        await _settled(owned.path, stop)
        try:
            engine.keep_export()
        except OSError as error:
            # The disk is full or the directory unwritable: said once, retried every interval until it works.
            if not failing:
                log.error("export_restore_failed", path=str(owned.path), error=str(error))
            failing = True
            continue
        failing = False


async def _settled(path: Path, stop: asyncio.Event) -> None:
    """Wait, briefly, until a file stops changing: a writer that rewrites it in place may still be at it."""
    last = _stat(path)
    for _ in range(_GUARD_SETTLE_TRIES):
        await _wait_for(stop, _GUARD_SETTLE_S)
        now = _stat(path)
        if now == last:
            return
        last = now


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


async def _poll_timer(engine: Engine, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """The fallback: a missed notification costs at most one poll interval."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=engine.settings.poll_interval_ms / 1000)
        except TimeoutError:
            wake.set()


async def _watch(engine: Engine, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Wake the ingest loop when anything changes in a directory holding a source (or its symlink target).

    The directories are those that exist at start; others (missing at start, or added by a reload) are covered
    by the poll timer, so a source there is read within one poll interval. The watch steps _WATCH_STEP_MS while
    the logs change and _WATCH_IDLE_STEP_MS once they have not for _WATCH_IDLE_AFTER_MS; each switch makes a new
    watch, and the ingest loop is woken once that one is in place, for what was written between the two.
    """
    idle = False
    while not stop.is_set():
        existing = [str(path) for path in _watched_directories(engine.settings) if path.is_dir()]
        if not existing:
            await _wait_any(stop)
            return
        # Runs once the watch below is in place: awatch makes it before it first waits.
        asyncio.get_running_loop().call_soon(wake.set)
        async for changes in watchfiles.awatch(
            *existing,
            watch_filter=None,
            debounce=_WATCH_DEBOUNCE_MS,
            step=_WATCH_IDLE_STEP_MS if idle else _WATCH_STEP_MS,
            stop_event=stop,
            recursive=False,
            # Awake: an empty set when nothing changed for _WATCH_IDLE_AFTER_MS. Idle: watchfiles' own timeout,
            # after which it goes on watching without a word.
            rust_timeout=None if idle else _WATCH_IDLE_AFTER_MS,
            yield_on_timeout=not idle,
        ):
            if changes:
                wake.set()
                if not idle:
                    continue
            # Awake and nothing changed for _WATCH_IDLE_AFTER_MS, or idle and something did: a watch of the other step.
            idle = not idle
            log.debug("watch_step", step_ms=_WATCH_IDLE_STEP_MS if idle else _WATCH_STEP_MS)
            break


def _watched_directories(settings: Settings) -> list[Path]:
    directories: dict[Path, None] = {}
    for source in settings.sources:
        directories[source.path.parent] = None
        if source.path.is_symlink():
            directories[source.path.resolve().parent] = None
    return list(directories)
