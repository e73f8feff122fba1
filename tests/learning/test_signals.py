"""Signal episodes and their joins: learnd/signal_learner.py."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.config import Settings
from learnd.devtools.simulate import LOG_FILES, simulate
from learnd.learning import execution
from learnd.learning import signals as signal_learner
from learnd.learning.execution import (
    ExecutionLearner,
    ExecutionParams,
    aggregates_from_rows,
    execution_summary,
    symbol_outcomes,
)
from learnd.learning.learner import Learner
from learnd.learning.signals import (
    Episode,
    SignalLearner,
    SignalParams,
    closing_trades,
    episodes_from_rows,
    join_episodes,
    join_order,
    join_ordered,
    open_episodes_from_state,
    render_signals,
    signal_summary,
    summary_of,
    timed_entries,
)
from learnd.records.parse import Record, SignalRecord, TradeEntry, TradeOutcome, parse_record
from learnd.service.backfill import drain, run_backfill
from learnd.service.engine import Engine
from learnd.sessions.exchange import ExchangeCalendar
from learnd.store.database import Batch, Store
from learnd.store.ledger import record_of
from tests.conftest import build_settings

SECOND = 1_000_000
MINUTE = 60 * SECOND
T0 = 1_772_461_800 * SECOND  # 2026-03-02 14:30 UTC
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def signal(
    symbol: str,
    at_us: int,
    *,
    score: float | None = 3.0,
    components: tuple[tuple[str, float], ...] = (("dark_pool", 0.5), ("options_flow", 2.0)),
    direction: str | None = "bullish",
    strategy: str = "equity",
) -> SignalRecord:
    return SignalRecord(strategy, symbol, direction, at_us, score, components, (), True, "composite_v3")


def feed(learner: SignalLearner, records: list[SignalRecord]) -> list[tuple[str, int, bytes]]:
    rows: list[tuple[str, int, bytes]] = []
    for record in records:
        rows.extend(learner.apply("signals", record).rows)
    return rows


def test_heavy_stream_collapses_into_hand_computed_episodes() -> None:
    """Thousands of repeats per symbol become one episode per run; a gap of the limit or more starts a new one."""
    records: list[SignalRecord] = []
    symbols = ("AMD", "NVDA", "TSLA")
    # Run 1: 3000 candidates per symbol, 10 s apart, interleaved across symbols as the bot's cycles are.
    for i in range(3000):
        for k, symbol in enumerate(symbols):
            flow = 2.0 if i % 2 == 0 else 4.0
            skew = -1.0 * (k + 1) if i % 3 == 0 else 0.0
            parts = (("iv_term_skew", skew), ("options_flow", flow), ("whale_persistence", 0.1))
            records.append(signal(symbol, T0 + i * 10 * SECOND + k, score=3.0 + (i % 5), components=parts))
    # Run 2 after a 6-minute silence: 1000 more candidates, one component only, no score half the time.
    start = T0 + 2999 * 10 * SECOND + 6 * MINUTE
    for i in range(1000):
        for k, symbol in enumerate(symbols):
            score = None if i % 2 else 1.5
            records.append(signal(symbol, start + i * 10 * SECOND + k, score=score, components=(("dark_pool", 0.2),)))
    learner = SignalLearner(SignalParams())
    rows = feed(learner, records)
    # Run 1 closed when run 2 began; run 2 is still open.
    assert len(rows) == 3
    assert learner.open_count == 3
    closed = {episode.symbol: episode for episode in episodes_from_rows(rows)}
    for k, symbol in enumerate(symbols):
        episode = closed[symbol]
        assert episode.key == f"equity|{symbol}|bullish|{T0 + k}"
        assert (episode.first_us, episode.last_us) == (T0 + k, T0 + 29_990 * SECOND + k)
        assert episode.count == episode.scored_count == 3000
        assert episode.peak_score == 7.0
        assert episode.mean_score == pytest.approx(5.0)  # scores cycle 3..7
        means = dict(episode.components)
        assert means["options_flow"] == pytest.approx(3.0)
        assert means["iv_term_skew"] == pytest.approx(-(k + 1) / 3)
        assert means["whale_persistence"] == pytest.approx(0.1)
        # By mean |contribution|: options_flow 3.0, iv_term_skew (k+1)/3, whale 0.1 -> all three, sorted.
        assert episode.pattern == ("iv_term_skew", "options_flow", "whale_persistence")
    for episode in learner.open_episodes():
        assert episode.is_open
        assert episode.count == 1000
        assert episode.scored_count == 500
        assert episode.peak_score == episode.mean_score == 1.5
        assert episode.pattern == ("dark_pool",)


def test_sweep_closes_quiet_keys_by_event_time() -> None:
    """Any candidate a gap or more past an open episode's last one closes it, whatever its own key."""
    learner = SignalLearner(SignalParams(gap_us=5 * MINUTE))
    assert feed(learner, [signal("AMD", T0), signal("AMD", T0 + 4 * MINUTE)]) == []
    rows = feed(learner, [signal("TSLA", T0 + 9 * MINUTE)])
    assert [key for key, _, _ in rows] == [f"equity|AMD|bullish|{T0}"]
    assert learner.open_count == 1
    # Direction and strategy are part of the key.
    feed(learner, [signal("TSLA", T0 + 9 * MINUTE, direction="bearish"), signal("TSLA", T0 + 9 * MINUTE, strategy="x")])
    assert learner.open_count == 3
    # A line far older than its key's open episode is kept as an episode of its own, closed at once, numbered.
    rows = feed(learner, [signal("TSLA", T0 - 10 * MINUTE)])
    assert [key for key, _, _ in rows] == [f"equity|TSLA|bullish|{T0 - 10 * MINUTE}#1"]
    assert [ep.first_us for ep in learner.open_episodes() if ep.symbol == "TSLA"] == [T0 + 9 * MINUTE] * 3


