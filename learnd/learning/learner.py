"""Records feed learners through one small interface: apply a record, say what changed, dump state for the store.

The counting learner here proves the pipeline's guarantees; the trade learner (learnd/trade_learner.py) is the real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol

import orjson

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


class Learner(Protocol):
    """A consumer of records, fed per source in file order. State must be a function of the records applied."""

    name: str

    @property
    def record_types(self) -> tuple[type, ...]:
        """The record types `apply` learns from; the pipeline feeds a learner nothing else (most lines concern
        one learner, and a call that returns NOTHING would still cost its share of the per-line budget)."""
        ...

    def apply(self, source: str, record: Record) -> Applied:
        """Learn from one record of `record_types` (already deduplicated by the pipeline)."""
        ...

    def dump(self) -> bytes | None:
        """The state to commit, or None when nothing changed since the last dump."""
        ...


@dataclass(slots=True)
class CountingLearner:
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
