"""jobs.signalwindow: a report's signals section read in week-long parts, kept from one report to the next, gives the
bytes of the summary of the whole window read at once, whatever the history (episodes and entries across part
boundaries, entries logged after their entry time, late and partial outcomes, equal times, open episodes, rows that
arrive between two reports, a state that does not know its longest episode)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learnd.exports.files import json_bytes
from learnd.jobs.signalwindow import PART_US, part_bounds, window_signals
from learnd.learning.signals import ALL_REGIMES, Episode, SignalLearner, SignalParams, signal_summary
from learnd.learning.signals import NAME as SIGNAL_LEARNER
from learnd.records.encoding import encode_record
from learnd.records.parse import Record, SignalRecord, TradeEntry, TradeOutcome
from learnd.store.database import Batch, LedgerRow, Store
from learnd.store.ledger import RecordCache

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_772_409_600 * SECOND  # 2026-03-02 00:00 UTC
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SYMBOLS = ("AMD", "NVDA")
WINDOW_US = 28 * DAY


def test_a_window_is_read_in_the_weeks_of_a_fixed_grid() -> None:
    """Weeks from a Monday 12:00 UTC: windows ending a week apart share all weeks but the newest, even when their
    ends are not a week apart (a clock change, a holiday)."""
    grid = T0 + 12 * HOUR  # T0 is a Monday
    assert part_bounds(grid, grid + WINDOW_US) == [(grid + k * PART_US, grid + (k + 1) * PART_US) for k in range(4)]
    assert part_bounds(grid - HOUR, grid + WINDOW_US)[0] == (grid - PART_US, grid)
    assert part_bounds(grid + HOUR, grid + 2 * HOUR) == [(grid, grid + PART_US)]
    assert part_bounds(grid + HOUR, grid + HOUR) == []
    # Weeks ending at Monday 00:00 in New York (05:00 UTC), an hour earlier after a clock change, then a day later
    # after a Monday holiday, then on the Monday after.
    ends = [T0 + 5 * HOUR, T0 + 7 * DAY + 4 * HOUR, T0 + 15 * DAY + 4 * HOUR, T0 + 21 * DAY + 4 * HOUR]
    cut = [part_bounds(end_us - WINDOW_US, end_us) for end_us in ends]
    assert [len(bounds) for bounds in cut] == [5, 5, 5, 5]
    read = set(cut[0])
    fresh = []
    for bounds in cut[1:]:
        fresh.append(len(set(bounds) - read))
        read |= set(bounds)
    assert fresh == [1, 2, 0]


def test_an_episode_counts_in_the_window_it_ended_in_open_or_closed(tmp_path: Path) -> None:
    """An episode ends a gap after its last candidate (no later one can join it then): it counts in the window that
    holds that end, as it stands when the learner holds it still open, and in no other."""
    params = SignalParams()
    learner = SignalLearner(params)
    rows = []
    for symbol, at_us in (("AMD", T0 + HOUR), ("AMD", T0 + HOUR + MINUTE), ("NVDA", T0 + 3 * HOUR)):
        record = SignalRecord("equity", symbol, "bullish", at_us, 1.0, (("x", 1.0),), (), True, None)
        rows += [(SIGNAL_LEARNER, *row) for row in learner.apply("signals", record).rows]
    assert len(rows) == 1 and learner.open_count == 1  # AMD closed by NVDA's time, NVDA still open
    store = Store.open(tmp_path / "store.db")
    try:
        store.commit(Batch(learner_rows=rows, learner_states={SIGNAL_LEARNER: learner.state()}))
        amd_end = T0 + HOUR + MINUTE + params.gap_us

        def episodes(after_us: int, cut_us: int) -> int:
            summary = window_signals(store, params, after_us, cut_us, RecordCache())
            return sum(row["episodes"] for row in summary["patterns"] if row["regime"] == ALL_REGIMES)

        assert [episodes(T0, amd_end - 1), episodes(T0, amd_end), episodes(amd_end, T0 + DAY)] == [0, 1, 1]
        assert episodes(T0, T0 + DAY) == 2
    finally:
        store.close()


def _iso(event_us: int) -> str:
    return (EPOCH + timedelta(microseconds=event_us)).isoformat(timespec="microseconds")


def _episode(symbol: str, direction: str, first_us: int, last_us: int, pattern: int) -> Episode:
    return Episode("equity", symbol, direction, first_us, last_us, 3, 3, 1.0, 1.0, (("x", 1.0),), (f"p{pattern}",))


def _row(kind: str, record: TradeEntry | TradeOutcome, offset: int) -> LedgerRow:
    return LedgerRow(
        kind, record.key, record.strategy, record.symbol, record.event_us, "attribution", offset, encode_record(record)
    )


# Times over five weeks, five minutes apart in the first and last hour of a day: equal times are common, entries
# fall within an episode's join window, and both cross the ends of days and weeks.
_TIMES = st.builds(
    lambda day, hour, slot: T0 + day * DAY + hour * HOUR + slot * 5 * MINUTE,
    st.integers(0, 34),
    st.sampled_from([0, 23]),
    st.integers(0, 11),
)
_EPISODES = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.sampled_from(["bullish", "bearish", "unknown"]),
        _TIMES,
        st.sampled_from([0, 5 * MINUTE, 2 * HOUR, 3 * DAY]),  # some cross a day's or a week's end
        st.integers(0, 3),
    ),
    max_size=40,
)
# An entry: its time, how much later its row was logged (a late writer), its direction, regime, and an outcome
# (pnl, how long after the entry it closed: some next week, some before the row of the entry was logged, some
# partial first).
_ENTRIES = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        _TIMES,
        st.sampled_from([0, 0, MINUTE, 2 * DAY]),
        st.sampled_from(["bullish", "BEARISH"]),
        st.sampled_from(["mixed", "trend"]),
        st.one_of(st.none(), st.tuples(st.floats(-5, 5), st.sampled_from([0, HOUR, 6 * DAY]), st.booleans())),
    ),
    max_size=40,
)


_Entered = tuple[str, int, int, str, str, tuple[float, int, bool] | None]


def _history(
    episodes: list[tuple[str, str, int, int, int]], entries: list[_Entered]
) -> tuple[list[tuple[str, str, int, bytes]], list[LedgerRow]]:
    rows = []
    for symbol, direction, first_us, length_us, pattern in episodes:
        found = _episode(symbol, direction, first_us, first_us + length_us, pattern)
        rows.append((SIGNAL_LEARNER, found.key, found.first_us, orjson.dumps(found.to_json())))
    ledger: list[LedgerRow] = []
    for number, (symbol, at_us, delay_us, direction, regime, closed) in enumerate(entries):
        key = f"open_{symbol}_{_iso(at_us)}"
        opened = TradeEntry(key, "equity", symbol, regime, at_us + delay_us, direction, 1.0, (), ())
        ledger.append(_row("entry", opened, number))
        if closed is not None:
            pnl, after_us, partial_first = closed
            for kind, pnl_pct, is_partial in (("scale", pnl / 2, True), ("close", pnl, False))[not partial_first :]:
                close = TradeOutcome(
                    f"{kind}_{symbol}_{_iso(at_us)}", "equity", symbol, regime, at_us + after_us, at_us, pnl_pct,
                    pnl_pct, 1.0, (), (), None, None, None, None, is_partial,
                )  # fmt: skip
                ledger.append(_row("trade", close, number))
    # One row per key, as the ledger and the learner keep them.
    return list({row[1]: row for row in rows}.values()), list({(row.kind, row.key): row for row in ledger}.values())


def _whole_window(store: Store, params: SignalParams, after_us: int, cut_us: int) -> bytes:
    """The summary of the window read at once: every episode row and open episode looked at, those that ended in
    (after, cut] taken, joined to the entries and trades from their earliest first candidate, less the regime
    lookback, to the cut."""
    episodes = [Episode.from_json(orjson.loads(body)) for _, _, body in store.learner_rows(SIGNAL_LEARNER)]
    held = SignalLearner(params, store.learner_state(SIGNAL_LEARNER))
    episodes += [replace(episode, is_open=False) for episode in held.open_episodes()]
    episodes = [episode for episode in episodes if after_us < episode.last_us + params.gap_us <= cut_us]
    if not episodes:
        return json_bytes(signal_summary((), (), (), params))
    since_us = min(episode.first_us for episode in episodes) - params.regime_lookback_us
    cache = RecordCache()
    entries = [r for r in cache.records(store, "entry", since_us=since_us, until_us=cut_us + 1)]
    trades = [r for r in cache.records(store, "trade", since_us=since_us, until_us=cut_us + 1)]
    return json_bytes(
        signal_summary(
            episodes,
            [r for r in entries if isinstance(r, TradeEntry)],
            [r for r in trades if isinstance(r, TradeOutcome)],
            params,
        )
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=st.tuples(_EPISODES, _ENTRIES),
    late=st.tuples(_EPISODES, _ENTRIES),
    open_at=st.lists(_TIMES, max_size=3),
    shift_us=st.sampled_from([0, HOUR, 2 * DAY, -3 * DAY + 21 * HOUR]),
    longest_known=st.booleans(),
)
def test_a_window_read_in_kept_parts_gives_the_whole_window_s_summary(
    tmp_path: Path,
    *,
    history: tuple[list[tuple[str, str, int, int, int]], list[_Entered]],
    late: tuple[list[tuple[str, str, int, int, int]], list[_Entered]],
    open_at: list[int],
    shift_us: int,
    longest_known: bool,
) -> None:
    """Windows ending a week apart (one of them shifted, as a holiday or a clock change moves a week's end) share
    one cache; rows that arrive after some reports, for any time (late lines), are read by the next report. The
    learner's state knows its longest episode, or (written before it was kept) does not."""
    params = SignalParams(join_window_us=10 * MINUTE, regime_lookback_us=6 * HOUR)
    path = tmp_path / f"store-{len(list(tmp_path.iterdir()))}.db"
    store = Store.open(path)
    try:
        rows, ledger = _history(*history)
        learner = SignalLearner(params)
        for number, at_us in enumerate(open_at):
            symbol = SYMBOLS[number % 2]
            learner.apply("signals", SignalRecord("equity", symbol, None, at_us, 1.0, (("x", 1.0),), (), True, None))

        def state_for(rows: list[tuple[str, str, int, bytes]]) -> bytes:
            """The learner's state, its longest episode that of the rows (as when it closed them) or not known, and
            its count of closed episodes theirs (a row is committed with the state that closed it)."""
            learner.counts["episodes_closed"] = len(rows)
            learner.longest_us = None
            if longest_known:
                learner.adopt_longest((key, first_us, body) for _, key, first_us, body in rows)
            return learner.state()

        store.commit(Batch(ledger=ledger, learner_rows=rows, learner_states={SIGNAL_LEARNER: state_for(rows)}))
        records = RecordCache(span_us=WINDOW_US)
        ends = [T0 + k * PART_US for k in range(1, 7)]
        ends[3] += shift_us
        for number, end_us in enumerate(ends):
            more_rows, more_ledger = _history(*late)
            if number == 2:  # ledger rows only: the ledger number moves
                kept = {(row.kind, row.key) for kind in ("entry", "trade") for row in store.ledger(kind)}
                store.commit(Batch(ledger=[row for row in more_ledger if (row.kind, row.key) not in kept]))
            if number == 4:  # episode rows, committed with the learner state they changed
                known = {key for key, _, _ in store.learner_rows(SIGNAL_LEARNER)}
                added = [row for row in more_rows if row[1] not in known]
                store.commit(Batch(learner_rows=added, learner_states={SIGNAL_LEARNER: state_for(rows + added)}))
            start_us = end_us - WINDOW_US
            assert json_bytes(window_signals(store, params, start_us, end_us, records)) == _whole_window(
                store, params, start_us, end_us
            )
    finally:
        store.close()


class _CountingCache(RecordCache):
    """A RecordCache that counts the ledger reads asked of it (a seam: the reads themselves are the real ones)."""

    def __init__(self) -> None:
        super().__init__(span_us=WINDOW_US)
        self.reads: list[str] = []

    def records(self, store: Store, kind: str, *, since_us: int | None, until_us: int | None) -> Iterator[Record]:
        self.reads.append(kind)
        return super().records(store, kind, since_us=since_us, until_us=until_us)


def test_a_window_without_episodes_reads_no_entries_or_trades(tmp_path: Path) -> None:
    """A bot that logs no signals: the section is the empty summary, and the window's ledger goes unread."""
    params = SignalParams()
    store = Store.open(tmp_path / "store.db")
    try:
        entered: list[_Entered] = [("AMD", T0 + k * DAY, 0, "bullish", "trend", (1.0, HOUR, False)) for k in range(20)]
        _, ledger = _history([], entered)
        store.commit(Batch(ledger=ledger))
        records = _CountingCache()
        end_us = T0 + WINDOW_US
        found = window_signals(store, params, T0, end_us, records)
        assert json_bytes(found) == _whole_window(store, params, T0, end_us)
        assert found == signal_summary((), (), (), params)
        assert records.reads == []
        # One episode in the window, and the entries and trades of each part are read.
        episode = _episode("AMD", "bullish", T0 + DAY, T0 + DAY + MINUTE, 0)
        store.commit(
            Batch(learner_rows=[(SIGNAL_LEARNER, episode.key, episode.first_us, orjson.dumps(episode.to_json()))])
        )
        found = window_signals(store, params, T0, end_us, records)
        assert json_bytes(found) == _whole_window(store, params, T0, end_us)
        assert sorted(set(records.reads)) == ["entry", "trade"]
    finally:
        store.close()
