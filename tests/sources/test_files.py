"""Tests for learnd.sources.files: identity of plain and gzip content, rotated siblings, and whole-file reads that
frame lines exactly as the tailer frames the live file."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.sources.files import (
    FINGERPRINT_MAX_BYTES,
    DecompressedFile,
    HistoryError,
    Identity,
    KnownFiles,
    LineReader,
    census,
    complete_lines,
    identify,
    identity_hash,
    identity_through,
    prefix_identities,
    rotated_siblings,
    source_files,
    unread_start,
)
from learnd.sources.framing import Line
from tests.sources.test_tailer import GRACE_S, FakeClock, make_tailer


def framed(lines: list[Line]) -> list[tuple[int, bytes, int, int, bool]]:
    """What framing decides about each line; the file key and source say where it came from, not how it was cut."""
    return [(line.offset, line.raw, line.hash, line.too_long, line.unterminated) for line in lines]


def read_whole(path: Path, *, max_line_bytes: int, keep_bytes: int, chunk_bytes: int, start: int = 0) -> list[Line]:
    """LineReader's lines of `path` from `start` to its end, the last fragment included; its offset ends at the end."""
    with DecompressedFile(path) as handle:
        reader = LineReader(
            handle,
            source="orders",
            file_key="key",
            start=start,
            max_line_bytes=max_line_bytes,
            keep_bytes=keep_bytes,
            chunk_bytes=chunk_bytes,
        )
        out: list[Line] = []
        for line in reader.lines(final=True):
            out.append(line)
            if not line.unterminated:
                # Already past the line when it is handed out: where a commit right now would resume.
                assert reader.offset == line.offset + (line.too_long or len(line.raw)) + 1
        assert not reader.error
    with DecompressedFile(path) as handle:
        assert reader.offset == len(handle.read(1 << 30))
    return out


def tail_whole(
    path: Path, pieces: list[bytes], budgets: list[int], *, max_line_bytes: int, keep_bytes: int
) -> list[Line]:
    """The tailer's lines of `pieces` appended one by one (polling between), then of the file rotated away and
    drained once the grace has passed (so a last fragment is handed out too)."""
    clock = FakeClock()
    path.write_bytes(b"")
    tailer = make_tailer(path, clock=clock, max_line_bytes=max_line_bytes, keep_bytes=keep_bytes)
    out: list[Line] = []
    try:
        for index, piece in enumerate(pieces):
            with open(path, "ab") as handle:
                handle.write(piece)
            while batch := tailer.poll(budgets[index % len(budgets)]):
                out.extend(batch)
        os.rename(path, path.with_name(path.name + ".1"))
        out.extend(tailer.poll(1000))
        clock.now += 2 * GRACE_S
        while batch := tailer.poll(budgets[0]):
            out.extend(batch)
    finally:
        tailer.close()
    return out


# Identity ------------------------------------------------------------------------------------------------------


def test_plain_and_gzip_copies_of_the_same_content_have_the_same_identity(tmp_path: Path) -> None:
    """A copy is known by its decompressed first lines, whatever its name or compression."""
    path = tmp_path / "orders.jsonl"
    content = b'{"a": 1}\n{"b": 2}\n'
    path.write_bytes(b'{"other": 0}\n')
    (tmp_path / "orders.jsonl.1").write_bytes(content)
    with gzip.open(tmp_path / "orders.jsonl.2.gz", "wb") as handle:
        handle.write(content)
    found = {item.path.name: item for item in source_files(path)}
    assert found["orders.jsonl.1"].identity == found["orders.jsonl.2.gz"].identity == identify(content)
    assert found["orders.jsonl.2.gz"].is_compressed and not found["orders.jsonl.1"].is_compressed
    assert found["orders.jsonl"].identity != found["orders.jsonl.1"].identity


def test_a_file_is_known_by_its_whole_lines_within_the_first_4_kib() -> None:
    """Every run of whole lines from the start within 4 KiB is a prefix identity; a file is known by the longest.
    A first line longer than 4 KiB is known by its first 4 KiB; a current file with no complete line by nothing."""
    assert prefix_identities(b"ab\ncd\nef", final=False) == (
        Identity(identity_hash(b"ab\n"), 3),
        Identity(identity_hash(b"ab\ncd\n"), 6),
    )
    assert identify(b"ab\ncd\n") == Identity(identity_hash(b"ab\ncd\n"), 6)
    lines = b"".join(b"line %04d\n" % index for index in range(1000))
    last_end = lines.rfind(b"\n", 0, FINGERPRINT_MAX_BYTES) + 1
    assert identify(lines) == Identity(identity_hash(lines[:last_end]), last_end)
    long_line = b"x" * (FINGERPRINT_MAX_BYTES + 10)
    assert identify(long_line) == Identity(identity_hash(long_line[:FINGERPRINT_MAX_BYTES]), FINGERPRINT_MAX_BYTES)
    assert prefix_identities(b"no newline yet", final=False) == ()


