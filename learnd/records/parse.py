"""Lines become records: a decoded JSON object from a source turns into one typed, immutable record.

Pure: no IO, no clock. Event time comes from the row itself. Shapes are FORMATS.md's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, Final

from learnd.config import SourceKind
from learnd.errors import RecordError
from learnd.records.components import COMPONENT_ALIASES, COMPONENT_METADATA_KEYS, exit_components_of
from learnd.values import value_class

DEFAULT_STRATEGY: Final = "equity"
UNKNOWN_REGIME: Final = "unknown"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_EPOCH_S: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_EPOCH_S: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
# No price, quantity, P&L or score the bot writes comes near this; beyond it a number is garbage, and squaring it in
# the regression would overflow.
MAX_FIELD_MAGNITUDE: Final = 1e9

# One lookup per component key on the hot path (three quarters of all lines are signals): the canonical name
# (canonical_component is a lookup in COMPONENT_ALIASES), or None for a metadata key, which wins over an alias.
_COMPONENT_NAMES: Final[dict[str, str | None]] = {
    **COMPONENT_ALIASES,
    **dict.fromkeys(COMPONENT_METADATA_KEYS),
}
_UNKNOWN_KEY: Final = ""
_NUMBER_TYPES: Final = (float, int)  # matched by exact type: a bool (an int subclass) is no number here
_FLOAT_ONLY: Final = frozenset({float})


@value_class
class TradeOutcome:
    """A closed or partially closed trade (attribution `close_` / `scale_` row): the entry learner's outcome."""

    key: str
    strategy: str
    symbol: str
    regime: str
    event_us: int
    entry_us: int | None
    pnl_pct: float
    pnl_usd: float
    weight: float
    components: tuple[tuple[str, float], ...]
    unknown_components: tuple[str, ...]
    entry_score: float | None
    hold_minutes: float | None
    close_reason: str | None
    side: str | None
    is_partial: bool


@value_class
class TradeEntry:
    """A trade entry (attribution `open_` row). Never an outcome."""

    key: str
    strategy: str
    symbol: str
    regime: str
    event_us: int
    direction: str | None
    entry_score: float | None
    components: tuple[tuple[str, float], ...]
    unknown_components: tuple[str, ...]
    # context.entry_ts: what a close row names its entry by (FORMATS.md: join on symbol + context.entry_ts); None
    # when the row does not carry it.
    entry_us: int | None = None


@value_class
class ExitOutcome:
    """An exit outcome from the exit source: `attribution_logged`, `scale_out_attribution_logged` or the rich shape."""

    key: str
    strategy: str
    symbol: str
    regime: str
    event_us: int
    pnl_pct: float
    pnl_usd: float | None
    weight: float
    hold_minutes: float | None
    reason: str
    exit_components: tuple[str, ...]


@value_class
class SignalRecord:
    """One signal candidate of one cycle."""

    strategy: str
    symbol: str
    direction: str | None
    event_us: int
    composite_score: float | None
    components: tuple[tuple[str, float], ...]
    unknown_components: tuple[str, ...]
    gate_passed: bool | None
    origin: str | None


@value_class
class OrderRecord:
    """One order event: an entry row (`action` is None) or an action row."""

    strategy: str
    symbol: str
    event_us: int
    action: str | None
    side: str | None
    qty: float | None
    order_type: str | None
    status: str | None
    price: float | None
    fill_price: float | None
    filled_qty: float | None
    slippage_bps: float | None
    fee_amount: float | None
    reason: str | None


@value_class
class Ignored:
    """A valid row that carries nothing to learn; `kind` says why (audit reports ignored lines by kind)."""

    kind: str


Record = TradeOutcome | TradeEntry | ExitOutcome | SignalRecord | OrderRecord | Ignored

EXIT_OUTCOME_MESSAGES: Final = frozenset({"attribution_logged", "scale_out_attribution_logged"})


def parse_record(kind: SourceKind, row: dict[str, Any]) -> Record:
    """Turn one decoded JSON object from a source of `kind` into a record; raises RecordError when unusable."""
    if kind == "attribution":
        return _parse_attribution(row)
    if kind == "exit":
        return _parse_exit(row)
    if kind == "signals":
        return _parse_signal(row)
    return _parse_order(row)


