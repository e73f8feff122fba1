"""sources.framing: line hashes, and where a rewritten file's first lines sit among the lines already read."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.sources.framing import MAX_ALIGNMENTS_KEPT, line_hash, rewrite_alignments


def test_line_hash_is_a_signed_64_bit_integer() -> None:
    """The hash fits SQLite's INTEGER and differs for different lines."""
    values = {line_hash(bytes([index])) for index in range(256)}
    assert len(values) == 256
    assert all(-(1 << 63) <= value < (1 << 63) for value in values)


def test_rewrite_alignment_finds_the_kept_tail() -> None:
    """A file rewritten to the window's last lines aligns at the first kept line."""
    assert rewrite_alignments([1, 2, 3, 4, 5], [3, 4, 5, 6]) == [2]
    assert rewrite_alignments([1, 2, 3, 4, 5], [3, 4]) == [2]


def test_rewrite_alignment_reports_none_for_new_content() -> None:
    """New content (or an empty read) has no alignment."""
    assert rewrite_alignments([1, 2, 3], [7, 8]) == []
    assert rewrite_alignments([1, 2, 3], [2, 9]) == []
    assert rewrite_alignments([1, 2, 3], []) == []
    assert rewrite_alignments([], [1]) == []


def test_rewrite_alignment_lists_every_candidate_earliest_first() -> None:
    """Repeated lines, or a run the window holds twice, leave several candidates for the caller to follow."""
    assert rewrite_alignments([5, 5, 5], [5, 5, 5, 6]) == [0, 1, 2]
    assert rewrite_alignments([1, 2, 3, 2, 3, 4], [2, 3]) == [1, 3]
    assert rewrite_alignments([1, 2, 3, 2, 3, 4], [2, 3, 4]) == [3]


def test_rewrite_alignment_of_a_flood_of_identical_lines_keeps_both_ends() -> None:
    """Thousands of identical lines stay cheap to follow: the earliest and latest candidates are kept."""
    starts = rewrite_alignments([7] * 5000, [7, 7])
    assert starts == list(range(MAX_ALIGNMENTS_KEPT)) + list(range(5000 - MAX_ALIGNMENTS_KEPT, 5000))


@settings(max_examples=60, deadline=None)
@given(
    read=st.lists(st.integers(), min_size=1, max_size=30, unique=True),
    kept=st.integers(min_value=1, max_value=30),
    appended=st.lists(st.integers(min_value=1000, max_value=2000), max_size=5),
)
def test_rewrite_alignment_of_any_kept_tail_is_its_start(read: list[int], kept: int, appended: list[int]) -> None:
    """Whatever tail a rewrite keeps (with unique lines), the one alignment points at its first line."""
    kept = min(kept, len(read))
    start = len(read) - kept
    assert rewrite_alignments(read, read[start:] + appended) == [start]