def test_the_state_keeps_the_longest_episode_closed_and_an_older_state_learns_it_from_the_rows(
    tmp_path: Path,
) -> None:
    """A report looks for the rows of the episodes that ended in its window that far before it (rows are kept at
    their first candidate); a state written before it was kept takes it from the committed rows when a daemon
    starts on it, and commits it."""
    learner = SignalLearner(SignalParams(gap_us=5 * MINUTE))
    feed(learner, [signal("AMD", T0 + k * MINUTE) for k in range(0, 40, 4)] + [signal("TSLA", T0 + 50 * MINUTE)])
    assert learner.longest_us == 36 * MINUTE  # AMD's, closed; TSLA's is open
    feed(learner, [signal("TSLA", T0 + 53 * MINUTE), signal("NVDA", T0 + 70 * MINUTE)])
    assert SignalLearner(SignalParams(gap_us=5 * MINUTE), learner.state()).longest_us == 36 * MINUTE

    home = tmp_path / "home"
    simulate(home, trades=60, seed=4)
    run_backfill(build_settings(home), progress="none")
    store = Store.open(home / "state" / "learnd.db")
    try:
        kept = orjson.loads(store.learner_state(signal_learner.NAME) or b"")
        spans = [episode.last_us - episode.first_us for episode in episodes_from_rows(store.learner_rows("signals"))]
        assert kept["longest_us"] == max(spans) > 0
        del kept["longest_us"]
        store.commit(Batch(learner_states={signal_learner.NAME: orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)}))
    finally:
        store.close()
    assert SignalLearner(SignalParams(), orjson.dumps(kept)).longest_us is None
    run_backfill(build_settings(home), progress="none")
    store = Store.open(home / "state" / "learnd.db")
    try:
        assert orjson.loads(store.learner_state(signal_learner.NAME) or b"")["longest_us"] == max(spans)
    finally:
        store.close()


