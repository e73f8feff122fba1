"""Record parsing: the components of a signal or trade row, whichever path (per-layout plan or general) takes them."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.config import SourceKind
from learnd.errors import RecordError
from learnd.records.components import COMPONENT_ALIASES, COMPONENT_METADATA_KEYS
from learnd.records.parse import (
    MAX_FIELD_MAGNITUDE,
    SignalRecord,
    TradeEntry,
    checked_components_of,
    parse_record,
)
from tests.bot_rows import close_row, exit_row, open_row, order_row, signal_row

Components = tuple[tuple[tuple[str, float], ...], tuple[str, ...]]


def _expected(raw: dict[str, Any]) -> Components | str:
    """The contract spelled out plainly: canonical names with aliases summed in key order, metadata keys dropped,
    null values skipped, unknown keys listed; any other non-number or out-of-range value makes the row bad."""
    totals: dict[str, float] = {}
    unknown: list[str] = []
    for key, value in raw.items():
        if key in COMPONENT_METADATA_KEYS:
            continue
        name = COMPONENT_ALIASES.get(key)
        if name is None:
            unknown.append(key[:64])
            continue
        if value is None:
            continue
        if type(value) not in (int, float) or not math.isfinite(value) or abs(value) > MAX_FIELD_MAGNITUDE:
            return "bad_field"
        totals[name] = float(value) if name not in totals else totals[name] + value
    return tuple(sorted(totals.items())), tuple(sorted(unknown))


def _components_parsed(kind: SourceKind, row: dict[str, Any]) -> Components | str:
    """The components of the record parse_record makes of `row`, or the reason it refuses the row."""
    try:
        record = parse_record(kind, row)
    except RecordError as error:
        return error.reason
    assert isinstance(record, SignalRecord | TradeEntry)
    return record.components, record.unknown_components


def _signal_components(raw: dict[str, Any]) -> Components | str:
    row = {"ts": "2026-03-02T15:00:00+00:00", "cluster": {"ticker": "AAPL", "composite_meta": {"components": raw}}}
    return _components_parsed("signals", row)


_KEYS = st.sampled_from(sorted(COMPONENT_ALIASES) + sorted(COMPONENT_METADATA_KEYS) + ["made_up", "x" * 80])
_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=12))
def test_components_follow_the_contract_on_any_layout_and_values(raw: dict[str, Any]) -> None:
    assert repr(_signal_components(raw)) == repr(_expected(raw))


def _trade_components(raw: dict[str, Any]) -> Components | str:
    row = {
        "ts": "2026-03-02T15:00:00+00:00",
        "trade_id": "open_AAPL_1",
        "symbol": "AAPL",
        "context": {"components": raw},
    }
    return _components_parsed("attribution", row)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=12))
def test_trade_components_follow_the_contract_on_any_layout_and_values(raw: dict[str, Any]) -> None:
    """A trade row's components, taken key by key, are the contract's as a signal's are."""
    assert repr(_trade_components(raw)) == repr(_expected(raw))


def test_trade_components_that_are_not_an_object_make_the_row_bad() -> None:
    assert _trade_components([1.0]) == "bad_field"  # type: ignore[arg-type]


_FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@settings(max_examples=200, deadline=None)
@given(st.lists(_FINITE, min_size=3, max_size=3))
def test_the_usual_layout_repeated_gives_each_row_its_own_values(values: list[float]) -> None:
    """Rows sharing one key layout (the common case, resolved once) still carry their own numbers."""
    raw = {"flow": values[0], "freshness_factor": 0.75, "iv_rank": values[1], "gamma": values[2]}
    assert _signal_components(raw) == (
        (("greeks_gamma", values[2]), ("iv_rank", values[1]), ("options_flow", values[0])),
        (),
    )


_IN_RANGE = st.floats(min_value=-MAX_FIELD_MAGNITUDE, max_value=MAX_FIELD_MAGNITUDE)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_KEYS, _IN_RANGE, max_size=12))
def test_checked_components_are_the_contracts_for_numbers_in_range(raw: dict[str, float]) -> None:
    """For the numbers a typed decoder already checked, the unchecked path gives the contract's components too:
    aliases summed in key order, metadata dropped, unknown keys listed (and -0.0 kept as the contract keeps it)."""
    assert repr(checked_components_of(raw)) == repr(_expected(raw))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from((0.0, -0.0, 1.5, -2.25)), min_size=3, max_size=3), min_size=2, max_size=6))
