"""Typed decoding of the most common line, a signal candidate (three quarters of all lines): its bytes decoded
straight into structs by msgspec and made into the record parse_record would make, at a third of the cost.

Only a plain line takes this path: ASCII (msgspec does not check the encoding of what it skips), every field of
the type the contract gives. Anything else returns None, and the caller decodes the line the general way, which
names the reason to quarantine it. Timestamps stay text and go through parse_event_us (msgspec rounds fractions
of seven digits and more). Pure.
"""

from __future__ import annotations

from typing import Final

import msgspec

from learnd.records.parse import (
    DEFAULT_STRATEGY,
    MAX_FIELD_MAGNITUDE,
    SignalRecord,
    components_of,
    parse_event_us,
)


class _Meta(msgspec.Struct):
    components: dict[str, float | None] | None = None


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


def signal_record(raw: bytes) -> SignalRecord | None:
    """The record of a plain signal candidate line, exactly as decode_line + parse_record("signals") make it; None
    when the line is anything else (the general path then decides). Raises RecordError as parse_record would for a
    plain line whose values are out of range."""
    if not raw.isascii():
        return None
    try:
        row = _SIGNAL.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        # RecursionError: a line nested deeper than msgspec descends (the general path refuses it by name).
        return None
    cluster = row.cluster
    if not cluster.ticker:
        return None
    score = cluster.composite_score
    if score is not None and not (-MAX_FIELD_MAGNITUDE <= score <= MAX_FIELD_MAGNITUDE):
        return None  # NaN, infinities and out-of-range numbers: the general path names them
    meta = cluster.composite_meta
    components, unknown = components_of(meta.components if meta is not None else None)
    strategy = row.strategy_id.strip() if row.strategy_id is not None and row.strategy_id.strip() else DEFAULT_STRATEGY
    return SignalRecord(
        strategy=strategy,
        symbol=cluster.ticker,
        direction=cluster.direction,
        event_us=parse_event_us(row.ts),
        composite_score=score,
        components=components,
        unknown_components=unknown,
        gate_passed=cluster.gate_passed,
        origin=cluster.source,
    )