def test_a_late_episode_never_takes_the_key_of_one_already_persisted() -> None:
    """A late line of a key whose episode was closed, carrying that episode's first time (a candidate logged again
    by a second writer, a late flush), opens an episode of its own; its row key is numbered, so the store keeps
    both rows (one key for both replaced the first episode with the late one)."""
    learner = SignalLearner(SignalParams(gap_us=5 * MINUTE))
    rows = feed(
        learner,
        [
            signal("AMD", T0),
            signal("AMD", T0 + MINUTE),
            signal("NVDA", T0 + 20 * MINUTE),  # the watermark moves on: AMD's episode closes
            signal("AMD", T0, score=5.0),  # late, at the closed episode's first time
            signal("NVDA", T0 + 40 * MINUTE),
        ],
    )
    keys = [key for key, _, _ in rows]
    assert len(keys) == len(set(keys))
    amd = [episode for episode in episodes_from_rows(rows) if episode.symbol == "AMD"]
    assert [(episode.first_us, episode.count, episode.late) for episode in amd] == [(T0, 2, 0), (T0, 1, 1)]
    assert [episode.key for episode in amd] == [f"equity|AMD|bullish|{T0}", f"equity|AMD|bullish|{T0}#1"]
    # Its number lives in the state: a restart numbers the next late episode after it.
    restarted = SignalLearner(SignalParams(gap_us=5 * MINUTE), learner.state())
    rows = feed(restarted, [signal("TSLA", T0, score=1.0), signal("NVDA", T0 + 60 * MINUTE)])
    assert [key for key, _, _ in rows if "TSLA" in key] == [f"equity|TSLA|bullish|{T0}#2"]


def stream(count: int, symbols: int = 20) -> list[SignalRecord]:
    """A long heavy stream: every symbol each 15 s cycle, each symbol pausing 10 minutes every 400 cycles."""
    records: list[SignalRecord] = []
    at = T0
    cycle = 0
    while len(records) < count:
        for k in range(symbols):
            if (cycle + 7 * k) % 400 < 40:
                continue  # this symbol is quiet for 40 cycles (10 minutes): its episode closes
            records.append(signal(f"S{k:02d}", at + k, score=2.0 + (cycle % 7) / 10))
        at += 15 * SECOND
        cycle += 1
    return records[:count]


def test_episode_sums_are_left_folds_in_file_order() -> None:
    """An open episode's sums add each candidate's contributions in file order (floats do not reassociate), start
    from zero (a first -0.0 is kept as 0.0), and survive a dump and load exactly."""
    values = (1e16, 1.0, -1e16, 1.0, -0.0)
    records = [
        signal("AMD", T0 + index * SECOND, score=value, components=(("dark_pool", value), ("options_flow", -value)))
        for index, value in enumerate(values)
    ]
    learner = SignalLearner(SignalParams())
    assert feed(learner, records[:1]) == []
    learner = SignalLearner(SignalParams(), learner.dump())
    assert feed(learner, records[1:]) == []
    sums = abs_sums = score_sum = 0.0
    for value in values:
        sums, abs_sums, score_sum = sums + value, abs_sums + abs(value), score_sum + value
    state = orjson.loads(learner.state())
    assert state["open"][0][7:] == [
        score_sum,
        1e16,
        {"dark_pool": sums, "options_flow": 0.0 - sums},
        {"dark_pool": abs_sums, "options_flow": abs_sums},
    ]
    first = SignalLearner(SignalParams())
    feed(first, [signal("AMD", T0, components=(("dark_pool", -0.0),))])
    assert str(orjson.loads(first.state())["open"][0][9]["dark_pool"]) == "0.0"
    (episode,) = learner.open_episodes()
    assert episode.components == (("dark_pool", sums / 5), ("options_flow", (0.0 - sums) / 5))
    assert episode.mean_score == score_sum / 5


def test_episode_keeps_the_first_of_equal_peaks_and_zero_abs_sums() -> None:
    """The peak score is the first of equal values (as max keeps it), so 0.0 then -0.0 peaks at 0.0 and -0.0 then
    0.0 at -0.0; a component whose contributions are all zeros of either sign has an absolute sum of 0.0."""
    peaks = []
    for scores in ((0.0, -0.0), (-0.0, 0.0)):
        learner = SignalLearner(SignalParams())
        zeros = (("dark_pool", -0.0),)
        feed(learner, [signal("AMD", T0 + index * SECOND, score=s, components=zeros) for index, s in enumerate(scores)])
        state = orjson.loads(learner.state())["open"][0]
        assert (str(state[9]["dark_pool"]), str(state[10]["dark_pool"])) == ("0.0", "0.0")
        peaks.append(str(state[8]))
    assert peaks == ["0.0", "-0.0"]