def parse_event_us(value: object, field: str = "ts") -> int:
    """Microseconds since the Unix epoch (UTC) of an ISO-8601 timestamp with offset, or epoch seconds."""
    # The bot writes ISO stamps: test for them first (this runs on every line).
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise RecordError("bad_timestamp", f"{field}={value[:64]!r}") from None
        if moment.tzinfo is None:
            # The bot writes offsets; a naive stamp is taken as UTC rather than the host's zone.
            moment = moment.replace(tzinfo=UTC)
        delta = moment - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, bool):
        raise RecordError("bad_timestamp", f"{field}={value!r}")
    if isinstance(value, int | float):
        # Epoch seconds a calendar date can express (years 1-9999), like an ISO stamp; anything else is garbage
        # that would overflow later (microseconds past 64 bits).
        if not (math.isfinite(value) and _MIN_EPOCH_S <= value <= _MAX_EPOCH_S):
            raise RecordError("bad_timestamp", f"{field}={value!r:.40}")
        return round(value * 1_000_000)
    raise RecordError("missing_timestamp" if value is None else "bad_timestamp", field)


def fold_regime(label: object) -> str:
    """A regime label, case-folded; missing or blank means `unknown`."""
    if isinstance(label, str) and label.strip():
        return label.strip().casefold()
    return UNKNOWN_REGIME


def _parse_attribution(row: dict[str, Any]) -> Record:
    trade_id = _required_str(row, "trade_id")
    context = row.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise RecordError("bad_field", "context is not an object")
    prefix = trade_id.split("_", 1)[0]
    strategy = _strategy(row)
    symbol = _required_str(row, "symbol")
    event_us = parse_event_us(row.get("ts"))
    regime = fold_regime(row.get("market_regime", context.get("market_regime")))
    components, unknown = trade_components_of(context.get("components"))
    if prefix == "open":
        entry_ts = context.get("entry_ts")
        return TradeEntry(
            key=trade_id,
            strategy=strategy,
            symbol=symbol,
            regime=regime,
            event_us=event_us,
            direction=_optional_str(context, "direction"),
            entry_score=_optional_float(context, "entry_score"),
            components=components,
            unknown_components=unknown,
            entry_us=parse_event_us(entry_ts, "context.entry_ts") if entry_ts is not None else None,
        )
    if prefix not in ("close", "scale"):
        return Ignored(f"attribution_{prefix}_row")
    is_partial = prefix == "scale"
    if is_partial:
        fraction = _required_float(context, "fraction")
        if not 0.0 < fraction <= 1.0:
            raise RecordError("bad_field", f"context.fraction={fraction!r} outside (0, 1]")
        pnl_pct = _optional_float(context, "pnl_pct")
        if pnl_pct is None:
            # Unscaled from the scaled figure: a tiny fraction can blow it past any sane size, so check again.
            pnl_pct = _as_float(_required_float(row, "pnl_pct") / fraction, "pnl_pct / context.fraction")
    else:
        fraction = 1.0
        pnl_pct = _required_float(row, "pnl_pct")
    entry_ts = context.get("entry_ts")
    return TradeOutcome(
        key=trade_id,
        strategy=strategy,
        symbol=symbol,
        regime=regime,
        event_us=event_us,
        entry_us=parse_event_us(entry_ts, "context.entry_ts") if entry_ts is not None else None,
        pnl_pct=pnl_pct,
        pnl_usd=_optional_float(row, "pnl_usd") or 0.0,
        weight=fraction,
        components=components,
        unknown_components=unknown,
        entry_score=_optional_float(row, "entry_score"),
        hold_minutes=_optional_float(row, "hold_minutes"),
        close_reason=_optional_str(context, "close_reason"),
        side=_optional_str(context, "position_side"),
        is_partial=is_partial,
    )


def _parse_exit(row: dict[str, Any]) -> Record:
    if "exit_reason" in row and "msg" not in row:
        return _parse_rich_exit(row)
    message = row.get("msg")
    if not isinstance(message, str):
        raise RecordError("missing_field", "msg")
    if message not in EXIT_OUTCOME_MESSAGES:
        return Ignored(f"exit_event:{message[:64]}")
    symbol = _required_str(row, "symbol")
    ts = _required_str(row, "ts")
    reason = _optional_str(row, "reason") or "unknown"
    weight = 1.0
    pnl_pct = _required_float(row, "pnl_pct")
    if message == "scale_out_attribution_logged":
        weight = _required_float(row, "fraction")
        if not 0.0 < weight <= 1.0:
            raise RecordError("bad_field", f"fraction={weight!r} outside (0, 1]")
    return ExitOutcome(
        key=f"{message}|{symbol}|{ts}",
        strategy=_strategy(row),
        symbol=symbol,
        regime=fold_regime(row.get("market_regime")),
        event_us=parse_event_us(ts),
        pnl_pct=pnl_pct,
        pnl_usd=_optional_float(row, "pnl_usd"),
        weight=weight,
        hold_minutes=_optional_float(row, "hold_min"),
        reason=reason,
        exit_components=exit_components_of(reason),
    )


