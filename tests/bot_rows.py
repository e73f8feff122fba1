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