def test_memory_stays_flat_as_the_stream_grows() -> None:
    """Open episodes and the dumped state do not grow with the stream: 100k candidates cost what 10k do."""
    records = stream(100_000)
    learner = SignalLearner(SignalParams())
    sizes: dict[int, int] = {}
    peak_open = 0
    for index, record in enumerate(records, start=1):
        learner.apply("signals", record)
        peak_open = max(peak_open, learner.open_count)
        if index in (10_000, 100_000):
            dumped = learner.dump()
            assert dumped is not None
            sizes[index] = len(dumped)
    assert learner.counts["episodes_closed"] > 100
    assert peak_open <= 20
    assert sizes[100_000] <= sizes[10_000] * 1.1


lines_strategy = st.lists(
    st.tuples(
        st.sampled_from(("AMD", "NVDA", "TSLA")),
        st.sampled_from(("bullish", "bearish")),
        st.integers(min_value=-12 * MINUTE, max_value=8 * MINUTE),
        st.one_of(st.none(), st.floats(min_value=-5, max_value=5, allow_nan=False)),
        st.dictionaries(
            st.sampled_from(("flow", "dark_pool", "iv_skew", "whale", "toxicity_penalty", "darkpool", "mystery")),
            st.floats(min_value=-3, max_value=3, allow_nan=False),
            max_size=4,
        ),
    ),
    max_size=60,
)


def signal_line(symbol: str, direction: str, at_us: int, score: float | None, parts: dict[str, float]) -> bytes:
    cluster: dict[str, Any] = {"ticker": symbol, "direction": direction, "composite_score": score}
    cluster.update({"composite_meta": {"score": score, "components": parts}, "gate_passed": True, "count": 1})
    row = {"ts": iso(at_us), "type": "signal", "cluster": cluster, "strategy_id": "equity"}
    return orjson.dumps(row)


@settings(max_examples=60, deadline=None)
@given(lines_strategy, st.lists(st.integers(min_value=0, max_value=60), max_size=6))
def test_chunks_with_restarts_equal_one_pass(
    spec: list[tuple[str, str, int, float | None, dict[str, float]]], cuts: list[int]
) -> None:
    """The same lines in one pass, or in chunks with dump/load between them, give identical rows and state."""
    at = T0
    lines: list[bytes] = []
    for symbol, direction, step, score, parts in spec:
        at += step  # steps may go backwards: writers are unlocked, lines can come slightly out of time order
        lines.append(signal_line(symbol, direction, at, score, parts))
    parsed = [parse_record("signals", orjson.loads(line)) for line in lines]
    records = [record for record in parsed if isinstance(record, SignalRecord)]
    assert len(records) == len(parsed)
    params = SignalParams()

    whole = SignalLearner(params)
    whole_rows = feed(whole, records)

    rows: list[tuple[str, int, bytes]] = []
    state: bytes | None = None
    bounds = sorted({0, len(records), *(min(cut, len(records)) for cut in cuts)})
    for start, end in pairwise(bounds):
        learner = SignalLearner(params, state)
        rows.extend(feed(learner, records[start:end]))
        state = learner.dump() or state
    assert rows == whole_rows
    assert (state or SignalLearner(params).state()) == whole.state()


def iso(event_us: int) -> str:
    return (EPOCH + timedelta(microseconds=event_us)).isoformat(timespec="microseconds")


def episode(symbol: str, first_us: int, last_us: int, pattern: tuple[str, ...] = ("options_flow",)) -> Episode:
    return Episode("equity", symbol, "bullish", first_us, last_us, 10, 10, 3.0, 2.5, (("options_flow", 2.0),), pattern)


def entry(symbol: str, at_us: int, regime: str = "mixed", direction: str = "bullish") -> TradeEntry:
    return TradeEntry(f"open_{symbol}_{iso(at_us)}", "equity", symbol, regime, at_us + 5_000, direction, 3.0, (), ())


def outcome(symbol: str, entry_us: int, pnl_pct: float, *, partial: bool = False) -> TradeOutcome:
    kind = "scale" if partial else "close"
    return TradeOutcome(
        f"{kind}_{symbol}_{entry_us + 30 * MINUTE}",
        "equity",
        symbol,
        "mixed",
        entry_us + 30 * MINUTE,
        entry_us,
        pnl_pct,
        pnl_pct * 10,
        0.5 if partial else 1.0,
        (),
        (),
        3.0,
        30.0,
        "trail_stop",
        "long",
        partial,
    )


