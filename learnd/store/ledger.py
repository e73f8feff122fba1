"""The trade ledger read back: a stored ledger row (the raw line it came from) becomes its record again.

Used by replays, the batch jobs and the read-only views; a row that no longer decodes is a damaged store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from learnd.config import SourceKind
from learnd.errors import RecordError, StateError
from learnd.records.decode import BadLine, decode_line
from learnd.records.parse import Record, parse_record
from learnd.store.database import LedgerRow, Store

# Which source kind's parser reads each ledger kind back.
LEDGER_SOURCE_KINDS: Final[dict[str, SourceKind]] = {"trade": "attribution", "entry": "attribution", "exit": "exit"}


def record_of(row: LedgerRow) -> Record:
    """The record a ledger row was admitted as; StateError when the stored line no longer parses."""
    decoded = decode_line(row.record)
    if isinstance(decoded, BadLine):
        raise StateError(f"ledger row {row.kind}/{row.key} no longer decodes ({decoded.reason}): the store is damaged")
    try:
        return parse_record(LEDGER_SOURCE_KINDS[row.kind], decoded)
    except RecordError as error:
        raise StateError(f"ledger row {row.kind}/{row.key} no longer parses ({error}): the store is damaged") from None


def ledger_records(
    store: Store, kind: str, *, since_us: int | None = None, until_us: int | None = None
) -> Iterator[Record]:
    """The records of one ledger kind in event order, optionally within [since, until) (see Store.ledger)."""
    for row in store.ledger(kind, since_us=since_us, until_us=until_us):
        yield record_of(row)
