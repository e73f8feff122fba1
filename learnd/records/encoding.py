"""Records as compact bytes and back, bit for bit: how the ledger keeps a trade, an entry or an exit outcome
(a tagged JSON array of the record's fields; floats round-trip exactly). Pure.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Final

import orjson

from learnd.records.parse import ExitOutcome, TradeEntry, TradeOutcome

KeptRecord = TradeOutcome | TradeEntry | ExitOutcome

# The tag says the type; a change to a kept type's fields needs a new tag and a store migration.
_TAGS: Final[dict[type, str]] = {TradeOutcome: "t1", TradeEntry: "e1", ExitOutcome: "x1"}
_TYPES: Final[dict[str, type]] = {tag: kind for kind, tag in _TAGS.items()}
_FIELDS: Final[dict[type, tuple[str, ...]]] = {kind: tuple(item.name for item in fields(kind)) for kind in _TAGS}


def encode_record(record: KeptRecord) -> bytes:
    """The record as bytes that `decode_record` turns back into an equal record."""
    kind = type(record)
    return orjson.dumps([_TAGS[kind], *(getattr(record, name) for name in _FIELDS[kind])])


def decode_record(data: bytes) -> KeptRecord:
    """The record `encode_record` wrote; ValueError when the bytes are not one."""
    try:
        items = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not an encoded record: {error}") from None
    if not isinstance(items, list) or not items:
        raise ValueError("not an encoded record: no tag")
    kind = _TYPES.get(items[0])
    if kind is None:
        raise ValueError(f"unknown record tag {items[0]!r}")
    values = items[1:]
    if len(values) != len(_FIELDS[kind]):
        raise ValueError(f"a {kind.__name__} has {len(_FIELDS[kind])} fields, the bytes hold {len(values)}")
    # JSON arrays back into the tuples the records hold: components are tuples of (name, value) pairs.
    for index in _PAIR_FIELDS[kind]:
        values[index] = tuple(map(tuple, values[index]))
    for index in _NAME_FIELDS[kind]:
        values[index] = tuple(values[index])
    record: KeptRecord = kind(*values)
    return record


def _indexes(kind: type, names: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(index for index, name in enumerate(_FIELDS[kind]) if name in names)


_PAIR_FIELDS: Final[dict[type, tuple[int, ...]]] = {kind: _indexes(kind, ("components",)) for kind in _TAGS}
_NAME_FIELDS: Final[dict[type, tuple[int, ...]]] = {
    kind: _indexes(kind, ("unknown_components", "exit_components")) for kind in _TAGS
}