def test_two_files_that_begin_with_the_same_line_are_not_one() -> None:
    """A start-up banner at the top of every file: the files are told apart by the lines after it, and a copy of one
    (made after it was read that far) is known as that one only."""
    banner = b"=== bot started ===\n"
    first = banner + b"".join(b"a %d\n" % index for index in range(50))
    second = banner + b"".join(b"b %d\n" % index for index in range(50))
    assert identify(first) != identify(second)
    read = identity_through(prefix_identities(first, final=True), 40)
    assert read is not None and read in prefix_identities(first, final=True)
    assert read not in prefix_identities(second, final=True)
    known = KnownFiles({read: 40})
    assert known.position(prefix_identities(first, final=True)) == (read, 40)
    assert known.position(prefix_identities(second, final=True)) is None


def test_a_file_forgotten_is_not_known_and_the_next_commit_drops_it() -> None:
    """forget(): the identity is no longer known (a copy of the file is read whole), and the change says so; an
    identity never known is no change."""
    first, second = Identity(b"a" * 16, 10), Identity(b"b" * 16, 20)
    known = KnownFiles({first: 10})
    known.record(second, 20)
    known.forget(second)
    known.forget(first)
    assert known.read == {}
    assert known.take_changes() == ({}, {first, second})
    known.forget(first)
    assert known.take_changes() == ({}, set())


def test_a_copy_that_is_one_short_fragment_is_known_by_all_of_it() -> None:
    """A rotated copy without a complete first line still has an identity (so it is read once); an empty one not."""
    assert identify(b"cut") == Identity(identity_hash(b"cut"), 3)
    assert identify(b"ab\ncd") == Identity(identity_hash(b"ab\n"), 3)
    assert identify(b"") is None


def test_where_a_copy_is_read_from(tmp_path: Path) -> None:
    """A copy of a file read before: on from where it was read. A copy never seen: whole, unless it is history (there
    when learnd began to follow the source), which only a backfill reads. A copy of the current file: not at all."""
    path = tmp_path / "orders.jsonl"
    read_before = b"".join(b"read %d\n" % index for index in range(10))
    (tmp_path / "orders.jsonl.3").write_bytes(b"old history\n")
    (tmp_path / "orders.jsonl.2").write_bytes(read_before)
    (tmp_path / "orders.jsonl.1").write_bytes(b"never seen\n")
    path.write_bytes(b"current\nmore\n")
    (tmp_path / "orders.jsonl-20260301").write_bytes(b"current\n")
    files = {found.path.name: found for found in source_files(path)}
    read = identity_through(files["orders.jsonl.2"].ladder, 24)
    assert read is not None
    history = files["orders.jsonl.3"].identity
    assert history is not None
    known = KnownFiles({read: 24}, [history])
    current = files["orders.jsonl"]
    starts = {name: unread_start(found, known, current, history=False) for name, found in files.items()}
    assert starts == {
        "orders.jsonl-20260301": None,
        "orders.jsonl.3": None,
        "orders.jsonl.2": 24,
        "orders.jsonl.1": 0,
        "orders.jsonl": None,
    }
    assert unread_start(files["orders.jsonl.3"], known, current, history=True) == 0


def test_the_current_file_has_no_identity_before_its_first_line_is_complete(tmp_path: Path) -> None:
    """As the tailer knows it: the current file's fragment is not a fingerprint yet."""
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"cut")
    (current,) = source_files(path)
    assert current.is_current and current.identity is None


# Siblings ------------------------------------------------------------------------------------------------------


def test_rotated_siblings_orders_oldest_first(tmp_path: Path) -> None:
    """Dated copies precede numbered ones; higher numbers are older; other names are not copies."""
    path = tmp_path / "orders.jsonl"
    for suffix in (".1", ".2.gz", ".3", "-20260301", ".bak", "x"):
        path.with_name("orders.jsonl" + suffix).write_bytes(b"")
    assert [p.name[len("orders.jsonl") :] for p in rotated_siblings(path)] == ["-20260301", ".3", ".2.gz", ".1"]


