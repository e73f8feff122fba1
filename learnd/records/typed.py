"""Typed decoding of the usual lines: a line's bytes decoded straight into structs by msgspec and made into the
record parse_record would make. Signal candidates (three quarters of all lines) at a third of the cost; attribution
and exit rows, the trade learner's lines, at about half.

Only a plain line takes this path: ASCII (msgspec does not check the encoding of what it skips), every field of
the type the contract gives. Anything else returns None, and the caller decodes the line the general way, which
names the reason to quarantine it. Component contributions are range-checked by msgspec as it decodes, so the
usual line's components are built without a second look, and once per distinct text of them (the bot repeats
it). Timestamps stay text and go through parse_event_us (msgspec rounds fractions of seven digits and more).
Pure: the remembered components are a function of their text.

Nor does a line with a number that may lie beyond a double's range take it, wherever the number is: orjson refuses
such a number anywhere in the line (the general path quarantines it), while msgspec takes one in a field it skips
and an integer in a field decoded as anything.

Attribution and exit rows take it only when every field they carry is one the bot writes (forbid_unknown_fields): a
field msgspec skipped could hold a number orjson refuses (one beyond a double's range), and the general path would
quarantine the line. Fields the record does not use are decoded as anything, which refuses such a number too. These
rows return None for anything the general path might refuse or read otherwise, never a refusal of their own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar

import msgspec
import orjson

from learnd.errors import RecordError
from learnd.records.components import exit_components_of
from learnd.records.parse import (
    DEFAULT_STRATEGY,
    EXIT_OUTCOME_MESSAGES,
    MAX_FIELD_MAGNITUDE,
    ExitOutcome,
    Ignored,
    Record,
    SignalRecord,
    TradeEntry,
    TradeOutcome,
    checked_components_of,
    components_of,
    fold_regime,
    parse_event_us,
    trade_components_of,
)

# A contribution taken without a second look: a number in range (JSON has no NaN; an integer becomes the float
# parse_record would make of it, exactly, being in range). Components with any other (a null, the bot's NaN, which
# parse_record skips; a number out of range, perhaps under a key repeated later in the object) are decoded again
# taking any number or null, and checked as parse_record checks them.
_Contribution = Annotated[float, msgspec.Meta(ge=-MAX_FIELD_MAGNITUDE, le=MAX_FIELD_MAGNITUDE)]
_Components = tuple[tuple[tuple[str, float], ...], tuple[str, ...]]


class _Meta(msgspec.Struct):
    # Kept as its JSON text: the bot repeats a cluster's components candidate after candidate, and the same text
    # makes the same components (see _components_of_text).
    components: msgspec.Raw = msgspec.Raw(b"null")


class _Cluster(msgspec.Struct):
    ticker: str
    direction: str | None = None
    composite_score: float | None = None
    composite_meta: _Meta | None = None
    gate_passed: bool | None = None
    source: str | None = None


class _SignalRow(msgspec.Struct):
    ts: str
    cluster: _Cluster
    strategy_id: str | None = None


_SIGNAL: Final = msgspec.json.Decoder(_SignalRow)
# A row struct a decoder makes (_SignalRow, _TradeRow, _ExitRow).
_Row = TypeVar("_Row", bound=msgspec.Struct)
_CHECKED: Final = msgspec.json.Decoder(dict[str, _Contribution] | None)
_UNCHECKED: Final = msgspec.json.Decoder(dict[str, float | None] | None)
# The components of recent texts, by text (bytes compare exactly, so -0.0 stays apart from 0.0); the oldest goes
# beyond the bound. About 1.2 kB a text: the 100 MB bench home has 862 distinct texts, and a cluster's run repeats
# one.
_RECENT_COMPONENTS: Final[OrderedDict[bytes, _Components]] = OrderedDict()
_RECENT_COMPONENTS_MAX: Final = 1024


# What may spell a number beyond a double's range (orjson refuses one of 1.8e308 and more): a run of 200 digits, or
# an exponent of three digits or more. Below both, a number stays under 1e299. The bot's lines seldom hold either.
# Looked for in the line's shape, its digits as 0, e and E as e, '+' dropped and the rest as spaces: a translate and
# two substring searches cost about 1 us a signal line, where a regular expression took 9.
_NUMBER_SHAPE: Final = bytes(
    ord("0") if chr(byte) in "0123456789" else ord("e") if chr(byte) in "eE" else ord(" ") for byte in range(256)
)
_LONG_EXPONENT: Final = b"e000"
_LONG_DIGITS: Final = b"0" * 200


def _plain_bytes(raw: bytes) -> bool:
    """True when msgspec reads the line's bytes as orjson does: ASCII, with no number beyond a double's range (a
    line that may hold one is asked of orjson)."""
    if not raw.isascii():
        return False
    shape = raw.translate(_NUMBER_SHAPE, b"+")
    if _LONG_EXPONENT not in shape and _LONG_DIGITS not in shape:
        return True
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


def _decoded_plain(decoder: msgspec.json.Decoder[_Row], raw: bytes) -> _Row | None:
    """The line decoded by `decoder` when it is plain and of the decoder's type; None otherwise (the general path
    then decides, and names what is wrong)."""
    if not _plain_bytes(raw):
        return None
    try:
        return decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        # RecursionError: a line nested deeper than msgspec descends (the general path refuses it by name).
        return None


def signal_record(raw: bytes) -> SignalRecord | None:
    """The record of a plain signal candidate line, exactly as decode_line + parse_record("signals") make it; None
    when the line is anything else (the general path then decides). Raises RecordError as parse_record would for a
    plain line whose values are out of range."""
    row = _decoded_plain(_SIGNAL, raw)
    if row is None:
        return None
    cluster = row.cluster
    if not cluster.ticker:
        return None
    score = cluster.composite_score
    if score is not None and not (-MAX_FIELD_MAGNITUDE <= score <= MAX_FIELD_MAGNITUDE):
        return None  # NaN, infinities and out-of-range numbers: the general path names them
    meta = cluster.composite_meta
    text = bytes(meta.components) if meta is not None else b"null"
    known = _remembered(_RECENT_COMPONENTS, _RECENT_COMPONENTS_MAX, text, _components_of_text)
    if known is None:
        return None
    components, unknown = known
    return SignalRecord(
        _strategy(row.strategy_id),
        cluster.ticker,
        cluster.direction,
        parse_event_us(row.ts),
        score,
        components,
        unknown,
        cluster.gate_passed,
        cluster.source,
    )


def _strategy(strategy_id: str | None) -> str:
    """parse_record's strategy of a row whose `strategy_id` is text or null."""
    return (strategy_id.strip() if strategy_id is not None else "") or DEFAULT_STRATEGY


