"""The entry learner on synthetic trades with planted multipliers: recovery, null safety, caps, state."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.config import LearningParams
from learnd.errors import ConfigError, StateError
from learnd.learning import entry_model
from learnd.learning.entry_model import EntryModel
from learnd.learning.multipliers import GLOBAL_SCOPE, MultiplierChange, decay_factor
from learnd.records.components import ENTRY_BASE_WEIGHTS, ENTRY_COMPONENTS
from learnd.records.parse import TradeOutcome

K = len(ENTRY_COMPONENTS)
INDEX = {name: i for i, name in enumerate(ENTRY_COMPONENTS)}
REGIMES = ("mixed", "risk_on", "risk_off", "low_vol_uptrend")
Stream = list[tuple[TradeOutcome, int]]
# One component's effect among 21 is small next to the noise: tests of a single planted edge use less noise and
# denser sessions (less decay) than the recovery test, so they check behaviour rather than statistical power.
FOCUSED: Final[dict[str, Any]] = {"noise_ratio": 1.0, "trades_per_session": 100}


def _trade(
    i: int, components: tuple[tuple[str, float], ...], pnl_pct: float, regime: str, *, symbol: str = "AMD"
) -> TradeOutcome:
    return TradeOutcome(
        key=f"close_{symbol}_{i}",
        strategy="equity",
        symbol=symbol,
        regime=regime,
        event_us=1_772_000_000_000_000 + i * 60_000_000,
        entry_us=None,
        pnl_pct=pnl_pct,
        pnl_usd=0.0,
        weight=1.0,
        components=components,
        unknown_components=(),
        entry_score=None,
        hold_minutes=None,
        close_reason=None,
        side=None,
        is_partial=False,
    )


def synthetic_trades(
    seed: int,
    count: int,
    true_multipliers: Sequence[float],
    *,
    regime_multipliers: Sequence[tuple[str, str, float]] = (),
    noise_ratio: float = 1.25,
    trades_per_session: int = 30,
    shuffle: bool = False,
    companions: Sequence[tuple[str, str]] = (),
    presence: float = 0.6,
    scales: Sequence[tuple[str, float]] = (),
) -> Stream:
    """Trades whose P&L is c * sum_j m_j * x_j + noise, noise std = noise_ratio x signal std.

    Contributions are sign(base weight) x U(0, 1), so every component's spread is comparable and each planted
    multiplier is identifiable (with the bot's raw weights, iv_rank's 0.2 would need ~100x more trades).
    `companions` (free, partner) makes `free` present exactly when `partner` is; `scales` (name, factor) widens a
    component's contributions, as the bot's 2.4 weight does options_flow's.
    """
    rng = np.random.default_rng(seed)
    signs = np.sign([ENTRY_BASE_WEIGHTS[name] for name in ENTRY_COMPONENTS])
    present = rng.random((count, K)) < presence
    for free, partner in companions:
        present[:, INDEX[free]] = present[:, INDEX[partner]]
    contributions = signs * rng.random((count, K)) * present
    for name, factor in scales:
        contributions[:, INDEX[name]] *= factor
    regime_index = rng.integers(0, len(REGIMES), count)
    multipliers = np.tile(np.asarray(true_multipliers, dtype=np.float64), (count, 1))
    for regime, name, value in regime_multipliers:
        multipliers[regime_index == REGIMES.index(regime), INDEX[name]] = value
    signal = (multipliers * contributions).sum(axis=1)
    signal = (signal - signal.mean()) / signal.std()  # 1 % of P&L per signal sd
    pnl = signal + rng.normal(0.0, noise_ratio, count)
    if shuffle:
        pnl = rng.permutation(pnl)
    stream: Stream = []
    for i in range(count):
        components = tuple((ENTRY_COMPONENTS[j], float(contributions[i, j])) for j in np.flatnonzero(present[i]))
        stream.append((_trade(i, components, float(pnl[i]), REGIMES[regime_index[i]]), i // trades_per_session))
    return stream


def learn_all(model: EntryModel, stream: Stream, open_session: int | None = None) -> list[MultiplierChange]:
    """Learn the stream in order, closing each session in the model when the next one's first trade comes (as the
    trade learner does); `open_session` is the session a model resumed mid-stream has open."""
    changes: list[MultiplierChange] = []
    for trade, session in stream:
        if open_session is not None and session > open_session:
            changes += model.settle_session(open_session, trade.event_us)
        open_session = session
        changes += model.learn(trade, session)
    return changes


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.corrcoef(_average_ranks(a), _average_ranks(b))[0, 1])


def _average_ranks(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    ranks = np.empty(len(array))
    for value in np.unique(array):
        where = np.flatnonzero(array == value)
        ranks[where] = np.argsort(np.argsort(array, kind="stable"), kind="stable")[where].mean()
    return ranks


def _unit(**planted: float) -> list[float]:
    multipliers = [1.0] * K
    for name, value in planted.items():
        multipliers[INDEX[name]] = value
    return multipliers


def test_recovery_ranks_planted_multipliers_under_heavy_noise() -> None:
    """3000 trades, noise std 1.25x the signal's: learned strategy-wide multipliers rank like the planted ones."""
    true = np.random.default_rng(102).uniform(0.4, 2.0, K).tolist()
    model = EntryModel(LearningParams())
    learn_all(model, synthetic_trades(2, 3000, true))
    learned = [model.multiplier("equity", name) for name in ENTRY_COMPONENTS]
    assert spearman(learned, true) >= 0.75
    assert all(0.25 <= value <= 2.5 for value in learned)


def test_regime_only_edge_shows_in_that_regime_and_not_in_others() -> None:
    """dark_pool pays double in risk_on only: risk_on's multiplier rises by at least 0.3, the other regimes' stay
    within 0.1 of 1 although the strategy-wide figure, a quarter of its trades in risk_on, rises too."""
    model = EntryModel(LearningParams())
    planted = [("risk_on", "dark_pool", 2.0)]
    learn_all(model, synthetic_trades(6, 3000, _unit(), regime_multipliers=planted, **FOCUSED))
    assert model.multiplier("equity", "dark_pool", "risk_on") >= 1.3
    for regime in ("mixed", "risk_off", "low_vol_uptrend"):
        assert abs(model.multiplier("equity", "dark_pool", regime) - 1.0) <= 0.1


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_shuffled_outcomes_move_almost_nothing(seed: int) -> None:
    """With outcomes shuffled across trades, at most 3 % of component x regime multipliers move by > 0.1."""
    true = np.random.default_rng(seed).uniform(0.4, 2.0, K).tolist()
    model = EntryModel(LearningParams())
    learn_all(model, synthetic_trades(seed, 2000, true, shuffle=True))
    snapshot = model.snapshot()["equity"]
    values = [snapshot[name]["multiplier"] for name in ENTRY_COMPONENTS]
    values += [view["multiplier"] for name in ENTRY_COMPONENTS for view in snapshot[name]["by_regime"].values()]
    moved = sum(abs(value - 1.0) > 0.1 for value in values)
    assert moved <= 0.03 * len(values)


