"""store.ledger: a ledger row read back is the record it was admitted as; a row that no longer decodes is a damaged
store (StateError); ledger_records lists a kind in event order within [since, until)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from learnd.config import SourceKind
from learnd.errors import StateError
from learnd.records.encoding import encode_record
from learnd.records.parse import parse_event_us, parse_record
from learnd.service.backfill import drain
from learnd.service.engine import Engine, counting_learners
from learnd.service.ingest import LEDGER_KINDS
from learnd.store.database import Batch, LedgerRow, Store
from learnd.store.ledger import RecordCache, ledger_records, record_of
from tests.bot_rows import Row, append, close_row, exit_row, open_row
from tests.conftest import build_settings

ROWS: dict[str, tuple[SourceKind, Row]] = {
    "trade": (
        "attribution",
        close_row("2026-03-02T15:10:04.118221+00:00", "AMD", 0.93, entry_ts="2026-03-02T14:32:36+00:00"),
    ),
    "entry": ("attribution", open_row("2026-03-02T14:32:36+00:00", "AMD")),
    "exit": ("exit", exit_row("2026-03-02T15:10:04.201337+00:00", "AMD", 0.93)),
}


@pytest.fixture
def learned(home: Path) -> Iterator[Store]:
    """A store that admitted one row of each ledger kind through the real pipeline."""
    append(home / "logs" / "attribution.jsonl", [ROWS["entry"][1], ROWS["trade"][1]])
    append(home / "logs" / "exit.jsonl", [ROWS["exit"][1]])
    engine = Engine(
        build_settings(home, sources=("attribution", "exit")),
        start_at_end=False,
        purpose="test",
        learner_factory=counting_learners,
    )
    try:
        drain(engine, 100)
        yield engine.store
    finally:
        engine.close()


@pytest.mark.parametrize("kind", sorted(ROWS))
def test_record_of_gives_back_the_record_each_kind_was_admitted_as(learned: Store, kind: str) -> None:
    """The one ledger row of each kind reads back as the record its source line parses to."""
    (row,) = learned.ledger(kind)
    source_kind, written = ROWS[kind]
    record = record_of(row)
    assert record == parse_record(source_kind, written)
    assert type(record) in LEDGER_KINDS and LEDGER_KINDS[type(record)] == kind


def damaged(record: bytes) -> LedgerRow:
    return LedgerRow("trade", "close_AMD_1", "equity", "AMD", 1, "attribution", 0, record)


KEPT = encode_record(parse_record("attribution", close_row("2026-03-02T15:10:04+00:00", "AMD", 0.5)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        pytest.param(b'["t1", "\xff', r"not an encoded record", id="not-json"),
        pytest.param(b'{"pnl_pct": 0.5}', r"not an encoded record: no tag", id="not-a-record"),
        pytest.param(KEPT.replace(b'"t1"', b'"t9"'), r"unknown record tag 't9'", id="unknown-tag"),
        pytest.param(
            KEPT[:-1] + b', "extra"]', r"a TradeOutcome keeps \d+ fields, the bytes hold \d+", id="extra-field"
        ),
        pytest.param(
            KEPT.replace(b"[[1,0.3],[0,1.0]]", b"5"),
            r"'int' object is not iterable",
            id="wrong-type",
        ),
    ],
)
def test_a_row_that_no_longer_decodes_is_a_state_error(stored: bytes, reason: str) -> None:
    """Bytes that are no kept record any more: the store is damaged, and the error names the row and why (never
    the ValueError or TypeError of the decoding underneath)."""
    with pytest.raises(StateError, match=rf"ledger row trade/close_AMD_1 no longer decodes \({reason}") as raised:
        record_of(damaged(stored))
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_the_stored_record_is_the_kept_encoding_not_the_line(learned: Store) -> None:
    """What the ledger keeps is the record's compact encoding: decoding it needs no parser and no source kind."""
    (row,) = learned.ledger("trade")
    assert row.record == encode_record(record_of(row))  # type: ignore[arg-type]
    assert row.record.startswith(b'["t1"')


