"""Exit outcomes become exit-weight multipliers: the exit learner, fed ExitOutcomes by the shell.

Pure and deterministic: no IO, no clock; time is the session index the shell derives from the record.
"""

from __future__ import annotations

import math
from typing import Any, Final

from learnd.config import LearningParams
from learnd.errors import StateError
from learnd.learning.multipliers import BoundedMultiplier, MultiplierChange, clip, decay_factor
from learnd.records.components import EXIT_BASE_WEIGHTS
from learnd.records.parse import ExitOutcome

MODEL: Final = "exit"
STATE_VERSION: Final = 1
# Distinct exit components a strategy learns by name. Tokens outside the contract's table are learned under their
# own names up to this many components; beyond it they share one (a garbled reason can name thousands of tokens,
# each of which would otherwise be state, export and report for good).
MAX_NAMED_COMPONENTS: Final = 64
OTHER_COMPONENT: Final = "<other>"
_STAT_FIELDS: Final = ("weight", "y_sum", "y2_sum", "pnl_sum", "win_weight", "hold_weight", "hold_sum")


class _Tally:
    """Decayed weighted sums over a set of exits: all of a strategy's, or those one component took part in."""

    __slots__ = ("count", "hold_sum", "hold_weight", "pnl_sum", "weight", "win_weight", "y2_sum", "y_sum")

    def __init__(self) -> None:
        self.weight = 0.0
        self.y_sum = 0.0
        self.y2_sum = 0.0
        self.pnl_sum = 0.0
        self.win_weight = 0.0
        self.hold_weight = 0.0
        self.hold_sum = 0.0
        self.count = 0

    def decay(self, factor: float) -> None:
        for name in _STAT_FIELDS:
            setattr(self, name, getattr(self, name) * factor)

    def add(self, y: float, pnl_pct: float, weight: float, hold_minutes: float | None) -> None:
        self.weight += weight
        self.y_sum += weight * y
        self.y2_sum += weight * y * y
        self.pnl_sum += weight * pnl_pct
        if pnl_pct > 0.0:
            self.win_weight += weight
        if hold_minutes is not None:
            self.hold_weight += weight
            self.hold_sum += weight * hold_minutes
        self.count += 1

    def mean(self) -> float:
        return self.y_sum / self.weight if self.weight > 0.0 else 0.0

    def variance(self) -> float:
        if self.weight <= 0.0:
            return 0.0
        mean = self.y_sum / self.weight
        return max(0.0, self.y2_sum / self.weight - mean * mean)

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name) for name in _STAT_FIELDS}
        state["count"] = self.count
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Tally:
        tally = cls()
        try:
            for name in _STAT_FIELDS:
                setattr(tally, name, float(state[name]))
            count = state["count"]
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"bad exit tally state: {error!r}") from error
        if not isinstance(count, int):
            raise StateError(f"bad exit tally count: {count!r}")
        tally.count = count
        return tally


class _StrategyExits:
    __slots__ = ("components", "multipliers", "overall", "session")

    def __init__(self) -> None:
        self.overall = _Tally()
        self.components: dict[str, _Tally] = {}
        self.multipliers: dict[str, BoundedMultiplier] = {}
        self.session: int | None = None

    def advance(self, session: int, half_life_sessions: float) -> None:
        if self.session is not None and session > self.session:
            factor = decay_factor(half_life_sessions, session - self.session)
            self.overall.decay(factor)
            for tally in self.components.values():
                tally.decay(factor)
        if self.session is None or session > self.session:
            self.session = session


def _named(strategy: _StrategyExits, name: str) -> str:
    """The component `name` is learned under in `strategy`: its own, or OTHER_COMPONENT once the strategy learns
    MAX_NAMED_COMPONENTS and it is neither one of them nor in the contract's table."""
    if name in strategy.components or name in EXIT_BASE_WEIGHTS or len(strategy.components) < MAX_NAMED_COMPONENTS:
        return name
    return OTHER_COMPONENT