def test_no_multiplier_moves_more_than_the_caps() -> None:
    """Each move a trade makes is <= max_step_per_trade and one multiplier's moves in a session add up to <= 0.1;
    after a change alarm (reason `change_boost`) the caps are change_step_per_session's, three times as large, and
    while the trades since the alarm confirm it (reason `change_confirmed`, strategy-wide only)
    change_confirmed_step_per_session's, ten times."""
    params = LearningParams()
    session_caps = {
        "change_confirmed": params.change_confirmed_step_per_session,
        "change_boost": params.change_step_per_session,
    }
    stream = synthetic_trades(3, 2500, _unit(options_flow=2.2, dark_pool=0.4, insider=2.0), trades_per_session=200)
    session_of = {trade.event_us: session for trade, session in stream}
    changes = learn_all(EntryModel(params), stream)
    assert changes
    moved: dict[tuple[str, str, int], float] = defaultdict(float)
    caps: dict[tuple[str, str, int], float] = defaultdict(lambda: params.max_step_per_session)
    for change in changes:
        # A session's close (its daily settle and creep) is stamped with the next session's first trade.
        closing = change.reason.startswith(("daily_settle", "creep"))
        key = (change.regime, change.component, session_of[change.event_us] - closing)
        cap = next((cap for word, cap in session_caps.items() if word in change.reason), params.max_step_per_session)
        if cap == params.change_confirmed_step_per_session:
            assert change.regime == GLOBAL_SCOPE
        if not closing:
            assert abs(change.new - change.old) <= params.max_step_per_trade * cap / params.max_step_per_session + 1e-12
        moved[key] += abs(change.new - change.old)
        caps[key] = max(caps[key], cap)
    assert set(caps.values()) == {*session_caps.values(), params.max_step_per_session}
    for key, total in moved.items():
        assert total <= caps[key] + 1e-12
    assert max(total for key, total in moved.items() if caps[key] == params.max_step_per_session) > (
        params.max_step_per_session - params.max_step_per_trade
    )


@pytest.mark.parametrize(("planted", "rises"), [(2.0, True), (0.4, False)])
def test_toxicity_penalty_multiplier_above_one_means_harsher_penalty(planted: float, rises: bool) -> None:
    """Toxic trades doing worse than the -0.9 weight implies push toxicity_penalty above 1 (better: below)."""
    model = EntryModel(LearningParams())
    learn_all(model, synthetic_trades(7, 3000, _unit(toxicity_penalty=planted), **FOCUSED))
    value = model.multiplier("equity", "toxicity_penalty")
    if rises:
        assert value >= 1.5
    else:
        assert value <= 0.85


def test_free_rider_does_not_get_its_partners_credit() -> None:
    """congress fires exactly when options_flow does but has no edge: only options_flow's multiplier rises. congress's
    estimate stays near 1; its multiplier, moved a little on early evidence, stays near it too."""
    model = EntryModel(LearningParams())
    learn_all(model, synthetic_trades(9, 3000, _unit(options_flow=2.5), companions=[("congress", "options_flow")]))
    assert model.multiplier("equity", "options_flow") >= 1.5
    assert abs(model.snapshot()["equity"]["congress"]["target"] - 1.0) <= 0.1
    assert abs(model.multiplier("equity", "congress") - 1.0) <= 0.2


def test_dominant_component_is_told_apart_from_the_rest() -> None:
    """options_flow carries most of the score's variance and is worth half: it falls, the rest stay near 1."""
    model = EntryModel(LearningParams())
    stream = synthetic_trades(4, 3000, _unit(options_flow=0.5), scales=[("options_flow", 5.0)], **FOCUSED)
    learn_all(model, stream)
    assert model.multiplier("equity", "options_flow") <= 0.7
    others = [model.multiplier("equity", name) for name in ENTRY_COMPONENTS if name != "options_flow"]
    assert float(np.median(others)) == pytest.approx(1.0, abs=0.1)


def test_right_base_weights_move_almost_nothing() -> None:
    """Planted multipliers all 1 with a real edge: the score learns its edge, no weighting is shown wrong."""
    model = EntryModel(LearningParams())
    learn_all(model, synthetic_trades(5, 3000, _unit()))
    snapshot = model.snapshot()["equity"]
    assert snapshot["options_flow"]["score_z"] >= 2.0
    values = [snapshot[name]["multiplier"] for name in ENTRY_COMPONENTS]
    values += [view["multiplier"] for name in ENTRY_COMPONENTS for view in snapshot[name]["by_regime"].values()]
    assert sum(abs(value - 1.0) > 0.1 for value in values) <= 0.03 * len(values)


def test_regimes_move_the_strategys_way_when_they_share_its_edges() -> None:
    """With the same planted multipliers in every regime, each regime's multipliers move the strategy's way: a regime
    stands on its own pooled evidence at z_threshold, a wider interval than the strategy's, so it may stop nearer
    1, never on the other side."""
    model = EntryModel(LearningParams())
    learn_all(model, synthetic_trades(8, 3000, _unit(options_flow=2.0, insider=0.4), **FOCUSED))
    for name in ("options_flow", "insider"):
        wide = model.multiplier("equity", name)
        assert abs(wide - 1.0) >= 0.3
        for regime in REGIMES:
            scoped = model.multiplier("equity", name, regime)
            assert (scoped - 1.0) / (wide - 1.0) >= 0.25


def test_regimes_with_opposite_edges_stay_apart() -> None:
    """dark_pool pays in risk_on and costs in risk_off: each regime keeps its own sign, none is merged."""
    model = EntryModel(LearningParams())
    regime_multipliers = [("risk_on", "dark_pool", 2.2), ("risk_off", "dark_pool", 0.25)]
    learn_all(model, synthetic_trades(6, 3000, _unit(), regime_multipliers=regime_multipliers, **FOCUSED))
    assert model.multiplier("equity", "dark_pool", "risk_on") >= 1.3
    assert model.multiplier("equity", "dark_pool", "risk_off") <= 0.85
    assert set(model.snapshot()["equity"]["dark_pool"]["by_regime"]) == set(REGIMES)


@pytest.mark.parametrize("per_ticker", [False, True])
def test_state_round_trip_mid_stream_is_bit_identical(per_ticker: bool) -> None:
    """Saving after trade k, reloading through JSON and continuing ends exactly where an uninterrupted run does."""
    params = LearningParams(per_ticker=per_ticker, min_effective_samples=50.0, min_component_samples=20.0)
    stream = synthetic_trades(21, 900, _unit(options_flow=2.0, dark_pool=0.5), trades_per_session=15)
    stream = [(replace(trade, symbol=("AMD", "NVDA")[i % 2]), s) for i, (trade, s) in enumerate(stream)]
    straight = EntryModel(params)
    straight_changes = learn_all(straight, stream)

    first = EntryModel(params)
    resumed_changes = learn_all(first, stream[:450])
    saved = orjson.dumps(first.to_state())
    resumed = EntryModel.from_state(params, orjson.loads(saved))
    assert orjson.dumps(resumed.to_state()) == saved
    resumed_changes += learn_all(resumed, stream[450:], open_session=stream[449][1])

    assert any(change.event_us > stream[450][0].event_us for change in straight_changes)
    assert resumed_changes == straight_changes
    assert orjson.dumps(resumed.to_state()) == orjson.dumps(straight.to_state())
    assert orjson.dumps(resumed.snapshot()) == orjson.dumps(straight.snapshot())


def test_evidence_decays_by_sessions_of_event_time() -> None:
    """One trade weighs half after half_life_sessions sessions, however many trades came between."""
    model = EntryModel(LearningParams(half_life_sessions=60.0))
    components = (("options_flow", 1.0),)
    model.learn(_trade(0, components, 1.0, "mixed"), 0)
    model.learn(_trade(1, components, 1.0, "mixed"), 60)
    assert model.snapshot()["equity"]["options_flow"]["samples"] == pytest.approx(1.5)


