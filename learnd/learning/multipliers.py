"""What the entry and exit learners share: their parameters, the change they report, decay and bounded steps.

Pure: records come in, `MultiplierChange`s go out to the shell, which logs and persists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from learnd.config import LearningParams
from learnd.errors import StateError

GLOBAL_SCOPE: Final = "*"
TICKER_SCOPE_PREFIX: Final = "ticker:"


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


def decay_factor(half_life_sessions: float, elapsed_sessions: float) -> float:
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

    def step_toward(
        self, target: float, session: int, step_cap: float, params: LearningParams, session_cap: float | None = None
    ) -> float:
        """Move toward `target` by at most `step_cap` and what is left of this session's budget (`session_cap`,
        max_step_per_session unless given); the new value."""
        if self.session != session:
            self.session = session
            self.moved_in_session = 0.0
        cap = params.max_step_per_session if session_cap is None else session_cap
        budget = max(0.0, cap - self.moved_in_session)
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
