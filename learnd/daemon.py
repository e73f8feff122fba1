"""The daemon: startup -> serve -> shutdown on one asyncio loop. Tails every source (watchfiles plus a poll
fallback), commits in groups, writes exports after each commit, runs the scheduled jobs, and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
import watchfiles

from learnd.config import Settings
from learnd.engine import Engine, LearnerFactory

log = structlog.get_logger("learnd.daemon")

# watchfiles groups events for `step` ms and at most `debounce` ms: small values keep append-to-learn latency low.
_WATCH_STEP_MS = 5
_WATCH_DEBOUNCE_MS = 20
_EXPORT_STATE_EVERY_S = 1.0

ServiceHook = Callable[[Engine, asyncio.Event], Coroutine[Any, Any, None]]


async def serve(
    settings: Settings,
    *,
    backfill: bool,
    learner_factory: LearnerFactory | None = None,
    services: tuple[ServiceHook, ...] = (),
) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit status (0 after a clean shutdown)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    engine = Engine(settings, start_at_end=not backfill, purpose="daemon", learner_factory=learner_factory)
    log.info(
        "daemon_started",
        home=str(settings.home),
        sources={source.name: str(source.path) for source in settings.sources},
        backfill=backfill,
    )
    wake = asyncio.Event()
    wake.set()
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_watch(settings, wake, stop), name="watch")
            tasks.create_task(_poll_timer(settings, wake, stop), name="poll_timer")
            tasks.create_task(_ingest(engine, settings, wake, stop), name="ingest")
            for service in services:
                tasks.create_task(service(engine, stop), name=getattr(service, "__name__", "service"))
    finally:
        engine.commit()
        totals = engine.totals
        engine.close()
        log.info(
            "daemon_stopped",
            uptime_s=round(time.monotonic() - started, 3),
            lines_count=totals.lines_count,
            applied_count=totals.applied_count,
            duplicate_count=totals.duplicate_count,
            ignored_count=totals.ignored_count,
            quarantined_count=totals.quarantined_count,
            commit_count=totals.commit_count,
            change_count=totals.change_count,
        )
    return 0


async def _ingest(engine: Engine, settings: Settings, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Read on every wake-up until caught up, committing at most every commit_interval_ms / commit_batch_lines."""
    batch_lines = settings.commit_batch_lines
    interval_s = settings.commit_interval_ms / 1000
    first_pending = 0.0
    last_state_export = 0.0
    while not stop.is_set():
        wake.clear()
        budget = batch_lines - engine.ingestor.pending_lines
        read = engine.poll(budget)
        now = time.monotonic()
        pending = engine.ingestor.pending_lines
        if pending and not first_pending:
            first_pending = now
        caught_up = read < budget
        if caught_up or pending >= batch_lines or (pending and now - first_pending >= interval_s):
            state_due = now - last_state_export >= _EXPORT_STATE_EVERY_S
            if engine.commit(processing_state=state_due) is not None and state_due:
                last_state_export = now
            first_pending = 0.0
        if not caught_up:
            await asyncio.sleep(0)  # let signals, timers and jobs run between batches
            continue
        await _wait_any(wake, stop)


async def _wait_any(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _poll_timer(settings: Settings, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """The fallback: a missed notification costs at most one poll interval."""
    interval = settings.poll_interval_ms / 1000
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            wake.set()


async def _watch(settings: Settings, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Wake the ingest loop when anything changes in a directory holding a source (or its symlink target)."""
    directories = _watched_directories(settings)
    while not stop.is_set():
        existing = [str(path) for path in directories if path.is_dir()]
        if not existing:
            await _wait_any(stop)
            return
        async for _ in watchfiles.awatch(
            *existing,
            watch_filter=None,
            debounce=_WATCH_DEBOUNCE_MS,
            step=_WATCH_STEP_MS,
            stop_event=stop,
            recursive=False,
        ):
            wake.set()


def _watched_directories(settings: Settings) -> list[Path]:
    directories: dict[Path, None] = {}
    for source in settings.sources:
        directories[source.path.parent] = None
        if source.path.is_symlink():
            directories[source.path.resolve().parent] = None
    return list(directories)
