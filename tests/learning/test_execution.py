"""Execution quality: learnd/execution.py on hand-made order logs."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.errors import RecordError
from learnd.learning.execution import (
    Counters,
    ExecutionLearner,
    ExecutionParams,
    GroupRow,
    aggregate_orders,
    aggregates_from_rows,
    aggregates_of,
    exchange_clock,
    execution_summary,
    render_execution,
    symbol_outcomes,
    time_bucket,
)
from learnd.records.parse import OrderRecord, TradeOutcome, parse_record
from learnd.sessions.tables import calendar_for
from tests.conftest import build_settings

DAY = "2026-03-02"  # a Monday, EST (UTC-5)


def order(ts: object, **fields: Any) -> OrderRecord:
    record = parse_record("orders", {"ts": ts, "type": "order", "strategy_id": "equity", **fields})
    assert isinstance(record, OrderRecord)
    return record


def hand_log() -> list[OrderRecord]:
    """AAPL: two limit buys at the open (one filled, one fell back to market), a market buy at midday with a fill
    price and no logged slippage, a failed then a filled close near the close. MSFT: one cheap close."""
    return [
        order(f"{DAY}T14:35:00+00:00", symbol="AAPL", side="buy", qty=10, price=100.0, order_type="limit",
              status="filled"),
        order(f"{DAY}T14:35:01+00:00", action="submit_limit_filled", symbol="AAPL", side="buy", filled_qty=10,
              filled_avg_price=100.02, slippage_bps=2.0),
        order(f"{DAY}T14:40:00+00:00", symbol="AAPL", side="buy", qty=10, price=100.0, order_type="limit",
              status="submitted"),
        order(f"{DAY}T14:40:30+00:00", action="limit_not_filled", symbol="AAPL", side="buy", filled_qty=0),
        order(f"{DAY}T14:40:40+00:00", action="submit_market_fallback", symbol="AAPL", side="buy", filled_qty=10,
              filled_avg_price=100.05),
        order(f"{DAY}T17:00:00+00:00", symbol="AAPL", side="buy", qty=10, price=50.0, fill_price=50.1,
              order_type="market", status="filled"),
        order(f"{DAY}T20:44:00+00:00", action="close_position_failed", symbol="AAPL", side="sell", filled_qty=0),
        order(f"{DAY}T20:45:00+00:00", action="close_position", symbol="AAPL", side="sell", filled_qty=10,
              filled_avg_price=101.0, slippage_bps=4.0),
        order(f"{DAY}T18:00:00+00:00", action="close_position", symbol="MSFT", side="sell", filled_qty=5,
              filled_avg_price=400.0, slippage_bps=1.0),
    ]  # fmt: skip


def closed(symbol: str, pnl_pct: float, index: int) -> TradeOutcome:
    event_us = 1_772_500_000_000_000 + index
    return TradeOutcome(
        f"close_{symbol}_{index}", "equity", symbol, "mixed", event_us, event_us - 1, pnl_pct, pnl_pct * 10, 1.0,
        (), (), 3.0, 30.0, "trail_stop", "long", False,
    )  # fmt: skip


OUTCOMES = [closed("AAPL", 0.5, 1), closed("AAPL", 0.3, 2), closed("AAPL", 0.7, 3), closed("MSFT", 2.0, 4)]
LOOSE = ExecutionParams(min_fills=1, min_trades=1)


def by_group(summary: dict[str, Any]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {(row["symbol"], row["order_type"], row["side"], row["bucket"]): row for row in summary["groups"]}


def test_hand_made_log_matches_hand_computed_groups() -> None:
    """Fill, not-filled and fallback rates, close failures and slippage (logged vs computed) per group."""
    summary = execution_summary(aggregate_orders(hand_log(), LOOSE), symbol_outcomes(OUTCOMES), LOOSE)
    groups = by_group(summary)
    assert set(groups) == {
        ("AAPL", "limit", "buy", "open"),
        ("AAPL", "market", "buy", "midday"),
        ("AAPL", "close", "sell", "close"),
        ("MSFT", "close", "sell", "midday"),
    }
    assert {row["day"] for row in summary["groups"]} == {DAY}
    limit = groups[("AAPL", "limit", "buy", "open")]
    assert (limit["submissions"], limit["fills"], limit["fill_rate"]) == (2, 2, 1.0)
    assert (limit["limit_not_filled_rate"], limit["market_fallback_rate"]) == (0.5, 0.5)
    assert (limit["slippage_bps"], limit["slippage_source"]) == (2.0, "logged")
    assert limit["cost_usd"] == pytest.approx(2.0 / 10_000 * 100.02 * 10)
    market = groups[("AAPL", "market", "buy", "midday")]
    assert (market["submissions"], market["fills"]) == (1, 1)
    assert market["slippage_bps"] == pytest.approx(20.0)  # (50.1 - 50) / 50 in bps, paid on a buy
    assert market["slippage_source"] == "computed"
    close = groups[("AAPL", "close", "sell", "close")]
    assert (close["submissions"], close["fills"], close["fill_rate"], close["close_failures"]) == (2, 1, 0.5, 1)
    assert close["slippage_bps"] == 4.0


def test_symbols_whose_cost_eats_their_pnl_are_flagged() -> None:
    """AAPL: mean slippage (2 + 20 + 4) / 3 bps, a round trip of 0.1733 % against a mean pnl of 0.5 %: 34.7 %,
    over the 25 % threshold. MSFT: 0.02 % against 2 %: 1 %, not flagged."""
    summary = execution_summary(aggregate_orders(hand_log(), LOOSE), symbol_outcomes(OUTCOMES), LOOSE)
    symbols = {row["symbol"]: row for row in summary["symbols"]}
    aapl = symbols["AAPL"]
    assert (aapl["submissions"], aapl["fills"], aapl["fill_rate"]) == (5, 4, 0.8)
    assert aapl["slippage_bps"] == pytest.approx(26 / 3, abs=1e-6)
    assert aapl["slippage_source"] == "mixed"
    assert aapl["trades"] == 3
    assert aapl["mean_pnl_pct"] == pytest.approx(0.5)
    assert aapl["round_trip_cost_pct"] == pytest.approx(2 * 26 / 3 / 100, abs=1e-6)
    assert aapl["cost_share"] == pytest.approx(2 * 26 / 3 / 100 / 0.5, abs=1e-6)
    assert symbols["MSFT"]["cost_share"] == pytest.approx(0.01)
    assert summary["flagged"] == [{"strategy": "equity", "symbol": "AAPL", "reason": "cost_share"}]
    assert "flagged equity AAPL: cost_share" in render_execution(summary)
    # Too few trades for the default minimums: nothing is flagged on thin evidence.
    assert execution_summary(aggregate_orders(hand_log()), symbol_outcomes(OUTCOMES))["flagged"] == []


def test_losing_only_because_of_cost_is_flagged() -> None:
    """Trades that would pay before costs but lose after them are flagged as such."""
    outcomes = [closed("AAPL", -0.05, 1)]
    summary = execution_summary(aggregate_orders(hand_log(), LOOSE), symbol_outcomes(outcomes), LOOSE)
    assert summary["flagged"] == [{"strategy": "equity", "symbol": "AAPL", "reason": "cost_exceeds_pnl"}]
    deep = execution_summary(aggregate_orders(hand_log(), LOOSE), symbol_outcomes([closed("AAPL", -3.0, 1)]), LOOSE)
    assert deep["flagged"] == []


@pytest.mark.parametrize(
    ("utc", "bucket"),
    [
        ("2026-03-02T14:29:59+00:00", "pre"),
        ("2026-03-02T14:30:00+00:00", "open"),
        ("2026-03-02T14:59:59+00:00", "open"),
        ("2026-03-02T15:00:00+00:00", "midday"),
        ("2026-03-02T20:29:59+00:00", "midday"),
        ("2026-03-02T20:30:00+00:00", "close"),
        ("2026-03-02T21:00:00+00:00", "post"),
        ("2026-07-01T13:35:00+00:00", "open"),  # EDT: 09:35 local
        ("2026-07-01T19:45:00+00:00", "close"),
    ],
)
def test_time_of_day_buckets_follow_the_exchange_clock(utc: str, bucket: str) -> None:
    moment = datetime.fromisoformat(utc)
    event_us = int(moment.timestamp()) * 1_000_000
    params = ExecutionParams()
    assert time_bucket(exchange_clock(params.tz)(event_us), params) == bucket


@pytest.mark.parametrize(
    ("local", "bucket"),
    [
        ("2026-11-24T09:45", "open"),
        ("2026-11-24T15:45", "close"),
        ("2026-11-24T16:30", "post"),
        ("2026-11-27T12:45", "close"),  # the day after Thanksgiving closes at 13:00
        ("2026-11-27T13:30", "post"),
        ("2026-11-27T15:45", "post"),
        ("2026-12-24T12:50", "close"),
        ("2026-11-26T10:00", "closed"),  # Thanksgiving
        ("2026-11-28T12:00", "closed"),  # a Saturday
    ],
)
def test_buckets_follow_each_day_s_own_session(local: str, bucket: str, tmp_path: Path) -> None:
    """With the calendar's hours, a half day's close bucket ends at its 13:00 close and an order after it is post;
    an order on a day with no session is closed (every day was taken as 09:30-16:00: midday and close)."""
    calendar = calendar_for(build_settings(tmp_path))
    params = ExecutionParams(hours=calendar.local_hours())
    moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(params.tz))
    event_us = int(moment.timestamp()) * 1_000_000
    assert time_bucket(exchange_clock(params.tz)(event_us), params) == bucket


def test_learner_rows_upsert_to_the_direct_aggregate() -> None:
    """The learner's rows, upserted by key, add up to the same counts as aggregating the orders directly."""
    learner = ExecutionLearner(LOOSE)
    table: dict[str, tuple[str, int, bytes]] = {}
    for record in hand_log():
        for row in learner.apply("orders", record).rows:
            table[row[0]] = row
    assert aggregates_from_rows(table.values()) == aggregate_orders(hand_log(), LOOSE)