def test_a_row_damaged_in_the_store_fails_the_read(learned: Store) -> None:
    """ledger_records over a store whose row was overwritten raises StateError instead of skipping the row."""
    writer = sqlite3.connect(learned.path)
    writer.execute("UPDATE ledger SET record = ? WHERE kind = 'trade'", (b"[1, 2]",))
    writer.commit()
    writer.close()
    with pytest.raises(StateError, match=r"trade/close_AMD_.* no longer decodes \(unknown record tag 1\)"):
        list(ledger_records(learned, "trade"))


TIMES = {
    "a": "2026-03-02T15:00:00+00:00",
    "b": "2026-03-02T15:00:01+00:00",
    "c": "2026-03-02T15:00:02+00:00",
    "d": "2026-03-02T15:00:03+00:00",
}


def ledger_row(symbol: str, ts: str, source: str, offset: int) -> LedgerRow:
    kept = encode_record(parse_record("attribution", close_row(ts, symbol, 0.1)))  # type: ignore[arg-type]
    return LedgerRow("trade", f"close_{symbol}_{ts}", "equity", symbol, parse_event_us(ts), source, offset, kept)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """Trades committed out of event order; two share a time (one per source), two share a source and time, the
    second of them read after a rotation (its offset, in the new file, is the smaller)."""
    opened = Store.open(tmp_path / "learnd.db")
    rows = [
        ledger_row("D", TIMES["d"], "attribution", 900),
        ledger_row("B1", TIMES["b"], "attribution", 400),
        ledger_row("A", TIMES["a"], "attribution", 100),
        ledger_row("B3", TIMES["b"], "rotated", 0),
        ledger_row("B2", TIMES["b"], "attribution", 50),
        ledger_row("C", TIMES["c"], "attribution", 700),
    ]
    opened.commit(Batch(ledger=rows))
    yield opened
    opened.close()


def symbols(store: Store, **window: int) -> list[str]:
    return [record.symbol for record in ledger_records(store, "trade", **window)]  # type: ignore[union-attr]


def test_ledger_records_come_in_event_order_ties_in_file_order(store: Store) -> None:
    """Event time first; at equal times source name, then the order they arrived (not the byte offset, which starts
    again in each file)."""
    assert symbols(store) == ["A", "B1", "B2", "B3", "C", "D"]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ({"since_us": parse_event_us(TIMES["b"])}, ["B1", "B2", "B3", "C", "D"]),
        ({"until_us": parse_event_us(TIMES["c"])}, ["A", "B1", "B2", "B3"]),
        ({"since_us": parse_event_us(TIMES["b"]), "until_us": parse_event_us(TIMES["d"])}, ["B1", "B2", "B3", "C"]),
        ({"since_us": parse_event_us(TIMES["c"]), "until_us": parse_event_us(TIMES["c"])}, []),
    ],
)
def test_ledger_records_within_since_inclusive_until_exclusive(
    store: Store, window: dict[str, int], expected: list[str]
) -> None:
    """`since_us` keeps records at that time, `until_us` drops them: consecutive windows never share a record."""
    assert symbols(store, **window) == expected


def test_ledger_records_of_another_kind_are_apart(store: Store) -> None:
    """Only the asked kind comes back: the store holds trades, so there are no exits."""
    assert list(ledger_records(store, "exit")) == []