def test_score_reweights_contributions_by_learned_multipliers() -> None:
    """A fresh model scores a trade at its base score; the score uses the trade's regime multipliers."""
    model = EntryModel(LearningParams())
    trade = _trade(0, (("dark_pool", 0.5), ("options_flow", 2.0), ("toxicity_penalty", -0.3)), 0.2, "mixed")
    assert model.score(trade) == pytest.approx(2.2)
    assert model.multiplier("other", "dark_pool", "mixed") == 1.0


def test_from_state_rejects_a_foreign_state() -> None:
    """A state written by another model or version is refused, never half-loaded."""
    with pytest.raises(StateError):
        EntryModel.from_state(LearningParams(), {"model": "exit", "version": 1, "strategies": {}})


def test_partial_close_weighs_by_its_fraction() -> None:
    """A scale-out row counts as its fraction of a trade."""
    model = EntryModel(LearningParams())
    model.learn(replace(_trade(0, (("options_flow", 1.0),), 2.0, "mixed"), weight=0.25, is_partial=True), 0)
    assert model.snapshot()["equity"]["options_flow"]["samples"] == pytest.approx(0.25)


_component_values = st.lists(
    st.tuples(st.sampled_from(ENTRY_COMPONENTS), st.floats(0.0, 3.0)), min_size=1, max_size=6, unique_by=lambda c: c[0]
)
_rows = st.lists(
    st.tuples(
        _component_values,
        st.floats(-40.0, 40.0),
        st.sampled_from(REGIMES[:2]),
        st.floats(0.05, 1.0),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(rows=_rows)
def test_multipliers_stay_within_bounds_and_caps(
    rows: list[tuple[list[tuple[str, float]], float, str, float, int]],
) -> None:
    """Whatever the outcomes, multipliers stay in [0.25, 2.5] and no move exceeds its caps."""
    params = LearningParams(
        z_threshold=0.5, min_effective_samples=0.0, min_component_samples=0.0, max_step_per_trade=0.05
    )
    model = EntryModel(params)
    session = 0
    moved: dict[tuple[str, str, int], float] = defaultdict(float)
    for i, (components, pnl, regime, weight, gap) in enumerate(rows):
        session += gap
        signed = tuple(sorted((name, -value if ENTRY_BASE_WEIGHTS[name] < 0 else value) for name, value in components))
        trade = replace(_trade(i, signed, pnl, regime), weight=weight)
        for change in model.learn(trade, session):
            step = abs(change.new - change.old)
            assert step <= params.max_step_per_trade * weight + 1e-12
            moved[(change.regime, change.component, session)] += step
    assert all(step <= params.max_step_per_session + 1e-12 for step in moved.values())
    for view in model.snapshot()["equity"].values():
        assert 0.25 <= view["multiplier"] <= 2.5
        assert all(0.25 <= scoped["multiplier"] <= 2.5 for scoped in view["by_regime"].values())


def test_strategies_are_learned_apart() -> None:
    """Trades of another strategy never touch equity's statistics."""
    model = EntryModel(LearningParams())
    model.learn(replace(_trade(0, (("options_flow", 1.0),), 1.0, "mixed"), strategy="crypto"), 0)
    assert model.strategies() == ["crypto"]
    assert GLOBAL_SCOPE not in model.snapshot()["crypto"]


@pytest.mark.parametrize(
    "override", [{"half_life_sessions": 0.0}, {"min_multiplier": 1.2}, {"z_threshold": float("nan")}]
)
def test_invalid_learning_params_are_refused_naming_the_key(override: dict[str, float]) -> None:
    """A nonsensical setting fails at construction with the setting's name in the message."""
    with pytest.raises(ConfigError, match=next(iter(override)).split("_")[0]):
        LearningParams(**override)  # type: ignore[arg-type]


def test_daily_settle_moves_held_back_multipliers_within_the_session_budget() -> None:
    """The session close moves multipliers the tiny per-trade cap held back toward their targets, never more than
    max_step_per_session in that session counting the day's own moves."""
    params = dataclasses.replace(LearningParams(), max_step_per_trade=0.001)
    model = EntryModel(params)
    stream = synthetic_trades(5, 1500, _unit(dark_pool=2.2, insider=0.3))
    # Learned trade by trade with no session closed before the last: the tiny per-trade cap holds everything back.
    day_moves = [change for trade, session in stream for change in model.learn(trade, session)]
    last_session = stream[-1][1]
    session_of = {trade.event_us: session for trade, session in stream}
    before = {name: model.multiplier("equity", name) for name in ENTRY_COMPONENTS}
    settled = model.settle_session(last_session, event_us=10**15)
    assert settled, "a day-end update with clear evidence moves something"
    assert all(change.reason.startswith(("daily_settle", "creep")) for change in settled)
    for change in settled:
        earlier = sum(
            abs(move.new - move.old)
            for move in day_moves
            if move.component == change.component and move.regime == "*" and session_of[move.event_us] == last_session
        )
        assert earlier + abs(change.new - change.old) <= params.max_step_per_session + 1e-12
        if change.reason.startswith("creep"):
            assert abs(change.new - change.old) <= params.creep_per_session + 1e-12
    moves = [change for change in settled if change.reason.startswith("daily_settle")]
    assert moves
    for change in moves:
        assert change.old == before[change.component]
        if change.component in ("dark_pool", "insider"):
            assert (change.new > change.old) == (change.component == "dark_pool")  # toward the planted side


def test_stale_decay_follows_the_half_life_from_the_last_evidence_without_compounding() -> None:
    """A multiplier idle since session s decays toward 1 as 0.5 ** ((now - s) / half_life), however often the
    weekly job applies it (the session cap lifted here to check the arithmetic; the next test keeps it)."""
    params = dataclasses.replace(LearningParams(), max_step_per_session=2.5)
    model = EntryModel(params)
    stream = synthetic_trades(6, 1500, _unit(dark_pool=2.2))
    learn_all(model, stream)
    moved = model.multiplier("equity", "dark_pool")
    assert moved > 1.05
    last = stream[-1][1]
    evidence = {("equity", "dark_pool", "*"): last}
    model.decay_stale(last + 10, 1, evidence, idle_sessions=20)
    assert model.multiplier("equity", "dark_pool") == moved  # not idle long enough yet
    model.decay_stale(last + 30, 2, evidence, idle_sessions=20)
    model.decay_stale(last + 60, 3, evidence, idle_sessions=20)
    expected = 1.0 + (moved - 1.0) * 0.5 ** (60 / params.half_life_sessions)
    assert abs(model.multiplier("equity", "dark_pool") - expected) < 1e-9


def test_stale_decay_respects_the_session_cap() -> None:
    """The weekly decay is a move like any other: at most max_step_per_session in a session."""
    params = LearningParams()
    model, moved, last = dark_pool_moved(params)
    (change,) = [
        c
        for c in model.decay_stale(last + 200, 1, {("equity", "dark_pool", "*"): last}, idle_sessions=20)
        if c.component == "dark_pool" and c.regime == "*"
    ]
    assert change.old == moved
    assert abs(change.new - change.old) <= params.max_step_per_session + 1e-12
    assert change.reason.startswith("stale_decay")


def dark_pool_moved(params: LearningParams) -> tuple[EntryModel, float, int]:
    """A model whose dark_pool multiplier moved up on 1,500 trades: the model, that multiplier, its last session."""
    model = EntryModel(params)
    stream = synthetic_trades(6, 1500, _unit(dark_pool=2.2))
    learn_all(model, stream)
    return model, model.multiplier("equity", "dark_pool"), stream[-1][1]


def test_a_stale_decay_step_the_session_cap_held_back_is_caught_up_at_the_next_runs() -> None:
    """With the session cap kept (0.1), the first weekly decay cannot reach the half-life target; later weeks catch
    it up, so the multiplier ends where the half-life decay since the evidence puts it (it stayed above for good)."""
    params = LearningParams()
    model, moved, last = dark_pool_moved(params)
    evidence = {("equity", "dark_pool", "*"): last}
    (first,) = [c for c in model.decay_stale(last + 30, 1, evidence, idle_sessions=20) if c.component == "dark_pool"]
    half_life = 1.0 + (moved - 1.0) * 0.5 ** (30 / params.half_life_sessions)
    assert first.new - half_life > 0.01  # held back by the cap
    for week in range(1, 11):
        model = EntryModel.from_state(params, model.to_state())  # what a restart reads back keeps the progress
        model.decay_stale(last + 30 + 5 * week, week + 1, evidence, idle_sessions=20)
    expected = 1.0 + (moved - 1.0) * 0.5 ** (80 / params.half_life_sessions)
    assert model.multiplier("equity", "dark_pool") == pytest.approx(expected, rel=1e-9, abs=0.0)


def test_one_absurd_score_does_not_shut_the_gate() -> None:
    """One trade of a row without entry_score carries a contribution of 1e4 (a lost decimal point), its P&L as
    any other's: learning goes on after it much as without it (its raw score set the gate's slope alone, z from
    about 28 to under 1, and no multiplier moved for the next 100 sessions)."""
    true = _unit(dark_pool=2.0, insider=0.3)
    stream = synthetic_trades(8, 4000, true)
    trade, session = stream[1000]
    stream[1000] = (dataclasses.replace(trade, components=(*trade.components, ("etf_flow", 1e4))), session)
    clean, garbled = EntryModel(LearningParams()), EntryModel(LearningParams())
    clean_changes = learn_all(clean, synthetic_trades(8, 4000, true))
    garbled_changes = learn_all(garbled, stream)
    after = [change for change in garbled_changes if change.event_us > trade.event_us]
    clean_after = [change for change in clean_changes if change.event_us > trade.event_us]
    assert len(after) >= len(clean_after) // 2
    stats = garbled._strategies["equity"].scopes[GLOBAL_SCOPE]
    assert entry_model._score_z(stats, garbled.params) > LearningParams().z_threshold


def test_a_regime_s_counts_are_shown_decayed_to_the_strategy_s_session() -> None:
    """A regime traded in the first 20 sessions and idle for the next 80: its samples, as the snapshot (and so the
    bot's file) shows them, are its trades' weights decayed to the last session, like the strategy-wide ones (they
    stood as of its last trade: four times as many)."""
    params = LearningParams()
    stream = synthetic_trades(5, 3000, _unit(dark_pool=2.0), trades_per_session=30)
    idle, busy = REGIMES[0], REGIMES[1]
    stream = [
        (dataclasses.replace(trade, regime=trade.regime if session < 20 else busy), session)
        for trade, session in stream
    ]
    model = EntryModel(params)
    learn_all(model, stream)
    last = stream[-1][1]
    expected = sum(
        0.5 ** ((last - session) / params.half_life_sessions)
        for trade, session in stream
        if trade.regime == idle and dict(trade.components).get("dark_pool", 0.0) != 0.0
    )
    view = model.snapshot()["equity"]["dark_pool"]["by_regime"][idle]
    assert view["samples"] == pytest.approx(expected, rel=1e-9)
    assert view["wins"] + view["losses"] == pytest.approx(expected, rel=1e-9)


def test_the_joint_test_of_a_flat_direction_is_a_number() -> None:
    """An information matrix flat in the direction of the estimates (rank one here): its Wald statistic is 0 up to
    rounding, which can fall just below it; the joint z is still a float (the cube root of a negative float is
    complex, and float() of it raised TypeError)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        direction = np.concatenate(([1.0], rng.normal(size=entry_model._K)))
        posterior = entry_model._Posterior(
            mean=rng.normal(size=entry_model._K + 2),
            cov=np.eye(entry_model._K + 2),
            noise_var=1.0,
            free_information=np.outer(direction, direction),
        )
        z = posterior.joint_z(np.ones(entry_model._K, dtype=bool))
        assert math.isfinite(z)


def test_forgetting_one_component_leaves_the_estimates_and_the_others_evidence() -> None:
    """A change alarm's forgetting is a random-walk step in one component's effect: the data's estimate stays where
    it was, that component's variance grows without bound, the others' hardly change."""
    model = EntryModel(LearningParams())
    learn_all(model, synthetic_trades(2, 1500, _unit(dark_pool=2.0)))
    stats = model._strategies["equity"].scopes[GLOBAL_SCOPE]
    free = [0, *range(2, 2 + K)]

    def fit() -> tuple[np.ndarray, np.ndarray]:
        information = stats.xtx[np.ix_(free, free)] + np.eye(len(free)) * 1e-9
        inverse = np.linalg.inv(information)
        return inverse @ stats.xty[free], np.diag(inverse)

    estimates, variances = fit()
    stats.forget(2 + INDEX["dark_pool"])
    after, widened = fit()
    j = 1 + INDEX["dark_pool"]
    assert np.allclose(np.delete(after, [0, j]), np.delete(estimates, [0, j]), atol=1e-6)
    assert widened[j] > 1e3 * variances[j]
    assert np.allclose(np.delete(widened, [0, j]), np.delete(variances, [0, j]), rtol=0.2)


def weighted_trades(
    seed: int,
    count: int,
    true_multipliers: Sequence[float],
    *,
    flip: tuple[str, int, float] | None = None,
    raw: tuple[str, float] | None = None,
) -> Stream:
    """Trades whose contributions are base weight x U(0, 1) (the contract's scale) and whose P&L is
    sum_j m_j x_j / s + noise, s fixed by the planted multipliers (so a later change moves one component's
    effect only); `flip` (name, trade, multiplier) changes one from that trade on, `raw` (name, factor) logs one
    that many times its contribution. 100 trades a session."""
    rng = np.random.default_rng(seed)
    base = np.array([abs(ENTRY_BASE_WEIGHTS[name]) for name in ENTRY_COMPONENTS])
    signs = np.sign([ENTRY_BASE_WEIGHTS[name] for name in ENTRY_COMPONENTS])
    present = rng.random((count, K)) < 0.6
    contributions = signs * base * rng.random((count, K)) * present
    multipliers = np.tile(np.asarray(true_multipliers, dtype=np.float64), (count, 1))
    scale = float((multipliers * contributions).sum(axis=1).std())
    if flip is not None:
        multipliers[flip[1] :, INDEX[flip[0]]] = flip[2]
    pnl = (multipliers * contributions).sum(axis=1) / scale + rng.normal(0.0, 1.0, count)
    logged = contributions.copy()
    if raw is not None:
        logged[:, INDEX[raw[0]]] *= raw[1]
    stream: Stream = []
    for i in range(count):
        components = tuple((ENTRY_COMPONENTS[j], float(logged[i, j])) for j in np.flatnonzero(present[i]))
        trade = replace(_trade(i, components, float(pnl[i]), REGIMES[i % len(REGIMES)]), entry_score=None)
        stream.append((trade, i // 100))
    return stream


@pytest.mark.parametrize(
    ("scope", "z_current", "is_boosted", "expected"),
    [
        (GLOBAL_SCOPE, 1.5, False, 1.15),  # licensed by the joint test alone: stops at joint_component_z
        (GLOBAL_SCOPE, -2.9, False, 1.15),
        (GLOBAL_SCOPE, 3.5, False, 1.0),  # its own evidence clears own_z: the interval_z edge
        (GLOBAL_SCOPE, 1.5, True, 1.0),  # its own change alarm licenses it
        ("mixed", 1.5, False, 1.0),  # regimes move on z_threshold and stop at interval_z
    ],
)
def test_a_move_only_the_joint_test_licenses_stops_at_the_level_that_licensed_it(
    scope: str, z_current: float, is_boosted: bool, expected: float
) -> None:
    """The near edge a move stops at is the interval at joint_component_z for a strategy-wide move on evidence
    short of own_z without an alarm, and at interval_z otherwise."""
    params = LearningParams(interval_z=1.0, joint_component_z=1.15)
    gate = entry_model._Gate(2.5, is_open=True, own_z=3.07)
    assert entry_model._stop_z(scope, z_current, gate, params, is_boosted=is_boosted) == expected
    # Never tighter than interval_z: a joint_component_z below it leaves the usual edge.
    lenient = replace(params, joint_component_z=0.8)
    assert entry_model._stop_z(scope, z_current, gate, lenient, is_boosted=is_boosted) == 1.0


def test_a_change_alarm_comes_for_the_component_that_changed() -> None:
    """dark_pool's edge flips half-way through 6000 trades (others unchanged): its change detector raises an
    alarm within 3 sessions, its multiplier crosses 1 within 5, and no other component raises as many alarms after
    the flip. (Not asserted: that no other component alarms. On this stream, 100 trades a session, the detectors
    of average components also raise a few alarms, before the flip as after it.)"""
    planted = _unit(dark_pool=2.0, options_flow=0.5, insider=2.0)
    stream = weighted_trades(3, 6000, planted, flip=("dark_pool", 3000, -1.0))
    model = EntryModel(LearningParams())
    learn_all(model, stream[:3000])
    assert model.multiplier("equity", "dark_pool") > 1.3
    before = {name: view["change_alarms"] for name, view in model.snapshot()["equity"].items()}
    flipped_at = stream[3000][1]
    alarmed_at: int | None = None
    crossed_at: int | None = None
    open_session = stream[2999][1]
    for session in range(flipped_at, stream[-1][1] + 1):
        day = [(trade, at) for trade, at in stream[3000:] if at == session]
        learn_all(model, day, open_session=open_session)
        open_session = session
        if alarmed_at is None and model.snapshot()["equity"]["dark_pool"]["change_alarms"] > before["dark_pool"]:
            alarmed_at = session
        if crossed_at is None and model.multiplier("equity", "dark_pool") < 1.0:
            crossed_at = session
    assert alarmed_at is not None and alarmed_at - flipped_at <= 3
    assert crossed_at is not None and crossed_at - flipped_at <= 5
    after = {name: view["change_alarms"] - before[name] for name, view in model.snapshot()["equity"].items()}
    assert max(count for name, count in after.items() if name != "dark_pool") < after["dark_pool"]
    assert model.multiplier("equity", "dark_pool") < 1.0


@pytest.mark.parametrize("flip", [("dark_pool", 3000, -1.0), None])
def test_the_trades_after_an_alarm_confirm_a_change_and_not_a_false_alarm(flip: tuple[str, int, float] | None) -> None:
    """Scored against each component's effect as the fit stood at an alarm (here every component's, with nothing
    forgotten and the detector itself silenced), the trades that follow confirm a change that is there: dark_pool,
    flipped at the alarm, lies far the alarm's way within three sessions. Without the flip they score about 0,
    dark_pool's short of change_confirm_z and none of the 21 beyond 3 standard deviations: unlike the run that
    raised an alarm, nothing selected these trades."""
    params = LearningParams(change_threshold=1e9)
    stream = weighted_trades(3, 3300, _unit(dark_pool=2.0, options_flow=0.5, insider=2.0), flip=flip)
    model = EntryModel(params)
    learn_all(model, stream[:3000])
    strategy = model._strategies["equity"]
    stats = strategy.scopes[GLOBAL_SCOPE]
    posterior = entry_model._global_posterior(stats, strategy.frame(stats), strategy.reference, params)
    changes = strategy.changes
    changes.before = posterior.mean[entry_model._SLOPE] + posterior.mean[entry_model._COMPONENTS]
    changes.direction = np.full(K, -1.0)
    changes.boost_until = [stream[-1][1]] * K
    learn_all(model, stream[3000:], open_session=stream[2999][1])
    z = changes.confirmation / np.sqrt(changes.confirmation_weight)
    dark_pool = INDEX["dark_pool"]
    if flip is not None:
        assert z[dark_pool] >= 5.0
        assert changes.is_confirmed(dark_pool, params)
    else:
        assert not changes.is_confirmed(dark_pool, params)
        assert float(np.abs(z).max()) < 3.0
        assert abs(float(z.mean())) < 0.5
    assert sum(changes.alarms) == 0


def test_a_change_being_confirmed_resumes_exactly_from_its_state() -> None:
    """Saved while the trades after dark_pool's alarm are being scored (its flip at trade 3000, saved at 3250),
    reloaded through JSON and continued: the same moves and the same state as an uninterrupted run."""
    params = LearningParams()
    stream = weighted_trades(
        3, 3600, _unit(dark_pool=2.0, options_flow=0.5, insider=2.0), flip=("dark_pool", 3000, -1.0)
    )
    straight = EntryModel(params)
    straight_changes = learn_all(straight, stream)
    first = EntryModel(params)
    resumed_changes = learn_all(first, stream[:3250])
    changes = first._strategies["equity"].changes
    assert changes.direction[INDEX["dark_pool"]] != 0.0 and changes.confirmation_weight[INDEX["dark_pool"]] > 0.0
    saved = orjson.dumps(first.to_state())
    resumed = EntryModel.from_state(params, orjson.loads(saved))
    resumed_changes += learn_all(resumed, stream[3250:], open_session=stream[3249][1])
    resumed_at = stream[3250][0].event_us
    assert any("change_confirmed" in change.reason for change in straight_changes if change.event_us >= resumed_at)
    assert resumed_changes == straight_changes
    assert orjson.dumps(resumed.to_state()) == orjson.dumps(straight.to_state())


def test_an_off_scale_component_is_standardized_and_scored_on_the_usual_scale() -> None:
    """market_tide logged 30 times its contribution: after a session close it is learned at a factor near 1/30,
    scored at that scale, and its planted edge shows as on the usual scale."""
    stream = weighted_trades(5, 3000, _unit(market_tide=2.5, dark_pool=2.0), raw=("market_tide", 30.0))
    model = EntryModel(LearningParams())
    learn_all(model, stream)
    factor = model.scale_factors("equity")
    assert list(factor) == ["market_tide"] and 0.5 / 30.0 <= factor["market_tide"] <= 2.0 / 30.0
    trade = stream[-1][0]
    expected = math.fsum(
        model.multiplier("equity", name, trade.regime) * value * factor.get(name, 1.0)
        for name, value in trade.components
    )
    assert model.score(trade) == pytest.approx(expected)
    assert model.snapshot()["equity"]["market_tide"]["target"] > 1.5


def test_the_score_gate_tests_the_bots_entry_score_where_rows_carry_it() -> None:
    """Outcomes follow entry_score while the logged components carry no edge (the bot logs them on no scale the
    score shares): the gate opens on entry_score; the same trades without it keep the gate shut."""
    rng = np.random.default_rng(6)
    stream: Stream = []
    for i in range(600):
        components = tuple(sorted((name, float(rng.random())) for name in ("dark_pool", "insider", "market_tide")))
        score = float(rng.normal())
        trade = replace(_trade(i, components, 0.8 * score + float(rng.normal()), "mixed"), entry_score=score)
        stream.append((trade, i // 30))
    with_score = EntryModel(LearningParams())
    learn_all(with_score, stream)
    without = EntryModel(LearningParams())
    learn_all(without, [(replace(trade, entry_score=None), session) for trade, session in stream])
    assert with_score.snapshot()["equity"]["dark_pool"]["score_z"] >= 4.0
    assert abs(without.snapshot()["equity"]["dark_pool"]["score_z"]) < 2.0


def test_the_average_component_is_the_bulk_not_the_mean() -> None:
    """Three strong edges (all up) and fifteen average components: the average components' targets stay near 1
    (the reference is their median effect), where a mean over components would put them well below."""
    model = EntryModel(LearningParams())
    learn_all(model, synthetic_trades(7, 3000, _unit(options_flow=2.5, dark_pool=2.5, insider=2.5), **FOCUSED))
    snapshot = model.snapshot()["equity"]
    average = [
        snapshot[name]["target"] for name in ENTRY_COMPONENTS if name not in ("options_flow", "dark_pool", "insider")
    ]
    assert float(np.median(average)) == pytest.approx(1.0, abs=0.05)
    assert all(snapshot[name]["target"] > 2.0 for name in ("options_flow", "dark_pool", "insider"))


def _fitted_strategy() -> tuple[EntryModel, Any]:
    """A model that has learned 900 trades over 30 sessions (so its reference and regime center exist), and its
    strategy's state."""
    model = EntryModel(LearningParams(min_effective_samples=50.0, min_component_samples=20.0))
    learn_all(model, synthetic_trades(31, 900, _unit(options_flow=2.0, dark_pool=0.5)))
    strategy = model._strategies["equity"]
    assert strategy.reference is not None and strategy.center is not None
    return model, strategy


def _strategy_posterior(model: EntryModel, strategy: Any) -> Any:
    stats = strategy.scopes[GLOBAL_SCOPE]
    frame = entry_model._Frame.of(stats, strategy.scale)
    return frame, entry_model._global_posterior(stats, frame, strategy.reference, model.params)


def test_z_against_each_is_z_against_of_every_component_to_the_bit() -> None:
    """The vectorized z of every component against its multiplier is the per-component z_against, float for float,
    on a strategy-wide and a pooled (regime) posterior."""
    model, strategy = _fitted_strategy()
    frame, posterior = _strategy_posterior(model, strategy)
    pooled = model._scope_posterior(strategy, "mixed", frame, posterior)
    multipliers = np.random.default_rng(5).uniform(0.3, 3.0, K)
    for candidate in (posterior, pooled):
        each = candidate.z_against_each(multipliers).tolist()
        one_by_one = [candidate.z_against(2 + j, float(multipliers[j])) for j in range(K)]
        assert each == one_by_one


def test_joint_z_from_the_information_agrees_with_the_solve_on_the_covariance() -> None:
    """With every component seen, joint_z read off the information (Schur complement of the intercept) is the
    Wald test solved on the covariance's block, up to rounding; with some unseen the solve is used."""
    model, strategy = _fitted_strategy()
    _, posterior = _strategy_posterior(model, strategy)
    assert posterior.free_information is not None
    by_solve = replace(posterior, free_information=None)
    every = np.ones(K, dtype=bool)
    assert posterior.joint_z(every) == pytest.approx(by_solve.joint_z(every), rel=1e-9, abs=1e-12)
    assert abs(posterior.joint_z(every)) > 1.0
    some = every.copy()
    some[[0, 5]] = False
    assert posterior.joint_z(some) == by_solve.joint_z(some)


@pytest.mark.parametrize("centered", [True, False])
def test_pooled_posterior_in_one_solve_agrees_with_inverting_the_precision(centered: bool) -> None:
    """A regime's pooled posterior, solved as (I + C X)^-1 [C | C X'y + prior mean], is the textbook
    (X / s2 + C^-1)^-1 with its mean, up to rounding, and leaves the strategy-wide posterior untouched."""
    model, strategy = _fitted_strategy()
    global_frame, posterior = _strategy_posterior(model, strategy)
    prior_cov_before = posterior.cov.copy()
    stats = strategy.scopes["mixed"]
    frame = entry_model._Frame.of(stats, strategy.scale)
    center = strategy.center if centered else None
    prior = None if center is None else entry_model._center_prior(center, posterior.mean[1])
    pooled = entry_model._pooled_posterior(
        (frame.xtx, frame.xty), stats, global_frame, posterior, prior_trades=40.0, centered=prior, params=model.params
    )
    assert np.array_equal(posterior.cov, prior_cov_before)
    prior_mean, prior_cov = posterior.mean.copy(), posterior.cov.copy()
    if center is not None:
        prior_mean[2:] = (center[0] - 1.0) * prior_mean[1]
        prior_cov[range(2, 2 + K), range(2, 2 + K)] += center[1] * prior_mean[1] ** 2
    deviation_var = pooled.noise_var / (40.0 * global_frame.mean_squares)
    precision = np.linalg.inv(prior_cov + np.diag(deviation_var))
    cov = np.linalg.inv(frame.xtx / pooled.noise_var + precision)
    mean = cov @ (frame.xty / pooled.noise_var + precision @ prior_mean)
    assert np.allclose(pooled.cov, cov, rtol=1e-9, atol=1e-12 * float(np.abs(cov).max()))
    assert np.allclose(pooled.mean, mean, rtol=1e-9, atol=1e-12 * float(np.abs(mean).max()))
    assert np.array_equal(pooled.cov, pooled.cov.T)


def test_moments_are_the_frames_to_the_bit_on_and_off_scale() -> None:
    """A strategy's learned-scale moments, what a pooled posterior reads, are its frame's X'WX and X'Wy, float for
    float, on the logged scale and with a component learned at another scale."""
    _, strategy = _fitted_strategy()
    stats = strategy.scopes["mixed"]
    scale = np.ones(K)
    scale[3] = 0.05
    for factors in (None, scale):
        strategy.rescale(factors)
        frame = strategy.frame(stats)
        xtx, xty = strategy.moments(stats)
        assert np.array_equal(xtx, frame.xtx) and np.array_equal(xty, frame.xty)
        assert np.array_equal(xtx, entry_model._Frame.of(stats, factors).xtx)


def test_a_gates_joint_test_is_made_when_first_asked_and_once() -> None:
    """An open gate's joint z is the posterior's joint_z of the components seen, computed the first time it or
    is_reweighting is read and kept; a closed gate reads 0 and is not reweighting."""
    model, strategy = _fitted_strategy()
    _, posterior = _strategy_posterior(model, strategy)
    stats = strategy.scopes[GLOBAL_SCOPE]
    gate = entry_model._Gate.of(stats, posterior, model.params)
    assert gate.is_open and gate.joint is not None and gate.joint.value is None
    expected = posterior.joint_z(stats.present >= model.params.min_component_samples)
    assert gate.is_reweighting == (expected >= model.params.z_threshold)
    assert gate.joint.value == expected == gate.joint_z
    gate.joint.posterior = None  # asked again, it would fail: it is not
    assert gate.joint_z == expected
    closed = entry_model._Gate(0.5, is_open=False)
    assert closed.joint_z == 0.0 and not closed.is_reweighting


def test_center_prior_is_kept_while_its_center_and_slope_stay() -> None:
    """A strategy's center prior is _center_prior's, to the bit; the same arrays while the center and the slope stay,
    made again for a new center, another slope or a zero slope (whose sign the products carry)."""
    _, strategy = _fitted_strategy()
    slope = float(strategy.reference[0])
    first = strategy.center_prior(slope)
    expected = entry_model._center_prior(strategy.center, slope)
    assert first is not None
    assert all(np.array_equal(got, want) for got, want in zip(first, expected, strict=True))
    assert strategy.center_prior(slope) is first
    other = strategy.center_prior(slope * 2.0)
    assert other is not first and np.array_equal(other[1], entry_model._center_prior(strategy.center, slope * 2.0)[1])
    negative_zero = strategy.center_prior(-0.0)
    assert negative_zero is not None and strategy.center_prior(0.0) is not negative_zero
    strategy.center = strategy.center.copy()
    assert strategy.center_prior(slope * 2.0) is not other
    strategy.center = None
    assert strategy.center_prior(slope) is None


def test_add_to_diagonal_adds_from_the_start_index_only() -> None:
    matrix = np.arange(16.0).reshape(4, 4)
    expected = matrix.copy()
    expected[[1, 2, 3], [1, 2, 3]] += [10.0, 20.0, 30.0]
    entry_model._add_to_diagonal(matrix, np.array([10.0, 20.0, 30.0]), 1)
    assert np.array_equal(matrix, expected)
    entry_model._add_to_diagonal(matrix, 1.0)
    expected[range(4), range(4)] += 1.0
    assert np.array_equal(matrix, expected)


def test_add_to_diagonal_refuses_a_matrix_it_could_not_change_in_place() -> None:
    """A view that is not C-contiguous would be added to through a copy: refused rather than left unchanged."""
    matrix = np.arange(16.0).reshape(4, 4)
    with pytest.raises(ValueError, match="C-contiguous"):
        entry_model._add_to_diagonal(matrix.T, 1.0)
    assert np.array_equal(matrix, np.arange(16.0).reshape(4, 4))


@pytest.mark.parametrize("pnl_pct", [1.25, -0.75, 0.0])
def test_a_row_in_one_buffer_adds_and_decays_each_sum_as_its_own_products_to_the_bit(pnl_pct: float) -> None:
    """_Stats keeps its sums in one buffer and a _Row its terms laid out the same way: adding two rows, decaying
    and adding again gives every sum the floats of its own definition (weight * x x', (weight * y) * x, ...,
    wins only for a win, losses only for a loss), and a restored _Stats's named sums are views of its buffer."""
    rng = np.random.default_rng(11)
    stats = entry_model._Stats()
    expected: dict[str, Any] = {
        name: np.zeros(shape)
        for name, shape in [("xtx", (K + 2, K + 2)), ("xty", K + 2), ("gate", 4)]
        + [(name, K) for name in ("sums", "squares", "present", "wins", "losses", "pnl_sum")]
    }
    expected_scalars = {"weight": 0.0, "y_sum": 0.0, "y2_sum": 0.0}
    for session in (0, 0, 3):
        present = (rng.random(K) < 0.6).astype(np.float64)
        contributions = rng.normal(size=K) * present
        features = np.concatenate(([1.0, math.fsum(contributions)], contributions))
        y, weight, score = float(rng.normal()), float(rng.uniform(0.1, 1.0)), float(rng.normal())
        if stats.session is not None and session > stats.session:
            factor = decay_factor(60.0, session - stats.session)
            expected = {name: value * factor for name, value in expected.items()}
            expected_scalars = {name: value * factor for name, value in expected_scalars.items()}
        stats.advance(session, 60.0)
        stats.add(entry_model._Row.of(features, y, pnl_pct, weight, present, score=score))
        expected["xtx"] += weight * np.outer(features, features)
        expected["xty"] += (weight * y) * features
        expected["gate"] += weight * np.array([score, score * score, score * y, y * y])
        expected["sums"] += weight * contributions
        expected["squares"] += weight * contributions * contributions
        expected["present"] += weight * present
        if pnl_pct > 0.0:
            expected["wins"] += weight * present
        if pnl_pct < 0.0:
            expected["losses"] += weight * present
        expected["pnl_sum"] += (weight * pnl_pct) * present
        expected_scalars["weight"] += weight
        expected_scalars["y_sum"] += weight * y
        expected_scalars["y2_sum"] += weight * y * y
    for name, value in expected.items():
        assert np.array_equal(getattr(stats, name), value), name
    assert {name: getattr(stats, name) for name in expected_scalars} == expected_scalars
    restored = entry_model._Stats.from_state(orjson.loads(orjson.dumps(stats.to_state())))
    assert np.array_equal(restored.buffer, stats.buffer)
    restored.advance(9, 60.0)
    assert np.array_equal(restored.xtx, restored.buffer[: (K + 2) ** 2].reshape(K + 2, K + 2))
    assert np.array_equal(restored.pnl_sum, restored.buffer[-K:])


def test_each_scopes_multiplier_values_move_in_step_with_its_multipliers() -> None:
    """The per-scope array of multiplier values that the moves read is, after trades, session closes (creep), a
    restore and a stale decay, exactly each scope's multipliers in component order, 1 where it has none."""
    params = LearningParams(per_ticker=True, min_effective_samples=50.0, min_component_samples=20.0)
    stream = synthetic_trades(21, 900, _unit(options_flow=2.0, dark_pool=0.5), trades_per_session=15)
    stream = [(replace(trade, symbol=("AMD", "NVDA")[i % 2]), s) for i, (trade, s) in enumerate(stream)]
    model = EntryModel(params)

    def assert_in_step(model: EntryModel) -> None:
        strategy = model._strategies["equity"]
        for scope in strategy.scopes:
            expected = np.ones(K)
            for name, multiplier in strategy.multipliers.get(scope, {}).items():
                expected[INDEX[name]] = multiplier.value
            assert np.array_equal(strategy.values_of(scope), expected), scope

    changes = learn_all(model, stream[:450])
    assert_in_step(model)
    model = EntryModel.from_state(params, orjson.loads(orjson.dumps(model.to_state())))
    changes += learn_all(model, stream[450:], open_session=stream[449][1])
    assert_in_step(model)
    scopes = {change.regime for change in changes}
    assert "*" in scopes and any(scope.startswith("ticker:") for scope in scopes) and len(scopes) >= 4
    assert any(change.reason.startswith("daily_settle") for change in changes)
    last = stream[-1][1]
    evidence = {("equity", change.component, change.regime): last for change in changes}
    assert model.decay_stale(last + 100, 1, evidence, idle_sessions=20)
    assert_in_step(model)


def test_the_off_scale_transform_kept_per_strategy_is_the_one_its_scale_makes() -> None:
    """The map from logged to learned rows that a strategy keeps (set with its scale at each session close and on
    restore) is _transform of its scale: None while every component is on scale, then that matrix to the bit."""
    stream = weighted_trades(5, 600, _unit(market_tide=2.5), raw=("market_tide", 30.0))
    model = EntryModel(LearningParams())
    learn_all(model, stream[:50])
    assert model._strategies["equity"].transform is None
    learn_all(model, stream[50:], open_session=stream[49][1])
    restored = EntryModel.from_state(model.params, orjson.loads(orjson.dumps(model.to_state())))
    for strategy in (model._strategies["equity"], restored._strategies["equity"]):
        assert strategy.scale is not None and strategy.transform is not None
        assert np.array_equal(strategy.transform, entry_model._transform(strategy.scale))


def test_a_scope_whose_multipliers_cannot_move_skips_its_posterior_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A regime or ticker none of whose components in the trade has the samples to move is not fitted: on a
    per-ticker stream (many thin scopes) that happens often, and the changes, the state and the snapshot are those
    of a model that fits every scope every trade (the skip disabled at its seam, _may_move)."""
    params = LearningParams(per_ticker=True, min_effective_samples=50.0, min_component_samples=20.0)
    stream = synthetic_trades(21, 900, _unit(options_flow=2.0, dark_pool=0.5), trades_per_session=15)
    symbols = ("AMD", "NVDA", "TSLA", "AAPL", "MSFT", "META")
    stream = [(replace(trade, symbol=symbols[i % 6]), s) for i, (trade, s) in enumerate(stream)]
    may_move = entry_model._may_move
    skipped: list[bool] = []

    def counting(*args: Any) -> bool:
        result = may_move(*args)
        skipped.append(not result)
        return result

    monkeypatch.setattr(entry_model, "_may_move", counting)
    skipping = EntryModel(params)
    skipping_changes = learn_all(skipping, stream)
    monkeypatch.setattr(entry_model, "_may_move", lambda *args: True)
    fitting = EntryModel(params)
    fitting_changes = learn_all(fitting, stream)
    assert sum(skipped) >= 100
    assert any(change.regime.startswith("ticker:") for change in skipping_changes)
    assert skipping_changes == fitting_changes
    assert orjson.dumps(skipping.to_state()) == orjson.dumps(fitting.to_state())
    assert orjson.dumps(skipping.snapshot()) == orjson.dumps(fitting.snapshot())


@pytest.mark.parametrize("size", [3, 22, 23])
def test_inverse_and_solve_are_numpys_to_the_bit(size: int) -> None:
    """_inverse and _solve call numpy.linalg's LAPACK gufuncs without its wrapper: the same floats as np.linalg.inv
    and np.linalg.solve, for a vector and for a matrix of right-hand sides."""
    rng = np.random.default_rng(size)
    root = rng.normal(size=(size, size))
    matrix = root @ root.T + np.eye(size)
    assert np.array_equal(entry_model._inverse(matrix), np.linalg.inv(matrix))
    vector, columns = rng.normal(size=size), rng.normal(size=(size, size + 1))
    assert np.array_equal(entry_model._solve(matrix, vector), np.linalg.solve(matrix, vector))
    assert np.array_equal(entry_model._solve(matrix, columns), np.linalg.solve(matrix, columns))


def test_inverse_and_solve_raise_numpys_error_on_a_singular_matrix_and_restore_the_error_state() -> None:
    """A singular matrix raises LinAlgError("Singular matrix") as np.linalg does, and the floating-point error
    state is the caller's again afterwards."""
    singular = np.ones((4, 4))
    before = np.geterr()
    with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
        np.linalg.inv(singular)
    with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
        entry_model._inverse(singular)
    with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
        entry_model._solve(singular, np.ones(4))
    with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
        entry_model._solve(singular, np.ones((4, 2)))
    assert np.geterr() == before
    assert np.array_equal(entry_model._inverse(2.0 * np.eye(4)), 0.5 * np.eye(4))
    assert np.geterr() == before


@pytest.mark.parametrize("scaled", [False, True])
def test_confirm_changes_over_the_boosted_components_is_the_array_formula_to_the_bit(scaled: bool) -> None:
    """_confirm_changes scores only the components boosted now with an alarm's direction, in Python floats: every
    component's confirmation and weight are the array formula's (the boosted ones' sums plus weight * score, the
    others' as they were), float for float, with and without off-scale factors."""
    model, strategy = _fitted_strategy()
    rng = np.random.default_rng(17)
    if scaled:
        strategy.rescale(rng.uniform(0.05, 1.0, K))
    _, posterior = _strategy_posterior(model, strategy)
    changes = strategy.changes
    changes.mean, changes.scale = rng.normal(size=K), rng.uniform(0.0, 3.0, K)
    changes.before = rng.normal(size=K)
    changes.direction = rng.choice([-1.0, 0.0, 1.0], K)
    changes.boost_until = rng.choice([5, 9, 10], K).tolist()
    changes.confirmation, changes.confirmation_weight = rng.normal(size=K), rng.uniform(0.0, 5.0, K)
    features = np.concatenate(([1.0, 0.0], rng.normal(scale=3.0, size=K)))
    features[1] = features[2:].sum()
    confirmation, confirmation_weight = changes.confirmation.copy(), changes.confirmation_weight.copy()
    model._confirm_changes(strategy, posterior, 0.7, features, weight=0.6, session=9)

    active = (changes.direction != 0.0) & (np.array(changes.boost_until) >= 9)
    assert 0 < int(active.sum()) < K
    centered = features[2:] - changes.mean
    shift = (changes.before - posterior.mean[1] - posterior.mean[2:]) * strategy.scale_factors()
    old_residual = 0.7 - shift * centered / math.sqrt(posterior.noise_var)
    score = np.clip(old_residual * changes.scale * centered, -4.0, 4.0) * changes.direction
    assert changes.confirmation.tolist() == (confirmation + np.where(active, 0.6 * score, 0.0)).tolist()
    assert changes.confirmation_weight.tolist() == (confirmation_weight + np.where(active, 0.6, 0.0)).tolist()


def test_common_mean_square_is_the_mean_of_the_seen_components_to_the_bit() -> None:
    """The sum over the count, without ndarray.mean's dispatch: the float mean() returns, and the stand-in when no
    component is seen."""
    rng = np.random.default_rng(23)
    for _ in range(20):
        mean_squares = rng.exponential(size=K + 2) * rng.choice([1e-5, 1.0], K + 2)
        components = mean_squares[2:]
        expected = float(components[components > 1e-4].mean())
        assert entry_model._common_mean_square(mean_squares) == expected
    assert entry_model._common_mean_square(np.full(K + 2, 1e-5)) == 1e-4


def test_a_posteriors_columns_are_computed_once_and_not_carried_to_a_replaced_one() -> None:
    """columns() keeps what it returned the first time (the same lists); a posterior made from it with replace()
    computes its own."""
    model, strategy = _fitted_strategy()
    _, posterior = _strategy_posterior(model, strategy)
    columns = posterior.columns()
    assert posterior.columns() is columns
    assert columns == (posterior.mean.tolist(), np.diagonal(posterior.cov).tolist(), posterior.cov[:, 1].tolist())
    shifted = replace(posterior, mean=posterior.mean + 1.0)
    assert shifted.columns()[0] == (posterior.mean + 1.0).tolist()


def test_the_change_allowance_is_kept_until_the_scale_is_replaced() -> None:
    """_Changes.allowance is change_allowance where a component is watched and 0 elsewhere, the same array while
    the scale stands, recomputed when a session close replaces the scale or the allowance asked for differs."""
    changes = entry_model._Changes()
    assert changes.allowance(0.5).tolist() == [0.0] * K
    changes.scale = np.where(np.arange(K) % 3 == 0, 0.0, 2.0)
    first = changes.allowance(0.5)
    assert first.tolist() == (0.5 * changes.scale.astype(bool)).tolist()
    assert changes.allowance(0.5) is first
    assert changes.allowance(0.25).tolist() == (0.25 * changes.scale.astype(bool)).tolist()
    stats = entry_model._Stats()
    stats.weight, stats.present[:], stats.sums[:], stats.squares[:] = 100.0, 100.0, 10.0, np.arange(K) + 5.0
    changes.standardize(stats, LearningParams())
    assert changes.allowance(0.25).tolist() == (0.25 * changes.scale.astype(bool)).tolist() == [0.25] * K
