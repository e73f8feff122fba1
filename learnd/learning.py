"""What the entry and exit learners share: their parameters, the change they report, decay and bounded steps.

Pure: records come in, `MultiplierChange`s go out to the shell, which logs and persists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Final

from learnd.errors import ConfigError, StateError

GLOBAL_SCOPE: Final = "*"
TICKER_SCOPE_PREFIX: Final = "ticker:"


@dataclass(frozen=True, slots=True)
class LearningParams:
    """How cautiously the learners move; every figure is in event time (trading sessions), never wall time.

    Prior strengths are in pseudo-trades of the average component: `regime_prior_trades = 100` means a regime
    needs about a hundred trades of its own before its estimate weighs as much as the strategy-wide one it is
    pooled toward (more for a component it rarely carries).
    """

    half_life_sessions: float = 60.0
    z_threshold: float = 2.0
    # Once the components' effects as a whole differ by z_threshold, a component follows its own estimate while
    # that lies this many standard deviations from where its multiplier stands (below: noise, held).
    joint_component_z: float = 0.5
    max_step_per_trade: float = 0.02
    max_step_per_session: float = 0.1
    min_multiplier: float = 0.25
    max_multiplier: float = 2.5
    pnl_clip_pct: float = 5.0
    per_ticker: bool = False
    # Ridge toward "the base weights are right": each component's deviation from the average component is worth
    # this many trades of the average component at zero. One common strength, so the average is over components
    # and not over score variance (which options_flow alone would dominate).
    ridge_prior_trades: float = 50.0
    regime_prior_trades: float = 100.0
    ticker_prior_trades: float = 400.0
    # The intercept and the average effect are all but free: against 21 ridge terms, even one pseudo-trade on the
    # score's scale would pull the average toward 0 and every multiplier up.
    coefficient_prior_trades: float = 0.01
    # Noise variance starts at 1 %^2, worth this many trades, so a handful of equal outcomes is not certainty.
    noise_prior_var: float = 1.0
    noise_prior_trades: float = 10.0
    # Evidence needed before anything moves: effective (decayed, weighted) outcomes of the strategy, and of the
    # scope that carried the component. Early estimates are the noisiest, and a held multiplier keeps its moves.
    min_effective_samples: float = 200.0
    min_component_samples: float = 50.0
    # Exit learning: a component's edge over the average exit is shrunk by this many pseudo-exits at zero,
    # and an edge of one standard deviation of exit P&L maps to a multiplier of 1 + exit_effect_scale.
    exit_prior_samples: float = 20.0
    exit_effect_scale: float = 1.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"learning.{field.name} must be finite, got {value!r}")
        positive = (
            "half_life_sessions",
            "z_threshold",
            "max_step_per_trade",
            "max_step_per_session",
            "pnl_clip_pct",
            "ridge_prior_trades",
            "regime_prior_trades",
            "ticker_prior_trades",
            "coefficient_prior_trades",
            "noise_prior_var",
            "noise_prior_trades",
            "exit_effect_scale",
        )
        for name in positive:
            if getattr(self, name) <= 0.0:
                raise ConfigError(f"learning.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 < self.min_multiplier <= 1.0 <= self.max_multiplier:
            raise ConfigError(
                f"learning.min_multiplier/max_multiplier must bracket 1 (got {self.min_multiplier}, "
                f"{self.max_multiplier})"
            )
        for name in ("joint_component_z", "min_effective_samples", "min_component_samples", "exit_prior_samples"):
            if getattr(self, name) < 0.0:
                raise ConfigError(f"learning.{name} must be >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class MultiplierChange:
    """One multiplier moved by one outcome; `regime` is `*` strategy-wide, `ticker:SYM` for a ticker scope."""

    event_us: int
    strategy: str
    model: str
    component: str
    regime: str
    old: float
    new: float
    reason: str
    samples: float


def ticker_scope(symbol: str) -> str:
    """The scope name under which a ticker's multipliers live (beside regime names)."""
    return f"{TICKER_SCOPE_PREFIX}{symbol}"


def decay_factor(half_life_sessions: float, elapsed_sessions: int) -> float:
    """Weight left to evidence `elapsed_sessions` trading sessions old; a backwards step decays nothing."""
    if elapsed_sessions <= 0:
        return 1.0
    return float(0.5 ** (elapsed_sessions / half_life_sessions))


def clip(value: float, low: float, high: float) -> float:
    """`value` bounded to [low, high]."""
    return min(high, max(low, value))


class BoundedMultiplier:
    """A multiplier that moves toward a target in capped steps: per outcome and in total per trading session."""

    __slots__ = ("moved_in_session", "session", "value")

    def __init__(self, value: float = 1.0, session: int | None = None, moved_in_session: float = 0.0) -> None:
        self.value = value
        self.session = session
        self.moved_in_session = moved_in_session

    def step_toward(self, target: float, session: int, step_cap: float, params: LearningParams) -> float:
        """Move toward `target` by at most `step_cap` and what is left of this session's budget; the new value."""
        if self.session != session:
            self.session = session
            self.moved_in_session = 0.0
        budget = max(0.0, params.max_step_per_session - self.moved_in_session)
        bounded_target = clip(target, params.min_multiplier, params.max_multiplier)
        gap = bounded_target - self.value
        step = min(abs(gap), step_cap, budget)
        if step <= 0.0:
            return self.value
        new = clip(self.value + math.copysign(step, gap), params.min_multiplier, params.max_multiplier)
        self.moved_in_session += abs(new - self.value)
        self.value = new
        return new

    def to_state(self) -> dict[str, Any]:
        """A JSON-able form that `from_state` restores exactly."""
        return {"value": self.value, "session": self.session, "moved_in_session": self.moved_in_session}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BoundedMultiplier:
        """The multiplier `to_state` described; StateError when the shape is wrong."""
        try:
            value = float(state["value"])
            session = state["session"]
            moved = float(state["moved_in_session"])
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"bad multiplier state: {error!r}") from error
        if session is not None and not isinstance(session, int):
            raise StateError(f"bad multiplier session: {session!r}")
        return cls(value, session, moved)