def test_join_converts_only_episodes_followed_by_an_entry_within_the_window() -> None:
    """An entry within the window after the last candidate converts; none, or one too late, does not; the
    converted episode carries the closed outcome (joined on symbol + entry time), not the partial one."""
    params = SignalParams(join_window_us=10 * MINUTE)
    episodes = [
        episode("AMD", T0, T0 + 20 * MINUTE),  # entry 3 min after its last candidate
        episode("NVDA", T0, T0 + 20 * MINUTE),  # no entry at all
        episode("TSLA", T0, T0 + 20 * MINUTE),  # entry 11 min after: too late
        episode("MSFT", T0, T0 + 20 * MINUTE),  # entry during the episode
    ]
    entries = [
        entry("AMD", T0 + 23 * MINUTE, regime="low_vol_uptrend"),
        entry("TSLA", T0 + 31 * MINUTE),
        entry("MSFT", T0 + 10 * MINUTE),
    ]
    outcomes = [
        outcome("AMD", T0 + 23 * MINUTE, 0.4, partial=True),
        outcome("AMD", T0 + 23 * MINUTE, 1.25),
        outcome("TSLA", T0 + 31 * MINUTE, -2.0),
    ]
    joined = {item.episode.symbol: item for item in join_episodes(episodes, entries, outcomes, params)}
    assert joined["AMD"].converted
    assert joined["AMD"].entry_us == T0 + 23 * MINUTE
    assert joined["AMD"].pnl_pct == 1.25
    assert joined["AMD"].regime == "low_vol_uptrend"
    assert not joined["NVDA"].converted
    assert joined["NVDA"].pnl_pct is None
    assert not joined["TSLA"].converted
    assert joined["MSFT"].converted
    assert joined["MSFT"].pnl_pct is None  # still open: converted, no outcome yet
    # An unconverted episode takes the market regime of the latest entry before its last candidate.
    assert joined["NVDA"].regime == "mixed"


def test_an_entry_is_joined_to_its_close_by_the_entry_time_both_rows_carry() -> None:
    """FORMATS.md: join on symbol + context.entry_ts. The bot's trade_id spells a time a little off the entry_ts
    both rows carry: the close is still found (by the open row's entry_ts), and the episode it converted gets the
    outcome."""
    at_us = 10 * MINUTE
    spelled = entry("AMD", at_us - 164)  # trade_id 164 us before the entry_ts
    opened = dataclasses.replace(spelled, entry_us=at_us)
    closed = outcome("AMD", at_us, 1.25)
    joined = join_episodes([episode("AMD", at_us - MINUTE, at_us - 30 * SECOND)], [opened], [closed], SignalParams())
    assert [(item.entry_key, item.outcome_key, item.pnl_pct) for item in joined] == [(opened.key, closed.key, 1.25)]
    # By the trade_id's time alone, as when the open row carries no entry_ts, the outcome is not found.
    alone = join_episodes([episode("AMD", at_us - MINUTE, at_us - 30 * SECOND)], [spelled], [closed], SignalParams())
    assert [(item.entry_key, item.pnl_pct) for item in alone] == [(spelled.key, None)]


def test_join_attributes_an_entry_to_one_episode_and_respects_direction() -> None:
    """Of two episodes before one entry, the later-ending converts; an opposite-direction episode never does."""
    params = SignalParams()
    early = episode("AMD", T0, T0 + MINUTE)
    late = episode("AMD", T0 + 8 * MINUTE, T0 + 9 * MINUTE)
    bearish = Episode("equity", "AMD", "bearish", T0, T0 + 9 * MINUTE, 3, 3, 1.0, 1.0, (), ())
    joined = join_episodes([early, late, bearish], [entry("AMD", T0 + 10 * MINUTE)], [], params)
    assert [item.episode.first_us for item in joined if item.converted] == [T0 + 8 * MINUTE]


