"""learning.learner: the Learner Protocol's do-nothing defaults, the counting learner's counts and state round
trip, and the LearnedModel a learner hands out (the same object until what it holds changes)."""

from __future__ import annotations

import dataclasses
from typing import get_args

import orjson
import pytest

from learnd.config import LearningParams, SourceKind
from learnd.learning.learner import (
    LEARNABLE_TYPES,
    LEARNED,
    NOTHING,
    Applied,
    CountingLearner,
    LearnedModel,
    Learner,
)
from learnd.learning.trades import TradeLearner
from learnd.records.parse import Ignored, Record, parse_event_us, parse_record
from learnd.sessions.tables import calendar_of
from tests.bot_rows import close_row, exit_row, open_row, order_row


class Minimal(Learner):
    """A learner that implements only what the Protocol requires."""

    name = "minimal"
    record_types = (Ignored,)

    def apply(self, source: str, record: Record) -> Applied:
        return LEARNED

    def dump(self) -> bytes | None:
        return None


def test_protocol_defaults_do_nothing() -> None:
    """A learner that leaves the optional members out binds no history, defers nothing, closes and retrains
    nothing, has no model and feeds no gauge."""
    learner = Minimal()
    learner.bind_history(lambda kind, after_us=None: iter(()))
    assert learner.finish_batch() is NOTHING
    assert learner.close_sessions(1234) is NOTHING
    assert learner.retrain(LearningParams(half_life_sessions=10.0)) is NOTHING
    assert learner.model() is None
    assert learner.gauges() == {}


def test_nothing_and_learned_carry_no_changes_or_rows() -> None:
    """The two shared results differ only in `learned`."""
    assert (NOTHING.learned, NOTHING.changes, NOTHING.rows) == (False, (), ())
    assert (LEARNED.learned, LEARNED.changes, LEARNED.rows) == (True, (), ())


def test_learnable_types_are_every_record_type_but_ignored() -> None:
    """Every record type the parser makes can be fed to a learner, except Ignored rows."""
    assert set(LEARNABLE_TYPES) == set(get_args(Record)) - {Ignored}
    assert CountingLearner.record_types == LEARNABLE_TYPES


def record(kind: SourceKind, row: dict[str, object]) -> Record:
    return parse_record(kind, row)


TRADE = record("attribution", close_row("2026-03-02T15:10:04+00:00", "AMD", 0.9))
ENTRY = record("attribution", open_row("2026-03-02T14:30:00+00:00", "AMD"))
EARLY_TRADE = record("attribution", close_row("2026-03-02T15:00:00+00:00", "NVDA", -0.4))
ORDER = record("orders", order_row("2026-03-02T16:00:00+00:00", "AMD", qty=3, side="buy"))
EXIT = record("exit", exit_row("2026-03-02T15:10:05+00:00", "AMD", 0.93))


def test_counting_learner_counts_per_source_and_kind() -> None:
    """Each record counts once under its source and its record type."""
    learner = CountingLearner()
    for source, item in [("attribution", TRADE), ("attribution", ENTRY), ("attribution", EARLY_TRADE)]:
        assert learner.apply(source, item).learned
    learner.apply("orders", ORDER)
    assert learner.counts == {"attribution": {"TradeOutcome": 2, "TradeEntry": 1}, "orders": {"OrderRecord": 1}}


def test_counting_learner_keeps_the_latest_event_time_per_source() -> None:
    """An older record arriving later does not move a source's last event time back."""
    learner = CountingLearner()
    learner.apply("attribution", TRADE)
    learner.apply("attribution", EARLY_TRADE)
    learner.apply("exit", EXIT)
    assert learner.last_event_us == {
        "attribution": parse_event_us("2026-03-02T15:10:04+00:00"),
        "exit": parse_event_us("2026-03-02T15:10:05+00:00"),
    }


def test_counting_learner_dumps_only_when_something_changed() -> None:
    """No state before the first record or right after a dump; a state after each new record."""
    learner = CountingLearner()
    assert learner.dump() is None
    learner.apply("attribution", TRADE)
    state = learner.dump()
    assert state is not None
    assert orjson.loads(state)["counts"] == {"attribution": {"TradeOutcome": 1}}
    assert learner.dump() is None
    learner.apply("orders", ORDER)
    assert learner.dump() is not None


def test_counting_learner_state_round_trips_and_continues_identically() -> None:
    """A learner loaded from a dump holds the same counts, and after the same further records dumps the same
    bytes as the learner that never stopped."""
    running = CountingLearner()
    running.apply("attribution", TRADE)
    running.apply("exit", EXIT)
    state = running.dump()
    restarted = CountingLearner.load(state)
    assert (restarted.counts, restarted.last_event_us) == (running.counts, running.last_event_us)
    for learner in (running, restarted):
        learner.apply("orders", ORDER)
        learner.apply("attribution", EARLY_TRADE)
    assert restarted.dump() == running.dump()


def test_counting_learner_loaded_from_nothing_is_empty() -> None:
    """No committed state yet: nothing counted, and nothing to dump."""
    learner = CountingLearner.load(None)
    assert (learner.counts, learner.last_event_us, learner.dump()) == ({}, {}, None)


def test_counting_learner_gauges_the_latest_event_time_in_seconds() -> None:
    """The last learned event time, over all sources, in seconds; no gauge before any record."""
    learner = CountingLearner()
    assert learner.gauges() == {}
    learner.apply("exit", EXIT)
    learner.apply("attribution", TRADE)
    assert learner.gauges() == {
        "last_learned_event_timestamp_seconds": parse_event_us("2026-03-02T15:10:05+00:00") / 1e6
    }


def test_learned_model_is_frozen_plain_data() -> None:
    """A LearnedModel cannot be changed in place: readers can hold it while the learner moves on."""
    model = LearnedModel(entry={}, exits={}, trades_learned=1, partials_learned=0, exits_learned=2, last_trade_us=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.trades_learned = 2  # type: ignore[misc]
    assert model == dataclasses.replace(model)


def test_a_learner_hands_out_the_same_model_until_a_record_changes_it() -> None:
    """model() returns the identical object while nothing changes, and a new one, with the record counted,
    once a record was learned: readers tell "unchanged" by identity."""
    learner = TradeLearner(LearningParams(), calendar_of("XNYS", 2026, 2026))
    first = learner.model()
    assert learner.model() is first
    learner.apply("attribution", TRADE)
    second = learner.model()
    assert second is not first
    assert (first.trades_learned, second.trades_learned) == (0, 1)
    assert second.last_trade_us == parse_event_us("2026-03-02T15:10:04+00:00")
    assert learner.model() is second
