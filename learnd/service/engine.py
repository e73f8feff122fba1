"""The engine: a home opened for writing (lock, store, learners, ingest pipeline, exports), driven by the daemon
(asynchronously) or by `backfill` (in one pass). One commit, then the exports that reflect it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar

import orjson
import structlog

from learnd.config import Settings
from learnd.errors import ConfigError, ExportsFailed, StateError
from learnd.exports.bot import BotRules
from learnd.exports.files import Journal, write_bytes_atomic, write_json_atomic
from learnd.exports.guard import GUARD_RECORD, ForeignWrite
from learnd.exports.signal_weights import SignalWeightsFile
from learnd.jobs.periods import JobOutput, is_suggestion
from learnd.learning.execution import NAME as EXECUTION_LEARNER
from learnd.learning.execution import ExecutionLearner, ExecutionParams
from learnd.learning.learner import CountingLearner, LearnedModel, Learner
from learnd.learning.signals import NAME as SIGNAL_LEARNER
from learnd.learning.signals import SignalLearner, SignalParams
from learnd.learning.trades import NAME as TRADE_LEARNER
from learnd.learning.trades import TradeLearner
from learnd.service.ingest import CommitReport, Ingestor
from learnd.sessions.exchange import ExchangeCalendar
from learnd.sessions.tables import calendar_for
from learnd.sources.tailer import Checkpoint
from learnd.store.database import JobRun, Store
from learnd.store.generations import exports_wait_mark, has_reached, install_ready_generation, positions_to_reach
from learnd.store.lock import HomeLock

log = structlog.get_logger("learnd.engine")

LearnerFactory = Callable[[Settings, Store, ExchangeCalendar], list[Learner]]


@dataclass(slots=True)
class Totals:
    """Counters since the engine opened, for the shutdown summary and metrics."""

    lines_count: int = 0
    applied_count: int = 0
    duplicate_count: int = 0
    ignored_count: int = 0
    quarantined_count: int = 0
    commit_count: int = 0
    change_count: int = 0
    foreign_write_count: int = 0

    def log_fields(self) -> dict[str, int]:
        """The counters as structured-log fields (shutdown and backfill summaries)."""
        return {name: getattr(self, name) for name in self.__slots__}

    def add(self, report: CommitReport) -> None:
        self.lines_count += report.lines
        self.commit_count += 1
        self.change_count += len(report.changes)
        for (_, outcome, _), count in report.counts.items():
            if outcome == "applied":
                self.applied_count += count
            elif outcome == "duplicate":
                self.duplicate_count += count
            elif outcome == "ignored":
                self.ignored_count += count
            elif outcome == "quarantined":
                self.quarantined_count += count


def counting_learners(settings: Settings, store: Store, calendar: ExchangeCalendar) -> list[Learner]:
    """The minimal learner set: counts records per source and kind."""
    return [CountingLearner.load(store.learner_state("counting"))]


# What a reload cannot change (see Engine.reload), by config key.
_RESTART_ONLY: Final[dict[str, Callable[[Settings], object]]] = {
    "schedule.exchange": lambda settings: settings.schedule.exchange,
    "schedule.calendar_first_year": lambda settings: settings.schedule.calendar_first_year,
    "schedule.calendar_last_year": lambda settings: settings.schedule.calendar_last_year,
    "schedule.daily_enabled": lambda settings: settings.schedule.daily_enabled,
    "schedule.weekly_enabled": lambda settings: settings.schedule.weekly_enabled,
    "paths.state_dir": lambda settings: str(settings.state_dir),
    "paths.data_dir": lambda settings: str(settings.data_dir),
    "metrics_enabled": lambda settings: settings.metrics_enabled,
    "metrics_host": lambda settings: settings.metrics_host,
    "metrics_port": lambda settings: settings.metrics_port,
    "log_format": lambda settings: settings.log_format,
}


class Engine:
    """A home opened for writing. Holds the home lock from open() to close()."""

    def __init__(
        self,
        settings: Settings,
        *,
        start_at_end: bool,
        purpose: str,
        learner_factory: LearnerFactory | None = None,
        lock: bool = True,
        inherited_lock_fd: int | None = None,
    ) -> None:
        """`inherited_lock_fd`: the home lock as an earlier image of this daemon handed it over across exec (the
        store was committed and closed cleanly then, so its pages are not checked again)."""
        self.settings = settings
        self._start_at_end = start_at_end
        self._factory = learner_factory or default_learners
        # The bot's pins and caps are only reported, but a name that is no component is refused at start.
        BotRules.from_settings(settings.bot)
        home_lock = HomeLock(settings.lock_path)
        if inherited_lock_fd is not None:
            self._lock: HomeLock | None = home_lock.adopt(inherited_lock_fd, purpose)
        else:
            self._lock = home_lock.acquire(purpose) if lock else None
        self.weights_file = SignalWeightsFile(settings.signal_weights_path, settings.state_dir / GUARD_RECORD)
        self.totals = Totals()
        self._quarantine_journals: dict[str, Journal] = {}
        # Every quarantine row up to this seq is in its journal (None: not known yet, ask the journals). Rows are only
        # ever added, with growing seqs, so each sync reads only what came since the last one.
        self._quarantine_synced_seq: int | None = None
        self._changes_journal = Journal(settings.data_dir / "weight_learning.jsonl")
        # The weekly signal-pattern suggestions, journaled apart: they change no multiplier, and every line of
        # weight_learning.jsonl is a learning update with its old and new multiplier (FORMATS.md).
        self._suggestions_journal = Journal(settings.data_dir / "signal_suggestions.jsonl")
        # Every committed change up to this seq is in its journal (None: not known yet, ask the journals).
        self._changes_synced_seq: int | None = None
        self.last_commit_s = 0.0
        # After a deferred swap, the positions the replaced store had read that the installed one must read again
        # before its model replaces the bot's weights file (an export must never go back in event time).
        self._exports_wait_for: dict[str, Checkpoint] = {}
        self.swapped = False  # whether this start swapped a rebuilt generation in
        try:
            self.calendar = calendar_for(settings, cache=self._lock is not None)
            swapped = self.swapped = self._lock is not None and install_ready_generation(settings)
            # The long-lived daemon checks every page at start; one-shot commands only after an unclean stop.
            self.store = Store.open(
                settings.db_path,
                window_lines=settings.dedupe_window_lines,
                full_check=purpose == "daemon" and inherited_lock_fd is None,
            )
            self._build_pipeline()
            self.sync_journals()
            if exports_wait_mark(settings).exists():
                # A swap (this start's or one a stop cut short before the new store caught up) waits for it.
                self._exports_wait_for = positions_to_reach(settings, self.store)
            if swapped:
                log.info(
                    "store_generation_installed",
                    db=str(settings.db_path),
                    weights_written_once_read_again=sorted(self._exports_wait_for),
                )
            if swapped or exports_wait_mark(settings).exists():
                self.write_exports()
        except BaseException:
            # What was opened before the failure is closed (an in-process caller goes on), the store without a
            # clean stop's record: the failure may be damage it found, which the next open must look for again.
            self.close(clean=False)
            raise

    def _build_pipeline(self, start_positions: Mapping[str, Checkpoint | None] | None = None) -> None:
        """Learners and tailers exactly as the store last committed them (a source it holds no position of at
        `start_positions`, where it began)."""
        self.learners = self._factory(self.settings, self.store, self.calendar)
        self.ingestor = Ingestor(
            self.settings,
            self.store,
            self.learners,
            start_at_end=self._start_at_end,
            covered_us=self.calendar.covered_us,
            start_positions=start_positions,
        )
        for learner in self.learners:
            learner.bind_history(self.ingestor.ledger_records)
            learner.bind_replay_points(partial(self.store.replay_point_body, learner.name))

    def recover(self) -> None:
        """After a failed commit (disk full, I/O error): forget everything not committed and continue from the
        store's last good state. The lines read since are read again; nothing is lost or applied twice."""
        self.ingestor.close()
        # A source with no committed position yet starts where it began, not at its file's end by now.
        self._build_pipeline(self.ingestor.start_positions)

    def reload(self, settings: Settings, *, relearn_in_steps: bool = False) -> dict[str, list[str]]:
        """Apply new settings without losing a line: commit, then add, move or drop sources; new learning
        parameters retrain the trade learner from the ledger (its state is a function of lines and parameters),
        committed at once or, with `relearn_in_steps`, by the next commit (which the daemon runs in steps).

        Settings that objects built at the start hold (the exchange calendar, whose sessions the learners closed and
        whose periods the jobs ran; the state and data directories the store and journals are in; the metrics
        server; the jobs scheduled; the log format) are not reloaded: a change to one is refused (ConfigError,
        before anything changes) until a restart.
        """
        BotRules.from_settings(settings.bot)
        for key, read in _RESTART_ONLY.items():
            now, then = read(settings), read(self.settings)
            if now != then:
                raise ConfigError(f"{key}: {now!r} (running with {then!r}) takes a restart, not a reload")
        self.commit()
        old_sources = {source.name: source for source in self.settings.sources}
        new_sources = {source.name: source for source in settings.sources}
        changed: dict[str, list[str]] = {"added": [], "removed": [], "moved": [], "retrained": []}
        for name, source in old_sources.items():
            if new_sources.get(name) != source:
                self.ingestor.remove_source(name)
                changed["removed" if name not in new_sources else "moved"].append(name)
        retrain = settings.learning != self.settings.learning
        if settings.signal_weights_path != self.settings.signal_weights_path:
            # The export moves: the next export writes the new path, and only that one is learnd's from then on.
            self.weights_file = SignalWeightsFile(settings.signal_weights_path, settings.state_dir / GUARD_RECORD)
            changed["export_moved"] = [str(settings.signal_weights_path)]
        self.settings = settings
        self.ingestor.settings = settings
        self._quarantine_synced_seq = None  # the sources' journals may have changed
        for name, source in new_sources.items():
            if name not in self.ingestor.tailers:
                self.ingestor.add_source(source, start_at_end=False)
                if name not in old_sources:
                    changed["added"].append(name)
        if retrain:
            for learner in self.learners:
                result = learner.retrain(settings.learning)
                if result.learned:
                    self.ingestor.add_applied(learner.name, result)
                    changed["retrained"].append(learner.name)
            if not relearn_in_steps:
                self.commit()
        return changed

    def hand_over_lock(self) -> int:
        """The home lock's descriptor, left open across exec for the next image of this daemon (Respawn); close()
        then leaves it held."""
        if self._lock is None:
            raise StateError("this engine holds no home lock to hand over")
        fd = self._lock.hand_over()
        self._lock = None
        return fd

    def close(self, *, clean: bool = True) -> None:
        """Close the tailers' files and the store (see Store.close for `clean`), and release the home lock, each
        whatever the one before raised (and each only if it was opened: a failed __init__ closes what it had)."""
        ingestor: Ingestor | None = getattr(self, "ingestor", None)
        store: Store | None = getattr(self, "store", None)
        try:
            try:
                if ingestor is not None:
                    ingestor.close()
            finally:
                if store is not None:
                    store.close(clean=clean)
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def poll(self, budget: int) -> int:
        """Read and apply up to `budget` lines (not yet committed)."""
        lines = self.ingestor.poll(budget)
        for event in self.ingestor.take_events():
            log.info(f"source_{event.event}", source=event.source, **event.detail)
        return lines

    def commit(self, *, export: bool = True, processing_state: bool = True) -> CommitReport | None:
        """Commit what was applied, then bring the journals and the JSON exports up to date.

        `export=False` skips the exports (backfill writes them once at the end); `processing_state=False` skips
        only learning_processing_state.json (the daemon throttles it; the weights file is always written).
        """
        started = time.perf_counter()
        report = self.ingestor.commit()
        if report is None:
            if export:
                self._export_learners()  # an export that failed earlier is retried even with nothing new
            return None
        self.last_commit_s = time.perf_counter() - started
        self.totals.add(report)
        for item in report.quarantined:
            log.warning(
                "record_quarantined",
                source=item.source,
                path=item.path,
                offset=item.offset,
                reason=item.reason,
                detail=item.detail,
            )
        self.sync_journals()
        if export:
            self.write_exports(processing_state=processing_state)
        return report

    def close_sessions(self, through_session: int, *, export: bool = True) -> None:
        """Close every trading session up to `through_session` in the learners (the daily job's learning part) and
        commit what that changed."""
        for learner in self.learners:
            self.ingestor.add_applied(learner.name, learner.close_sessions(through_session))
        self.commit(export=export)

    def commit_job(self, run: JobRun, output: JobOutput, *, export: bool = True) -> None:
        """Write a job's documents (atomically, each), then commit its changes and the state it kept together with
        the record of its run: a run is either recorded with everything it changed, or runs again."""
        for path, data in output.documents:
            write_bytes_atomic(path, data, durable=False)
        self.ingestor.add_changes(output.changes)
        self.ingestor.add_job_run(run, output.state, output.values)
        if output.reported_until_us is not None:
            # The journals keep every change; the store keeps those a report may read.
            self.ingestor.changes_done(output.reported_until_us, self._journaled_changes_seq())
        try:
            self.commit(export=export)
        except (sqlite3.OperationalError, OSError) as error:
            if self.store.job_run_succeeded(run.job, run.period):
                # The run committed; the journals or exports after it did not: they are written at a later
                # commit, and the run must not be recorded failed and run again (its changes would go in twice).
                raise ExportsFailed(f"{run.job} {run.period} committed, its exports not written: {error}") from error
            raise

    def sync_journals(self) -> None:
        """Append committed quarantine rows and weight changes the journals do not have yet."""
        synced = self._quarantine_synced_seq
        after_by_source: dict[str, int] | None = None
        if synced is None:
            # The first sync: each journal from its own last row (the same rows, fewer of them read).
            names = {source.name for source in self.settings.sources} | set(self._quarantine_journals)
            after_by_source = {name: self._quarantine_journal(name).last_seq for name in sorted(names)}
            synced = min(after_by_source.values(), default=0)
        rows = self.store.quarantine_rows(synced, after_by_source=after_by_source)
        by_source: dict[str, list[tuple[int, bytes]]] = {}
        for seq, source, body in rows:
            by_source.setdefault(source, []).append((seq, body))
        for source, source_rows in by_source.items():
            self._quarantine_journal(source).append(source_rows)
        last = rows[-1][0] if rows else synced
        if after_by_source:
            # Every listed source's rows up to its journal's last were there already: all up to the highest are in.
            last = max(last, *after_by_source.values())
        self._quarantine_synced_seq = last
        synced = self._journaled_changes_seq()
        changes = self.store.changes(synced)
        updates: list[tuple[int, bytes]] = []
        suggestions: list[tuple[int, bytes]] = []
        for row in changes:
            (suggestions if is_suggestion(row[1]) else updates).append(row)
        self._changes_journal.append(updates)
        self._suggestions_journal.append(suggestions)
        self._changes_synced_seq = changes[-1][0] if changes else synced

    def _journaled_changes_seq(self) -> int:
        """The seq through which every committed change is in its journal (the first time, as the two journals'
        files say: each holds its rows up to its own last)."""
        if self._changes_synced_seq is None:
            return min(self._changes_journal.last_seq, self._suggestions_journal.last_seq)
        return self._changes_synced_seq

    def _quarantine_journal(self, source: str) -> Journal:
        journal = self._quarantine_journals.get(source)
        if journal is None:
            journal = Journal(self.settings.quarantine_dir / f"{source}.jsonl")
            self._quarantine_journals[source] = journal
        return journal

    def write_exports(self, *, processing_state: bool = True) -> None:
        """Write the JSON exports from the committed state (atomic replace); learners skip theirs when unchanged."""
        if processing_state:
            write_json_atomic(self.settings.state_dir / "learning_processing_state.json", self.processing_state())
        self._export_learners()

    def learned_model(self) -> LearnedModel | None:
        """What the learners learned as it stands (the trade learner's model; None when no learner has one)."""
        return next((model for learner in self.learners if (model := learner.model()) is not None), None)

    def _export_learners(self) -> None:
        mark = exports_wait_mark(self.settings)
        if self._exports_wait_for:
            committed = self.store.checkpoints()
            self._exports_wait_for = {
                name: position
                for name, position in self._exports_wait_for.items()
                if not has_reached(committed.get(name), position)
            }
            if self._exports_wait_for:
                return
        if mark.exists():
            log.info("store_generation_caught_up", path=str(self.settings.signal_weights_path))
            mark.unlink()
        for learner in self.learners:
            model = learner.model()
            if model is not None:
                # A foreign write found before (keep_export) and not undone yet: this write undoes it.
                pending = self.weights_file.owned.restore_pending
                wrote, found = self.weights_file.write(model)
                if found is not None:
                    # This write replaced the other writer's content with learnd's.
                    self._foreign_write(found)
                if found is not None or (pending and wrote):
                    self._log_restored()
                taken_over, self.weights_file.owned.taken_over = self.weights_file.owned.taken_over, None
                if taken_over is not None:
                    described = taken_over.change.summary() if taken_over.change is not None else {}
                    kept = str(taken_over.kept) if taken_over.kept is not None else None
                    log.warning("export_taken_over", kept=kept, problem=taken_over.problem or None, **described)

    def keep_export(self) -> ForeignWrite | None:
        """Put learnd's weights file back if another writer changed it (the daemon's watch calls this): the
        change is logged with what it did, counted, and undone at once, without waiting for a new trade."""
        owned = self.weights_file.owned
        found = self.weights_file.foreign(self.learned_model())
        if found is not None:
            self._foreign_write(found)
        if owned.restore_pending and owned.restore():
            self._log_restored()
        return found

    def _foreign_write(self, found: ForeignWrite) -> None:
        self.totals.foreign_write_count += 1
        log.warning("export_changed_by_another_writer", **found.summary())

    def _log_restored(self) -> None:
        owned = self.weights_file.owned
        log.info("export_restored", path=str(owned.path), foreign_writes_count=owned.foreign_count)

    def processing_state(self) -> dict[str, Any]:
        """Offsets, counts and last event time per source, as committed."""
        checkpoints = self.store.checkpoints()
        counts = self.store.line_counts()
        sources: dict[str, Any] = {}
        for source in self.settings.sources:
            checkpoint = checkpoints.get(source.name)
            per_outcome: dict[str, int] = {}
            for (name, outcome, _), count in counts.items():
                if name == source.name:
                    per_outcome[outcome] = per_outcome.get(outcome, 0) + count
            sources[source.name] = {
                "path": str(source.path),
                "offset": checkpoint.offset if checkpoint else 0,
                "file_inode": checkpoint.ino if checkpoint else None,
                "lines_applied": per_outcome.get("applied", 0),
                "lines_duplicate": per_outcome.get("duplicate", 0),
                "lines_ignored": per_outcome.get("ignored", 0),
                "lines_quarantined": per_outcome.get("quarantined", 0),
            }
        counting = self.store.learner_state("counting")
        return {
            "sources": sources,
            "learners": sorted(learner.name for learner in self.learners),
            "counting": _loads(counting),
        }


