"""The signals section of the reports: the signal episodes that ended in a window (a day's, from one session's close
to the next; a week's report, the four weeks to its close) joined to the entries and closing trades of their times.
The window is read in weeks of a fixed grid, each read from the store and put in join order once, and kept while the
store holds nothing new: consecutive reports share all their weeks but the newest, at whatever time each one ends.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from itertools import chain
from operator import itemgetter
from typing import Any, Final

from learnd.learning.signals import NAME as SIGNAL_LEARNER
from learnd.learning.signals import (
    Episode,
    SignalLearner,
    SignalParams,
    closing_trades,
    episodes_from_rows,
    join_ordered,
    signal_summary,
    summary_of,
    timed_entries,
)
from learnd.records.parse import TradeEntry, TradeOutcome
from learnd.store.database import Store
from learnd.store.ledger import RecordCache

# A window is read in the parts of a fixed grid, weeks from a Monday 12:00 UTC (1970-01-05): windows ending a week
# apart share all parts but the newest even when their ends are not a week apart (a clock change moves the end by an
# hour, a Monday holiday by a day). The two parts at a window's ends hold rows outside it, left out as the window is
# put together. Any grid reads the same rows; this one has a week's end (Monday 00:00 in New York, 04:00 or 05:00
# UTC) shortly before a grid point, so its newest part reads little beyond it (rows the next daily periods read).
PART_US: Final = 7 * 86_400_000_000
_GRID_START_US: Final = 4 * 86_400_000_000 + 12 * 3_600_000_000
# The parts kept (by the RecordCache, as kind "signal-window"): a window's five and three of the ones before.
_KEPT_PARTS: Final = 8
_KIND: Final = "signal-window"
_POSITION: Final = itemgetter(0, 1)


@dataclass(frozen=True, slots=True)
class WindowPart:
    """What one part [start, end) of the grid adds to a window's join, each in the join's order: the closed episodes
    that began in it (with their last time and key), the entries and the closing trades of its event times."""

    episodes: list[tuple[int, str, Episode]]
    timed: list[tuple[int, str, TradeEntry]]
    closing: list[TradeOutcome]


def window_signals(
    store: Store, params: SignalParams, after_us: int, cut_us: int, records: RecordCache
) -> dict[str, Any]:
    """The signal summary of the episodes that ended in (after, cut], joined to the entries and closing trades of
    event times from the first candidate of the earliest of them (less the regime lookback) to the cut.

    An episode ends a gap after its last candidate: no later candidate can join it then. So a job that runs after
    the close `cut` has seen every episode that ended by it, closed or still open in the learner's state, as a later
    backfill sees it; one that goes on past the close is the next session's. A part is taken from `records` when
    the store is as it was when the part was read: the same ledger number and the same signals learner state (a
    line that added an episode row changed the state it was committed with)."""
    state = store.learner_state(SIGNAL_LEARNER)
    held = SignalLearner(params, state)
    gap_us = params.gap_us
    opened = [
        (episode.last_us, episode.key, replace(episode, is_open=False))
        for episode in held.open_episodes()
        if after_us < episode.last_us + gap_us <= cut_us
    ]
    # The rows are kept at their episode's first candidate: those that ended in the window began no further back
    # than the longest episode before it.
    rows_until_us = cut_us - gap_us + 1
    if held.longest_us is not None:
        rows_since_us = after_us - gap_us - held.longest_us
    else:
        earliest = next(store.learner_rows(SIGNAL_LEARNER, until_us=rows_until_us), None)
        rows_since_us = rows_until_us if earliest is None else earliest[1]
    rows = store.learner_rows(SIGNAL_LEARNER, since_us=rows_since_us, until_us=rows_until_us)
    if not opened and next(rows, None) is None:
        # Without an episode nothing is joined: the window's entries and trades go unread (a bot that logs no
        # signals would otherwise have four weeks of its ledger decoded for every weekly report).
        return signal_summary((), (), (), params)
    stamp = b"%d|" % store.ledger_seq + (state or b"")
    # From the first candidate the window's episodes can have (an open one may be longer than any closed), less
    # the regime lookback: what the join may read.
    read_since_us = min([rows_since_us] + [item[2].first_us for item in opened]) - params.regime_lookback_us
    parts = [
        records.kept(_KIND, b"%d|%d|" % (low, high) + stamp, partial(read_part, store, records, low, high), _KEPT_PARTS)
        for low, high in part_bounds(read_since_us, cut_us + 1)
    ]
    # Runs in order, put together in the order their rows are read at once (the open episodes last): a stable sort
    # of them keeps every tie as the sort of all the rows would.
    ended = (item for part in parts for item in part.episodes if after_us < item[0] + gap_us <= cut_us)
    ordered = sorted(chain(ended, opened), key=_POSITION)
    if not ordered:
        return signal_summary((), (), (), params)
    since_us = min(item[2].first_us for item in ordered) - params.regime_lookback_us
    timed = sorted(
        (item for part in parts for item in part.timed if since_us <= item[2].event_us <= cut_us), key=_POSITION
    )
    closing = (row for part in parts for row in part.closing if since_us <= row.event_us <= cut_us)
    return summary_of(join_ordered([item[2] for item in ordered], timed, closing, params), params)


def part_bounds(start_us: int, end_us: int) -> list[tuple[int, int]]:
    """The parts of the grid that [start, end) overlaps, oldest first (none when it is empty)."""
    low = start_us - (start_us - _GRID_START_US) % PART_US
    bounds: list[tuple[int, int]] = []
    while low < end_us and start_us < end_us:
        bounds.append((low, low + PART_US))
        low += PART_US
    return bounds


def read_part(store: Store, records: RecordCache, start_us: int, end_us: int) -> WindowPart:
    """One part of a window as the store holds it."""
    episodes = [
        records.decoded(SIGNAL_LEARNER, body, _episode)
        for _, _, body in store.learner_rows(SIGNAL_LEARNER, since_us=start_us, until_us=end_us)
    ]
    entries = records.records(store, "entry", since_us=start_us, until_us=end_us)
    trades = records.records(store, "trade", since_us=start_us, until_us=end_us)
    return WindowPart(
        episodes=sorted(((episode.last_us, episode.key, episode) for episode in episodes), key=_POSITION),
        timed=timed_entries(entry for entry in entries if isinstance(entry, TradeEntry)),
        closing=closing_trades(trade for trade in trades if isinstance(trade, TradeOutcome)),
    )


def _episode(body: bytes) -> Episode:
    (episode,) = episodes_from_rows((("", 0, body),))
    return episode