def test_a_decoded_row_is_decoded_once_per_bytes_and_kind_within_the_limit() -> None:
    """RecordCache.decoded serves the value decoded before for the same kind and bytes, decodes other bytes (or
    the same bytes of another kind) afresh, lets the oldest of a kind go beyond the limit (each kind has its own),
    and forgets everything on clear()."""
    calls: list[bytes] = []

    def decode(body: bytes) -> tuple[bytes, int]:
        calls.append(body)
        return body, len(calls)

    cache = RecordCache(decoded_limit=2)
    first = cache.decoded("episode", b"a", decode)
    assert cache.decoded("episode", b"a", decode) is first
    assert cache.decoded("other", b"a", decode) == (b"a", 2)
    assert cache.decoded("episode", b"b", decode) == (b"b", 3)
    assert calls == [b"a", b"a", b"b"]
    assert cache.decoded("episode", b"a", decode) is first  # two episodes: within the limit, whatever "other" holds
    assert cache.decoded("episode", b"c", decode) == (b"c", 4)
    assert cache.decoded("episode", b"a", decode) == (b"a", 5)  # the oldest episode went at the limit
    assert cache.decoded("other", b"a", decode) == (b"a", 2)
    cache.clear()
    assert cache.decoded("episode", b"b", decode) == (b"b", 6)


def test_a_kept_value_is_made_once_per_key_and_kind_within_its_limit() -> None:
    """RecordCache.kept serves the value made before for the same kind and key, makes one for another key, lets the
    oldest of a kind go beyond the limit given for it, and forgets everything on clear()."""
    made: list[int] = []

    def make() -> int:
        made.append(len(made))
        return made[-1]

    cache = RecordCache()
    assert cache.kept("part", b"a", make, 2) == 0
    assert cache.kept("part", b"a", make, 2) == 0
    assert cache.kept("other", b"a", make, 2) == 1
    assert cache.kept("part", b"b", make, 2) == 2
    assert cache.kept("part", b"a", make, 2) == 0
    assert cache.kept("part", b"c", make, 2) == 3
    assert cache.kept("part", b"a", make, 2) == 4  # the oldest went at the limit
    cache.clear()
    assert cache.kept("part", b"c", make, 2) == 5


def test_the_default_decoded_limit_holds_a_weekly_reports_four_weeks_of_episodes() -> None:
    """A weekly report reads four weeks of signal episodes again (up to 1,265 on the bench homes): with the default
    limit, reading them a second time decodes none of them."""
    calls: list[bytes] = []

    def decode(body: bytes) -> bytes:
        calls.append(body)
        return body

    cache = RecordCache()
    bodies = [str(number).encode() for number in range(1_300)]
    for _ in range(2):
        for body in bodies:
            cache.decoded("episode", body, decode)
    assert calls == bodies


def test_a_cached_record_goes_once_it_is_older_than_the_span_behind_the_newest_read(learned: Store) -> None:
    """With `span_us`, a record whose event time falls more than the span behind the newest record read is
    decoded afresh the next time (the jobs read no further back); those within it, and every record without a
    span (below the limit), are served as decoded the first time."""
    (trade,) = learned.ledger("trade")

    def row(key: str, event_us: int) -> LedgerRow:
        return trade._replace(key=key, event_us=event_us)

    spanned = RecordCache(span_us=10)
    unbounded = RecordCache()
    first = {
        key: (spanned.record_of(row(key, at)), unbounded.record_of(row(key, at)))
        for key, at in (("a", 100), ("b", 105), ("late", 95), ("c", 111))
    }
    # c is 11 past a: a goes; "late" (older still) was read after b, so it stays until b has gone.
    assert spanned.record_of(row("a", 100)) is not first["a"][0]
    assert spanned.record_of(row("b", 105)) is first["b"][0]
    assert spanned.record_of(row("late", 95)) is first["late"][0]
    assert spanned.record_of(row("c", 111)) is first["c"][0]
    spanned.record_of(row("d", 116))  # 11 past b: b goes, then "late" behind it
    assert spanned.record_of(row("b", 105)) is not first["b"][0]
    assert spanned.record_of(row("late", 95)) is not first["late"][0]
    assert spanned.record_of(row("c", 111)) is first["c"][0]
    assert all(unbounded.record_of(row(key, 0)) is kept for key, (_, kept) in first.items())