def _converted_by_every_episode(
    episodes: list[Episode], entries: list[TradeEntry], params: SignalParams
) -> list[str | None]:
    """The join's rule walked over every episode of the symbol for each entry (what join_episodes must equal): per
    episode in join order, the key of the entry that converts it."""
    ordered = sorted(episodes, key=lambda item: (item.last_us, item.key))
    taken: dict[int, TradeEntry] = {}
    for item in sorted(entries, key=lambda found: (signal_learner.entry_time_us(found), found.key)):
        at_us = signal_learner.entry_time_us(item)
        best: int | None = None
        for index, candidate in enumerate(ordered):
            if (candidate.strategy, candidate.symbol) != (item.strategy, item.symbol) or index in taken:
                continue
            if not candidate.first_us <= at_us <= candidate.last_us + params.join_window_us:
                continue
            agree = item.direction is None or candidate.direction == signal_learner.UNKNOWN_DIRECTION
            if not agree and candidate.direction.casefold() != (item.direction or "").casefold():
                continue
            if best is None or candidate.last_us >= ordered[best].last_us:
                best = index
        if best is not None:
            taken[best] = item
    return [taken[index].key if index in taken else None for index in range(len(ordered))]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["AMD", "NVDA"]),
            st.sampled_from(["bullish", "bearish", signal_learner.UNKNOWN_DIRECTION]),
            st.integers(0, 60),
            st.integers(0, 30),
        ),
        max_size=25,
    ),
    st.lists(
        st.tuples(st.sampled_from(["AMD", "NVDA"]), st.sampled_from(["bullish", "BEARISH"]), st.integers(0, 100)),
        max_size=12,
    ),
    st.integers(0, 15),
)
def test_join_converts_what_a_walk_over_every_episode_converts(
    shapes: list[tuple[str, str, int, int]], entered: list[tuple[str, str, int]], window_minutes: int
) -> None:
    """Each entry looks only at the episodes that can hold its time (by bisection), and converts the same one a
    walk over all of its symbol's episodes would: the latest-ending free one whose span and direction fit."""
    params = SignalParams(join_window_us=window_minutes * MINUTE)
    episodes = [
        Episode(
            "equity",
            symbol,
            direction,
            T0 + start * MINUTE,
            T0 + (start + length) * MINUTE,
            1,
            1,
            1.0,
            1.0,
            (),
            (f"p{number}",),
        )
        for number, (symbol, direction, start, length) in enumerate(shapes)
    ]
    entries = [entry(symbol, T0 + at * MINUTE, direction=direction) for symbol, direction, at in entered]
    joined = join_episodes(episodes, entries, [], params)
    assert [item.entry_key for item in joined] == _converted_by_every_episode(episodes, entries, params)


def test_inputs_put_in_join_order_in_parts_join_as_the_whole() -> None:
    """join_ordered of two halves' inputs, each put in join order and put together in order, joins as join_episodes
    of all of them; closing_trades keeps the whole closes that name an entry time, by event time then key."""
    params = SignalParams()
    episodes = [
        episode(symbol, T0 + at * MINUTE, T0 + (at + 3) * MINUTE) for symbol in ("AMD", "NVDA") for at in (0, 30)
    ]
    entries = [entry(symbol, T0 + at * MINUTE) for symbol in ("AMD", "NVDA") for at in (4, 20, 34)]
    outcomes = [outcome(symbol, T0 + 34 * MINUTE, 1.5) for symbol in ("NVDA", "AMD")]
    outcomes += [outcome("AMD", T0 + 4 * MINUTE, 0.5, partial=True), outcome("AMD", T0 + 4 * MINUTE, -1.0)]
    closing = closing_trades(outcomes)
    assert [(row.symbol, row.entry_us, row.is_partial) for row in closing] == [
        ("AMD", T0 + 4 * MINUTE, False),
        ("AMD", T0 + 34 * MINUTE, False),
        ("NVDA", T0 + 34 * MINUTE, False),
    ]
    halves = (slice(0, 2), slice(2, None))
    ordered = join_order([item for half in halves for item in join_order(episodes[half])])
    timed = sorted(
        (item for half in halves for item in timed_entries(entries[half])), key=lambda item: (item[0], item[1])
    )
    joined = join_ordered(ordered, timed, closing, params)
    assert joined == join_episodes(episodes, entries, outcomes, params)
    assert summary_of(joined, params) == signal_summary(episodes, entries, outcomes, params)
    assert [item.pnl_pct for item in joined if item.episode.symbol == "AMD"] == [-1.0, 1.5]


