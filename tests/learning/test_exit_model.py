"""The exit learner on synthetic exits with planted per-reason effects: learning, null safety, caps, state."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.config import LearningParams
from learnd.errors import StateError
from learnd.learning.exit_model import MAX_NAMED_COMPONENTS, OTHER_COMPONENT, ExitModel
from learnd.learning.multipliers import MultiplierChange
from learnd.records.components import exit_components
from learnd.records.parse import ExitOutcome

Stream = list[tuple[ExitOutcome, int]]
# Reason, planted mean P&L percent of exits that carry it.
REASONS: tuple[tuple[str, float], ...] = (
    ("trail_stop(-0.8%)", 1.5),
    ("signal_decay(0.41)", -1.5),
    ("time_exit(4h)", 0.0),
    ("stale_trade(90min,0.12%)", 0.0),
    ("trail_stop+signal_decay(0.62)", 0.0),
    ("profit_target(5%)", 0.3),
)


def _exit(i: int, reason: str, pnl_pct: float, *, weight: float = 1.0, hold: float | None = 30.0) -> ExitOutcome:
    return ExitOutcome(
        key=f"attribution_logged|AMD|{i}",
        strategy="equity",
        symbol="AMD",
        regime="mixed",
        event_us=1_772_000_000_000_000 + i * 60_000_000,
        pnl_pct=pnl_pct,
        pnl_usd=None,
        weight=weight,
        hold_minutes=hold,
        reason=reason,
        exit_components=tuple(exit_components(reason)),
    )


def synthetic_exits(seed: int, count: int, *, shuffle: bool = False, exits_per_session: int = 30) -> Stream:
    """Exits whose P&L is the planted mean of their reason plus noise of sd 2 %."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(REASONS), count)
    means = np.array([mean for _, mean in REASONS])[which]
    pnl = means + rng.normal(0.0, 2.0, count)
    if shuffle:
        pnl = rng.permutation(pnl)
    holds = rng.uniform(5.0, 300.0, count)
    return [
        (_exit(i, REASONS[which[i]][0], float(pnl[i]), hold=float(holds[i])), i // exits_per_session)
        for i in range(count)
    ]


def learn_all(model: ExitModel, stream: Stream) -> list[MultiplierChange]:
    changes: list[MultiplierChange] = []
    for outcome, session in stream:
        changes += model.learn(outcome, session)
    return changes


def test_planted_exit_effects_move_exit_weights() -> None:
    """Exits by trail_stop end better than average (weight up), by signal decay worse (weight down)."""
    model = ExitModel(LearningParams())
    learn_all(model, synthetic_exits(1, 1500))
    assert model.multiplier("equity", "trail_stop") >= 1.1
    assert model.multiplier("equity", "entry_decay") <= 0.85
    assert abs(model.multiplier("equity", "time_decay") - 1.0) <= 0.1


def test_components_outside_the_default_table_are_learned_under_their_own_names() -> None:
    """profit_target and trail_stop get their own rows in the snapshot."""
    model = ExitModel(LearningParams())
    learn_all(model, synthetic_exits(2, 300))
    assert {"trail_stop", "profit_target", "entry_decay", "time_decay"} <= set(model.snapshot()["equity"])


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_shuffled_exit_outcomes_move_nothing_much(seed: int) -> None:
    """With P&L shuffled across exits no exit multiplier ends more than 0.1 from 1."""
    model = ExitModel(LearningParams())
    learn_all(model, synthetic_exits(seed, 1500, shuffle=True))
    for view in model.snapshot()["equity"].values():
        assert abs(view["multiplier"] - 1.0) <= 0.1


def test_tokens_beyond_the_named_components_share_one_and_the_table_s_keep_their_names() -> None:
    """Three garbled reasons of 5,000 made-up tokens each: the strategy learns MAX_NAMED_COMPONENTS components by
    name and the rest as OTHER_COMPONENT (it learned 15,000 and exported them all); the contract's components
    still come under their own names after that, and a name learned before stays its own."""
    model = ExitModel(LearningParams())
    model.learn(_exit(0, "tok_early", 0.5), 0)
    for row in range(3):
        model.learn(_exit(row + 1, "+".join(f"tok{row}_{index}" for index in range(5000)), 0.5), 0)
    model.learn(_exit(9, "signal_decay(0.4)+tok_early+tok_late", 0.5), 0)
    learned = model.snapshot()["equity"]
    assert len(learned) == MAX_NAMED_COMPONENTS + 2  # and the table's entry_decay, and OTHER_COMPONENT
    assert learned[OTHER_COMPONENT]["count"] == 4  # three garbled rows and tok_late's
    assert learned["entry_decay"]["count"] == 1
    assert learned["tok_early"]["count"] == 2


def test_snapshot_reports_count_win_rate_mean_pnl_and_hold() -> None:
    """Per exit component: count, win rate, mean P&L and mean hold, weighted by the row weight."""
    model = ExitModel(LearningParams())
    model.learn(_exit(0, "trail_stop", 2.0, hold=10.0), 0)
    model.learn(_exit(1, "trail_stop+risk", -1.0, hold=30.0), 0)
    model.learn(_exit(2, "trail_stop", 4.0, weight=0.5, hold=None), 0)
    view = model.snapshot()["equity"]["trail_stop"]
    assert view["count"] == 3
    assert view["samples"] == pytest.approx(2.5)
    assert view["win_rate"] == pytest.approx(1.5 / 2.5)
    assert view["mean_pnl_pct"] == pytest.approx((2.0 - 1.0 + 2.0) / 2.5)
    assert view["mean_hold_minutes"] == pytest.approx(20.0)
    assert view["multiplier"] == 1.0
    assert model.snapshot()["equity"]["risk"]["count"] == 1


def test_exit_evidence_decays_by_sessions() -> None:
    """An exit weighs half after half_life_sessions sessions of event time."""
    model = ExitModel(LearningParams(half_life_sessions=10.0))
    model.learn(_exit(0, "trail_stop", 1.0), 5)
    model.learn(_exit(1, "trail_stop", 1.0), 15)
    assert model.snapshot()["equity"]["trail_stop"]["samples"] == pytest.approx(1.5)


def test_exit_state_round_trip_mid_stream_is_bit_identical() -> None:
    """Saving after exit k, reloading through JSON and continuing ends exactly like an uninterrupted run."""
    params = LearningParams(min_effective_samples=50.0, min_component_samples=20.0)
    stream = synthetic_exits(6, 800, exits_per_session=10)
    straight = ExitModel(params)
    straight_changes = learn_all(straight, stream)
    first = ExitModel(params)
    changes = learn_all(first, stream[:400])
    saved = orjson.dumps(first.to_state())
    resumed = ExitModel.from_state(params, orjson.loads(saved))
    changes += learn_all(resumed, stream[400:])
    assert any(change.event_us > stream[400][0].event_us for change in straight_changes)
    assert changes == straight_changes
    assert orjson.dumps(resumed.to_state()) == orjson.dumps(straight.to_state())


def test_exit_from_state_rejects_a_foreign_state() -> None:
    """An entry model's state is not an exit model's."""
    with pytest.raises(StateError):
        ExitModel.from_state(LearningParams(), {"model": "entry", "version": 1, "strategies": {}})


_reasons = st.sampled_from(["trail_stop", "signal_decay(0.3)", "time_exit(4h)+trail_stop", "risk", "drawdown(3%)"])


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(_reasons, st.floats(-30.0, 30.0), st.floats(0.05, 1.0), st.integers(0, 2)), min_size=1, max_size=80
    )
)
def test_exit_multipliers_stay_within_bounds_and_caps(rows: list[tuple[str, float, float, int]]) -> None:
    """Whatever the outcomes, exit multipliers stay in [0.25, 2.5] and no move exceeds its caps."""
    params = LearningParams(z_threshold=0.5, min_effective_samples=0.0, min_component_samples=0.0)
    model = ExitModel(params)
    session = 0
    moved: dict[tuple[str, int], float] = defaultdict(float)
    for i, (reason, pnl, weight, gap) in enumerate(rows):
        session += gap
        for change in model.learn(_exit(i, reason, pnl, weight=weight), session):
            step = abs(change.new - change.old)
            assert step <= params.max_step_per_trade * weight + 1e-12
            moved[(change.component, session)] += step
    assert all(total <= params.max_step_per_session + 1e-12 for total in moved.values())
    assert all(0.25 <= view["multiplier"] <= 2.5 for view in model.snapshot()["equity"].values())
