"""Signal episodes: the "signals" learner collapses repeated candidates into episodes and persists each closed one;
`signal_summary` then joins persisted episodes to the ledger's entries and outcomes by event time (pure).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import orjson

from learnd.config import SignalSettings
from learnd.errors import RecordError, StateError
from learnd.learning.learner import LEARNED, NOTHING, Applied, Learner
from learnd.learning.stats import CONFIDENCE, mean_interval, wilson_interval
from learnd.records.parse import UNKNOWN_REGIME, Record, SignalRecord, TradeEntry, TradeOutcome, parse_event_us

NAME: Final = "signals"
STATE_VERSION: Final = 1
ALL_REGIMES: Final = "all"
UNKNOWN_DIRECTION: Final = "unknown"
# Distinct unknown component keys counted by name; beyond this they share one counter (bounded state).
_MAX_UNKNOWN_KEYS: Final = 64
_OTHER_UNKNOWN: Final = "<other>"
_SECOND_US: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class SignalParams:
    """Episode and join parameters; times in event-time microseconds."""

    gap_us: int = 5 * 60 * _SECOND_US
    join_window_us: int = 10 * 60 * _SECOND_US
    pattern_size: int = 3
    regime_lookback_us: int = 6 * 3600 * _SECOND_US
    min_episodes: int = 20
    min_outcomes: int = 10
    suggestions_enabled: bool = False

    @classmethod
    def from_settings(cls, config: SignalSettings) -> SignalParams:
        """The parameters of the `[signals]` settings, in event-time microseconds."""
        minute_us = 60 * _SECOND_US
        return cls(
            gap_us=round(config.gap_minutes * minute_us),
            join_window_us=round(config.join_window_minutes * minute_us),
            pattern_size=config.pattern_size,
            regime_lookback_us=round(config.regime_lookback_hours * 60 * minute_us),
            min_episodes=config.min_episodes,
            min_outcomes=config.min_outcomes,
            suggestions_enabled=config.suggestions_enabled,
        )


@dataclass(frozen=True, slots=True)
class Episode:
    """Repeated candidates of one strategy, symbol and direction whose consecutive gaps stayed under the limit."""

    strategy: str
    symbol: str
    direction: str
    first_us: int
    last_us: int
    count: int
    scored_count: int
    peak_score: float | None
    mean_score: float | None
    components: tuple[tuple[str, float], ...]
    pattern: tuple[str, ...]
    is_open: bool = False
    # An episode a late line opened (behind the watermark by a gap or more) is numbered: its key then cannot be
    # that of an episode of the same first time already persisted, which a row of the same key would replace.
    late: int = 0

    @property
    def key(self) -> str:
        base = f"{self.strategy}|{self.symbol}|{self.direction}|{self.first_us}"
        return f"{base}#{self.late}" if self.late else base

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "symbol": self.symbol,
            "direction": self.direction,
            "first_us": self.first_us,
            "last_us": self.last_us,
            "count": self.count,
            "scored_count": self.scored_count,
            "peak_score": self.peak_score,
            "mean_score": self.mean_score,
            "components": dict(self.components),
            "pattern": list(self.pattern),
        } | ({"late": self.late} if self.late else {})

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, is_open: bool = False) -> Episode:
        return cls(
            strategy=data["strategy"],
            symbol=data["symbol"],
            direction=data["direction"],
            first_us=data["first_us"],
            last_us=data["last_us"],
            count=data["count"],
            scored_count=data["scored_count"],
            peak_score=data["peak_score"],
            mean_score=data["mean_score"],
            components=tuple(sorted(data["components"].items())),
            pattern=tuple(data["pattern"]),
            is_open=is_open,
            late=data.get("late", 0),
        )


@dataclass(slots=True)
class _OpenEpisode:
    """Running sums of an episode still open; mean and pattern are derived when it is read or closed."""

    strategy: str
    symbol: str
    direction: str
    first_us: int
    last_us: int
    count: int = 0
    scored_count: int = 0
    score_sum: float = 0.0
    peak_score: float | None = None
    # Per component, [sum of contributions, sum of their absolute values]: one lookup a component per candidate.
    totals: dict[str, list[float]] = field(default_factory=dict)
    late: int = 0  # see Episode.late

    def add(self, record: SignalRecord) -> None:
        event_us = record.event_us
        # Comparisons rather than min and max calls (this runs for every candidate); first_us <= last_us.
        if event_us > self.last_us:
            self.last_us = event_us
        elif event_us < self.first_us:
            self.first_us = event_us
        self.count += 1
        score = record.composite_score
        if score is not None:
            self.scored_count += 1
            self.score_sum += score
            # The first of equal values stays (0.0 before -0.0), as max would keep it; a score is never NaN.
            if self.peak_score is None or score > self.peak_score:
                self.peak_score = score
        totals = self.totals
        for name, value in record.components:
            try:
                pair = totals[name]
            except KeyError:
                # 0.0 + value, as a sum starting from zero would be (-0.0 becomes 0.0).
                totals[name] = [0.0 + value, abs(value)]
                continue
            pair[0] += value
            # abs(value) but for -0.0 as 0.0 (its negation): adding either to a sum that is not -0.0 gives the same.
            pair[1] += value if value > 0.0 else -value

    def freeze(self, pattern_size: int, *, is_open: bool) -> Episode:
        # A candidate without a component contributed nothing to it: means are over every candidate.
        totals = self.totals
        means = tuple(sorted((name, pair[0] / self.count) for name, pair in totals.items()))
        ranked = sorted(((name, pair[1]) for name, pair in totals.items()), key=lambda item: (-item[1], item[0]))
        pattern = tuple(sorted(name for name, total in ranked[:pattern_size] if total > 0.0))
        return Episode(
            strategy=self.strategy,
            symbol=self.symbol,
            direction=self.direction,
            first_us=self.first_us,
            last_us=self.last_us,
            count=self.count,
            scored_count=self.scored_count,
            peak_score=self.peak_score,
            mean_score=self.score_sum / self.scored_count if self.scored_count else None,
            components=means,
            pattern=pattern,
            is_open=is_open,
            late=self.late,
        )

    def to_state(self) -> list[Any]:
        names = sorted(self.totals)
        return [
            self.strategy,
            self.symbol,
            self.direction,
            self.first_us,
            self.last_us,
            self.count,
            self.scored_count,
            self.score_sum,
            self.peak_score,
            {name: self.totals[name][0] for name in names},
            {name: self.totals[name][1] for name in names},
            *([self.late] if self.late else []),
        ]

    @classmethod
    def from_state(cls, data: list[Any]) -> _OpenEpisode:
        strategy, symbol, direction, first_us, last_us, count, scored, score_sum, peak, sums, abs_sums = data[:11]
        totals = {name: [total, abs_sums[name]] for name, total in sums.items()}
        late = data[11] if len(data) > 11 else 0
        return cls(strategy, symbol, direction, first_us, last_us, count, scored, score_sum, peak, totals, late)


class SignalLearner(Learner):
    """Collapses signal candidates (file order) into episodes; only open episodes stay in memory.

    An episode closes when a later candidate of its key comes a gap or more after its last one, or when the
    watermark (the latest event time seen) moves a gap or more past it. A closed episode becomes a row
    (key strategy|symbol|direction|first_us). Everything depends only on the lines in order, so chunking,
    restarts and backfill give the same rows and state. Late lines are kept, never merged into what was already
    persisted: a candidate a gap or more before its key's open episode, or older than its swept one, is an
    episode of its own.
    """

    name = NAME
    record_types = (SignalRecord,)

    def __init__(self, params: SignalParams, state: bytes | None = None) -> None:
        self.params = params
        self._dirty = False
        self._open: dict[tuple[str, str, str], _OpenEpisode] = {}
        self.watermark_us = -1
        self.far_ahead_seen = False  # whether the candidate before was far ahead of the watermark (see apply)
        # The longest last - first of any episode closed so far: a reader after the episodes that ended in a window
        # looks for their rows (kept at their first candidate) that far before it. None: not known (a state written
        # before it was kept), until `adopt_longest` is given it from the rows.
        self.longest_us: int | None = 0
        self.counts: dict[str, int] = {"candidates": 0, "gate_failed": 0, "episodes_closed": 0}
        self.unknown_components: dict[str, int] = {}
        if state is not None:
            document = orjson.loads(state)
            if document.get("version") != STATE_VERSION:
                raise StateError(f"signals learner state version {document.get('version')!r} is not {STATE_VERSION}")
            self.watermark_us = document["watermark_us"]
            self.far_ahead_seen = bool(document.get("far_ahead_seen", False))
            self.longest_us = document.get("longest_us")
            self.counts = dict(document["counts"])
            self.unknown_components = dict(document["unknown_components"])
            for item in document["open"]:
                episode = _OpenEpisode.from_state(item)
                self._open[(episode.strategy, episode.symbol, episode.direction)] = episode
        self._next_sweep_us = self._earliest_close_us()

    def apply(self, source: str, record: Record) -> Applied:
        if not isinstance(record, SignalRecord):
            return NOTHING
        self._dirty = True
        self.counts["candidates"] += 1
        for unknown in record.unknown_components:
            self._count_unknown(unknown)
        if record.gate_passed is False:
            # The bot logs gate passes only; a failed one is not a candidate it could have traded.
            self.counts["gate_failed"] += 1
            return Applied(learned=False)
        event_us = record.event_us
        far_ahead = self.watermark_us >= 0 and event_us - self.watermark_us > _FAR_AHEAD_US
        if far_ahead and not self.far_ahead_seen:
            # Far beyond every line before it: a garbled date, or the first line after a long pause. Alone it is an
            # episode of its own, closed at once, and moves no clock (one such line made every later candidate an
            # episode of its own); a second such line in a row says the clock did move, and is taken.
            self.far_ahead_seen = True
            return _learned([self._stray(record)])
        self.far_ahead_seen = False
        self.watermark_us = max(self.watermark_us, event_us)
        gap_us = self.params.gap_us
        closed = self._sweep() if self.watermark_us >= self._next_sweep_us else []
        key = _key_of(record)
        episode = self._open.get(key)
        if episode is not None and event_us - episode.last_us >= gap_us:
            closed.append(self._close(key))
            episode = None
        if episode is not None and episode.first_us - event_us >= gap_us:
            # A line far older than the open episode (a late writer): an episode of its own, closed at once.
            closed.append(self._stray(record))
            return _learned(closed)
        if episode is None:
            late = self._next_late() if self.watermark_us - event_us >= gap_us else 0
            episode = self._open[key] = _OpenEpisode(*key, event_us, event_us, late=late)
        episode.add(record)
        close_us = episode.last_us + gap_us
        self._next_sweep_us = min(self._next_sweep_us, close_us)
        return _learned(closed) if closed else LEARNED

    def _stray(self, record: SignalRecord) -> Episode:
        """A candidate that is an episode of its own, closed at once (numbered: see Episode.late)."""
        stray = _OpenEpisode(*_key_of(record), record.event_us, record.event_us, late=self._next_late())
        stray.add(record)
        self.counts["episodes_closed"] += 1
        return self._closed(stray)

    def _next_late(self) -> int:
        """The number of the next episode a late line opens (counted in the state, so a function of the lines)."""
        number = self.counts["late_episodes"] = self.counts.get("late_episodes", 0) + 1
        return number

    def _sweep(self) -> list[Episode]:
        due = sorted(key for key, ep in self._open.items() if self.watermark_us - ep.last_us >= self.params.gap_us)
        closed = [self._close(key) for key in due]
        self._next_sweep_us = self._earliest_close_us()
        return closed

    def _close(self, key: tuple[str, str, str]) -> Episode:
        self.counts["episodes_closed"] += 1
        return self._closed(self._open.pop(key))

    def _closed(self, episode: _OpenEpisode) -> Episode:
        if self.longest_us is not None:
            self.longest_us = max(self.longest_us, episode.last_us - episode.first_us)
        return episode.freeze(self.params.pattern_size, is_open=False)

    def adopt_longest(self, rows: Iterable[tuple[str, int, bytes]]) -> None:
        """Work out the longest episode from the rows of every episode closed so far (this learner's, committed),
        for a state written before it was kept; committed with the next batch."""
        if self.longest_us is None:
            spans = (episode.last_us - episode.first_us for episode in episodes_from_rows(rows))
            self.longest_us = max(spans, default=0)
            self._dirty = True

    def _earliest_close_us(self) -> int:
        if not self._open:
            return 2**62
        return min(ep.last_us for ep in self._open.values()) + self.params.gap_us

    def _count_unknown(self, key: str) -> None:
        if key not in self.unknown_components and len(self.unknown_components) >= _MAX_UNKNOWN_KEYS:
            key = _OTHER_UNKNOWN
        self.unknown_components[key] = self.unknown_components.get(key, 0) + 1

    @property
    def open_count(self) -> int:
        return len(self._open)

    def gauges(self) -> dict[str, float]:
        return {
            "signal_open_episodes": len(self._open),
            "signal_episodes_closed": self.counts["episodes_closed"],
            "signal_candidates": self.counts["candidates"],
        }

    def open_episodes(self) -> list[Episode]:
        """The episodes still open, as they stand (in key order)."""
        return [self._open[key].freeze(self.params.pattern_size, is_open=True) for key in sorted(self._open)]

    def dump(self) -> bytes | None:
        if not self._dirty:
            return None
        self._dirty = False
        return self.state()

    def state(self) -> bytes:
        """The full state (what `dump` commits), whether or not it changed."""
        return orjson.dumps(
            {
                "version": STATE_VERSION,
                "watermark_us": self.watermark_us,
                "far_ahead_seen": self.far_ahead_seen,
                "longest_us": self.longest_us,
                "counts": self.counts,
                "unknown_components": self.unknown_components,
                "open": [self._open[key].to_state() for key in sorted(self._open)],
            },
            option=orjson.OPT_SORT_KEYS,
        )


def _key_of(record: SignalRecord) -> tuple[str, str, str]:
    return record.strategy, record.symbol, record.direction or UNKNOWN_DIRECTION


# How far past every candidate before it one may lie before it alone moves no clock (see SignalLearner.apply):
# longer than any pause of the bot's (a long weekend, a holiday, a week away).
_FAR_AHEAD_US: Final = 10 * 86_400_000_000


def _learned(closed: list[Episode]) -> Applied:
    # Most candidates close no episode: they share one result rather than each building an empty one.
    if not closed:
        return LEARNED
    return Applied(learned=True, rows=tuple(_episode_row(item) for item in closed))


def _episode_row(episode: Episode) -> tuple[str, int, bytes]:
    return episode.key, episode.first_us, orjson.dumps(episode.to_json(), option=orjson.OPT_SORT_KEYS)


def episodes_from_rows(rows: Iterable[tuple[str, int, bytes]]) -> list[Episode]:
    """Closed episodes from the store's learner_rows of this learner (key, event_us, body)."""
    return [Episode.from_json(orjson.loads(body)) for _, _, body in rows]


def unknown_components_from_state(state: bytes | None) -> dict[str, int]:
    """The unknown component keys of the signal lines learned so far, by name, with how many lines carried each
    (beyond the names kept, the rest under one counter), from a committed learner state."""
    if state is None:
        return {}
    return dict(sorted(orjson.loads(state)["unknown_components"].items()))


def open_episodes_from_state(state: bytes | None, params: SignalParams) -> list[Episode]:
    """The open episodes held in a committed learner state (for readers that do not run the learner)."""
    if state is None:
        return []
    return SignalLearner(params, state).open_episodes()


# Joins ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinedEpisode:
    """An episode with the entry it became (if any), that trade's closed outcome (if any) and its regime."""

    episode: Episode
    regime: str
    entry_key: str | None
    entry_us: int | None
    outcome_key: str | None
    pnl_pct: float | None

    @property
    def converted(self) -> bool:
        return self.entry_key is not None


def entry_time_us(entry: TradeEntry) -> int:
    """When a trade was entered: context.entry_ts when the record carries it (`entry_us`), else the time in the
    `open_<SYM>_<iso>` trade id, else the open row's own time."""
    if entry.entry_us is not None:
        return entry.entry_us
    prefix = f"open_{entry.symbol}_"
    if entry.key.startswith(prefix):
        try:
            return parse_event_us(entry.key[len(prefix) :], "trade_id")
        except RecordError:
            pass  # An id without a usable time: the row's own time is the best evidence left.
    return entry.event_us


def join_episodes(
    episodes: Iterable[Episode],
    entries: Iterable[TradeEntry],
    outcomes: Iterable[TradeOutcome],
    params: SignalParams,
) -> list[JoinedEpisode]:
    """Join episodes to entries and entries to closed outcomes, by event time only (pure, order-independent).

    An entry of the same strategy and symbol (and direction, when both say) converts the episode when it comes
    between the episode's first candidate and `join_window_us` after its last. Each entry converts at most one
    episode, the latest-ending one it can; each episode at most one entry, the earliest. Entry and close rows
    join on symbol + entry time. An unconverted episode takes the regime of the latest entry (any symbol) within
    `regime_lookback_us` before its last candidate: the regime is the market's, and signals do not carry it.
    """
    return join_ordered(join_order(episodes), timed_entries(entries), closing_trades(outcomes), params)


def join_order(episodes: Iterable[Episode]) -> list[Episode]:
    """Episodes in the order the join takes them: by last candidate, then key (a tie keeps the given order)."""
    return sorted(episodes, key=_join_position)


def _join_position(episode: Episode) -> tuple[int, str]:
    return episode.last_us, episode.key


def timed_entries(entries: Iterable[TradeEntry]) -> list[tuple[int, str, TradeEntry]]:
    """Entries with their entry time (`entry_time_us`), by that time, then key (a tie keeps the given order)."""
    return sorted(((entry_time_us(entry), entry.key, entry) for entry in entries), key=_timed_position)


def _timed_position(item: tuple[int, str, TradeEntry]) -> tuple[int, str]:
    return item[0], item[1]


def closing_trades(outcomes: Iterable[TradeOutcome]) -> list[TradeOutcome]:
    """The outcomes that can close an entry (whole, with an entry time), by event time, then key."""
    return [
        row
        for row in sorted(outcomes, key=lambda item: (item.event_us, item.key))
        if not row.is_partial and row.entry_us is not None
    ]


def join_ordered(
    ordered: list[Episode],
    timed: list[tuple[int, str, TradeEntry]],
    closing: Iterable[TradeOutcome],
    params: SignalParams,
) -> list[JoinedEpisode]:
    """`join_episodes` of inputs already in its order: `join_order`, `timed_entries` and `closing_trades` of them,
    or those of disjoint parts put together in the same order (the first close of an entry wins)."""
    closes: dict[tuple[str, int], TradeOutcome] = {}
    for row in closing:
        if row.entry_us is not None:
            closes.setdefault((row.symbol, row.entry_us), row)

    by_symbol: dict[tuple[str, str], _SymbolEpisodes] = {}
    for index, episode in enumerate(ordered):
        found = by_symbol.get((episode.strategy, episode.symbol))
        if found is None:
            found = by_symbol[episode.strategy, episode.symbol] = _SymbolEpisodes()
        found.add(index, episode)
    taken: dict[int, tuple[int, TradeEntry]] = {}
    for at_us, _, entry in timed:
        symbol_episodes = by_symbol.get((entry.strategy, entry.symbol))
        if symbol_episodes is not None:
            best = symbol_episodes.converted_by(ordered, at_us, entry.direction, taken, params.join_window_us)
            if best is not None:
                taken[best] = (at_us, entry)

    entry_times = [item[0] for item in timed]
    joined: list[JoinedEpisode] = []
    for index, episode in enumerate(ordered):
        match = taken.get(index)
        if match is None:
            regime = _market_regime(timed, entry_times, episode.last_us, params.regime_lookback_us)
            joined.append(JoinedEpisode(episode, regime, None, None, None, None))
            continue
        at_us, entry = match
        outcome = closes.get((entry.symbol, at_us))
        joined.append(
            JoinedEpisode(
                episode,
                entry.regime,
                entry.key,
                at_us,
                outcome.key if outcome else None,
                outcome.pnl_pct if outcome else None,
            )
        )
    return joined


class _SymbolEpisodes:
    """One (strategy, symbol)'s episodes in join order (by last candidate): an entry looks only at those that can
    hold its time, found by bisection instead of a walk over all of them."""

    __slots__ = ("indices", "lasts", "span_us")

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.lasts: list[int] = []
        self.span_us = 0  # the longest last - first of any of them (an episode's first is within it of its last)

    def add(self, index: int, episode: Episode) -> None:
        self.indices.append(index)
        self.lasts.append(episode.last_us)
        self.span_us = max(self.span_us, episode.last_us - episode.first_us)

    def converted_by(
        self,
        ordered: list[Episode],
        at_us: int,
        direction: str | None,
        taken: Mapping[int, object],
        window_us: int,
    ) -> int | None:
        """The episode an entry at `at_us` converts: of those not taken whose [first, last + window] holds it and
        whose direction agrees, the latest-ending (the last in join order)."""
        # Later in join order than `end`, an episode's first candidate comes after at_us (its last does).
        end = bisect_right(self.lasts, at_us + self.span_us)
        for position in range(end - 1, -1, -1):
            index = self.indices[position]
            episode = ordered[index]
            if episode.last_us + window_us < at_us:
                return None  # and so does every one before it
            if index in taken or episode.first_us > at_us:
                continue
            if _directions_agree(episode.direction, direction):
                return index
        return None


def _directions_agree(episode_direction: str, entry_direction: str | None) -> bool:
    if entry_direction is None or episode_direction == UNKNOWN_DIRECTION:
        return True
    return episode_direction.casefold() == entry_direction.casefold()


def _market_regime(timed: list[tuple[int, str, TradeEntry]], times: list[int], at_us: int, lookback_us: int) -> str:
    index = bisect_right(times, at_us) - 1
    if index >= 0 and at_us - times[index] <= lookback_us:
        return timed[index][2].regime
    return UNKNOWN_REGIME


# Summary --------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    episodes: int = 0
    trades: int = 0
    pnls: list[float] = field(default_factory=list)

    def add(self, item: JoinedEpisode) -> None:
        self.episodes += 1
        if item.converted:
            self.trades += 1
        if item.pnl_pct is not None:
            self.pnls.append(item.pnl_pct)

    def view(self) -> dict[str, Any]:
        conversion, low, high = _conversion(self.trades, self.episodes)
        pnls = self.pnls
        count = len(pnls)
        stats = mean_interval(pnls)
        # mean_interval's mean is this very quotient: taken from it when it has one (two outcomes or more).
        mean = stats[0] if stats else math.fsum(pnls) / count if count else None
        return {
            "episodes": self.episodes,
            "trades": self.trades,
            "conversion": conversion,
            "conversion_ci": [low, high],
            "outcomes": count,
            "win_rate": _round(len([pnl for pnl in pnls if pnl > 0]) / count) if count else None,
            "mean_pnl_pct": _round(mean) if mean is not None else None,
            "mean_pnl_pct_ci": [_round(stats[1]), _round(stats[2])] if stats else None,
        }


# A report's groups hold a few hundred distinct (trades, episodes) pairs, most of them small: each pair's conversion
# and Wilson interval (rounded as reported) worked out once.
@lru_cache(maxsize=4_096)
def _conversion(trades: int, episodes: int) -> tuple[float | None, float, float]:
    low, high = wilson_interval(trades, episodes)
    return _round(trades / episodes) if episodes else None, _round(low), _round(high)


def signal_summary(
    episodes: Iterable[Episode],
    entries: Iterable[TradeEntry],
    outcomes: Iterable[TradeOutcome],
    params: SignalParams | None = None,
) -> dict[str, Any]:
    """Per strategy, pattern and regime: episodes, conversion to trades (Wilson 95 % interval) and the converted
    episodes' outcomes (win rate, mean pnl_pct with a t-interval), plus suggestions where an interval excludes the
    strategy's average. JSON-able and deterministic; suggestions never change weights by themselves."""
    params = params or SignalParams()
    return summary_of(join_episodes(episodes, entries, outcomes, params), params)


def summary_of(joined: list[JoinedEpisode], params: SignalParams) -> dict[str, Any]:
    """`signal_summary` of episodes already joined (`join_episodes` or `join_ordered`)."""
    strategies: dict[str, _Group] = {}
    groups: dict[tuple[str, tuple[str, ...], str], _Group] = {}
    for item in joined:
        episode = item.episode
        group = strategies.get(episode.strategy)
        if group is None:
            group = strategies[episode.strategy] = _Group()
        group.add(item)
        for regime in (item.regime, ALL_REGIMES):
            key = (episode.strategy, episode.pattern, regime)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group()
            group.add(item)

    baselines = {name: group.view() for name, group in sorted(strategies.items())}
    rows: list[dict[str, Any]] = []
    suggestions: list[dict[str, Any]] = []
    for (strategy, pattern, regime), group in sorted(groups.items()):
        view = {"strategy": strategy, "pattern": list(pattern), "regime": regime, **group.view()}
        rows.append(view)
        suggestions.extend(_suggestions(view, baselines[strategy], params))
    return {
        "params": {
            "gap_s": params.gap_us / _SECOND_US,
            "join_window_s": params.join_window_us / _SECOND_US,
            "pattern_size": params.pattern_size,
            "confidence": CONFIDENCE,
            "min_episodes": params.min_episodes,
            "min_outcomes": params.min_outcomes,
        },
        "episodes": len(joined),
        "open_episodes": sum(1 for item in joined if item.episode.is_open),
        "converted": sum(1 for item in joined if item.converted),
        "with_outcome": sum(1 for item in joined if item.pnl_pct is not None),
        "strategies": baselines,
        "patterns": rows,
        "suggestions": suggestions,
        "suggestions_enabled": params.suggestions_enabled,
    }


def _suggestions(view: dict[str, Any], baseline: dict[str, Any], params: SignalParams) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    common = {
        "strategy": view["strategy"],
        "pattern": view["pattern"],
        "regime": view["regime"],
        "applies_to_weights": params.suggestions_enabled,
    }
    average = baseline["conversion"]
    if view["episodes"] >= params.min_episodes and average is not None:
        low, high = view["conversion_ci"]
        if low > average or high < average:
            found.append(
                {
                    **common,
                    "metric": "conversion",
                    "direction": "raise" if low > average else "lower",
                    "value": view["conversion"],
                    "bound": [low, high],
                    "strategy_average": average,
                    "samples": view["episodes"],
                }
            )
    average = baseline["mean_pnl_pct"]
    interval = view["mean_pnl_pct_ci"]
    if view["outcomes"] >= params.min_outcomes and average is not None and interval is not None:
        low, high = interval
        if low > average or high < average:
            found.append(
                {
                    **common,
                    "metric": "mean_pnl_pct",
                    "direction": "raise" if low > average else "lower",
                    "value": view["mean_pnl_pct"],
                    "bound": [low, high],
                    "strategy_average": average,
                    "samples": view["outcomes"],
                }
            )
    return found


def _round(value: float) -> float:
    return round(value, 6)


def render_signals(summary: Mapping[str, Any], *, limit: int = 20) -> str:
    """The signals section of a report (and `learnd signals`): baselines, the busiest patterns, suggestions."""
    lines = [
        f"Signal episodes: {summary['episodes']} ({summary['open_episodes']} open), "
        f"{summary['converted']} became trades, {summary['with_outcome']} with a closed outcome"
    ]
    for strategy, view in summary["strategies"].items():
        lines.append(
            f"  {strategy}: conversion {_pct(view['conversion'])} of {view['episodes']}, "
            f"win rate {_pct(view['win_rate'])}, mean pnl {_num(view['mean_pnl_pct'])} %"
        )
    busiest = sorted(
        (row for row in summary["patterns"] if row["regime"] != ALL_REGIMES),
        key=lambda row: (-row["episodes"], row["strategy"], row["pattern"], row["regime"]),
    )[:limit]
    if busiest:
        lines.append(f"  {'strategy':<10} {'pattern':<52} {'regime':<22} {'eps':>6} {'conv':>7} {'n':>5} {'pnl%':>7}")
    for row in busiest:
        lines.append(
            f"  {row['strategy']:<10} {'+'.join(row['pattern']) or '-':<52} {row['regime']:<22} "
            f"{row['episodes']:>6} {_pct(row['conversion']):>7} {row['outcomes']:>5} {_num(row['mean_pnl_pct']):>7}"
        )
    for kind, unknown in (summary.get("unknown_components") or {}).items():
        if unknown:
            counted = ", ".join(f"{key} x{count}" for key, count in unknown.items())
            lines.append(f"Unknown component keys of {kind} (counted, never learned): {counted}")
    state = "marked to apply; learnd applies none" if summary["suggestions_enabled"] else "report only"
    lines.append(f"Suggested adjustments ({state}): {len(summary['suggestions'])}")
    for item in summary["suggestions"]:
        low, high = item["bound"]
        lines.append(
            f"  {item['direction']} {item['strategy']} {'+'.join(item['pattern'])} [{item['regime']}]: "
            f"{item['metric']} {_num(item['value'])} (95 % {_num(low)}..{_num(high)}) vs average "
            f"{_num(item['strategy_average'])}, n={item['samples']}"
        )
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