def test_summary_is_deterministic_and_suggests_only_beyond_the_bound() -> None:
    """Input order does not matter; a pattern is suggested only when its interval excludes the strategy average."""
    params = SignalParams(min_episodes=20, min_outcomes=10)
    episodes: list[Episode] = []
    entries: list[TradeEntry] = []
    outcomes: list[TradeOutcome] = []
    for i in range(40):
        base = T0 + i * 60 * MINUTE
        hot = episode(f"H{i}", base, base + MINUTE, pattern=("dark_pool", "options_flow"))
        cold = episode(f"C{i}", base, base + MINUTE, pattern=("iv_term_skew",))
        episodes += [hot, cold]
        entries.append(entry(f"H{i}", base + 2 * MINUTE))
        outcomes.append(outcome(f"H{i}", base + 2 * MINUTE, 1.0 + (i % 3) * 0.1))
        if i % 4 == 0:
            entries.append(entry(f"C{i}", base + 2 * MINUTE))
            outcomes.append(outcome(f"C{i}", base + 2 * MINUTE, -1.0 - (i % 3) * 0.1))
    summary = signal_summary(episodes, entries, outcomes, params)
    again = signal_summary(reversed(episodes), reversed(entries), reversed(outcomes), params)
    assert orjson.dumps(summary) == orjson.dumps(again)
    baseline = summary["strategies"]["equity"]
    assert baseline["episodes"] == 80
    assert baseline["trades"] == 50
    suggestions = {(item["metric"], tuple(item["pattern"]), item["regime"]): item for item in summary["suggestions"]}
    hot_conversion = suggestions[("conversion", ("dark_pool", "options_flow"), "all")]
    assert hot_conversion["direction"] == "raise"
    assert hot_conversion["bound"][0] > baseline["conversion"]
    assert suggestions[("conversion", ("iv_term_skew",), "all")]["direction"] == "lower"
    assert suggestions[("mean_pnl_pct", ("dark_pool", "options_flow"), "all")]["direction"] == "raise"
    # The cold pattern has 10 outcomes, all far below the average: suggested lower, and only as a report.
    cold_pnl = suggestions[("mean_pnl_pct", ("iv_term_skew",), "all")]
    assert cold_pnl["direction"] == "lower"
    assert cold_pnl["applies_to_weights"] is False
    text = render_signals(summary)
    assert "Suggested adjustments (report only)" in text
    assert "dark_pool+options_flow" in text


def test_small_groups_get_no_suggestion() -> None:
    """Below the sample minimums nothing is suggested, however extreme the rate."""
    summary = signal_summary([episode("AMD", T0, T0 + MINUTE)], [entry("AMD", T0 + 2 * MINUTE)], [], SignalParams())
    assert summary["suggestions"] == []
    assert summary["patterns"][0]["conversion"] == 1.0


def signal_learners(settings: Settings, store: Store, calendar: ExchangeCalendar) -> list[Learner]:
    """The two learners of this issue, loaded from the store as the engine's factory would."""
    return [
        SignalLearner(SignalParams(), store.learner_state(signal_learner.NAME)),
        ExecutionLearner(ExecutionParams(), store.learner_state(execution.NAME)),
    ]


