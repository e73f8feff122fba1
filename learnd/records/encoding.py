"""Records as compact bytes and back, bit for bit: how the ledger keeps a trade, an entry or an exit outcome.

A tagged JSON array of the record's fields, floats exact, without what the ledger row holds in its own columns
(key, strategy, symbol), and with each component as its index in the contract's table. Pure.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

import orjson

from learnd.records.components import ENTRY_COMPONENTS
from learnd.records.parse import ExitOutcome, TradeEntry, TradeOutcome

KeptRecord = TradeOutcome | TradeEntry | ExitOutcome

# The tag says the type; a change to a kept type's fields, or to the component table, needs a new tag and a store
# migration.
_TAGS: Final[dict[type, str]] = {TradeOutcome: "t1", TradeEntry: "e1", ExitOutcome: "x1"}
_TYPES: Final[dict[str, type]] = {tag: kind for kind, tag in _TAGS.items()}
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
    values: list[Any] = [_TAGS[kind]]
    for name in _KEPT_FIELDS[kind]:
        value = getattr(record, name)
        if name == "components":
            value = [(_COMPONENT_INDEX[component], contribution) for component, contribution in value]
        values.append(value)
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
    kind = _TYPES.get(items[0])
    if kind is None:
        raise ValueError(f"unknown record tag {items[0]!r}")
    names = _KEPT_FIELDS[kind]
    if len(items) - 1 != len(names):
        raise ValueError(f"a {kind.__name__} keeps {len(names)} fields, the bytes hold {len(items) - 1}")
    values: dict[str, Any] = {"key": key, "strategy": strategy, "symbol": symbol}
    values.update(zip(names, items[1:], strict=True))
    # JSON arrays back into the tuples the records hold.
    if "components" in values:
        values["components"] = tuple(
            (ENTRY_COMPONENTS[index], contribution) for index, contribution in values["components"]
        )
    for name in ("unknown_components", "exit_components"):
        if name in values:
            values[name] = tuple(values[name])
    record: KeptRecord = kind(**values)
    return record