def closes_with_a_late_one(days: list[str], slippage_bps: dict[str, float]) -> list[OrderRecord]:
    """A close per day and symbol (of `slippage_bps`, with its slippage), then a late one for the first day's AAPL."""
    orders = [
        order(f"{day}T15:00:00+00:00", action="close_position", symbol=symbol, side="sell", filled_qty=1,
              filled_avg_price=10.0, slippage_bps=slippage)
        for day in days
        for symbol, slippage in slippage_bps.items()
    ]  # fmt: skip
    late = order(f"{days[0]}T15:30:00+00:00", action="close_position", symbol="AAPL", side="sell", filled_qty=1)
    return [*orders, late]


def learner_table(learner: ExecutionLearner, orders: list[OrderRecord]) -> dict[str, tuple[str, int, bytes]]:
    """The learner's rows after `orders`, upserted by key as the store keeps them."""
    table: dict[str, tuple[str, int, bytes]] = {}
    for record in orders:
        for row in learner.apply("orders", record).rows:
            table[row[0]] = row
    return table


def test_days_roll_out_of_memory_and_late_orders_start_a_generation() -> None:
    """Only the latest days stay in memory; a late order for a day let go counts in a new row, never overwriting."""
    params = ExecutionParams(retain_days=1)
    orders = closes_with_a_late_one(
        ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"], {"AAPL": 1.0, "MSFT": 1.0, "AMD": 1.0}
    )
    learner = ExecutionLearner(params)
    table = learner_table(learner, orders)
    assert learner.open_group_count == 3 * 2 + 1
    assert "2026-03-02|equity|AAPL|close|sell|midday#1" in table
    assert aggregates_from_rows(table.values()) == aggregate_orders(orders, params)


