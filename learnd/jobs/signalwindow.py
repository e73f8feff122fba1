"""The signals section of a weekly report: four weeks of signal episodes joined to the entries and closing trades of
the same weeks. The window is read in weeks of a fixed grid, each read from the store and put in join order once,
and kept while the store holds nothing new: consecutive weekly reports share all their weeks but the newest, at
whatever time each one ends.
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
    SignalParams,
    closing_trades,
    episodes_from_rows,
    join_ordered,
    open_episodes_from_state,
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
    """What one part [start, end) of a window adds to its join, each in the join's order: the closed episodes that
    began in it (with their last time and key), the entries and the closing trades of its event times."""

    episodes: list[tuple[int, str, Episode]]
    timed: list[tuple[int, str, TradeEntry]]
    closing: list[TradeOutcome]

    def within(self, start_us: int, end_us: int) -> WindowPart:
        """The part's rows of event times in [start, end) (an episode's row is at its first candidate), in order."""
        return WindowPart(
            episodes=[item for item in self.episodes if start_us <= item[2].first_us < end_us],
            timed=[item for item in self.timed if start_us <= item[2].event_us < end_us],
            closing=[row for row in self.closing if start_us <= row.event_us < end_us],
        )


def window_signals(
    store: Store, params: SignalParams, start_us: int, end_us: int, records: RecordCache
) -> dict[str, Any]:
    """The signal summary of episodes that began in [start, end), joined to entries and outcomes of [start, end)
    (`signal_summary` of them, the same bytes). A part is taken from `records` when the store is as it was when the
    part was read: the same ledger number and the same signals learner state (a line that added an episode row
    changed the state it was committed with)."""
    state = store.learner_state(SIGNAL_LEARNER)
    opened = [(episode.last_us, episode.key, episode) for episode in open_episodes_in(state, params, start_us, end_us)]
    if not opened and next(store.learner_rows(SIGNAL_LEARNER, since_us=start_us, until_us=end_us), None) is None:
        # Without an episode nothing is joined: the window's entries and trades go unread (a bot that logs no
        # signals would otherwise have four weeks of its ledger decoded for every weekly report).
        return signal_summary((), (), (), params)
    stamp = b"%d|" % store.ledger_seq + (state or b"")
    parts: list[WindowPart] = []
    for low, high in part_bounds(start_us, end_us):
        part = records.kept(
            _KIND, b"%d|%d|" % (low, high) + stamp, partial(read_part, store, records, low, high), _KEPT_PARTS
        )
        parts.append(part if start_us <= low and high <= end_us else part.within(start_us, end_us))
    # Runs in order, put together in the order their rows are read at once (the open episodes last): a stable sort
    # of them keeps every tie as the sort of all the rows would.
    ordered = sorted(chain(chain.from_iterable(part.episodes for part in parts), opened), key=_POSITION)
    timed = sorted(chain.from_iterable(part.timed for part in parts), key=_POSITION)
    closing = chain.from_iterable(part.closing for part in parts)
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


def open_episodes_in(state: bytes | None, params: SignalParams, start_us: int, end_us: int) -> list[Episode]:
    """The episodes a signals learner state holds open that began in [start, end), as they stand (closed, as a
    later backfill would see them)."""
    return [
        replace(episode, is_open=False)
        for episode in open_episodes_from_state(state, params)
        if start_us <= episode.first_us < end_us
    ]


def _episode(body: bytes) -> Episode:
    (episode,) = episodes_from_rows((("", 0, body),))
    return episode
