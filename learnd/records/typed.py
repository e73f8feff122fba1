"""Typed decoding of the most common line, a signal candidate (three quarters of all lines): its bytes decoded
straight into structs by msgspec and made into the record parse_record would make, at a third of the cost.

Only a plain line takes this path: ASCII (msgspec does not check the encoding of what it skips), every field of
the type the contract gives. Anything else returns None, and the caller decodes the line the general way, which
names the reason to quarantine it. Component contributions are range-checked by msgspec as it decodes, so the
usual line's components are built without a second look. Timestamps stay text and go through parse_event_us
(msgspec rounds fractions of seven digits and more). Pure.
"""

from __future__ import annotations

from typing import Annotated, Final, Generic, TypeVar, cast

import msgspec

from learnd.records.parse import (
    DEFAULT_STRATEGY,
    MAX_FIELD_MAGNITUDE,
    SignalRecord,
    checked_components_of,
    components_of,
    parse_event_us,
)

# A contribution taken without a second look: a number in range (JSON has no NaN; an integer becomes the float
# parse_record would make of it, exactly, being in range). A line with any other (a null, the bot's NaN, which
# parse_record skips; a number out of range, perhaps under a key repeated later in the object) is decoded again
# taking any number or null, and its components are checked as parse_record checks them.
_Contribution = Annotated[float, msgspec.Meta(ge=-MAX_FIELD_MAGNITUDE, le=MAX_FIELD_MAGNITUDE)]
_Value = TypeVar("_Value")


class _Meta(msgspec.Struct, Generic[_Value]):
    components: dict[str, _Value] | None = None


class _Cluster(msgspec.Struct, Generic[_Value]):
    ticker: str
    direction: str | None = None
    composite_score: float | None = None
    composite_meta: _Meta[_Value] | None = None
    gate_passed: bool | None = None
    source: str | None = None


class _SignalRow(msgspec.Struct, Generic[_Value]):
    ts: str
    cluster: _Cluster[_Value]
    strategy_id: str | None = None


_SIGNAL: Final = msgspec.json.Decoder(_SignalRow[_Contribution])
_SIGNAL_UNCHECKED: Final = msgspec.json.Decoder(_SignalRow[float | None])


def signal_record(raw: bytes) -> SignalRecord | None:
    """The record of a plain signal candidate line, exactly as decode_line + parse_record("signals") make it; None
    when the line is anything else (the general path then decides). Raises RecordError as parse_record would for a
    plain line whose values are out of range."""
    if not raw.isascii():
        return None
    row: _SignalRow[_Contribution] | _SignalRow[float | None]
    try:
        row = _SIGNAL.decode(raw)
        checked = True
    except msgspec.ValidationError:
        try:
            row = _SIGNAL_UNCHECKED.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return None
        checked = False
    except (msgspec.DecodeError, RecursionError):
        # RecursionError: a line nested deeper than msgspec descends (the general path refuses it by name).
        return None
    cluster = row.cluster
    if not cluster.ticker:
        return None
    score = cluster.composite_score
    if score is not None and not (-MAX_FIELD_MAGNITUDE <= score <= MAX_FIELD_MAGNITUDE):
        return None  # NaN, infinities and out-of-range numbers: the general path names them
    meta = cluster.composite_meta
    contributions = meta.components if meta is not None else None
    if checked and contributions:
        components, unknown = checked_components_of(cast(dict[str, float], contributions))
    else:
        components, unknown = components_of(contributions)
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