def test_kept_group_rows_give_the_summary_made_from_the_rows() -> None:
    """A summary made from GroupRows kept from an earlier report (each group one row holds taken whole, with its
    view, made once) is the summary made from the rows alone; a group of two generations is added up afresh; the
    rows' views are taken as made, not made again."""
    params = ExecutionParams(retain_days=1)
    orders = closes_with_a_late_one(["2026-03-02", "2026-03-03", "2026-03-04"], {"AAPL": 1.5, "MSFT": -0.0})
    rows = sorted(learner_table(ExecutionLearner(params), orders).values())
    outcomes = symbol_outcomes(OUTCOMES)
    whole = execution_summary(aggregates_from_rows(rows), outcomes, params)

    kept = [GroupRow(body) for _, _, body in rows]
    aggregates, views = aggregates_of(kept)
    assert len(views) == len(kept) - 2  # the late order's day: two rows of one group
    assert aggregates == aggregates_from_rows(rows)
    first = execution_summary(aggregates, outcomes, params, views=views)
    aggregates, views = aggregates_of(kept)  # a later report over the same rows
    again = execution_summary(aggregates, outcomes, params, views=views)
    assert orjson.dumps(first) == orjson.dumps(again) == orjson.dumps(whole)
    assert all(any(row.view() is view for view in again["groups"]) for row in kept if row.group in views)
    assert [row.counters for row in kept] == [GroupRow(body).counters for _, _, body in rows]  # none changed


