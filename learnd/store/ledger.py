"""The trade ledger read back: a stored ledger row (its record, kept compactly) becomes the record again.

Used by replays, the batch jobs and the read-only views; a row that no longer decodes is a damaged store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar, cast

from learnd.errors import StateError
from learnd.records.encoding import decode_record
from learnd.records.parse import Record
from learnd.store.database import LedgerRow, Store

_Decoded = TypeVar("_Decoded")


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


class RecordCache:
    """Records of recently read ledger rows, by kind and key: consecutive job periods read overlapping windows of
    the ledger (a week's report reads four weeks the daily reports read already). Rows never change once written,
    so a cached record is always the row's; the oldest entries go beyond `limit`, and with `span_us` a record more
    than that much event time older than the newest one read goes too: jobs run in event order and read no further
    back than their window (four weeks), so the cache holds what that window holds, not `limit` records of a long
    history (about 1.6 KB each: 30 MiB at the limit, once a history has that many). Other rows the jobs read in
    overlapping windows (a learner's) are kept decoded too, by kind and bytes (`decoded`), the oldest of a kind
    going beyond `decoded_limit`: a weekly report's four weeks of signal episodes or execution groups, half again
    over at the bench homes' density (up to 1,265 episodes and 1,400 groups in four weeks; a limit below that serves
    a weekly report none of them), about 2.5 KB of memory an episode and 1.5 KB a group's counters and view."""

    def __init__(self, limit: int = 20_000, decoded_limit: int = 2_048, *, span_us: int | None = None) -> None:
        self._limit = limit
        self._span_us = span_us
        self._decoded_limit = decoded_limit
        # Each record with its row's event time; read in event order, so the oldest are (nearly all) first. An
        # OrderedDict, since the oldest go first: a dict's first entry is found by walking the slots of those deleted
        # before it (about 2 us at 2,000 entries, 13 us at 20,000), an OrderedDict's at once.
        self._records: OrderedDict[tuple[str, str], tuple[int, Record]] = OrderedDict()
        self._newest_us = 0
        # Oldest first, as the records: OrderedDicts, so letting the oldest go finds it at once.
        self._decoded: dict[str, OrderedDict[bytes, object]] = {}

    def record_of(self, row: LedgerRow) -> Record:
        found = self._records.get((row.kind, row.key))
        if found is not None:
            return found[1]
        record = record_of(row)
        self._records[row.kind, row.key] = (row.event_us, record)
        if len(self._records) > self._limit:
            self._records.popitem(last=False)
        if self._span_us is not None and row.event_us > self._newest_us:
            self._newest_us = row.event_us
            self._forget_before(row.event_us - self._span_us)
        return record

    def _forget_before(self, event_us: int) -> None:
        """Let the records first in line go while they are older than `event_us` (one out of order stays until
        those before it have gone, or the limit takes it)."""
        records = self._records
        while records:
            key, (oldest_us, _) = next(iter(records.items()))
            if oldest_us >= event_us:
                return
            del records[key]

    def records(self, store: Store, kind: str, *, since_us: int | None, until_us: int | None) -> Iterator[Record]:
        """ledger_records, through the cache."""
        for row in store.ledger(kind, since_us=since_us, until_us=until_us):
            yield self.record_of(row)

    def decoded(self, kind: str, body: bytes, decode: Callable[[bytes], _Decoded]) -> _Decoded:
        """decode(body), kept under (kind, body): the same bytes decode to the same value, so any row holding them
        is served. One `decode` per kind, returning values nobody changes."""
        return self.kept(kind, body, partial(decode, body), self._decoded_limit)

    def kept(self, kind: str, key: bytes, make: Callable[[], _Decoded], limit: int) -> _Decoded:
        """make(), kept under (kind, key), at most `limit` of a kind (the oldest go): for a value that `key` names
        completely, as the bytes of a row name what they decode to."""
        kept = self._decoded.get(kind)
        if kept is None:
            kept = self._decoded[kind] = OrderedDict()
        found = kept.get(key)
        if found is None:
            found = kept[key] = make()
            if len(kept) > limit:
                kept.popitem(last=False)
        return cast(_Decoded, found)

    def clear(self) -> None:
        self._records.clear()
        self._newest_us = 0
        self._decoded.clear()