def default_learners(settings: Settings, store: Store, calendar: ExchangeCalendar) -> list[Learner]:
    """Every learner learnd runs. The trade learner goes first: it rejects a record (out-of-calendar time)
    before any learner has changed anything."""
    trades = _restored(
        TRADE_LEARNER, lambda: TradeLearner(settings.learning, calendar, store.learner_state(TRADE_LEARNER))
    )
    trades.restore_replay_points(store.replay_points(TRADE_LEARNER))
    orders = _restored(
        EXECUTION_LEARNER,
        lambda: ExecutionLearner(
            ExecutionParams.from_settings(settings.execution, calendar.tz, calendar.local_hours()),
            store.learner_state(EXECUTION_LEARNER),
        ),
    )
    signals = _restored(
        SIGNAL_LEARNER,
        lambda: SignalLearner(SignalParams.from_settings(settings.signals), store.learner_state(SIGNAL_LEARNER)),
    )
    signals.adopt_longest(store.learner_rows(SIGNAL_LEARNER))
    # Learners that may reject a record (RecordError) come before any that never do.
    return [trades, orders, signals, *counting_learners(settings, store, calendar)]


_Learner = TypeVar("_Learner", bound=Learner)


def _restored(name: str, make: Callable[[], _Learner]) -> _Learner:
    """make(): a learner from its committed state; a state it cannot read (damaged, or of a layout this version
    does not know) is a StateError naming the learner, not a traceback."""
    try:
        return make()
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise StateError(
            f"the {name} learner's stored state cannot be read ({type(error).__name__}: {error}); nothing was "
            "reset (`learnd backfill --from-scratch` rebuilds all state from the logs)"
        ) from error


def _loads(data: bytes | None) -> Any:
    return orjson.loads(data) if data else None
