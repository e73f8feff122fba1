"""Records feed learners through one small interface: apply a record, say what changed, dump state for the store.

The counting learner here proves the pipeline's guarantees; the trade learner (learning/trades.py) is the real one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol

import orjson

from learnd.config import LearningParams
from learnd.records.parse import ExitOutcome, OrderRecord, Record, SignalRecord, TradeEntry, TradeOutcome

# Every record type a learner can be fed (Ignored rows never reach learners).
LEARNABLE_TYPES: Final[tuple[type, ...]] = (TradeOutcome, TradeEntry, ExitOutcome, SignalRecord, OrderRecord)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one record did: `changes` are JSON-able change events (for data/weight_learning.jsonl);
    `rows` are (key, event_us, JSON bytes) the learner wants kept in the store (table learner_rows, upserted by
    key) in the same transaction, so its in-memory state can stay bounded."""

    learned: bool
    changes: tuple[dict[str, Any], ...] = ()
    rows: tuple[tuple[str, int, bytes], ...] = ()


NOTHING = Applied(learned=False)
LEARNED = Applied(learned=True)


@dataclass(frozen=True, slots=True)
class ReplayPoints:
    """A learner's replay points for the store (a cache: each is a state a replay from nothing would rebuild, kept so
    that a replay after a restart need not start from nothing). `kept`: the numbers of every point it keeps, all
    others are deleted; `new`: the points taken since its last commit, as (number, through_us, ordinal, tag,
    body): `ordinal` is how many records it holds."""

    kept: tuple[int, ...]
    new: tuple[tuple[int, int, int, str, bytes], ...]


class PointReader(Protocol):
    """Where a learner reads back the body of a replay point it committed, by number (None: the store has none)."""

    def __call__(self, number: int) -> bytes | None: ...


class History(Protocol):
    """Where a learner reads every ledger record of a kind (committed and pending) in event order, for replays;
    `after_us`: only those with a later event time."""

    def __call__(self, kind: str, after_us: int | None = None) -> Iterable[Record]: ...


@dataclass(frozen=True, slots=True)
class LearnedModel:
    """What the learners learned, as plain data for the exports, views and metrics (they never read a learner).

    `entry` and `exits` are the models' snapshots: strategy -> component -> view (multiplier, evidence, samples,
    and for entry components `by_regime`). A learner hands out the same object until what it holds changes, so
    readers can tell "unchanged" by identity.
    """

    entry: Mapping[str, Any]
    exits: Mapping[str, Any]
    trades_learned: int
    partials_learned: int
    exits_learned: int
    last_trade_us: int


class Learner(Protocol):
    """A consumer of records, fed per source in file order. State must be a function of the records applied.

    This is everything the shell (ingest, engine, job runner, metrics) calls on a learner; it never asks which
    learner it holds. Learners subclass this Protocol, which gives the optional members their do-nothing default.
    """

    name: str
    # The record types `apply` learns from; the pipeline feeds a learner nothing else (most lines concern one
    # learner, and a call that returns NOTHING would still cost its share of the per-line budget).
    record_types: ClassVar[tuple[type, ...]]

    def apply(self, source: str, record: Record) -> Applied:
        """Learn from one record of `record_types` (already deduplicated by the pipeline)."""
        ...

    def dump(self) -> bytes | None:
        """The state to commit, or None when nothing changed since the last dump."""
        ...

    def bind_history(self, history: History) -> None:
        """Where to read every ledger record of a kind in event order (committed and pending), for replays."""
        return

    def replay_points(self) -> ReplayPoints | None:
        """The replay points to commit with the state, or None when they did not change since the last call."""
        return None

    def bind_replay_points(self, reader: PointReader) -> None:
        """Where to read back the body of a replay point this learner committed."""
        return

    def replay_steps(self) -> Iterator[None]:
        """Part of finish_batch's work offered in steps (a replay): the caller may run other work between two, but
        not with this learner; finish_batch then returns what it did (and does what is left)."""
        return iter(())

    @property
    def replaying(self) -> bool:
        """replay_steps has work: left between two steps, or due before the next commit."""
        return False

    def finish_batch(self) -> Applied:
        """Called once before each commit: work deferred to the end of a batch (a replay, say)."""
        return NOTHING

    def close_sessions(self, through_session: int) -> Applied:
        """The daily job closed every trading session up to `through_session` (index in the exchange calendar)."""
        return NOTHING

    def retrain(self, params: LearningParams) -> Applied:
        """Relearn from the ledger with new learning parameters (a reload changed them)."""
        return NOTHING

    def model(self) -> LearnedModel | None:
        """The learned multipliers, when this learner has any (for exports, views and metrics)."""
        return None

    def gauges(self) -> dict[str, float]:
        """Current values of the metrics gauges this learner feeds, by gauge name (see service.metrics)."""
        return {}


@dataclass(slots=True)
class CountingLearner(Learner):
    """Counts records per source and kind, and the latest event time seen per source."""

    name: str = "counting"
    record_types: ClassVar[tuple[type, ...]] = LEARNABLE_TYPES
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    last_event_us: dict[str, int] = field(default_factory=dict)
    _dirty: bool = False

    @classmethod
    def load(cls, state: bytes | None) -> CountingLearner:
        learner = cls()
        if state is not None:
            data = orjson.loads(state)
            learner.counts = data["counts"]
            learner.last_event_us = data["last_event_us"]
        return learner

    def apply(self, source: str, record: Record) -> Applied:
        kind = type(record).__name__
        per_source = self.counts.setdefault(source, {})
        per_source[kind] = per_source.get(kind, 0) + 1
        event_us = getattr(record, "event_us", None)
        if event_us is not None and event_us > self.last_event_us.get(source, -1):
            self.last_event_us[source] = event_us
        self._dirty = True
        return LEARNED

    def dump(self) -> bytes | None:
        if not self._dirty:
            return None
        self._dirty = False
        return orjson.dumps({"counts": self.counts, "last_event_us": self.last_event_us}, option=orjson.OPT_SORT_KEYS)

    def gauges(self) -> dict[str, float]:
        if not self.last_event_us:
            return {}
        return {"last_learned_event_timestamp_seconds": max(self.last_event_us.values()) / 1_000_000}
