"""Typed decoding of the most common line, a signal candidate (three quarters of all lines): its bytes decoded
straight into structs by msgspec and made into the record parse_record would make, at a third of the cost.

Only a plain line takes this path: ASCII (msgspec does not check the encoding of what it skips), every field of
the type the contract gives. Anything else returns None, and the caller decodes the line the general way, which
names the reason to quarantine it. Component contributions are range-checked by msgspec as it decodes, so the
usual line's components are built without a second look, and once per distinct text of them (the bot repeats
it). Timestamps stay text and go through parse_event_us (msgspec rounds fractions of seven digits and more).
Pure: the remembered components are a function of their text.
"""

from __future__ import annotations

from typing import Annotated, Final

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
_CHECKED: Final = msgspec.json.Decoder(dict[str, _Contribution] | None)
_UNCHECKED: Final = msgspec.json.Decoder(dict[str, float | None] | None)
# The components of recent texts, by text (bytes compare exactly, so -0.0 stays apart from 0.0); emptied when full.
# About 1.2 kB a text: the 100 MB bench home has 862 distinct texts, and a cluster's run repeats one.
_RECENT_COMPONENTS: Final[dict[bytes, _Components]] = {}
_RECENT_COMPONENTS_MAX: Final = 1024


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
    text = bytes(meta.components) if meta is not None else b"null"
    known = _RECENT_COMPONENTS.get(text)
    if known is None:
        known = _components_of_text(text)
        if known is None:
            return None
        if len(_RECENT_COMPONENTS) >= _RECENT_COMPONENTS_MAX:
            _RECENT_COMPONENTS.clear()
        _RECENT_COMPONENTS[text] = known
    components, unknown = known
    strategy_id = row.strategy_id
    strategy = strategy_id.strip() if strategy_id is not None else ""
    return SignalRecord(
        strategy or DEFAULT_STRATEGY,
        cluster.ticker,
        cluster.direction,
        parse_event_us(row.ts),
        score,
        components,
        unknown,
        cluster.gate_passed,
        cluster.source,
    )


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