def _remembered(
    cache: OrderedDict[bytes, _Components], limit: int, text: bytes, make: Callable[[bytes], _Components | None]
) -> _Components | None:
    """make(text), remembered in `cache` by its text (at most `limit` texts, the oldest going first); None, and
    nothing remembered, when make gives None."""
    known = cache.get(text)
    if known is None:
        known = make(text)
        if known is None:
            return None
        if len(cache) >= limit:
            cache.popitem(last=False)
        cache[text] = known
    return known


def _components_of_text(text: bytes) -> _Components | None:
    """The components of a `components` value's JSON text as parse_record makes them; None when the value is not
    an object of numbers and nulls (or null), for the general path to name. Raises RecordError as parse_record
    would for a number out of range."""
    try:
        contributions = _CHECKED.decode(text)
    except msgspec.ValidationError:
        try:
            return components_of(_UNCHECKED.decode(text))
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return None
    except (msgspec.DecodeError, RecursionError):
        return None
    if contributions:
        return checked_components_of(contributions)
    return components_of(contributions)


# A number parse_record takes as it is: in range (an integer becomes the float parse_record makes of it, exactly).
_Number = Annotated[float, msgspec.Meta(ge=-MAX_FIELD_MAGNITUDE, le=MAX_FIELD_MAGNITUDE)]


class _TradeContext(msgspec.Struct, forbid_unknown_fields=True):
    components: msgspec.Raw = msgspec.Raw(b"null")
    # UNSET when absent: the row's own regime wins even when null, the context's only when the row has none.
    market_regime: str | msgspec.UnsetType | None = msgspec.UNSET
    direction: str | None = None
    entry_score: _Number | None = None
    fraction: _Number | None = None
    pnl_pct: _Number | None = None
    entry_ts: str | None = None
    close_reason: str | None = None
    position_side: str | None = None
    # Written by the bot, read by nobody here.
    entry_price: Any = None
    exit_price: Any = None
    qty: Any = None
    notional_usd: Any = None
    size_multiplier: Any = None
    time_of_day: Any = None
    day_of_week: Any = None


class _TradeRow(msgspec.Struct, forbid_unknown_fields=True):
    ts: str
    trade_id: str
    symbol: str
    context: _TradeContext | None = None
    strategy_id: str | None = None
    market_regime: str | msgspec.UnsetType | None = msgspec.UNSET
    pnl_pct: _Number | None = None
    pnl_usd: _Number | None = None
    entry_score: _Number | None = None
    hold_minutes: _Number | None = None
    type: Any = None


class _ExitRow(msgspec.Struct, forbid_unknown_fields=True):
    msg: str
    ts: str | None = None
    symbol: str | None = None
    strategy_id: str | None = None
    market_regime: str | None = None
    reason: str | None = None
    pnl_pct: _Number | None = None
    pnl_usd: _Number | None = None
    hold_min: _Number | None = None
    fraction: _Number | None = None
    # Written by the bot in the events that are not outcomes, read by nobody here.
    positions: Any = None
    ms: Any = None
    stop_price: Any = None
    unrealized_pnl_pct: Any = None
    exit_score: Any = None
    threshold: Any = None
    decision: Any = None


