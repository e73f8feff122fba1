"""records.encoding: the ledger keeps trades, entries and exit outcomes compactly, and reads them back equal."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from learnd.devtools.simulate import simulate
from learnd.errors import RecordError
from learnd.records.decode import decode_line
from learnd.records.encoding import decode_record, encode_record
from learnd.records.parse import ExitOutcome, TradeEntry, TradeOutcome, parse_record


def test_every_kept_record_of_a_simulated_home_reads_back_equal(tmp_path: Path) -> None:
    """Every close, scale, open and exit row of a simulated home (legacy keys, unknown keys and the rich exit
    shape included) round-trips: equal records, floats bit for bit, and far fewer bytes than the line."""
    simulate(tmp_path, trades=300, seed=3)
    kinds = {"attribution": "attribution", "exit": "exit"}
    seen: set[type] = set()
    line_bytes = kept_bytes = 0
    for name, kind in kinds.items():
        for line in (tmp_path / "logs" / f"{name}.jsonl").read_bytes().splitlines():
            decoded = decode_line(line)
            if not isinstance(decoded, dict):
                continue
            try:
                record = parse_record(kind, decoded)  # type: ignore[arg-type]
            except RecordError:
                continue  # the simulator plants garbage rows; they are not kept records
            if not isinstance(record, TradeOutcome | TradeEntry | ExitOutcome):
                continue
            seen.add(type(record))
            data = encode_record(record)
            again = decode_record(data, record.key, record.strategy, record.symbol)
            assert again == record
            assert repr(again) == repr(record)  # -0.0, floats and None kept exactly
            line_bytes += len(line)
            kept_bytes += len(data)
    assert seen == {TradeOutcome, TradeEntry, ExitOutcome}
    assert kept_bytes < line_bytes


def test_an_entry_kept_before_its_entry_time_was_reads_back_without_one() -> None:
    """Entries kept under the tag "e1" (before TradeEntry.entry_us) read back with entry_us None; new ones are
    kept under "e2", entry time included."""
    entry = TradeEntry(
        "open_AMD_2026-03-02T14:32:36.001950+00:00",
        "equity",
        "AMD",
        "mixed",
        1_772_461_956_010_000,
        "bullish",
        3.4,
        (("options_flow", 1.8),),
        ("mystery",),
        1_772_461_956_002_114,
    )
    data = encode_record(entry)
    assert data.startswith(b'["e2",')
    assert decode_record(data, entry.key, entry.strategy, entry.symbol) == entry
    older = b'["e1"' + data[len(b'["e2"') : data.rindex(b",")] + b"]"  # the same fields but the last
    again = decode_record(older, entry.key, entry.strategy, entry.symbol)
    assert isinstance(again, TradeEntry)
    assert again.entry_us is None
    assert dataclasses.replace(again, entry_us=entry.entry_us) == entry


@pytest.mark.parametrize(
    "data",
    [b"", b"{}", b"[]", b'["zz", 1]', b'["x1", "too", "few"]', b'["e1", "too", "few"]', b"[[1], 2]", b"not json"],
)
def test_bytes_that_are_no_record_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_record(data, "k", "equity", "AMD")