def _parse_rich_exit(row: dict[str, Any]) -> Record:
    symbol = _required_str(row, "symbol")
    ts = _required_str(row, "timestamp")
    reason = _required_str(row, "exit_reason")
    return ExitOutcome(
        key=f"exit_attribution|{symbol}|{row.get('entry_timestamp')}|{ts}",
        strategy=_strategy(row),
        symbol=symbol,
        regime=fold_regime(row.get("entry_regime")),
        event_us=parse_event_us(ts, "timestamp"),
        pnl_pct=_required_float(row, "pnl_pct"),
        pnl_usd=_optional_float(row, "pnl"),
        weight=1.0,
        hold_minutes=_optional_float(row, "time_in_trade_minutes"),
        reason=reason,
        exit_components=exit_components_of(reason),
    )


def _parse_signal(row: dict[str, Any]) -> Record:
    cluster = row.get("cluster")
    if not isinstance(cluster, dict):
        if row.get("type") not in (None, "signal"):
            return Ignored(f"signal_{str(row.get('type'))[:32]}_row")
        raise RecordError("missing_field", "cluster")
    meta = cluster.get("composite_meta")
    components, unknown = components_of(meta.get("components") if isinstance(meta, dict) else None)
    gate = cluster.get("gate_passed")
    return SignalRecord(
        strategy=_strategy(row),
        symbol=_required_str(cluster, "ticker"),
        direction=_optional_str(cluster, "direction"),
        event_us=parse_event_us(row.get("ts")),
        composite_score=_optional_float(cluster, "composite_score"),
        components=components,
        unknown_components=unknown,
        gate_passed=gate if isinstance(gate, bool) else None,
        origin=_optional_str(cluster, "source"),
    )


def _parse_order(row: dict[str, Any]) -> Record:
    symbol = row.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        return Ignored("order_without_symbol")
    fill_price = _optional_float(row, "fill_price")
    if fill_price is None:
        fill_price = _optional_float(row, "filled_avg_price")
    return OrderRecord(
        strategy=_strategy(row),
        symbol=symbol,
        event_us=parse_event_us(row.get("ts")),
        action=_optional_str(row, "action"),
        side=_optional_str(row, "side"),
        qty=_optional_float(row, "qty"),
        order_type=_optional_str(row, "order_type"),
        status=_optional_str(row, "status"),
        price=_optional_float(row, "price"),
        fill_price=fill_price,
        filled_qty=_optional_float(row, "filled_qty"),
        slippage_bps=_optional_float(row, "slippage_bps"),
        fee_amount=_optional_float(row, "fee_amount"),
        reason=_optional_str(row, "reason"),
    )


def components_of(raw: object) -> tuple[tuple[tuple[str, float], ...], tuple[str, ...]]:
    """Canonical (name, contribution) pairs, sorted, legacy aliases summed; plus the unknown keys seen (a row's
    `components` object; RecordError for a value that is not a number in range)."""
    if raw is None:
        return (), ()
    if type(raw) is not dict:
        raise RecordError("bad_field", "components is not an object")
    # The bot writes the same keys line after line: resolve them once per key layout, then take the values with
    # C-level calls when they are the usual in-range floats. Anything else takes the general path below.
    plan = _component_plan(tuple(raw))
    if plan is not None:
        names, pick, unknown = plan
        if not names:
            return (), unknown
        values = pick(tuple(raw.values()))
        # min and max may step over a NaN that is not first; a NaN sum may not (JSON has no NaN, but this is the
        # gate that keeps one out of the models).
        if (
            _FLOAT_ONLY.issuperset(map(type, values))
            and min(values) >= -MAX_FIELD_MAGNITUDE
            and max(values) <= MAX_FIELD_MAGNITUDE
            and not math.isnan(sum(values))
        ):
            return tuple(zip(names, values, strict=True)), unknown
    return _components_in_general(raw)


def trade_components_of(raw: object) -> tuple[tuple[tuple[str, float], ...], tuple[str, ...]]:
    """`components_of` for an attribution row. A trade's key layout is its own (the bot logs the components that
    fired for it, in its order) and recurs only at the trade's close, so planning for the layout costs more than
    it saves: the values are taken key by key."""
    if raw is None:
        return (), ()
    if type(raw) is not dict:
        raise RecordError("bad_field", "components is not an object")
    return _components_in_general(raw)


