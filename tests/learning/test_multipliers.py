"""What the entry and exit learners share: decay, clipping, scope names and the bounded multiplier's steps."""

from __future__ import annotations

import pytest

from learnd.config import LearningParams
from learnd.errors import StateError
from learnd.learning.multipliers import BoundedMultiplier, clip, decay_factor, ticker_scope

PARAMS = LearningParams()


def test_decay_halves_evidence_every_half_life_and_never_grows_it() -> None:
    assert decay_factor(20.0, 20) == pytest.approx(0.5)
    assert decay_factor(20.0, 40) == pytest.approx(0.25)
    assert decay_factor(20.0, 0) == 1.0
    # Event time going backwards decays nothing rather than inflating old evidence.
    assert decay_factor(20.0, -5) == 1.0


def test_clip_bounds_both_sides() -> None:
    assert clip(3.0, 0.25, 2.5) == 2.5
    assert clip(0.1, 0.25, 2.5) == 0.25
    assert clip(1.2, 0.25, 2.5) == 1.2


def test_ticker_scopes_do_not_collide_with_regime_names() -> None:
    assert ticker_scope("AAPL") == "ticker:AAPL"
    assert ticker_scope("RISK_ON") != "RISK_ON"


def test_a_step_is_capped_per_outcome_and_the_session_budget_is_shared() -> None:
    multiplier = BoundedMultiplier()
    assert multiplier.step_toward(2.0, session=1, step_cap=0.04, params=PARAMS) == pytest.approx(1.04)
    # Further outcomes in the same session draw on what is left of max_step_per_session (0.1).
    multiplier.step_toward(2.0, session=1, step_cap=0.04, params=PARAMS)
    assert multiplier.step_toward(2.0, session=1, step_cap=0.04, params=PARAMS) == pytest.approx(1.1)
    assert multiplier.step_toward(2.0, session=1, step_cap=0.04, params=PARAMS) == pytest.approx(1.1)
    # A new session opens a new budget.
    assert multiplier.step_toward(2.0, session=2, step_cap=0.04, params=PARAMS) == pytest.approx(1.14)


def test_a_step_stops_at_its_target_and_at_the_configured_bounds() -> None:
    near = BoundedMultiplier(1.0)
    assert near.step_toward(1.01, session=1, step_cap=0.05, params=PARAMS) == pytest.approx(1.01)
    assert near.moved_in_session == pytest.approx(0.01)
    low = BoundedMultiplier(PARAMS.min_multiplier + 0.01)
    assert low.step_toward(0.0, session=1, step_cap=0.05, params=PARAMS) == pytest.approx(PARAMS.min_multiplier)
    high = BoundedMultiplier(PARAMS.max_multiplier)
    assert high.step_toward(9.0, session=1, step_cap=0.05, params=PARAMS) == PARAMS.max_multiplier
    assert high.moved_in_session == 0.0


def test_state_round_trips_exactly_and_a_bad_state_is_a_state_error() -> None:
    multiplier = BoundedMultiplier()
    multiplier.step_toward(0.3, session=7, step_cap=0.037, params=PARAMS)
    restored = BoundedMultiplier.from_state(multiplier.to_state())
    assert (restored.value, restored.session, restored.moved_in_session) == (
        multiplier.value,
        multiplier.session,
        multiplier.moved_in_session,
    )
    with pytest.raises(StateError, match="bad multiplier state"):
        BoundedMultiplier.from_state({"value": 1.0})
    with pytest.raises(StateError, match="bad multiplier session"):
        BoundedMultiplier.from_state({"value": 1.0, "session": "7", "moved_in_session": 0.0})