def test_live_chunks_with_kills_end_like_one_backfill(tmp_path: Path) -> None:
    """All four simulated sources appended in chunks, with restarts and uncommitted polls thrown away, leave the
    same episode and execution rows and states as one backfill; the summaries read from the stores agree."""
    simulate(tmp_path / "sim", trades=60, seed=3)
    contents = {name: (tmp_path / "sim" / "logs" / f"{name}.jsonl").read_bytes() for name in LOG_FILES}
    live_home, batch_home = tmp_path / "live", tmp_path / "batch"
    for root in (live_home, batch_home):
        (root / "logs").mkdir(parents=True)
    live = build_settings(live_home)
    engine = Engine(live, start_at_end=False, purpose="test", learner_factory=signal_learners)
    try:
        for step in range(7):
            for name, content in contents.items():
                start, end = len(content) * step // 7, len(content) * (step + 1) // 7
                with open(live_home / "logs" / f"{name}.jsonl", "ab") as handle:
                    handle.write(content[start:end])
            if step % 3 == 1:
                engine.poll(50)  # read, never committed: a kill here loses nothing but time
            if step % 2 == 1:
                engine.close()
                engine = Engine(live, start_at_end=False, purpose="test", learner_factory=signal_learners)
            drain(engine, 97)
        live_print = engine.store.fingerprint()
        live_summary = summaries(engine.store)
    finally:
        engine.close()
    for name, content in contents.items():
        (batch_home / "logs" / f"{name}.jsonl").write_bytes(content)
    run_backfill(build_settings(batch_home), learner_factory=signal_learners)
    batch_store = Store.open(build_settings(batch_home).db_path)
    try:
        batch_print = batch_store.fingerprint()
        batch_summary = summaries(batch_store)
    finally:
        batch_store.close()
    assert live_print["learner_rows"] == batch_print["learner_rows"]
    assert live_print["learners"] == batch_print["learners"]
    assert live_summary == batch_summary
    signals_summary = orjson.loads(batch_summary[0])
    assert signals_summary["converted"] >= 55  # every simulated trade had an episode just before it


def summaries(store: Store) -> tuple[bytes, bytes]:
    """The signals and execution summaries exactly as `learnd signals --json` / `learnd execution --json` would."""
    params = SignalParams()
    episodes = episodes_from_rows(store.learner_rows(signal_learner.NAME))
    episodes += open_episodes_from_state(store.learner_state(signal_learner.NAME), params)
    entries = [record for record in ledger_records(store, "entry") if isinstance(record, TradeEntry)]
    outcomes = [record for record in ledger_records(store, "trade") if isinstance(record, TradeOutcome)]
    signals = signal_summary(episodes, entries, outcomes, params)
    orders = execution_summary(aggregates_from_rows(store.learner_rows(execution.NAME)), symbol_outcomes(outcomes))
    return orjson.dumps(signals), orjson.dumps(orders)


def ledger_records(store: Store, kind: str) -> list[Record]:
    return [record_of(row) for row in store.ledger(kind)]


def test_one_candidate_dated_far_ahead_moves_no_clock_and_two_in_a_row_do() -> None:
    """A candidate more than ten days past every one before it (a garbled year) is an episode of its own and moves
    no clock: the candidates after it collapse into their episode as before (each was an episode of its own). Two
    such candidates in a row are the bot back after a long pause: the clock moves with the second (the first stays
    an episode of its own, the price of telling the two apart without reading ahead)."""
    learner = SignalLearner(SignalParams(gap_us=5 * MINUTE))
    garbled = T0 + 3650 * 24 * 60 * MINUTE
    rows = feed(learner, [signal("AMD", T0), signal("NVDA", garbled)])
    rows += feed(learner, [signal("AMD", T0 + index * 10 * SECOND) for index in range(1, 100)])
    rows += feed(learner, [signal("TSLA", T0 + 30 * MINUTE)])  # the watermark moves on: AMD's episode closes
    amd = [episode for episode in episodes_from_rows(rows) if episode.symbol == "AMD"]
    assert [(episode.first_us, episode.count) for episode in amd] == [(T0, 100)]
    (stray,) = [episode for episode in episodes_from_rows(rows) if episode.symbol == "NVDA"]
    assert (stray.first_us, stray.count, stray.late) == (garbled, 1, 1)
    assert learner.watermark_us == T0 + 30 * MINUTE
    # After a restart (the state keeps it all), the bot back after eleven days: the clock moves with the second.
    learner = SignalLearner(SignalParams(gap_us=5 * MINUTE), learner.state())
    back = T0 + 11 * 24 * 60 * MINUTE
    rows = feed(learner, [signal("AMD", back), signal("AMD", back + MINUTE), signal("TSLA", back + 30 * MINUTE)])
    assert learner.watermark_us == back + 30 * MINUTE
    assert [(episode.symbol, episode.first_us, episode.count) for episode in episodes_from_rows(rows)] == [
        ("AMD", back, 1),
        ("TSLA", T0 + 30 * MINUTE, 1),
        ("AMD", back + MINUTE, 1),
    ]
