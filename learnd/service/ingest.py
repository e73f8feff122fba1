"""The pipeline: tailed lines become records, records are deduplicated and fed to learners, and each batch of
lines commits to the store in one transaction together with the offsets that produced it.

Synchronous and IO-light (reads via the tailers, writes via the store); the daemon and `backfill` drive it.
"""

from __future__ import annotations

import base64
import heapq
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from learnd.config import Settings, SourceSettings
from learnd.errors import RecordError
from learnd.learning.learner import LEARNABLE_TYPES, Applied, Learner
from learnd.records.decode import BadLine, decode_line
from learnd.records.encoding import KeptRecord, encode_record
from learnd.records.parse import (
    ExitOutcome,
    Ignored,
    OrderRecord,
    Record,
    SignalRecord,
    TradeEntry,
    TradeOutcome,
    parse_record,
)
from learnd.records.typed import attribution_record, exit_record, signal_record
from learnd.sessions.exchange import from_epoch_us
from learnd.sources.files import Identity, KnownFiles, history_identities
from learnd.sources.framing import Line
from learnd.sources.tailer import Checkpoint, SourceTailer, TailEvent
from learnd.store.database import Batch, JobRun, LedgerRow, Store
from learnd.store.ledger import record_of

LEDGER_KINDS: dict[type, str] = {TradeOutcome: "trade", TradeEntry: "entry", ExitOutcome: "exit"}
# The source kinds whose records may enter the ledger (their keys are looked up a poll at a time).
_LEDGER_SOURCE_KINDS: Final = frozenset({"attribution", "exit"})


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A line that could not be used, as written to the store and data/quarantine/<source>.jsonl."""

    source: str
    path: str  # the file the line was read from: the source's, or the rotated copy's
    offset: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class CommitReport:
    """What one commit wrote."""

    lines: int
    counts: dict[tuple[str, str, str], int]
    changes: tuple[dict[str, Any], ...]
    quarantined: tuple[Quarantined, ...]


class Ingestor:
    """Owns one tailer per source and the batch being built; `poll()` reads and applies, `commit()` persists."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        learners: Sequence[Learner],
        *,
        start_at_end: bool,
        clock: Callable[[], float] | None = None,
        covered_us: tuple[int, int] | None = None,
        start_positions: Mapping[str, Checkpoint | None] | None = None,
    ) -> None:
        self.settings = settings
        # Where each source without a committed position began (None: its file was missing, so it is read whole
        # when it appears): an ingestor built again after a failed commit starts those sources there, not at the
        # end their files have reached since (see Engine.recover).
        self.start_positions: dict[str, Checkpoint | None] = dict(start_positions or {})
        # The calendar's covered moments [start, end): a record dated outside them is quarantined, whatever its
        # kind (None: no calendar, in tests of the ingest alone).
        self._covered_us = covered_us
        # The rotated copy whose lines are being applied (apply_history), else None: the source's own file.
        self._copy_path: Path | None = None
        self.store = store
        self.learners = list(learners)
        # Each record type goes to the learners that take it, in the learners' order (see engine.default_learners).
        self._routes: dict[type, list[Learner]] = {
            record_type: [learner for learner in self.learners if record_type in learner.record_types]
            for record_type in LEARNABLE_TYPES
        }
        self.tailers: dict[str, SourceTailer] = {}
        self._sources: dict[str, SourceSettings] = {}
        # What the store knows of each source's files, shared by its tailer and by history reads (apply_history):
        # changed as lines are read, committed with them.
        self.known: dict[str, KnownFiles] = {}
        self._start_at_end = start_at_end
        self._clock = clock
        self._batch = Batch()
        self._first_source = 0
        self._committed = store.checkpoints()
        self._pending_keys: set[tuple[str, str]] = set()
        self._stored_keys: set[tuple[str, str]] = set()  # of the lines being applied, those the store holds
        self._changes: list[dict[str, Any]] = []
        self._quarantined: list[Quarantined] = []
        for source in settings.sources:
            self.add_source(source)

    def add_source(self, source: SourceSettings, *, start_at_end: bool | None = None) -> None:
        """Start tailing a source (at start-up, or when a reload adds one: then from its start, losing nothing).

        The first time learnd follows a source (at this path), the rotated copies already beside it are recorded as
        its history: only a backfill reads them. Any other copy holds lines learnd must read.
        """
        following = self.store.following(source.name)
        if following is None or following[0] != str(source.path):
            self.store.begin_following(
                source.name, str(source.path), time.time_ns() // 1000, history_identities(source.path)
            )
        checkpoint = self.store.checkpoint(source.name)
        skip_existing = self._start_at_end if start_at_end is None else start_at_end
        began = checkpoint is None and source.name in self.start_positions
        if began:
            checkpoint = self.start_positions[source.name]
            skip_existing = False
        extra = {"clock": self._clock} if self._clock is not None else {}
        known = self.known[source.name] = self.store.known_files(source.name)
        self.tailers[source.name] = SourceTailer(
            source.name,
            source.path,
            checkpoint=checkpoint,
            window=self.store.window(source.name) if checkpoint and not began else (),
            window_lines=self.settings.dedupe_window_lines,
            max_line_bytes=self.settings.max_line_bytes,
            keep_bytes=self.settings.quarantine_keep_bytes,
            rotation_grace_s=self.settings.rotation_grace_ms / 1000,
            start_at_end=skip_existing and checkpoint is None,
            known=known,
            rescan_s=self.settings.poll_interval_ms / 1000,
            **extra,
        )
        if checkpoint is None and not began:
            self.start_positions[source.name] = self.tailers[source.name].checkpoint()
        self._sources[source.name] = source

    def remove_source(self, name: str) -> None:
        """Stop tailing a source; its checkpoint stays in the store for when it comes back."""
        tailer = self.tailers.pop(name)
        tailer.close()
        del self._sources[name]
        del self.known[name]

    def close(self) -> None:
        for tailer in self.tailers.values():
            tailer.close()

    @property
    def pending_lines(self) -> int:
        return self._batch.line_count

    @property
    def has_backlog(self) -> bool:
        """Some source has rotated copies with lines still to read: poll again without waiting for news."""
        return any(tailer.has_backlog for tailer in self.tailers.values())

    def take_events(self) -> list[TailEvent]:
        events: list[TailEvent] = []
        for tailer in self.tailers.values():
            events.extend(tailer.events)
            tailer.events.clear()
        return events

    def poll(self, budget: int) -> int:
        """Read and apply up to `budget` lines across all sources; returns how many were read."""
        total = 0
        names = list(self.tailers)
        # Start one source further each time, so a source with a long backlog cannot starve the others.
        self._first_source = (self._first_source + 1) % max(1, len(names))
        for name in names[self._first_source :] + names[: self._first_source]:
            tailer = self.tailers[name]
            if total >= budget:
                break
            lines = tailer.poll(budget - total)
            self._take_known_changes(name)
            if not lines and tailer.checkpoint() == self._batch.checkpoints.get(name, self._committed.get(name)):
                continue
            source = self._sources[name]
            self._process(source, lines)
            self._batch.window.setdefault(name, []).extend(line.hash for line in lines)
            checkpoint = tailer.checkpoint()
            if checkpoint is not None:
                self._batch.checkpoints[name] = checkpoint
            total += len(lines)
        self._batch.line_count += total
        return total

    def apply_history(
        self,
        source_name: str,
        lines: Sequence[Line],
        *,
        identity: Identity,
        offset: int,
        replaces: Identity | None = None,
        path: Path | None = None,
    ) -> None:
        """Apply lines of a rotated copy (backfill of history) through the same path as tailed lines, and record in
        the same batch how far that file identity has now been read (see KnownFiles.record for `replaces`). `path`:
        the copy's, which its quarantined lines name."""
        self._copy_path = path
        try:
            self._process(self._sources[source_name], lines)
        finally:
            self._copy_path = None
        self.known[source_name].record(identity, offset, replaces=replaces)
        self._take_known_changes(source_name)
        self._batch.line_count += len(lines)

    def _take_known_changes(self, name: str) -> None:
        changed, dropped = self.known[name].take_changes()
        for identity in dropped:
            self._batch.files.pop((name, identity.fp_hash), None)
            self._batch.files_dropped.add((name, identity.fp_hash))
        for identity, offset in changed.items():
            self._batch.files[(name, identity.fp_hash)] = (identity.fp_len, offset)
            self._batch.files_dropped.discard((name, identity.fp_hash))

    def set_checkpoint(self, source_name: str, checkpoint: Checkpoint) -> None:
        """Put `checkpoint` in the batch as the source's position (backfill hands the current file to the tailer
        after reading history); once committed, reopen the source (remove_source, add_source) to resume from it."""
        self._batch.checkpoints[source_name] = checkpoint

    def replay_steps(self) -> Iterator[None]:
        """The learners' replays this batch asks for, a step at a time (see Learner.replay_steps); commit does
        whatever is left."""
        for learner in self.learners:
            yield from learner.replay_steps()

    @property
    def replaying(self) -> bool:
        """Some learner has a replay under way (left between two steps: nothing else may use the learners until
        it ends) or due before the next commit."""
        return any(learner.replaying for learner in self.learners)

    def commit(self) -> CommitReport | None:
        """Commit the batch built so far (offsets, window, counts, ledger, learner state) in one transaction."""
        batch = self._batch
        for learner in self.learners:
            self.add_applied(learner.name, learner.finish_batch())
        for learner in self.learners:
            state = learner.dump()
            if state is not None:
                batch.learner_states[learner.name] = state
            points = learner.replay_points()
            if points is not None:
                batch.replay_points[learner.name] = (points.kept, points.new)
        if batch.is_empty():
            return None
        self.store.commit(batch)
        self._committed.update(batch.checkpoints)
        report = CommitReport(
            lines=batch.line_count,
            counts=dict(batch.counts),
            changes=tuple(self._changes),
            quarantined=tuple(self._quarantined),
        )
        self._batch = Batch()
        self._pending_keys.clear()
        self._changes = []
        self._quarantined = []
        return report

    def _process(self, source: SourceSettings, lines: Sequence[Line]) -> None:
        """Apply lines in order. From a source whose records enter the ledger, the records are read first, so that one
        query finds which of their keys the store already holds, instead of one query a record; any other source's
        lines are applied as they are read (holding a poll's records costs more than it saves there)."""
        if source.kind not in _LEDGER_SOURCE_KINDS:
            self._process_as_read(source, lines)
            return
        records = [self._record_of(source, line) for line in lines]
        self._stored_keys = self._keys_in_store(records)
        for line, record in zip(lines, records, strict=True):
            self._apply(source, line, record)

    def _process_as_read(self, source: SourceSettings, lines: Sequence[Line]) -> None:
        """Lines of a source whose records never enter the ledger, each applied as it is read. A signal candidate
        (most of all lines) goes straight to its learners and its count: made, it is never bad, ignored or keyed."""
        signal_learners = self._routes[SignalRecord]
        counts = self._batch.counts
        signals_applied = (source.name, *_COUNTED_AS[SignalRecord])
        for line in lines:
            record = self._record_of(source, line)
            if type(record) is SignalRecord:
                if self._learn(source, line, record, signal_learners):
                    counts[signals_applied] += 1
                continue
            if type(record) in LEDGER_KINDS:  # not from these kinds today; looked up alone if ever
                self._stored_keys = self._keys_in_store([record])
            self._apply(source, line, record)

    def _record_of(self, source: SourceSettings, line: Line) -> Record | BadLine | None:
        """The line's record, why it cannot be used, or None for a line read before a rewrite put it back. Pure:
        what happens to it is _apply's, in line order."""
        if line.duplicate:
            return None
        if line.too_long:
            return BadLine("line_too_long", f"{line.too_long} bytes > {self.settings.max_line_bytes}")
        if line.unterminated:
            return BadLine("unterminated_line", "file rotated or deleted before its newline")
        try:
            # The usual lines of signal, attribution and exit sources decode straight into their record when plain
            # (records.typed).
            typed = _TYPED.get(source.kind)
            record: Record | None = typed(line.raw) if typed is not None else None
            if record is None:
                decoded = decode_line(line.raw)
                if isinstance(decoded, BadLine):
                    return decoded
                record = parse_record(source.kind, decoded)
        except RecordError as error:
            return BadLine(error.reason, error.detail)
        if self._covered_us is not None:
            event_us = getattr(record, "event_us", None)
            if event_us is not None and not self._covered_us[0] <= event_us < self._covered_us[1]:
                # Learned, one such date would move a learner's clock decades (episodes cut, days never evicted).
                return BadLine("timestamp_out_of_range", f"{_moment_text(event_us)} is outside the calendar's years")
        return record

    def _keys_in_store(self, records: Sequence[Record | BadLine | None]) -> set[tuple[str, str]]:
        wanted: dict[str, list[str]] = {}
        for record in records:
            kind = LEDGER_KINDS.get(type(record))
            if kind is not None:
                wanted.setdefault(kind, []).append(record.key)  # type: ignore[union-attr]
        return {(kind, key) for kind, keys in wanted.items() for key in self.store.ledger_keys_in(kind, keys)}

    def _apply(self, source: SourceSettings, line: Line, record: Record | BadLine | None) -> None:
        counts = self._batch.counts
        if record is None:
            counts[(source.name, "duplicate", "line_reread_after_rewrite")] += 1
            return
        if isinstance(record, BadLine):
            self._quarantine(source, line, record.reason, record.detail)
            return
        if isinstance(record, Ignored):
            counts[(source.name, "ignored", record.kind)] += 1
            return
        record_type = type(record)
        ledger_kind = LEDGER_KINDS.get(record_type)
        if ledger_kind is not None and not self._admit(source, line, record, ledger_kind):
            counts[(source.name, "duplicate", f"repeated_{ledger_kind}")] += 1
            return
        if not self._learn(source, line, record, self._routes[record_type]):
            return
        if isinstance(record, TradeOutcome):
            counts[(source.name, "applied", "scale" if record.is_partial else "close")] += 1
        else:
            counts[(source.name, *_COUNTED_AS[record_type])] += 1

    def _learn(self, source: SourceSettings, line: Line, record: Record, learners: Sequence[Learner]) -> bool:
        """Feeds the record to its learners and their results to the batch; False when a learner refused it (the
        line is then quarantined)."""
        try:
            applied = [learner.apply(source.name, record) for learner in learners]
        except RecordError as error:
            # Learners check a record before they change anything (the trade learner runs first), so taking
            # the record back out of the ledger leaves the batch as if the line had been garbage.
            self._withdraw(record)
            self._quarantine(source, line, error.reason, error.detail)
            return False
        for learner, result in zip(learners, applied, strict=True):
            # Most results carry neither rows nor changes, and adding an empty one would add nothing to the batch.
            if result.rows or result.changes:
                self.add_applied(learner.name, result)
        return True

    def _admit(self, source: SourceSettings, line: Line, record: Record, kind: str) -> bool:
        """A record with a natural key (entering the ledger as `kind`) enters it once; a repeat (even from a rotated
        copy) is a duplicate."""
        kept: KeptRecord = record  # type: ignore[assignment]
        ledger_key = (kind, kept.key)
        if ledger_key in self._pending_keys or ledger_key in self._stored_keys:
            return False
        self._pending_keys.add(ledger_key)
        # Positional, in LedgerRow's field order: a named tuple built from keywords costs twice as much.
        self._batch.ledger.append(
            LedgerRow(
                kind, kept.key, kept.strategy, kept.symbol, kept.event_us, source.name, line.offset, encode_record(kept)
            )
        )
        return True

    def add_applied(self, learner: str, result: Applied) -> None:
        """What a learner did outside a record (a session close, a retrain, the end of a batch): its rows and
        changes join the batch and commit with it."""
        self._batch.learner_rows.extend((learner, key, event_us, body) for key, event_us, body in result.rows)
        self.add_changes(result.changes)

    def add_changes(self, changes: Iterable[dict[str, Any]]) -> None:
        """Change documents (data/weight_learning.jsonl) to commit with the batch."""
        for change in changes:
            self._changes.append(change)
            self._batch.changes.append((int(change["event_us"]), orjson.dumps(change, option=orjson.OPT_SORT_KEYS)))

    def changes_done(self, until_us: int, journaled_seq: int) -> None:
        """Drop the weight changes before `until_us` that the journal already holds, with this batch."""
        self._batch.changes_done = (until_us, journaled_seq)

    def add_job_run(
        self, run: JobRun, state: Mapping[str, bytes] = {}, values: Sequence[tuple[str, int, bytes]] = ()
    ) -> None:
        """A job run to record with the batch, in the same transaction as what the job changed and kept."""
        self._batch.job_runs.append(run)
        self._batch.job_state.update(state)
        self._batch.job_values.extend(values)

    def _withdraw(self, record: Record) -> None:
        kind = LEDGER_KINDS.get(type(record))
        if kind is not None and self._batch.ledger and self._batch.ledger[-1].key == record.key:  # type: ignore[union-attr]
            row = self._batch.ledger.pop()
            self._pending_keys.discard((row.kind, row.key))

    def ledger_records(self, kind: str, after_us: int | None = None) -> Iterator[Record]:
        """Every ledger record of a kind, committed and pending, in event order (see Store.ledger); `after_us`:
        only those with a later event time."""
        since_us = None if after_us is None else after_us + 1
        pending = sorted(
            (row for row in self._batch.ledger if row.kind == kind and (since_us is None or row.event_us >= since_us)),
            key=_event_order,
        )
        for row in heapq.merge(self.store.ledger(kind, since_us=since_us), pending, key=_event_order):
            yield record_of(row)

    def _quarantine(self, source: SourceSettings, line: Line, reason: str, detail: str) -> None:
        keep = line.raw[: self.settings.quarantine_keep_bytes]
        tailer = self.tailers.get(source.name)
        origin = tailer.origin(line.file_key) if tailer is not None and self._copy_path is None else None
        path = str(self._copy_path or origin or source.path)
        length = line.too_long or line.cut_length or len(line.raw)
        body = {
            "source": source.name,
            "path": path,
            "file": line.file_key,
            "offset": line.offset,
            "reason": reason,
            "detail": detail,
            "length": length,
            "raw_text": keep.decode("utf-8", errors="backslashreplace"),
            "raw_b64": base64.b64encode(keep).decode("ascii"),
            "truncated": len(keep) < length,
        }
        self._batch.quarantine.append((source.name, orjson.dumps(body, option=orjson.OPT_SORT_KEYS)))
        self._batch.counts[(source.name, "quarantined", reason)] += 1
        self._quarantined.append(Quarantined(source.name, path, line.offset, reason, detail))


def _event_order(row: LedgerRow) -> tuple[int, str]:
    """Store.ledger's order: equal times of a source in the order they arrived (the batch's rows, not yet numbered,
    after the committed ones: the sort and the merge are stable)."""
    return row.event_us, row.source


# The sources whose plain lines decode straight into their record.
_TYPED: Final[dict[str, Callable[[bytes], Record | None]]] = {
    "signals": signal_record,
    "attribution": attribution_record,
    "exit": exit_record,
}

# How an applied line is counted, per record type: (outcome, kind). Trade outcomes are counted as `close` or
# `scale` (_apply); a trade entry is learned from but counted as an ignored open row.
_COUNTED_AS: Final[dict[type, tuple[str, str]]] = {
    TradeEntry: ("ignored", "open_row"),
    ExitOutcome: ("applied", "exit_outcome"),
    SignalRecord: ("applied", "signal"),
    OrderRecord: ("applied", "order"),
}


def _moment_text(event_us: int) -> str:
    """A moment as ISO-8601 UTC, or in microseconds where datetime cannot hold it."""
    try:
        return from_epoch_us(event_us).isoformat()
    except (OverflowError, ValueError):
        return f"{event_us} us since the epoch"