order_specs = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5 * 86_400),
        st.sampled_from(("AAPL", "MSFT")),
        st.sampled_from((None, "submit_limit_filled", "limit_not_filled", "submit_market_fallback", "close_position")),
        st.one_of(st.none(), st.floats(min_value=-10, max_value=10, allow_nan=False)),
    ),
    max_size=40,
)


@settings(max_examples=50, deadline=None)
@given(order_specs, st.lists(st.integers(min_value=0, max_value=40), max_size=4))
def test_chunks_with_restarts_equal_one_pass(
    spec: list[tuple[int, str, str | None, float | None]], cuts: list[int]
) -> None:
    """Same order lines in one pass or in chunks with dump/load between: identical rows and state."""
    base = int(datetime(2026, 3, 2, 14, 0, tzinfo=UTC).timestamp())
    records: list[OrderRecord] = []
    for offset, symbol, action, slippage in spec:
        ts = datetime.fromtimestamp(base + offset, tz=UTC).isoformat()
        fields: dict[str, Any] = {"symbol": symbol, "side": "buy", "filled_qty": 1, "filled_avg_price": 10.0}
        if action is None:
            fields.update(order_type="limit", status="submitted", price=10.0, qty=1)
        else:
            fields["action"] = action
        if slippage is not None:
            fields["slippage_bps"] = slippage
        records.append(order(ts, **fields))
    params = ExecutionParams(retain_days=1)

    whole = ExecutionLearner(params)
    whole_rows = [row for record in records for row in whole.apply("orders", record).rows]
    rows: list[tuple[str, int, bytes]] = []
    state: bytes | None = None
    bounds = sorted({0, len(records), *(min(cut, len(records)) for cut in cuts)})
    for start, end in pairwise(bounds):
        learner = ExecutionLearner(params, state)
        rows.extend(row for record in records[start:end] for row in learner.apply("orders", record).rows)
        state = learner.dump() or state
    assert rows == whole_rows
    assert (state or ExecutionLearner(params).state()) == whole.state()
    assert orjson.loads(whole.state())["order_count"] == len(records)


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59-12:00", 1e12])
def test_times_beyond_the_clock_are_refused_before_anything_changes(ts: object) -> None:
    """A timestamp the exchange clock cannot place is a RecordError (quarantined), and the state is untouched."""
    learner = ExecutionLearner(ExecutionParams())
    before = learner.state()
    with pytest.raises(RecordError):
        learner.apply("orders", order(ts, symbol="AAPL", side="buy", order_type="limit", status="submitted"))
    assert learner.state() == before
    assert learner.dump() is None


def test_merge_adds_every_counter_and_keeps_the_earliest_time() -> None:
    """Counters.merge spells out its fields: every field but first_us is summed, first_us takes the minimum, and a
    field added to Counters later must be added there too (this test fails until it is)."""
    one = Counters(**{item.name: index + 1 for index, item in enumerate(fields(Counters))})
    other = Counters(**{item.name: (index + 1) * 10 for index, item in enumerate(fields(Counters))})
    one.merge(other)
    for index, item in enumerate(fields(Counters)):
        expected = index + 1 if item.name == "first_us" else (index + 1) * 11
        assert getattr(one, item.name) == expected, item.name


_GROUP_COUNTERS = st.builds(
    Counters,
    submissions=st.integers(0, 5),
    fills=st.integers(0, 5),
    filled_on_submit=st.integers(0, 5),
    slippage_logged_count=st.integers(0, 3),
    slippage_logged_bps_sum=st.floats(-50, 50),
    slippage_computed_count=st.integers(0, 3),
    slippage_computed_bps_sum=st.floats(-50, 50),
    cost_usd_sum=st.floats(-1e4, 1e4),
    notional_usd_sum=st.floats(0, 1e6),
)
_GROUPS = st.dictionaries(
    st.tuples(
        st.sampled_from([DAY, "2026-03-03"]),
        st.just("equity"),
        st.sampled_from(["AAPL", "MSFT"]),
        st.sampled_from(["limit", "market"]),
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(["open", "midday"]),
    ),
    _GROUP_COUNTERS,
    max_size=12,
)