@pytest.mark.parametrize(
    "suffixes",
    [
        ("-20260301-1772461950", "-20260301-1772465550.gz", "-20260302-1772470000"),  # dateformat -%Y%m%d-%s
        ("-2026-03-01-09-05", "-2026-03-01-10-15", "-2026-03-01-10-45.gz"),  # -%Y-%m-%d-%H-%M
        ("-2026030109", "-20260301-101500", "-20260302"),
    ],
)
def test_dated_copies_with_any_time_parts_are_copies_in_time_order(tmp_path: Path, suffixes: tuple[str, ...]) -> None:
    """logrotate's dateformat may add time parts of any length after the date: each such name is a rotated copy,
    ordered by the date, then by its time parts as numbers."""
    path = tmp_path / "orders.jsonl"
    for suffix in reversed(suffixes):
        path.with_name("orders.jsonl" + suffix).write_bytes(b"")
    assert [p.name[len("orders.jsonl") :] for p in rotated_siblings(path)] == list(suffixes)


def test_source_files_are_the_rotated_copies_then_the_current_file(tmp_path: Path) -> None:
    """The current file comes last; a missing directory or file is no error."""
    path = tmp_path / "orders.jsonl"
    assert source_files(path) == []
    for suffix in ("", ".1", "-20260301.gz"):
        path.with_name("orders.jsonl" + suffix).write_bytes(b"")
    assert [(item.path.name, item.is_current) for item in source_files(path)] == [
        ("orders.jsonl-20260301.gz", False),
        ("orders.jsonl.1", False),
        ("orders.jsonl", True),
    ]
    assert source_files(tmp_path / "missing" / "orders.jsonl") == []


# Framing -------------------------------------------------------------------------------------------------------

# Short pieces, so that lines over a small max_line_bytes, empty lines and a last fragment all come up.
CONTENT = st.lists(st.sampled_from([b"a", b"bc", b"\n", b"{}", b"\n\n", b"x" * 30, b"\xff"]), max_size=40).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(
    content=CONTENT,
    max_line_bytes=st.integers(min_value=1, max_value=40),
    keep_bytes=st.integers(min_value=1, max_value=40),
    chunk_bytes=st.integers(min_value=1, max_value=64),
    data=st.data(),
)
def test_a_whole_file_read_frames_lines_as_the_tailer_does(
    content: bytes, max_line_bytes: int, keep_bytes: int, chunk_bytes: int, data: st.DataObject
) -> None:
    """The same bytes give the same Lines (offset, head, hash, over-long length, unterminated) from the tailer's
    reads of a growing file and from LineReader over the plain or gzip copy, whatever the read and append sizes."""
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(content)), max_size=5), label="cuts"))
    pieces = [content[a:b] for a, b in zip([0, *cuts], [*cuts, len(content)], strict=True)]
    budgets = data.draw(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=4), label="budgets")
    with tempfile.TemporaryDirectory() as directory:
        plain = Path(directory) / "plain.jsonl"
        plain.write_bytes(content)
        packed = Path(directory) / "packed.jsonl.gz"
        with gzip.open(packed, "wb") as handle:
            handle.write(content)
        from_plain = read_whole(plain, max_line_bytes=max_line_bytes, keep_bytes=keep_bytes, chunk_bytes=chunk_bytes)
        from_gzip = read_whole(packed, max_line_bytes=max_line_bytes, keep_bytes=keep_bytes, chunk_bytes=chunk_bytes)
        tailed = tail_whole(
            Path(directory) / "orders.jsonl", pieces, budgets, max_line_bytes=max_line_bytes, keep_bytes=keep_bytes
        )
    assert framed(from_plain) == framed(from_gzip) == framed(tailed)


def test_over_long_lines_keep_their_head_and_a_fragment_is_unterminated(tmp_path: Path) -> None:
    """A line over max_line_bytes keeps keep_bytes of head, hashed with its length; the last fragment is final."""
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"short\n" + b"y" * 50 + b"\nend")
    lines = read_whole(path, max_line_bytes=10, keep_bytes=4, chunk_bytes=7)
    assert [(line.offset, line.raw, line.too_long, line.unterminated) for line in lines] == [
        (0, b"short", 0, False),
        (6, b"yyyy", 50, False),
        (57, b"end", 0, True),
    ]
    # Same head, another length: another line.
    other = tmp_path / "other.jsonl"
    other.write_bytes(b"y" * 51 + b"\n")
    (longer,) = read_whole(other, max_line_bytes=10, keep_bytes=4, chunk_bytes=7)
    assert longer.raw == lines[1].raw and longer.hash != lines[1].hash