class ExitModel:
    """Learns exit-component multipliers per strategy from exit outcomes.

    Meaning: an exit component's multiplier says how far its exits can be trusted. Each exit is credited, at its
    row weight, to every component its composite reason names. When the exits component k took part in end
    better than the strategy's average exit (clipped P&L percent, decayed means), k's weight goes up; worse,
    down. The target is 1 + exit_effect_scale * (difference of means, shrunk by `exit_prior_samples`) / (sd of
    exit P&L). A multiplier moves only when the difference lies z_threshold standard errors from the one it
    stands for (from 1: the component's plain z), after `min_effective_samples` exits of the strategy and
    `min_component_samples` of the component, in capped steps, bounded to [min_multiplier, max_multiplier].
    Components outside the default table (trail_stop, profit_target, ...) are learned under their own names, up
    to MAX_NAMED_COMPONENTS a strategy; the rest under OTHER_COMPONENT.
    """

    def __init__(self, params: LearningParams) -> None:
        self.params = params
        self._strategies: dict[str, _StrategyExits] = {}

    def learn(self, outcome: ExitOutcome, session: int) -> list[MultiplierChange]:
        """Fold one exit outcome into the model; the multipliers it moved.

        `session` is the trading-session index of `outcome.event_us`, non-decreasing along the stream.
        """
        if not outcome.weight > 0.0:
            raise ValueError(f"exit {outcome.key!r} has weight {outcome.weight!r}; outcomes weigh more than 0")
        params = self.params
        y = clip(outcome.pnl_pct, -params.pnl_clip_pct, params.pnl_clip_pct)
        strategy = self._strategies.setdefault(outcome.strategy, _StrategyExits())
        strategy.advance(session, params.half_life_sessions)
        strategy.overall.add(y, outcome.pnl_pct, outcome.weight, outcome.hold_minutes)
        names: list[str] = []
        for token in outcome.exit_components:
            name = _named(strategy, token)
            if name in names:
                continue
            names.append(name)
            tally = strategy.components.get(name)
            if tally is None:
                tally = strategy.components[name] = _Tally()
            tally.add(y, outcome.pnl_pct, outcome.weight, outcome.hold_minutes)
        if strategy.overall.weight < params.min_effective_samples:
            return []
        changes: list[MultiplierChange] = []
        for name in names:
            tally = strategy.components[name]
            if tally.weight < params.min_component_samples:
                continue
            multiplier = strategy.multipliers.get(name)
            current = 1.0 if multiplier is None else multiplier.value
            evidence = _evidence(tally, strategy.overall, params)
            z_current = evidence.z_against(current)
            if abs(z_current) < params.z_threshold:
                continue
            if multiplier is None:
                multiplier = strategy.multipliers[name] = BoundedMultiplier()
            old = multiplier.value
            new = multiplier.step_toward(evidence.target, session, params.max_step_per_trade * outcome.weight, params)
            if new != old:
                changes.append(
                    MultiplierChange(
                        event_us=outcome.event_us,
                        strategy=outcome.strategy,
                        model=MODEL,
                        component=name,
                        regime="*",
                        old=old,
                        new=new,
                        reason=(
                            f"exit_z={evidence.z:+.2f} z_vs_current={z_current:+.2f} "
                            f"mean_pnl={tally.mean():+.3f} all_exits_mean={strategy.overall.mean():+.3f} "
                            f"target={evidence.target:.3f}"
                        ),
                        samples=tally.weight,
                    )
                )
        return changes

    def multiplier(self, strategy: str, component: str) -> float:
        """The current multiplier of an exit component (1.0 until its evidence moves it)."""
        state = self._strategies.get(strategy)
        if state is None:
            return 1.0
        found = state.multipliers.get(component)
        return 1.0 if found is None else found.value

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view: {strategy: {exit_component: {multiplier, samples, win_rate, mean_pnl_pct,
        mean_hold_minutes, count, z, target}}} for every component seen."""
        result: dict[str, Any] = {}
        for strategy_name in sorted(self._strategies):
            state = self._strategies[strategy_name]
            view: dict[str, Any] = {}
            for name in sorted(state.components):
                tally = state.components[name]
                evidence = _evidence(tally, state.overall, self.params)
                view[name] = {
                    "multiplier": self.multiplier(strategy_name, name),
                    "samples": tally.weight,
                    "win_rate": tally.win_weight / tally.weight if tally.weight > 0.0 else None,
                    "mean_pnl_pct": tally.pnl_sum / tally.weight if tally.weight > 0.0 else None,
                    "mean_hold_minutes": tally.hold_sum / tally.hold_weight if tally.hold_weight > 0.0 else None,
                    "count": tally.count,
                    "z": evidence.z,
                    "target": evidence.target,
                }
            result[strategy_name] = view
        return result

    def to_state(self) -> dict[str, Any]:
        """Everything the model knows, JSON-able with floats kept exact; `from_state` restores it bit for bit."""
        return {
            "version": STATE_VERSION,
            "model": MODEL,
            "strategies": {
                name: {
                    "session": state.session,
                    "overall": state.overall.to_state(),
                    "components": {component: tally.to_state() for component, tally in state.components.items()},
                    "multipliers": {component: value.to_state() for component, value in state.multipliers.items()},
                }
                for name, state in self._strategies.items()
            },
        }

    @classmethod
    def from_state(cls, params: LearningParams, state: dict[str, Any]) -> ExitModel:
        """A model that continues exactly where the one that wrote `state` stopped; StateError when unusable."""
        if state.get("model") != MODEL or state.get("version") != STATE_VERSION:
            raise StateError(
                f"exit model state is {state.get('model')!r} version {state.get('version')!r}, "
                f"expected {MODEL!r} version {STATE_VERSION}"
            )
        strategies = state.get("strategies")
        if not isinstance(strategies, dict):
            raise StateError("exit model state has no strategies object")
        model = cls(params)
        for name, raw in strategies.items():
            if not isinstance(raw, dict) or not isinstance(raw.get("components"), dict):
                raise StateError(f"exit model state for strategy {name!r} is malformed")
            session = raw.get("session")
            if session is not None and not isinstance(session, int):
                raise StateError(f"exit model state for strategy {name!r} has session {session!r}")
            strategy = _StrategyExits()
            strategy.session = session
            strategy.components = {
                component: _Tally.from_state(value) for component, value in raw["components"].items()
            }
            multipliers = raw.get("multipliers", {})
            overall = raw.get("overall")
            if not isinstance(multipliers, dict) or not isinstance(overall, dict):
                raise StateError(f"exit model state for strategy {name!r} has malformed tallies")
            strategy.overall = _Tally.from_state(overall)
            strategy.multipliers = {
                component: BoundedMultiplier.from_state(value) for component, value in multipliers.items()
            }
            model._strategies[name] = strategy
        return model


class _Evidence:
    """A component's exits against all exits: shrunk difference of means, its standard error and the target."""

    __slots__ = ("difference", "difference_per_unit", "standard_error", "target", "z")

    def __init__(self, difference: float, standard_error: float, difference_per_unit: float, target: float) -> None:
        self.difference = difference
        self.standard_error = standard_error
        self.difference_per_unit = difference_per_unit
        self.target = target
        self.z = difference / standard_error

    def z_against(self, multiplier: float) -> float:
        """Standard errors between the evidence and the difference of means `multiplier` stands for."""
        implied = (multiplier - 1.0) * self.difference_per_unit
        return (self.difference - implied) / self.standard_error


def _evidence(tally: _Tally, overall: _Tally, params: LearningParams) -> _Evidence:
    prior = params.noise_prior_trades
    overall_var = (overall.weight * overall.variance() + prior * params.noise_prior_var) / (overall.weight + prior)
    # A component with few exits borrows the overall spread rather than trusting its own.
    component_var = (tally.weight * tally.variance() + prior * overall_var) / (tally.weight + prior)
    # Both standard errors added: conservative, since the component's exits are part of the overall mean.
    standard_error = math.sqrt(component_var / max(tally.weight, 1e-12) + overall_var / max(overall.weight, 1e-12))
    difference = tally.mean() - overall.mean()
    shrinkage = tally.weight / (tally.weight + params.exit_prior_samples)
    # One standard deviation of exit P&L maps to exit_effect_scale of multiplier.
    scale = math.sqrt(overall_var) / params.exit_effect_scale
    target = 1.0 + shrinkage * difference / scale
    return _Evidence(difference, standard_error, scale / shrinkage, target)
