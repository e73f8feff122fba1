"""sources.framing: line hashes, and where a rewritten file's first lines sit among the lines already read."""

from __future__ import annotations

from array import array
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.sources.framing import MAX_ALIGNMENTS_KEPT, KeptTail, LineWindow, line_hash, rewrite_alignments


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


@given(
    st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=30),
    st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=60),
    st.integers(0, 12),
)
def test_line_window_keeps_the_last_lines_oldest_first(first: list[int], appended: list[int], size: int) -> None:
    """The window holds what a deque bounded to its size would, in the same order, read any way a Sequence is."""
    window = LineWindow(first, size)
    expected = deque(first, maxlen=size)
    for value in appended:
        window.append(value)
        expected.append(value)
    assert list(window) == list(expected)
    assert len(window) == len(expected)
    assert bool(window) == bool(expected)
    assert [window[index] for index in range(-len(window), len(window))] == list(expected) * 2
    assert window[1:-1] == list(expected)[1:-1]


@given(
    st.lists(st.integers(-2, 5), max_size=30),
    st.lists(st.integers(-2, 5), max_size=60),
    st.integers(0, 12),
    st.booleans(),
)
def test_line_window_counts_a_hash_as_the_list_of_its_lines_would(
    first: list[int], appended: list[int], size: int, stored: bool
) -> None:
    """How often a hash occurs in the window (a restart's first test for a kept tail), wrapped around or not, made
    from a list or from the store's array (which it copies). Small values share most of their bytes, so a pattern
    that straddles two items is found often and must not count."""
    hashes = array("q", first)
    window = LineWindow(hashes if stored else first, size)
    for value in appended:
        window.append(value)
    assert hashes.tolist() == first
    lines = list(window)
    assert lines == list(deque([*first, *appended], maxlen=size))
    for value in range(-3, 7):
        assert window.count(value) == lines.count(value)


def test_line_window_refuses_an_index_outside_it() -> None:
    """Past either end of a wrapped window is an IndexError, as for any sequence."""
    window = LineWindow([1, 2, 3], 3)
    window.append(4)
    assert list(window) == [2, 3, 4]
    assert window.index(4) == 2
    for index in (3, -4):
        with pytest.raises(IndexError):
            window[index]


def test_a_wrapped_line_window_aligns_a_kept_tail_like_a_list() -> None:
    """A rewrite's kept tail is found in a window that has wrapped around as in the same lines as a list."""
    window = LineWindow(range(100), 10)
    for value in range(100, 105):
        window.append(value)
    assert rewrite_alignments(window, [101, 102, 103, 104, 7]) == [6]
    assert KeptTail(window).marks([102, 103, 104, 9]) == [True, True, True, False]


@given(
    st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=30),
    st.lists(st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=25), max_size=6),
    st.integers(0, 12),
)
def test_line_window_extended_holds_what_appending_each_would(
    first: list[int], batches: list[list[int]], size: int
) -> None:
    """Extending by a batch (empty, short, past the end of the ring, longer than the whole window) keeps the same
    lines in the same order as appending them one by one."""
    extended = LineWindow(first, size)
    appended = LineWindow(first, size)
    for batch in batches:
        extended.extend(batch)
        for value in batch:
            appended.append(value)
        assert list(extended) == list(appended)
    assert list(extended) == list(deque([*first, *(value for batch in batches for value in batch)], maxlen=size))


def test_a_run_that_is_all_of_an_ended_file_but_stops_short_of_the_window_end_is_judged_as_diverged() -> None:
    """With `ended`, the file's lines are all there is: a run matching all of them short of the window's end is a
    kept tail only as a diverged one would be (fewer lines after it than it matched, or no more than late_lines)."""
    window = [1, 2, 3, 4, 5, 6]
    assert rewrite_alignments(window, [1], late_lines=0) == [0]
    assert rewrite_alignments(window, [1], late_lines=0, ended=True) == []
    assert rewrite_alignments(window, [1], late_lines=5, ended=True) == [0]
    assert rewrite_alignments(window, [2, 3, 4], late_lines=0, ended=True) == [1]  # 2 lines after it, 3 matched
    assert rewrite_alignments(window, [5, 6], ended=True) == [4]  # reaches the end


