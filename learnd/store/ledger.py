"""The trade ledger read back: a stored ledger row (its record, kept compactly) becomes the record again.

Used by replays, the batch jobs and the read-only views; a row that no longer decodes is a damaged store.
"""

from __future__ import annotations

from collections.abc import Iterator

from learnd.errors import StateError
from learnd.records.encoding import decode_record
from learnd.records.parse import Record
from learnd.store.database import LedgerRow, Store


def record_of(row: LedgerRow) -> Record:
    """The record a ledger row was admitted as; StateError when the stored bytes no longer decode."""
    try:
        return decode_record(row.record, row.key, row.strategy, row.symbol)
    except (ValueError, TypeError, IndexError) as error:
        raise StateError(f"ledger row {row.kind}/{row.key} no longer decodes ({error}): the store is damaged") from None


def ledger_records(
    store: Store, kind: str, *, since_us: int | None = None, until_us: int | None = None
) -> Iterator[Record]:
    """The records of one ledger kind in event order, optionally within [since, until) (see Store.ledger)."""
    for row in store.ledger(kind, since_us=since_us, until_us=until_us):
        yield record_of(row)