def checked_components_of(raw: dict[str, float]) -> tuple[tuple[tuple[str, float], ...], tuple[str, ...]]:
    """What `components_of` returns for a components object whose values are all floats already known to be within
    MAX_FIELD_MAGNITUDE (a typed decoder checked them): the same pairs and unknown keys, without checking again."""
    plan = _component_plan(tuple(raw))
    if plan is None:
        return _components_in_general(raw)
    names, pick, unknown = plan
    if not names:
        return (), unknown
    return tuple(zip(names, pick(tuple(raw.values())), strict=True)), unknown


def _components_in_general(raw: dict[str, Any]) -> tuple[tuple[tuple[str, float], ...], tuple[str, ...]]:
    totals: dict[str, float] = {}
    unknown: list[str] = []
    names = _COMPONENT_NAMES
    limit = MAX_FIELD_MAGNITUDE
    for key, value in raw.items():
        name = names.get(key, _UNKNOWN_KEY)
        if name is None:
            continue
        if name == _UNKNOWN_KEY:
            unknown.append(key[:64])
            continue
        if value is None:
            continue  # The bot writes NaN as null: the contribution is unknown, not zero evidence.
        # The common case inline, as _as_float would take it: the chained comparison is False for NaN and
        # infinities and exact for ints. Anything else (bool, NaN, out of range) goes through _as_float for its
        # reason.
        if type(value) in _NUMBER_TYPES and -limit <= value <= limit:
            number = float(value)
        else:
            number = _as_float(value, f"components.{key}")
        previous = totals.get(name)
        totals[name] = number if previous is None else previous + number
    return tuple(sorted(totals.items())), tuple(sorted(unknown)) if unknown else ()


_ComponentPlan = tuple[tuple[str, ...], Callable[[tuple[Any, ...]], tuple[Any, ...]], tuple[str, ...]]


@lru_cache(maxsize=512)
def _component_plan(keys: tuple[str, ...]) -> _ComponentPlan | None:
    """For one layout of component keys: the canonical names in sorted order, a function picking their values (in
    that order) out of the values in key order, and the unknown keys; None when two keys name one component (their
    contributions are summed by the general path)."""
    positions: dict[str, int] = {}
    unknown: list[str] = []
    for position, key in enumerate(keys):
        name = _COMPONENT_NAMES.get(key, _UNKNOWN_KEY)
        if name is None:
            continue
        if name == _UNKNOWN_KEY:
            unknown.append(key[:64])
        elif name in positions:
            return None
        else:
            positions[name] = position
    names = tuple(sorted(positions))
    indices = [positions[name] for name in names]

    def pick(values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(values[index] for index in indices)

    # itemgetter of two or more indices returns a tuple from C; of one, the bare value.
    picker = itemgetter(*indices) if len(indices) > 1 else pick
    return names, picker, tuple(sorted(unknown))


def _strategy(row: dict[str, Any]) -> str:
    """The row's strategy: `strategy_id`, or the default when it is missing, null or blank. Any other value is
    not a strategy this row can be filed under (strategies must not be mixed silently): bad_field."""
    value = row.get("strategy_id")
    if value is None:
        return DEFAULT_STRATEGY
    if not isinstance(value, str):
        raise RecordError("bad_field", f"strategy_id is {type(value).__name__}, not text")
    return value.strip() or DEFAULT_STRATEGY


def _required_str(row: dict[str, Any], field: str) -> str:
    value = row.get(field)
    if not isinstance(value, str) or not value:
        raise RecordError("missing_field" if value is None else "bad_field", field)
    return value


def _optional_str(row: dict[str, Any], field: str) -> str | None:
    value = row.get(field)
    return value if isinstance(value, str) else None


def _required_float(row: dict[str, Any], field: str) -> float:
    value = row.get(field)
    if value is None:
        raise RecordError("missing_field", field)
    return _as_float(value, field)


def _optional_float(row: dict[str, Any], field: str) -> float | None:
    value = row.get(field)
    if value is None:
        return None
    return _as_float(value, field)


def _as_float(value: object, field: str) -> float:
    if (type(value) is float or type(value) is int) and -MAX_FIELD_MAGNITUDE <= value <= MAX_FIELD_MAGNITUDE:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError("bad_field", f"{field} is not a number")
    try:
        result = float(value)
    except OverflowError:
        raise RecordError("bad_field", f"{field} is out of range") from None
    if not math.isfinite(result):
        raise RecordError("bad_field", f"{field} is not finite")
    if abs(result) > MAX_FIELD_MAGNITUDE:
        raise RecordError("bad_field", f"{field}={result:.6g} is beyond {MAX_FIELD_MAGNITUDE:.0e}")
    return result
