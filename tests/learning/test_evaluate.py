"""Tests for learnd.learning.evaluate: the test-then-train walk, its slices and the top-quintile hit rate."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from learnd.config import LearningParams
from learnd.devtools.simulate import simulate
from learnd.learning.entry_model import EntryModel
from learnd.learning.evaluate import Evaluation, evaluate, top_hit_rate
from learnd.learning.multipliers import MultiplierChange
from learnd.learning.stats import spearman
from learnd.records.parse import TradeOutcome, parse_record
from learnd.sessions.exchange import ExchangeCalendar, to_epoch_us
from learnd.sessions.tables import calendar_for
from tests.conftest import build_settings

DAY_US = 86_400 * 1_000_000
# 2026-01-05 00:00 UTC: the synthetic trades below start on this day.
START_US = 1_767_571_200 * 1_000_000
TRUE_MULTIPLIERS = {"options_flow": 0.5, "dark_pool": 2.0, "whale_persistence": 1.5}
REGIMES = ("mixed", "low_vol_uptrend")


def session_of(event_us: int) -> int:
    return event_us // DAY_US


def make_trades(days: int = 60, per_day: int = 20, *, seed: int = 0, shuffle: bool = False) -> list[TradeOutcome]:
    """Closed trades whose pnl follows TRUE_MULTIPLIERS plus noise as large as the signal."""
    rng = np.random.default_rng(seed)
    names = tuple(TRUE_MULTIPLIERS)
    count = days * per_day
    contributions = rng.gamma(1.5, 0.6, (count, len(names))) * np.array([2.4, 1.3, 0.7])
    signal = contributions @ np.array([TRUE_MULTIPLIERS[name] for name in names])
    signal = (signal - signal.mean()) / signal.std()
    pnl = 0.8 * signal + rng.normal(0.0, 0.8, count)
    if shuffle:
        pnl = rng.permutation(pnl)
    trades = []
    for i in range(count):
        event_us = START_US + (i // per_day) * DAY_US + 15 * 3_600_000_000 + (i % per_day) * 60_000_000
        trades.append(
            outcome(
                f"close_T{i}",
                event_us,
                float(pnl[i]),
                tuple(sorted(zip(names, contributions[i].tolist(), strict=True))),
                regime=REGIMES[i % 2],
            )
        )
    return trades


def outcome(
    key: str,
    event_us: int,
    pnl_pct: float,
    components: tuple[tuple[str, float], ...] = (("options_flow", 1.0),),
    *,
    regime: str = "mixed",
    is_partial: bool = False,
) -> TradeOutcome:
    return TradeOutcome(
        key=key,
        strategy="equity",
        symbol="AMD",
        regime=regime,
        event_us=event_us,
        entry_us=event_us - 600_000_000,
        pnl_pct=pnl_pct,
        pnl_usd=pnl_pct * 10,
        weight=0.5 if is_partial else 1.0,
        components=components,
        unknown_components=(),
        entry_score=math.fsum(value for _, value in components),
        hold_minutes=10.0,
        close_reason="trail_stop",
        side="long",
        is_partial=is_partial,
    )


class OracleModel:
    """Knows the true multipliers from the start and never changes them."""

    def learn(self, trade: TradeOutcome, session: int) -> list[MultiplierChange]:
        return []

    def settle_session(self, session: int, event_us: int) -> list[MultiplierChange]:
        return []

    def score(self, trade: TradeOutcome) -> float:
        return math.fsum(TRUE_MULTIPLIERS[name] * value for name, value in trade.components)


class RecordingModel:
    """Records the order of calls and moves one multiplier by a known step per outcome learned."""

    def __init__(self, step: float = 0.01) -> None:
        self.calls: list[tuple[str, str]] = []
        self.learned: set[str] = set()
        self.step = step

    def learn(self, trade: TradeOutcome, session: int) -> list[MultiplierChange]:
        self.calls.append(("learn", trade.key))
        self.learned.add(trade.key)
        change = MultiplierChange(
            trade.event_us, trade.strategy, "entry", "options_flow", "*", 1.0, 1.0 - self.step, "", 1
        )
        return [change]

    def settle_session(self, session: int, event_us: int) -> list[MultiplierChange]:
        self.calls.append(("settle", str(session)))
        return []

    def score(self, trade: TradeOutcome) -> float:
        self.calls.append(("score", trade.key))
        assert trade.key not in self.learned, "scored after learning from it: not prequential"
        return 0.0


def test_top_hit_rate_takes_the_top_fifth() -> None:
    scores = [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    pnl = [1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert top_hit_rate(scores, pnl) == 0.5
    assert top_hit_rate([], []) == 0.0


def test_oracle_model_beats_static_weights() -> None:
    """Scores that know the planted multipliers rank trades better, and the day-block interval excludes 0."""
    result = evaluate(make_trades(seed=1), session_of, OracleModel, bootstrap_samples=500, seed=0)
    overall = result.overall
    assert overall.ic_learned > overall.ic_static
    assert overall.interval is not None and overall.interval[0] > 0.0
    assert overall.hit_rate_learned >= overall.hit_rate_static


def test_on_shuffled_outcomes_the_interval_includes_zero() -> None:
    result = evaluate(make_trades(seed=1, shuffle=True), session_of, OracleModel, bootstrap_samples=500, seed=0)
    assert result.overall.interval is not None
    low, high = result.overall.interval
    assert low < 0.0 < high


def test_partial_outcomes_are_learned_but_not_scored_and_scoring_precedes_learning() -> None:
    trades = [
        outcome("close_B", START_US + 2_000, 1.0),
        outcome("scale_A", START_US + 1_000, 0.5, is_partial=True),
        outcome("close_A", START_US + 3_000, -1.0),
    ]
    models: list[RecordingModel] = []

    def factory() -> RecordingModel:
        models.append(RecordingModel())
        return models[-1]

    result = evaluate(trades, session_of, factory, bootstrap_samples=10)
    assert models[0].calls == [
        ("learn", "scale_A"),
        ("score", "close_B"),
        ("learn", "close_B"),
        ("score", "close_A"),
        ("learn", "close_A"),
    ]
    assert (result.scored_trades, result.learned_outcomes, result.partial_outcomes) == (2, 3, 1)


def test_a_session_closes_in_the_model_before_a_later_session_is_scored() -> None:
    """Each session that had trades is settled once, when the first trade of a later session comes, before that
    trade is scored (as the trade learner closes sessions along the stream)."""
    trades = [
        outcome("close_A", START_US + 1_000, 1.0),
        outcome("close_B", START_US + 2_000, -1.0),
        outcome("close_C", START_US + 3 * DAY_US, 0.5),
        outcome("close_D", START_US + 5 * DAY_US, 0.2),
    ]
    models: list[RecordingModel] = []

    def factory() -> RecordingModel:
        models.append(RecordingModel())
        return models[-1]

    evaluate(trades, session_of, factory, bootstrap_samples=10)
    first = session_of(START_US)
    assert models[0].calls == [
        ("score", "close_A"),
        ("learn", "close_A"),
        ("score", "close_B"),
        ("learn", "close_B"),
        ("settle", str(first)),
        ("score", "close_C"),
        ("learn", "close_C"),
        ("settle", str(first + 3)),
        ("score", "close_D"),
        ("learn", "close_D"),
    ]


def test_the_static_baseline_is_the_bots_entry_score_where_rows_carry_it() -> None:
    """Where the bot logs a component raw, its entry_score ranks trades and the sum of components does not: the
    static IC is entry_score's (the sum's where a row has none), and the sum's IC is reported beside it."""
    rng = np.random.default_rng(4)
    trades = []
    for i in range(400):
        flow, tide = float(rng.gamma(1.5, 0.6)), float(rng.gamma(1.5, 0.6))
        pnl = 0.5 * (flow + 0.4 * tide) + float(rng.normal(0.0, 0.5))
        raw_tide = 40.0 * tide * float(rng.uniform(0.2, 1.8))  # logged raw, on no contribution scale
        event_us = START_US + (i // 20) * DAY_US + i
        trade = outcome(f"close_{i}", event_us, pnl, (("dark_pool", raw_tide), ("options_flow", flow)))
        trades.append(replace(trade, entry_score=flow + 0.4 * tide if i % 10 else None))
    result = evaluate(trades, session_of, OracleModel, bootstrap_samples=50)
    overall = result.overall
    assert result.entry_score_trades == 360
    static = [t.entry_score if t.entry_score is not None else math.fsum(v for _, v in t.components) for t in trades]
    outcomes = [t.pnl_pct for t in trades]
    assert overall.ic_static == pytest.approx(float(spearman(static, outcomes)))
    assert overall.ic_sum == pytest.approx(
        float(spearman([math.fsum(v for _, v in t.components) for t in trades], outcomes))
    )
    assert overall.ic_static > overall.ic_sum + 0.1
    assert "IC sum" in result.render_text() and "entry_score on 360 of 400" in result.render_text()


def test_repeated_outcomes_are_skipped() -> None:
    first = outcome("close_A", START_US + 1_000, 1.0)
    result = evaluate([first, first, outcome("close_B", START_US + 2_000, -1.0)], session_of, RecordingModel)
    assert (result.scored_trades, result.duplicate_outcomes) == (2, 1)


def test_turnover_is_the_mean_absolute_change_per_session() -> None:
    trades = [outcome(f"close_{i}", START_US + (i % 2) * DAY_US + i, 0.1 * i) for i in range(6)]
    result = evaluate(trades, session_of, lambda: RecordingModel(step=0.02), bootstrap_samples=10)
    assert result.sessions == 2
    assert result.change_count == 6
    assert result.turnover_total == pytest.approx(0.12)
    assert result.turnover_per_session == pytest.approx(0.06)


def test_slices_are_by_regime_month_and_strategy() -> None:
    trades = make_trades(days=40, seed=2)
    moved = [replace(t, event_us=t.event_us + 70 * DAY_US, key=t.key + "_march") for t in trades[:100]]
    result = evaluate(trades + moved, session_of, OracleModel, bootstrap_samples=50)
    assert [g.label for g in result.by_regime] == sorted(REGIMES)
    assert [g.label for g in result.by_month] == ["2026-01", "2026-02", "2026-03"]
    assert [g.label for g in result.by_strategy] == ["equity"]
    assert sum(g.trades for g in result.by_month) == result.overall.trades == len(trades) + 100


def test_a_month_holds_its_sessions_trades_whatever_their_utc_date(tmp_path: Path) -> None:
    """With the calendar, a trade is in its session's month: closed after hours on 2026-03-31 (00:30 UTC on April
    1st), on a Saturday or on New Year's Day, it belongs to the session before (it was put in the month of its UTC
    date, the old learner's New York / UTC mix)."""
    calendar = calendar_for(build_settings(tmp_path))
    moments = {
        "2026-03-31T20:30:00-04:00": "2026-03",
        "2026-08-01T11:00:00-04:00": "2026-07",
        "2027-01-01T10:00:00-05:00": "2026-12",
        "2026-04-01T10:00:00-04:00": "2026-04",
    }
    trades = [
        outcome(f"close_T{index}", to_epoch_us(datetime.fromisoformat(moment)), 0.5, (("dark_pool", 1.0),))
        for index, moment in enumerate(moments)
    ]
    result = evaluate(
        trades, calendar.session_index, OracleModel, bootstrap_samples=10, session_day=calendar.sessions.__getitem__
    )
    assert {group.label: group.trades for group in result.by_month} == {
        "2026-03": 1,
        "2026-04": 1,
        "2026-07": 1,
        "2026-12": 1,
    }


def test_evaluation_is_deterministic_and_renders() -> None:
    trades = make_trades(days=20, seed=3)
    first = evaluate(trades, session_of, OracleModel, bootstrap_samples=200, seed=5)
    second = evaluate(list(reversed(trades)), session_of, OracleModel, bootstrap_samples=200, seed=5)
    assert first == second
    encoded = orjson.dumps(first.to_dict(), option=orjson.OPT_SORT_KEYS)
    assert orjson.loads(encoded) == first.to_dict()
    assert list(first.to_dict()) == sorted(first.to_dict())
    text = first.render_text()
    assert "overall" in text and "regime mixed" in text and "month 2026-01" in text and "turnover" in text


def read_outcomes(home: Path) -> list[TradeOutcome]:
    outcomes = []
    for line in (home / "logs" / "attribution.jsonl").read_bytes().splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(record := parse_record("attribution", row), TradeOutcome):
            outcomes.append(record)
    return outcomes


def test_entry_model_on_simulated_home(tmp_path: Path) -> None:
    """The real model runs prequentially over a simulated home; results are finite and reproducible."""
    simulate(tmp_path, 600, seed=7)
    outcomes = read_outcomes(tmp_path)
    calendar = ExchangeCalendar.load("XNYS", 2026, 2026)

    def run() -> Evaluation:
        return evaluate(outcomes, calendar.session_index, lambda: EntryModel(LearningParams()), bootstrap_samples=100)

    result = run()
    assert result == run()
    assert result.scored_trades == 600 and result.duplicate_outcomes == 2
    assert all(math.isfinite(value) for value in (result.overall.ic_learned, result.overall.ic_static))