def test_an_over_long_line_keeps_its_whole_head_when_keep_bytes_exceeds_max_line_bytes(tmp_path: Path) -> None:
    """A head longer than max_line_bytes is read on past the read that showed the line to be over-long."""
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"a" * 9 + b"\nbbb")
    lines = read_whole(path, max_line_bytes=2, keep_bytes=6, chunk_bytes=2)
    assert [(line.raw, line.too_long, line.unterminated) for line in lines] == [
        (b"aaaaaa", 9, False),
        (b"bbb", 3, True),
    ]


@pytest.mark.parametrize("chunk_bytes", [1, 100, 1 << 20])
def test_many_lines_come_out_in_order_with_their_offsets(tmp_path: Path, chunk_bytes: int) -> None:
    """Every line of a file of many lines, in order, whatever the read size (read_whole checks each offset)."""
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"".join(b"line-%d\n" % index for index in range(1000)))
    lines = read_whole(path, max_line_bytes=100, keep_bytes=100, chunk_bytes=chunk_bytes)
    assert [line.raw for line in lines] == [b"line-%d" % index for index in range(1000)]


def test_a_read_resumes_at_a_content_offset(tmp_path: Path) -> None:
    """Reading from the offset after a line gives the lines after it, with their offsets in the whole file."""
    path = tmp_path / "orders.jsonl.1.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"one\ntwo\nthree\n")
    lines = read_whole(path, max_line_bytes=100, keep_bytes=100, chunk_bytes=3, start=4)
    assert [(line.offset, line.raw) for line in lines] == [(4, b"two"), (8, b"three")]


# Whole lines and counts ----------------------------------------------------------------------------------------


def test_complete_lines_reads_every_copy_oldest_first_whole_and_leaves_a_fragment_out(tmp_path: Path) -> None:
    """Evaluate's view: every terminated line of every copy and the current file, however long; no fragment."""
    path = tmp_path / "orders.jsonl"
    long_line = b"z" * (3 << 20)
    with gzip.open(tmp_path / "orders.jsonl.2.gz", "wb") as handle:
        handle.write(b"oldest\n")
    (tmp_path / "orders.jsonl.1").write_bytes(b"older\n" + long_line + b"\n")
    path.write_bytes(b"current\ncut")
    assert list(complete_lines(path)) == [b"oldest", b"older", long_line, b"current"]


def test_complete_lines_of_a_damaged_gzip_copy_raise(tmp_path: Path) -> None:
    """A copy whose content cannot be read to its end is an error, not a silent gap."""
    path = tmp_path / "orders.jsonl"
    packed = gzip.compress(b"line\n" * 1000)
    (tmp_path / "orders.jsonl.1.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(HistoryError, match=r"orders\.jsonl\.1\.gz"):
        list(complete_lines(path))


def test_census_counts_lines_before_and_after_an_offset(tmp_path: Path) -> None:
    """Lines ending at or before the offset, lines after it, and the fragment after the last newline."""
    path = tmp_path / "orders.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"a\nbb\nccc\ndd")
    counted = census(path, 5)
    assert (counted.content_bytes, counted.lines_before, counted.lines_after) == (11, 2, 1)
    assert (counted.fragment_bytes, counted.fragment_start) == (2, 9)


def test_a_long_run_of_digits_that_is_no_copy_is_told_at_once() -> None:
    """A name with a long run of digits after the date that is no rotated copy (a `.partial` left by a tool) is
    refused at once: the pattern splits a name one way only (an optional separator between repeated digit groups
    tried every split, 2^(digits-1) of them, at every listing). In a child with a time limit, so that a regression
    fails instead of hanging."""
    probe = (
        "from learnd.sources.files import _DATED; "
        "import sys; sys.exit(_DATED.match('-20260301-' + '7' * 40 + '.partial') is not None)"
    )
    completed = subprocess.run([sys.executable, "-c", probe], timeout=20, check=False)
    assert completed.returncode == 0