def test_first_lines_are_undecided_while_the_earliest_run_matches_them_all_short_of_the_window_end() -> None:
    """The banner alone, at the start of the window: undecided. The banner and a new line, lines reaching the end,
    lines matching nowhere: decided. Once compared, nothing is undecided any more."""
    window = [9, 1, 2, 3, 4]
    assert KeptTail(window).undecided([9])
    assert KeptTail(window).undecided([1, 2])
    assert not KeptTail(window).undecided([9, 7])
    assert not KeptTail(window).undecided([3, 4])
    assert not KeptTail(window).undecided([7])
    assert not KeptTail(window).undecided([])
    assert not KeptTail(window, late_lines=3).undecided([9, 7])  # a diverged run: decided, a kept tail of 1
    kept = KeptTail(window)
    assert kept.marks([1]) == [True]
    assert not kept.undecided([1, 2])


def test_a_run_long_enough_to_be_a_kept_tail_wherever_it_stops_is_not_undecided() -> None:
    """Short of the window's end, but with fewer lines after it than it matched, or no more than the replaced file
    gave after it was replaced: a kept tail whatever comes next, so told at once."""
    window = [1, 2, 3, 4, 5, 6]
    assert KeptTail(window).undecided([3, 4])  # 2 lines after it, 2 matched
    assert not KeptTail(window).undecided([2, 3, 4])  # 2 lines after it, 3 matched
    assert not KeptTail(window, late_lines=2).undecided([3, 4])  # the 2 lines after it came after the copy
    assert KeptTail(window, late_lines=2).undecided([2])


def test_the_first_comparison_may_look_past_the_lines_marked() -> None:
    """begin() compares all the lines read; marks() then follows only those handed out, the rest at the next call."""
    window = [9, 1, 2, 3, 4]
    kept = KeptTail(window)
    kept.begin([1, 2, 3, 4, 8])
    assert kept.marks([1, 2]) == [True, True]
    assert kept.marks([3, 4, 8]) == [True, True, False]
    assert kept.finished


def marks_read_in_pieces(
    window: list[int], lines: list[int], cuts: list[int], *, late_lines: int, budget: int
) -> tuple[list[bool], list[int]]:
    """What the tailer does: lines read in pieces (at `cuts`), held while undecided, told with what follows, handed
    out `budget` at most at a time (the rest read again), settled as ended if still held at the file's end. The
    marks, and the lines in the order handed out."""
    kept = KeptTail(window, late_lines=late_lines)
    held: list[int] = []
    marks: list[bool] = []
    out: list[int] = []
    position = 0
    ends = sorted({*(cut for cut in cuts if 0 < cut < len(lines)), len(lines)})
    while position < len(lines):
        end = min(next(cut for cut in ends if cut > position), position + budget)
        fresh = held + lines[position:end]
        position = end
        if kept.undecided(fresh):
            held = fresh
            continue
        held = []
        kept.begin(fresh)
        if len(fresh) > budget:
            position -= len(fresh) - budget
            fresh = fresh[:budget]
        marks += kept.marks(fresh)
        out += fresh
    if held:
        marks += kept.marks(held, ended=True)
        out += held
    return marks, out


@settings(max_examples=300)
@given(
    st.lists(st.integers(0, 12), max_size=10, unique=True),
    st.lists(st.integers(0, 12), min_size=1, max_size=14),
    st.lists(st.integers(0, 14), max_size=5),
    st.integers(0, 3),
    st.integers(1, 6),
)
def test_marks_do_not_depend_on_how_the_file_was_read(
    window: list[int], lines: list[int], cuts: list[int], late_lines: int, budget: int
) -> None:
    """However a file's lines arrive (pieces, budgets), holding the undecided ones gives the marks of one read of
    the whole file: of it as it ends there when its first lines are still undecided then, else of it read whole.
    (In a window without repeated lines, where a run can sit in one place only: where it can sit in several, which
    of them decides may still depend on how far the file was read when its first lines were told.)"""
    marks, out = marks_read_in_pieces(window, lines, cuts, late_lines=late_lines, budget=budget)
    assert out == lines
    ended = KeptTail(window, late_lines=late_lines).undecided(lines)
    assert marks == KeptTail(window, late_lines=late_lines).marks(lines, ended=ended)