def test_checked_rows_repeating_a_layout_each_get_their_own_components(rows: list[list[float]]) -> None:
    """The pairs of a layout's last row are reused for a row of equal values, but never across zeros of either
    sign (0.0 == -0.0): each row's components are the contract's, signs included."""
    for values in rows:
        raw = {"whale": values[0], "flow": values[1], "smile": values[2]}
        assert repr(checked_components_of(raw)) == repr(_expected(raw))


@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_nan_anywhere_in_a_known_layout_is_refused(position: int) -> None:
    """JSON has no NaN, but a row that holds one (from any decoder) must not reach the models."""
    raw = dict.fromkeys(("flow", "smile", "whale"), 1.0)
    raw[list(raw)[position]] = math.nan
    assert _signal_components(raw) == "bad_field"


def test_aliases_of_one_component_are_summed() -> None:
    raw = orjson.loads(b'{"flow_premium": 1.5, "flow_count": 0.25, "options_flow": 1}')
    assert _signal_components(raw) == ((("options_flow", 2.75),), ())


def test_trade_entries_take_the_same_path() -> None:
    row = {
        "ts": "2026-03-02T15:00:00+00:00",
        "trade_id": "open_AAPL_1",
        "symbol": "AAPL",
        "context": {"components": {"whale": 0.5, "dark_pool": -0.25, "mystery": 3.0}},
    }
    record = parse_record("attribution", row)
    assert isinstance(record, TradeEntry)
    assert (record.components, record.unknown_components) == (
        (("dark_pool", -0.25), ("whale_persistence", 0.5)),
        ("mystery",),
    )


def test_an_entry_keeps_the_entry_time_its_close_rows_name_it_by() -> None:
    """FORMATS.md: open and close rows share no key; join on symbol + context.entry_ts. An open row's entry_ts is
    kept (TradeEntry.entry_us), whatever time its trade_id spells; a row without one keeps None, and one that is
    no time makes the row bad, as on a close row."""
    row: dict[str, Any] = {
        "ts": "2026-03-02T14:32:36.010000+00:00",
        "trade_id": "open_AMD_2026-03-02T14:32:36.001950+00:00",
        "symbol": "AMD",
        "context": {"entry_ts": "2026-03-02T14:32:36.002114+00:00", "components": {"flow": 1.0}},
    }
    record = parse_record("attribution", row)
    assert isinstance(record, TradeEntry)
    assert record.entry_us == 1_772_461_956_002_114  # 2026-03-02T14:32:36.002114Z, not the trade_id's .001950
    del row["context"]["entry_ts"]
    without = parse_record("attribution", row)
    assert isinstance(without, TradeEntry) and without.entry_us is None
    row["context"]["entry_ts"] = "yesterday"
    with pytest.raises(RecordError, match=r"context\.entry_ts"):
        parse_record("attribution", row)


def rows_of_each_kind() -> list[tuple[SourceKind, dict[str, Any]]]:
    ts = "2026-03-02T15:10:04.118221+00:00"
    return [
        ("attribution", close_row(ts, "AMD", 0.5)),
        ("attribution", open_row(ts, "AMD")),
        ("exit", exit_row(ts, "AMD", 0.5)),
        ("signals", signal_row(ts, "AMD", {"flow": 1.0})),
        ("orders", order_row(ts, "AMD", qty=3, side="buy")),
    ]


@pytest.mark.parametrize("value", [5, 1.5, True, {"name": "momentum"}, ["momentum"]])
def test_a_strategy_id_that_is_not_text_makes_the_row_bad(value: object) -> None:
    """Strategies must not be mixed silently (FORMATS.md): a strategy_id of another type is bad_field on every
    kind of row (it was filed under equity)."""
    for kind, row in rows_of_each_kind():
        row["strategy_id"] = value
        with pytest.raises(RecordError, match="bad_field: strategy_id"):
            parse_record(kind, row)


@pytest.mark.parametrize(("value", "strategy"), [(None, "equity"), ("", "equity"), (" momentum ", "momentum")])
def test_a_strategy_id_missing_null_or_blank_is_equity(value: str | None, strategy: str) -> None:
    for kind, row in rows_of_each_kind():
        row["strategy_id"] = value
        assert parse_record(kind, row).strategy == strategy  # type: ignore[union-attr]
        del row["strategy_id"]
        assert parse_record(kind, row).strategy == "equity"  # type: ignore[union-attr]
