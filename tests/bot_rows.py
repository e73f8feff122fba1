"""Rows as the bot writes them (FORMATS.md's shapes, minimal fields), for the hand-made homes of the tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

Row = dict[str, Any]


def close_row(
    ts: str,
    symbol: str,
    pnl_pct: float,
    *,
    entry_ts: str | None = None,
    components: dict[str, float] | None = None,
    regime: str = "mixed",
    reason: str = "trail_stop",
) -> Row:
    """A closed trade (`close_<SYM>_<iso>`): the learning outcome."""
    context: Row = {"components": components or {"flow": 1.0, "dark_pool": 0.3}, "close_reason": reason}
    if entry_ts is not None:
        context["entry_ts"] = entry_ts
    return {
        "ts": ts,
        "type": "attribution",
        "trade_id": f"close_{symbol}_{ts}",
        "symbol": symbol,
        "pnl_usd": pnl_pct * 10,
        "pnl_pct": pnl_pct,
        "market_regime": regime,
        "context": context,
        "strategy_id": "equity",
    }


def open_row(ts: str, symbol: str, *, direction: str = "bullish", components: dict[str, float] | None = None) -> Row:
    """A trade entry (`open_<SYM>_<iso>`), entered at `ts`."""
    context = {"direction": direction, "market_regime": "mixed", "components": components or {"flow": 1.0}}
    return {
        "ts": ts,
        "type": "attribution",
        "trade_id": f"open_{symbol}_{ts}",
        "symbol": symbol,
        "pnl_usd": 0,
        "context": {**context, "entry_ts": ts},
        "strategy_id": "equity",
    }


def exit_row(ts: str, symbol: str, pnl_pct: float, reason: str = "trail_stop+signal_decay(0.41)") -> Row:
    """An exit outcome of logs/exit.jsonl (`attribution_logged`)."""
    return {
        "ts": ts,
        "msg": "attribution_logged",
        "symbol": symbol,
        "pnl_usd": pnl_pct * 10,
        "pnl_pct": pnl_pct,
        "hold_min": 30.0,
        "reason": reason,
        "strategy_id": "equity",
    }


def signal_row(ts: str, symbol: str, components: dict[str, float], *, direction: str = "bullish") -> Row:
    """One signal candidate of one cycle."""
    cluster = {
        "ticker": symbol,
        "direction": direction,
        "composite_score": sum(components.values()),
        "composite_meta": {"score": sum(components.values()), "components": components},
        "gate_passed": True,
        "source": "composite_v3",
        "count": 1,
    }
    return {"ts": ts, "type": "signal", "cluster": cluster, "strategy_id": "equity"}


def order_row(ts: str, symbol: str, **fields: Any) -> Row:
    """An order event: an entry row by default, an action row when `action` is given."""
    return {"ts": ts, "type": "order", "symbol": symbol, "strategy_id": "equity", **fields}


def line(row: Row) -> bytes:
    return orjson.dumps(row) + b"\n"


def append(path: Path, rows: Iterable[Row]) -> None:
    """Append rows as JSON lines (creating the file and its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        handle.write(b"".join(line(row) for row in rows))


TRADING_DAY = "2026-03-02"
CONVERTED = tuple(f"S{index:02d}" for index in range(10))
UNCONVERTED = tuple(f"S{index:02d}" for index in range(10, 20))
CLOSED = {"S00": 1.0, "S01": 0.5, "S02": -0.2}


def write_trading_day(home: Path) -> None:
    """One hand-made trading day, Monday 2026-03-02 (UTC times, 10:00-12:10 in New York):

    - signals: one episode per symbol S00-S19 (two candidates 30 s apart, S00 at 15:00, S01 at 15:01, ...);
      S00-S09 carry options_flow, S10-S19 dark_pool;
    - attribution: S00-S09 entered 45 s after their first candidate (the episodes that became trades), and
      closes of S00, S01, S02 at 17:00-17:02 with P&L 1.0, 0.5 and -0.2 %;
    - orders: S00's limit buy filled on submit at 100.05 for 100.00 (5 bps); S01's limit buy not filled, then
      a market fallback filled at 50.10 for 50.00 (20 bps).
    """
    logs = home / "logs"
    signals, entries = [], []
    for index, symbol in enumerate(CONVERTED + UNCONVERTED):
        components = {"flow": 1.0} if symbol in CONVERTED else {"dark_pool": 1.0}
        signals += [
            signal_row(f"{TRADING_DAY}T15:{index:02d}:00+00:00", symbol, components),
            signal_row(f"{TRADING_DAY}T15:{index:02d}:30+00:00", symbol, components),
        ]
        if symbol in CONVERTED:
            entries.append(open_row(f"{TRADING_DAY}T15:{index:02d}:45+00:00", symbol))
    closes = [
        close_row(
            f"{TRADING_DAY}T17:{index:02d}:00+00:00", symbol, pnl, entry_ts=f"{TRADING_DAY}T15:{index:02d}:45+00:00"
        )
        for index, (symbol, pnl) in enumerate(CLOSED.items())
    ]
    append(logs / "signals.jsonl", signals)
    append(logs / "attribution.jsonl", entries + closes)
    append(
        logs / "orders.jsonl",
        [
            order_row(
                f"{TRADING_DAY}T16:00:00+00:00",
                "S00",
                qty=10,
                side="buy",
                order_type="limit",
                price=100.0,
                fill_price=100.05,
                status="filled",
            ),
            order_row(
                f"{TRADING_DAY}T16:01:00+00:00",
                "S01",
                qty=5,
                side="buy",
                order_type="limit",
                price=50.0,
                status="submitted",
            ),
            order_row(f"{TRADING_DAY}T16:02:00+00:00", "S01", action="limit_not_filled", side="buy"),
            order_row(
                f"{TRADING_DAY}T16:02:01+00:00",
                "S01",
                action="submit_market_fallback",
                side="buy",
                price=50.0,
                filled_qty=5,
                filled_avg_price=50.1,
            ),
        ],
    )