@given(_GROUPS)
@settings(max_examples=60, deadline=None)
def test_a_symbol_and_a_bucket_add_their_groups_in_key_order(aggregates: dict[Any, Counters]) -> None:
    """A symbol's and an (order type, bucket)'s figures are their groups' counters merged one by one in key order
    (the floats added in that order) and their fills summed, as the learner's rows have always been read."""
    summary = execution_summary(aggregates, {})
    for name, (first, second), rows in (
        ("symbol", (1, 2), summary["symbols"]),
        ("bucket", (3, 5), summary["buckets"]),
    ):
        merged: dict[tuple[str, str], tuple[Counters, int]] = {}
        for key, counters in sorted(aggregates.items()):
            scope = (key[first], key[second])
            total, fills = merged.get(scope, (Counters(), 0))
            total.merge(counters)
            merged[scope] = (total, fills + max(counters.fills, counters.filled_on_submit))
        assert len(rows) == len(merged), name
        for row, (_, (total, fills)) in zip(rows, sorted(merged.items()), strict=True):
            measured = total.slippage_logged_count + total.slippage_computed_count
            slippage = (
                (total.slippage_logged_bps_sum + total.slippage_computed_bps_sum) / measured if measured else None
            )
            assert (row["submissions"], row["fills"]) == (total.submissions, fills)
            assert row["slippage_bps"] == (round(slippage, 6) if slippage is not None else None)
            assert (row["cost_usd"], row["notional_usd"]) == (
                round(total.cost_usd_sum, 6),
                round(total.notional_usd_sum, 6),
            )


@pytest.mark.parametrize(
    ("entry", "fill"),
    [
        ("14:59:59", "15:00:01"),  # 09:59:59 and 10:00:01 in New York: across the open bucket's edge
        ("14:59:59", "15:09:59"),  # ten minutes after: still its completion
    ],
)
def test_an_order_whose_rows_straddle_a_bucket_edge_is_one_submission_and_one_fill(entry: str, fill: str) -> None:
    """The bot logs an order's entry row, then its fill action a few seconds later: the action counts in its
    submission's day and bucket, so the symbol shows one submission and one fill (it showed two fills, a fill rate
    of 2.0, when the two rows fell on either side of a bucket's edge). The learner's rows say the same."""
    orders = [
        order(f"{DAY}T{entry}+00:00", symbol="AMD", side="buy", qty=10, price=100.0, order_type="limit",
              status="filled"),
        order(f"{DAY}T{fill}+00:00", action="submit_limit_filled", symbol="AMD", side="buy", filled_qty=10,
              filled_avg_price=100.02),
    ]  # fmt: skip
    summary = execution_summary(aggregate_orders(orders), {})
    (amd,) = summary["symbols"]
    assert (amd["submissions"], amd["fills"], amd["fill_rate"]) == (1, 1, 1.0)
    assert [(row["bucket"], row["submissions"], row["fills"]) for row in summary["groups"]] == [("open", 1, 1)]
    learner = ExecutionLearner(ExecutionParams())
    rows = [row for record in orders for row in learner.apply("orders", record).rows]
    assert aggregates_from_rows({key: (key, at, body) for key, at, body in rows}.values()) == aggregate_orders(orders)


def test_an_action_long_after_its_key_s_last_entry_row_counts_where_it_happened() -> None:
    """An entry-side action more than ten minutes after the last entry row of its strategy, symbol and side is not
    taken for that submission's completion: it counts in its own bucket."""
    orders = [
        order(f"{DAY}T14:40:00+00:00", symbol="AMD", side="buy", qty=10, price=100.0, order_type="limit",
              status="submitted"),
        order(f"{DAY}T15:20:00+00:00", action="limit_not_filled", symbol="AMD", side="buy", filled_qty=0),
    ]  # fmt: skip
    groups = aggregate_orders(orders)
    assert sorted(key[5] for key in groups) == ["midday", "open"]


def test_fees_the_bot_logs_are_summed_per_group_symbol_and_bucket() -> None:
    """`fee_amount` (dollars, optional) is summed with how many rows carried it; a row written before fees were
    counted reads as none."""
    orders = [
        order(f"{DAY}T14:35:00+00:00", symbol="AMD", side="buy", qty=10, price=100.0, order_type="limit",
              status="filled", fee_amount=0.35),
        order(f"{DAY}T18:00:00+00:00", action="close_position", symbol="AMD", side="sell", filled_qty=10,
              filled_avg_price=101.0, fee_amount=0.4),
        order(f"{DAY}T18:05:00+00:00", action="close_position", symbol="MSFT", side="sell", filled_qty=1,
              filled_avg_price=400.0),
    ]  # fmt: skip
    summary = execution_summary(aggregate_orders(orders), {})
    symbols = {row["symbol"]: row for row in summary["symbols"]}
    assert (symbols["AMD"]["fee_count"], symbols["AMD"]["fees_usd"]) == (2, 0.75)
    assert (symbols["MSFT"]["fee_count"], symbols["MSFT"]["fees_usd"]) == (0, 0.0)
    assert sum(row["fees_usd"] for row in summary["buckets"]) == pytest.approx(0.75)
    old_row = {name: value for name, value in Counters().to_json().items() if not name.startswith("fee")}
    assert Counters.from_json(old_row) == Counters()


