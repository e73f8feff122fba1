"""Records as compact bytes and back, bit for bit: how the ledger keeps a trade, an entry or an exit outcome.

A tagged JSON array of the record's fields, floats exact, without what the ledger row holds in its own columns
(key, strategy, symbol), and with each component as its index in the contract's table. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter
from typing import Any, Final

import orjson

from learnd.records.components import ENTRY_COMPONENTS
from learnd.records.parse import ExitOutcome, TradeEntry, TradeOutcome

KeptRecord = TradeOutcome | TradeEntry | ExitOutcome

# The tag says the type; a change to a kept type's fields, or to the component table, needs a new tag and a store
# migration, or a way to read the old tag's bytes (_OLDER).
_TAGS: Final[dict[type, str]] = {TradeOutcome: "t1", TradeEntry: "e2", ExitOutcome: "x1"}
_TYPES: Final[dict[str, type]] = {tag: kind for kind, tag in _TAGS.items()}
# Tags of earlier layouts still read: the type, and how many of its last fields the bytes do not hold (read as
# None). "e1": an entry kept before its context.entry_ts was (TradeEntry.entry_us).
_OLDER: Final[dict[str, tuple[type, int]]] = {"e1": (TradeEntry, 1)}
# Fields every kept record has and the ledger row keeps in its own columns, first in each type's field order.
_ROW_FIELDS: Final = ("key", "strategy", "symbol")
_FIELDS: Final[dict[type, tuple[str, ...]]] = {kind: tuple(item.name for item in fields(kind)) for kind in _TAGS}
_KEPT_FIELDS: Final[dict[type, tuple[str, ...]]] = {
    kind: tuple(name for name in names if name not in _ROW_FIELDS) for kind, names in _FIELDS.items()
}
_COMPONENT_INDEX: Final[dict[str, int]] = {name: index for index, name in enumerate(ENTRY_COMPONENTS)}


def encode_record(record: KeptRecord) -> bytes:
    """The record as bytes that `decode_record` (given the ledger row's key, strategy and symbol) turns back into
    an equal record."""
    kind = type(record)
    values: list[Any] = [_TAGS[kind], *_KEPT_VALUES[kind](record)]
    for position in _PAIR_POSITIONS[kind]:
        values[position] = [(_COMPONENT_INDEX[component], contribution) for component, contribution in values[position]]
    return orjson.dumps(values)


def decode_record(data: bytes, key: str, strategy: str, symbol: str) -> KeptRecord:
    """The record `encode_record` wrote for the ledger row (key, strategy, symbol); ValueError when the bytes are
    not one."""
    try:
        items = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not an encoded record: {error}") from None
    if not isinstance(items, list) or not items:
        raise ValueError("not an encoded record: no tag")
    if not isinstance(items[0], str):
        raise ValueError(f"unknown record tag {items[0]!r}")
    kind = _TYPES.get(items[0])
    if kind is None:
        if items[0] not in _OLDER:
            raise ValueError(f"unknown record tag {items[0]!r}")
        kind, missing = _OLDER[items[0]]
        if len(items) - 1 == len(_KEPT_FIELDS[kind]) - missing:
            items.extend([None] * missing)
    names = _KEPT_FIELDS[kind]
    if len(items) - 1 != len(names):
        raise ValueError(f"a {kind.__name__} keeps {len(names)} fields, the bytes hold {len(items) - 1}")
    # JSON arrays back into the tuples the records hold (positions of the kept fields, after the tag).
    for position in _PAIR_POSITIONS[kind]:
        items[position] = tuple([(ENTRY_COMPONENTS[index], value) for index, value in items[position]])
    for position in _NAME_POSITIONS[kind]:
        items[position] = tuple(items[position])
    record: KeptRecord = kind(key, strategy, symbol, *items[1:])
    return record


def _positions(kind: type, names: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(1 + index for index, name in enumerate(_KEPT_FIELDS[kind]) if name in names)


# Every kept type starts with the row's own fields, in the row's order: the record is built positionally.
assert all(names[: len(_ROW_FIELDS)] == _ROW_FIELDS for names in _FIELDS.values())
_PAIR_POSITIONS: Final[dict[type, tuple[int, ...]]] = {kind: _positions(kind, ("components",)) for kind in _TAGS}
# The kept fields of each type, read in one call.
_KEPT_VALUES: Final[dict[type, Callable[[Any], tuple[Any, ...]]]] = {
    kind: attrgetter(*names) for kind, names in _KEPT_FIELDS.items()
}
_NAME_POSITIONS: Final[dict[type, tuple[int, ...]]] = {
    kind: _positions(kind, ("unknown_components", "exit_components")) for kind in _TAGS
}
