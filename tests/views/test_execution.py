"""views.execution: execution quality per group and symbol, from the execution learner's rows and the ledger's
closed trades, on the hand-made trading day of tests/bot_rows.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnd.errors import StateError
from learnd.service.backfill import run_backfill
from learnd.views.execution import execution_document
from tests.bot_rows import CLOSED, write_trading_day
from tests.conftest import build_settings, home_owned


@pytest.fixture
def home_with_orders(home: Path) -> Path:
    write_trading_day(home)
    run_backfill(build_settings(home), progress="none")
    return home


def test_groups_count_fills_fallbacks_and_slippage(home_with_orders: Path) -> None:
    """S00's limit buy filled on submit 5 bps above its price; S01's was not filled and fell back to a market
    order 20 bps above; both at 11:00 New York (midday), both limit buys."""
    groups = execution_document(build_settings(home_with_orders))["groups"]
    assert [(row["symbol"], row["day"], row["order_type"], row["side"], row["bucket"]) for row in groups] == [
        ("S00", "2026-03-02", "limit", "buy", "midday"),
        ("S01", "2026-03-02", "limit", "buy", "midday"),
    ]
    s00, s01 = groups
    assert (s00["submissions"], s00["fills"], s00["limit_not_filled"], s00["market_fallback"]) == (1, 1, 0, 0)
    assert (s00["slippage_bps"], s00["slippage_source"], s00["notional_usd"]) == (5.0, "computed", 1000.5)
    assert (s01["submissions"], s01["fills"], s01["limit_not_filled"], s01["market_fallback"]) == (1, 1, 1, 1)
    assert (s01["limit_not_filled_rate"], s01["market_fallback_rate"], s01["slippage_bps"]) == (1.0, 1.0, 20.0)


def test_symbols_join_the_ledger_s_closed_trades(home_with_orders: Path) -> None:
    """Per symbol: its closed trades' count and mean P&L from the ledger, and the round-trip cost (twice the
    slippage, in percent)."""
    symbols = {row["symbol"]: row for row in execution_document(build_settings(home_with_orders))["symbols"]}
    assert symbols.keys() == {"S00", "S01"}
    for symbol, cost in (("S00", 0.1), ("S01", 0.4)):
        assert (symbols[symbol]["trades"], symbols[symbol]["mean_pnl_pct"]) == (1, CLOSED[symbol])
        assert symbols[symbol]["round_trip_cost_pct"] == cost


def test_a_symbol_whose_cost_eats_its_pnl_is_flagged(home_with_orders: Path) -> None:
    """With one fill and one trade enough, S01's 0.4 % cost against 0.5 % mean P&L (a share of 0.8) is flagged;
    S00's 0.1 % against 1.0 % is not."""
    settings = build_settings(home_with_orders, overrides={"execution.min_fills": 1, "execution.min_trades": 1})
    document = execution_document(settings)
    assert document["flagged"] == [{"strategy": "equity", "symbol": "S01", "reason": "cost_share"}]
    assert {row["symbol"]: row["cost_share"] for row in document["symbols"]} == {"S00": 0.1, "S01": 0.8}
    assert document["params"] == {
        "tz": "America/New_York",
        "edge_minutes": 30,
        "cost_share_threshold": 0.25,
        "min_fills": 1,
        "min_trades": 1,
    }


def test_with_default_minimums_one_fill_flags_nothing(home_with_orders: Path) -> None:
    """Five fills and five trades are needed before a symbol is judged."""
    document = execution_document(build_settings(home_with_orders))
    assert document["flagged"] == []
    assert all(row["cost_share"] is None for row in document["symbols"])


def test_the_view_reads_while_a_daemon_owns_the_home(home_with_orders: Path) -> None:
    """Read-only: it answers the same while the home lock is held."""
    settings = build_settings(home_with_orders)
    before = execution_document(settings)
    with home_owned(settings):
        assert execution_document(settings) == before


def test_without_a_store_the_view_is_a_state_error(home: Path) -> None:
    """Nothing learned yet: StateError saying so."""
    with pytest.raises(StateError, match="no store yet"):
        execution_document(build_settings(home))
