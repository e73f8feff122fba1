"""The signals section of a weekly report: four weeks of signal episodes joined to the entries and closing trades of
the same weeks. Each week of the window is read from the store and put in join order once, and kept while the
store holds nothing new: consecutive weekly reports share three of their four weeks.
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

# A window is read in parts this long, cut back from its end: windows ending a week apart share all parts but one.
PART_US: Final = 7 * 86_400_000_000
# The parts kept (by the RecordCache, as kind "signal-window"): a window's four and the four of the one before.
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
    parts = [
        records.kept(_KIND, b"%d|%d|" % (low, high) + stamp, partial(read_part, store, records, low, high), _KEPT_PARTS)
        for low, high in part_bounds(start_us, end_us)
    ]
    # Runs in order, put together in the order their rows are read at once (the open episodes last): a stable sort
    # of them keeps every tie as the sort of all the rows would.
    ordered = sorted(chain(chain.from_iterable(part.episodes for part in parts), opened), key=_POSITION)
    timed = sorted(chain.from_iterable(part.timed for part in parts), key=_POSITION)
    closing = chain.from_iterable(part.closing for part in parts)
    return summary_of(join_ordered([item[2] for item in ordered], timed, closing, params), params)


def part_bounds(start_us: int, end_us: int) -> list[tuple[int, int]]:
    """[start, end) cut every PART_US back from its end, oldest part first."""
    cuts = [end_us]
    while cuts[-1] - PART_US > start_us:
        cuts.append(cuts[-1] - PART_US)
    cuts.append(start_us)
    return list(zip(cuts[:0:-1], cuts[-2::-1], strict=True))


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