_TRADE: Final = msgspec.json.Decoder(_TradeRow)
_EXIT: Final = msgspec.json.Decoder(_ExitRow)
_NO_CONTEXT: Final = _TradeContext()
# A trade's components by their text: its close (and any scale-out) repeats the text of its open. The oldest goes
# beyond the bound; about 2 kB a text.
_TRADE_COMPONENTS: Final[OrderedDict[bytes, _Components]] = OrderedDict()
_TRADE_COMPONENTS_MAX: Final = 1024


def attribution_record(raw: bytes) -> Record | None:
    """The record of a plain attribution row, exactly as decode_line + parse_record("attribution") make it; None for
    any other line (the general path then decides, and names what is wrong)."""
    row = _decoded_plain(_TRADE, raw)
    if row is None:
        return None
    if not row.trade_id or not row.symbol:
        return None
    context = row.context if row.context is not None else _NO_CONTEXT
    components = _remembered(_TRADE_COMPONENTS, _TRADE_COMPONENTS_MAX, bytes(context.components), _trade_components)
    if components is None:
        return None
    try:
        return _trade_record(row, context, components)
    except RecordError:
        return None


def _trade_record(row: _TradeRow, context: _TradeContext, components: _Components) -> Record | None:
    """_parse_attribution's record for a row of the expected types; None (or RecordError) where it might refuse
    the row or unscale its P&L."""
    trade_id = row.trade_id
    prefix = trade_id.split("_", 1)[0]
    strategy = _strategy(row.strategy_id)
    event_us = parse_event_us(row.ts)
    regime = row.market_regime if row.market_regime is not msgspec.UNSET else context.market_regime
    folded = fold_regime(regime if regime is not msgspec.UNSET else None)
    pairs, unknown = components
    if prefix == "open":
        entry_ts = context.entry_ts
        return TradeEntry(
            trade_id,
            strategy,
            row.symbol,
            folded,
            event_us,
            context.direction,
            context.entry_score,
            pairs,
            unknown,
            parse_event_us(entry_ts, "context.entry_ts") if entry_ts is not None else None,
        )
    if prefix not in ("close", "scale"):
        return Ignored(f"attribution_{prefix}_row")
    is_partial = prefix == "scale"
    if is_partial:
        fraction = context.fraction
        pnl_pct = context.pnl_pct  # without it, unscaled from the row's figure (and checked again): not here
        if fraction is None or not 0.0 < fraction <= 1.0 or pnl_pct is None:
            return None
    else:
        fraction = 1.0
        pnl_pct = row.pnl_pct
        if pnl_pct is None:
            return None
    entry_ts = context.entry_ts
    return TradeOutcome(
        trade_id,
        strategy,
        row.symbol,
        folded,
        event_us,
        parse_event_us(entry_ts, "context.entry_ts") if entry_ts is not None else None,
        pnl_pct,
        row.pnl_usd or 0.0,
        fraction,
        pairs,
        unknown,
        row.entry_score,
        row.hold_minutes,
        context.close_reason,
        context.position_side,
        is_partial,
    )


def _trade_components(text: bytes) -> _Components | None:
    """trade_components_of for a `components` value's JSON text; None when the general path would refuse it."""
    try:
        return trade_components_of(orjson.loads(text))
    except (orjson.JSONDecodeError, RecordError):
        return None


def exit_record(raw: bytes) -> Record | None:
    """The record of a plain exit row (an outcome, or an event that is not one), exactly as decode_line +
    parse_record("exit") make it; None for any other line (the general path then decides)."""
    row = _decoded_plain(_EXIT, raw)
    if row is None:
        return None
    message = row.msg
    if message not in EXIT_OUTCOME_MESSAGES:
        return Ignored(f"exit_event:{message[:64]}")
    symbol = row.symbol
    ts = row.ts
    pnl_pct = row.pnl_pct
    if not symbol or not ts or pnl_pct is None:
        return None
    weight = 1.0
    if message == "scale_out_attribution_logged":
        if row.fraction is None or not 0.0 < row.fraction <= 1.0:
            return None
        weight = row.fraction
    reason = row.reason or "unknown"
    try:
        event_us = parse_event_us(ts)
    except RecordError:
        return None
    return ExitOutcome(
        f"{message}|{symbol}|{ts}",
        _strategy(row.strategy_id),
        symbol,
        fold_regime(row.market_regime),
        event_us,
        pnl_pct,
        row.pnl_usd,
        weight,
        row.hold_min,
        reason,
        exit_components_of(reason),
    )