def test_one_order_dated_far_ahead_does_not_keep_every_later_group_in_memory() -> None:
    """An order dated years ahead (a garbled timestamp) moves the watermark for good; the days the orders after it
    move through are let go all the same, so memory holds a few days' groups (it held every group from then on,
    each commit writing them all again), and the rows still add up to the direct aggregate."""
    orders = [order("2049-01-04T15:00:00+00:00", symbol="ZZZ", side="buy", qty=1, price=1.0, status="filled")]
    start = date(2026, 3, 2)
    for offset in range(30):
        day = (start + timedelta(days=offset)).isoformat()
        for index in range(5):
            orders.append(order(f"{day}T15:0{index}:00+00:00", symbol=f"S{index}", side="buy", qty=1, price=10.0,
                                status="filled"))  # fmt: skip
    learner = ExecutionLearner(ExecutionParams())
    rows: dict[str, tuple[str, int, bytes]] = {}
    for position, record in enumerate(orders):
        if position == 60:
            learner = ExecutionLearner(ExecutionParams(), learner.state())  # a restart on the way
        for key, at, body in learner.apply("orders", record).rows:
            rows[key] = (key, at, body)
    assert learner.open_group_count <= 5 * (ExecutionParams().retain_days + 2)
    assert aggregates_from_rows(rows.values()) == aggregate_orders(orders)


def test_a_computed_slippage_beyond_the_bound_of_logged_figures_counts_as_none() -> None:
    """A decision price of 1e-300 against a fill of 1e9 computed an infinite slippage: summed into its group, written
    as null and read back as None, every report of its day failed, and the next order of the group stopped the
    learner. It counts as no slippage (as a row without a price does), and its group's row reads back whole; a
    row holding a null is refused with a clear error."""
    extreme = order(f"{DAY}T16:00:00+00:00", symbol="XTRM", qty=1, side="buy", price=1e-300, fill_price=1e9,
                    order_type="market", status="filled")  # fmt: skip
    plain = order(f"{DAY}T16:01:00+00:00", symbol="XTRM", qty=1, side="buy", price=100.0, fill_price=100.1,
                  order_type="market", status="filled")  # fmt: skip
    learner = ExecutionLearner(ExecutionParams())
    rows = [row for record in (extreme, plain) for row in learner.apply("orders", record).rows]
    counters = GroupRow(rows[-1][2]).whole()
    assert counters.slippage_computed_count == 1 and counters.slippage_computed_bps_sum == pytest.approx(10.0)
    assert b"null" not in rows[-1][2]
    summary = execution_summary(aggregates_from_rows(rows), {})
    assert [row["slippage_count"] for row in summary["symbols"]] == [1]
    with pytest.raises(ValueError, match="slippage_computed_bps_sum"):
        Counters.from_json(Counters().to_json() | {"slippage_computed_bps_sum": None})


def test_a_figure_that_rounds_to_zero_is_written_as_zero_not_minus_zero() -> None:
    """Slippages whose mean is a tiny negative number round to zero, written `0.0` (the reports' own rule), not
    `-0.0`, in the JSON and the Markdown."""
    orders = [
        order(f"{DAY}T14:35:{second:02d}+00:00", action="submit_limit_filled", symbol="LLY", side="buy",
              filled_qty=1, filled_avg_price=100.0, slippage_bps=bps)
        for second, bps in ((1, 1e-9), (2, -3e-9))
    ]  # fmt: skip
    summary = execution_summary(aggregate_orders(orders), {})
    (symbol,) = summary["symbols"]
    assert math.copysign(1.0, symbol["slippage_bps"]) == 1.0 and symbol["slippage_bps"] == 0.0
    assert b"-0.0" not in orjson.dumps(summary)
    assert "-0.00" not in render_execution(summary)
