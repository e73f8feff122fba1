"""One-shot backfill: apply everything present and not yet applied, then exit. Rotated copies first (oldest first,
each resumed where its file identity was last read), then the current files through the tailers. Reuses the engine.
The daemon reads rotated copies the same way at start-up, except history (copies there before learnd followed).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from learnd.config import Settings, SourceSettings
from learnd.service.engine import Engine, LearnerFactory
from learnd.service.scheduler import replay_history
from learnd.sources.copies import SKIP_STEP_BYTES
from learnd.sources.files import (
    UNREADABLE,
    DecompressedFile,
    HistoryFile,
    Identity,
    LineReader,
    identity_through,
    source_files,
    unread_start,
)
from learnd.sources.framing import KeptTail, Line, as_duplicate
from learnd.sources.tailer import Checkpoint

log = structlog.get_logger("learnd.backfill")

ProgressMode = Literal["auto", "bar", "log", "none"]
PROGRESS_LOG_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class BackfillReport:
    """What one backfill applied (rotated history and current files together; `history_*` for the former)."""

    lines_count: int
    applied_count: int
    duplicate_count: int
    ignored_count: int
    quarantined_count: int
    commit_count: int
    history_files_count: int = 0
    history_lines_count: int = 0
    job_periods_count: int = 0
    # Of them, those that failed (each logged as job_failed): they run again at the next start or backfill.
    job_failures_count: int = 0
    # Wall time of reading and applying the lines, and of the job catch-up after them (seconds, for the log).
    ingest_s: float = 0.0
    jobs_s: float = 0.0


def run_backfill(
    settings: Settings,
    *,
    learner_factory: LearnerFactory | None = None,
    progress: ProgressMode = "auto",
) -> BackfillReport:
    """Apply rotated history (plain and gzip) not applied yet, then read every current file from its checkpoint
    (or from 0) to its end, committing in large batches. Running it twice applies nothing the second time."""
    engine = Engine(settings, start_at_end=False, purpose="backfill", learner_factory=learner_factory)
    meter = BackfillProgress(progress)
    try:
        started = time.monotonic()
        # As the daemon does first: the weights file is compared with the model it was written from, before new
        # lines move the model (learnd's own last export, its record cut short by a kill, is then no foreign write).
        engine.keep_export()
        history_files, history_lines = read_history(engine, meter)
        drain(engine, settings.backfill_batch_lines, meter)
        ingested = time.monotonic()
        # The daily and weekly jobs of every historical day and week, in event order (as the daemon would have).
        jobs = replay_history(engine, engine.calendar, datetime.now(UTC), on_progress=meter.jobs)
        jobs_done = time.monotonic()
        engine.write_exports()
        totals = engine.totals
        report = BackfillReport(
            lines_count=totals.lines_count,
            applied_count=totals.applied_count,
            duplicate_count=totals.duplicate_count,
            ignored_count=totals.ignored_count,
            quarantined_count=totals.quarantined_count,
            commit_count=totals.commit_count,
            history_files_count=history_files,
            history_lines_count=history_lines,
            job_periods_count=jobs.periods,
            job_failures_count=jobs.failed,
            ingest_s=round(ingested - started, 3),
            jobs_s=round(jobs_done - ingested, 3),
        )
        log.info("backfill_finished", **{name: getattr(report, name) for name in report.__slots__})
        return report
    finally:
        meter.close()
        engine.close()


def read_history(
    engine: Engine,
    meter: BackfillProgress,
    should_stop: Callable[[], bool] = lambda: False,
    *,
    history: bool = True,
) -> tuple[int, int]:
    """Apply each source's rotated copies not applied yet (oldest first), then hand the current file to the
    tailer; returns (files read, lines read). Without `history` (the daemon's start), copies that were there when
    learnd began to follow the source are left to a backfill; every other copy with unread lines is read: the rest
    of a file rotated (and compressed) while learnd was stopped, a copy never seen. Stops between batches when
    `should_stop()` says so: what was read is committed, the rest is read next time."""
    plans = [_plan(engine, source, history=history) for source in engine.settings.sources]
    meter.add_total(sum(_history_bytes(plan.reads) for plan in plans))
    history_files = history_lines = 0
    for planned in plans:
        plan = planned  # planned again if a copy moves on meanwhile
        read_any = False
        index = 0
        while index < len(plan.reads):
            if should_stop():
                return history_files, history_lines
            item = plan.reads[index]
            lines = _read_history_file(engine, plan.source, item, meter, should_stop)
            if lines is None:
                # The copy was rotated on since the plan (its name now holds another file, or none): plan the
                # source again; what the store knows decides what is left to read, whatever the names now are.
                log.info("history_file_moved", source=plan.source.name, file=str(item.file.path))
                replanned = _plan(engine, plan.source, history=history)
                meter.add_total(_history_bytes(replanned.reads) - _history_bytes(plan.reads[index:]))
                plan, index = replanned, 0
                continue
            read_any = True
            history_files += 1
            history_lines += lines
            index += 1
        if should_stop():
            return history_files, history_lines  # the checkpoint stays where the copies still unread are found
        if history or read_any:
            _hand_over(engine, plan)
    return history_files, history_lines


def drain(engine: Engine, batch_lines: int, meter: BackfillProgress | None = None) -> None:
    """Poll and commit until a poll reads nothing and no copy is left half read: everything complete at this moment
    is applied."""
    if meter is not None:
        meter.add_total(sum(position.pending_bytes_estimate for position in _live_positions(engine)))
    positions = {position.name: position for position in _live_positions(engine)}
    while True:
        read = engine.poll(batch_lines)
        engine.commit(export=False)
        if meter is not None:
            advanced = 0
            for position in _live_positions(engine):
                before = positions.get(position.name)
                if before is not None and before.identity == position.identity:
                    advanced += max(0, position.offset - before.offset)
                positions[position.name] = position
            meter.advance(advanced, read)
        if read == 0 and not engine.ingestor.has_backlog:  # a copy still moving towards its unread lines: go on
            break


# Reading rotated history ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Read:
    """One rotated file to read: from content offset `start`; `final` when its last fragment can never end."""

    file: HistoryFile
    start: int
    final: bool


@dataclass(frozen=True, slots=True)
class _Plan:
    source: SourceSettings
    files: list[HistoryFile]
    reads: list[_Read]


def _plan(engine: Engine, source: SourceSettings, *, history: bool) -> _Plan:
    """Which rotated copies hold lines not read yet, and from where: what the store knows of the source's files
    decides (see unread_start), not names."""
    known = engine.ingestor.known[source.name]
    files = source_files(source.path)
    current = next((found for found in files if found.is_current), None)
    grace_ns = engine.settings.rotation_grace_ms * 1_000_000
    reads: list[_Read] = []
    for found in files:
        if found.is_current:
            continue
        if found.error:
            log.warning("history_file_unreadable", source=source.name, file=str(found.path), error=found.error)
            continue
        start = unread_start(found, known, current, history=history)
        if start is None:
            continue
        # A plain copy written within the rotation grace may still get the end of its last line from the writer.
        recent = time.time_ns() - found.mtime_ns < grace_ns
        reads.append(_Read(found, start, final=found.is_compressed or not recent))
    return _Plan(source, files, reads)


def _history_bytes(reads: list[_Read]) -> int:
    return sum(item.file.disk_bytes - (0 if item.file.is_compressed else item.start) for item in reads)


def _read_history_file(
    engine: Engine,
    source: SourceSettings,
    item: _Read,
    meter: BackfillProgress,
    should_stop: Callable[[], bool] = lambda: False,
) -> int | None:
    """Apply the lines of one rotated file after `item.start`, committing every backfill_batch_lines lines together
    with how far the file's identity has been read; returns how many lines it read, or None, with nothing read,
    when the path no longer holds the file planned (a rotation since: the caller plans again).

    A copy never seen may still begin with lines read from another file (a trimmed copy renamed over the path, then
    rotated): those count as duplicates (see KeptTail)."""
    found = item.file
    settings = engine.settings
    ingestor = engine.ingestor
    position = ingestor.known[source.name].position(found.ladder)
    known_as: Identity | None = position[0] if position is not None else None
    kept: KeptTail | None = ingestor.tailers[source.name].copy_alignment() if position is None else None
    batch: list[Line] = []
    total = 0
    try:
        opened = DecompressedFile(found.path)
    except FileNotFoundError:
        return None
    with opened as handle:
        stat = handle.stat()
        if (stat.st_dev, stat.st_ino) != (found.dev, found.ino):
            return None
        disk_done = handle.disk_position()
        try:
            while not handle.skip_towards(item.start, max_bytes=SKIP_STEP_BYTES):
                if should_stop():
                    return 0  # nothing read yet: the next start moves there again
        except UNREADABLE as problem:
            log.warning("history_file_unreadable", source=source.name, file=str(found.path), error=str(problem))
            return 0
        reader = LineReader(
            handle,
            source=source.name,
            file_key=found.ladder[0].fp_hash.hex(),
            start=item.start,
            max_line_bytes=settings.max_line_bytes,
            keep_bytes=settings.quarantine_keep_bytes,
        )

        def commit(*, ended: bool) -> bool:
            """Apply and commit the batch; False, with nothing done, while the copy's first lines cannot be told yet
            (see KeptTail.undecided): the lines after them, in a longer batch, tell them. `ended`: the copy's last."""
            nonlocal disk_done, total, known_as, kept
            if kept is not None:
                hashes = [line.hash for line in batch]
                if not ended and kept.undecided(hashes):
                    return False
                marks = kept.marks(hashes, ended=ended)
                batch[:] = [
                    as_duplicate(line) if repeated else line for line, repeated in zip(batch, marks, strict=True)
                ]
                kept = None if kept.finished else kept
            identity = identity_through(found.ladder, reader.offset)
            if identity is not None:
                ingestor.apply_history(
                    source.name, batch, identity=identity, offset=reader.offset, replaces=known_as, path=found.path
                )
                known_as = identity
            engine.commit(export=False)
            position = handle.disk_position()
            meter.advance(position - disk_done, len(batch))
            disk_done = position
            total += len(batch)
            batch.clear()
            return True

        log.debug("history_file_reading", source=source.name, file=str(found.path), offset=item.start)
        due = settings.backfill_batch_lines
        for line in reader.lines(final=item.final):
            batch.append(line)
            if len(batch) < due:
                continue
            if not commit(ended=False):
                due = 2 * len(batch)  # a window's worth at most, in a few comparisons
                continue
            due = settings.backfill_batch_lines
            if should_stop():
                return total  # committed with the file's position: the next backfill resumes there
        if batch:
            commit(ended=True)
        if reader.error:
            log.warning("history_file_unreadable", source=source.name, file=str(found.path), error=reader.error)
    log.debug("history_file_read", source=source.name, file=str(found.path), offset=reader.offset, lines=total)
    return total


def _hand_over(engine: Engine, plan: _Plan) -> None:
    """Point the source's tailer at the current file, at the position its content was read to, so that it drains
    no rotated remainder of its own (history just read it) and reads only what the current file adds."""
    checkpoint = _handover_checkpoint(engine, plan)
    if checkpoint is None:
        return
    ingestor = engine.ingestor
    ingestor.set_checkpoint(plan.source.name, checkpoint)
    engine.commit(export=False)
    ingestor.remove_source(plan.source.name)
    ingestor.add_source(plan.source)
    log.info("source_handed_over", source=plan.source.name, offset=checkpoint.offset, ino=checkpoint.ino)


def _handover_checkpoint(engine: Engine, plan: _Plan) -> Checkpoint | None:
    """The checkpoint after history, or None when the tailer's own position stands (no rotated copy beside it)."""
    rotated = [found for found in plan.files if not found.is_current and found.identity is not None]
    if not rotated:
        return None
    old = engine.store.checkpoint(plan.source.name)
    known = engine.ingestor.known[plan.source.name]
    current = next((found for found in plan.files if found.is_current), None)
    if current is None and old is None:
        return None
    # No current file: the newest rotated copy is where reading stands; the tailer then finds nothing younger.
    target = current if current is not None else rotated[-1]
    position = known.position(target.ladder)
    if position is not None and target.is_current and not _ends_a_line(target, position[1]):
        position = None  # the content diverged after what was read: the tailer reads it as a replaced file
    # A file read from its start after the one the checkpoint named is compared with the lines read (a trimmed copy
    # renamed over the path) only if that one is gone: renamed, it is still there and this one is a new file.
    renamed = old is not None and any((found.dev, found.ino) == (old.dev, old.ino) for found in rotated)
    replaced_at_seq = -1
    if old is not None and not renamed:
        replaced_at_seq = old.replaced_at_seq if old.replaced_at_seq >= 0 else old.window_seq
    checkpoint = Checkpoint(
        path=str(plan.source.path),
        dev=target.dev,
        ino=target.ino,
        fp_hash=position[0].fp_hash if position is not None else b"",
        fp_len=position[0].fp_len if position is not None else 0,
        offset=position[1] if position is not None else 0,
        size=target.disk_bytes,
        window_seq=old.window_seq if old is not None else 0,
        replaced_at_seq=replaced_at_seq,
    )
    if old is not None and (old.dev, old.ino, old.fp_hash, old.offset) == (
        checkpoint.dev,
        checkpoint.ino,
        checkpoint.fp_hash,
        checkpoint.offset,
    ):
        return None
    return checkpoint


def _ends_a_line(current: HistoryFile, offset: int) -> bool:
    if offset == 0:
        return True
    try:
        with open(current.path, "rb") as handle:
            return os.pread(handle.fileno(), 1, offset - 1) == b"\n"
    except FileNotFoundError:
        return False


# Progress ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LivePosition:
    name: str
    identity: tuple[int, int, bytes]
    offset: int
    pending_bytes_estimate: int


def _live_positions(engine: Engine) -> list[_LivePosition]:
    positions: list[_LivePosition] = []
    for name, tailer in engine.ingestor.tailers.items():
        checkpoint = tailer.checkpoint()
        try:
            size = os.stat(tailer.path).st_size
        except FileNotFoundError:
            size = 0
        if checkpoint is None:
            positions.append(_LivePosition(name, (0, 0, b""), 0, size))
        else:
            identity = (checkpoint.dev, checkpoint.ino, checkpoint.fp_hash)
            positions.append(_LivePosition(name, identity, checkpoint.offset, max(0, size - checkpoint.offset)))
    return positions


class BackfillProgress:
    """Bytes and lines done against bytes to do, then the job catch-up's periods done against periods due: a tqdm bar
    each on a TTY (the per-file and per-period log lines are at debug, so the console shows the bars instead),
    `backfill_progress` and `jobs_progress` log lines every `log_every_s` otherwise."""

    def __init__(
        self,
        mode: ProgressMode,
        *,
        clock: Callable[[], float] = time.monotonic,
        log_every_s: float = PROGRESS_LOG_EVERY_S,
    ) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode
        self.bytes_total = 0
        self.bytes_done = 0
        self.lines_done = 0
        self._clock = clock
        self._started = clock()
        self._last_log = self._started
        self._log_every_s = log_every_s
        # tqdm bars, imported only when one is drawn (the daemon under systemd logs instead).
        self._bar: Any = None
        self._jobs_bar: Any = None
        self._last_jobs_log = self._started
        self._closed = False

    def add_total(self, bytes_count: int) -> None:
        self.bytes_total += bytes_count
        if self.mode == "bar" and self._bar is None and not self._closed and self.bytes_total > 0:
            # Drawn once there is something to read: a daemon with nothing to catch up shows no empty bar.
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.bytes_total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc="backfill",
                file=sys.stderr,
                leave=True,
            )
        if self._bar is not None:
            self._bar.total = self.bytes_total
            self._bar.refresh()

    def advance(self, bytes_count: int, lines_count: int) -> None:
        # Estimates (gzip ratio, lines appended meanwhile) may overshoot; the figures never pass the total.
        bytes_count = max(0, min(bytes_count, self.bytes_total - self.bytes_done))
        self.bytes_done += bytes_count
        self.lines_done += lines_count
        now = self._clock()
        if self._bar is not None:
            self._bar.update(bytes_count)
            self._bar.set_postfix(lines_per_s=round(self.lines_per_s(now)), refresh=False)
        elif self.mode == "log" and now - self._last_log >= self._log_every_s:
            self._last_log = now
            self.log_line(now)

    def lines_per_s(self, now: float) -> float:
        elapsed = now - self._started
        return self.lines_done / elapsed if elapsed > 0 else 0.0

    def eta_s(self, now: float) -> float | None:
        elapsed = now - self._started
        if self.bytes_done <= 0 or elapsed <= 0:
            return None
        return (self.bytes_total - self.bytes_done) / (self.bytes_done / elapsed)

    def log_line(self, now: float) -> None:
        eta = self.eta_s(now)
        log.info(
            "backfill_progress",
            bytes_done=self.bytes_done,
            bytes_total=self.bytes_total,
            lines_done=self.lines_done,
            lines_per_s=round(self.lines_per_s(now), 1),
            eta_s=round(eta, 1) if eta is not None else None,
        )

    def jobs(self, done: int, total: int) -> None:
        """The job catch-up ran `done` of `total` periods (the scheduler's progress hook); its bar closes when
        `done` reaches `total`."""
        now = self._clock()
        if self.mode == "bar":
            if self._bar is not None:
                self._bar.close()  # the history read is over once the jobs run
                self._bar = None
            self._closed = True
            if self._jobs_bar is None and done < total:
                from tqdm import tqdm

                self._jobs_bar = tqdm(total=total, unit="period", desc="jobs", file=sys.stderr, leave=True)
            if self._jobs_bar is not None:
                self._jobs_bar.update(done - self._jobs_bar.n)
                if done >= total:
                    self._jobs_bar.close()
                    self._jobs_bar = None
        elif self.mode == "log" and done < total and now - self._last_jobs_log >= self._log_every_s:
            self._last_jobs_log = now
            log.info("jobs_progress", periods_done=done, periods_total=total)

    def close(self) -> None:
        """Close the bars (the byte count's for good; a catch-up still to come opens its own)."""
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._jobs_bar is not None:
            self._jobs_bar.close()
            self._jobs_bar = None
