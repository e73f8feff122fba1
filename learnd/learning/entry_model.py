"""Closed trades become entry-weight multipliers: the entry learner, fed TradeOutcomes by the shell.

Pure and deterministic: no IO, no clock; time is the session index the shell derives from the record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from learnd.config import LearningParams
from learnd.errors import StateError
from learnd.learning.multipliers import (
    GLOBAL_SCOPE,
    TICKER_SCOPE_PREFIX,
    BoundedMultiplier,
    MultiplierChange,
    clip,
    decay_factor,
    ticker_scope,
)
from learnd.records.components import ENTRY_COMPONENTS
from learnd.records.parse import TradeOutcome

FloatArray = npt.NDArray[np.float64]

MODEL: Final = "entry"
STATE_VERSION: Final = 1
_INTERCEPT: Final = 0
_SLOPE: Final = 1
_FIRST_COMPONENT: Final = 2
_COMPONENT_INDEX: Final[dict[str, int]] = {name: _FIRST_COMPONENT + i for i, name in enumerate(ENTRY_COMPONENTS)}
_DIM: Final = _FIRST_COMPONENT + len(ENTRY_COMPONENTS)
# A component never seen still needs a finite prior variance; this is its stand-in mean squared contribution.
_MIN_MEAN_SQUARE: Final = 1e-4


class _Stats:
    """Decayed weighted sufficient statistics of one scope: the regression's and per-component tallies."""

    __slots__ = ("losses", "pnl_sum", "present", "session", "weight", "wins", "xtx", "xty", "y2_sum", "y_sum")

    def __init__(self) -> None:
        self.xtx: FloatArray = np.zeros((_DIM, _DIM))
        self.xty: FloatArray = np.zeros(_DIM)
        self.weight = 0.0
        self.y_sum = 0.0
        self.y2_sum = 0.0
        self.present: FloatArray = np.zeros(len(ENTRY_COMPONENTS))
        self.wins: FloatArray = np.zeros(len(ENTRY_COMPONENTS))
        self.losses: FloatArray = np.zeros(len(ENTRY_COMPONENTS))
        self.pnl_sum: FloatArray = np.zeros(len(ENTRY_COMPONENTS))
        self.session: int | None = None

    def advance(self, session: int, half_life_sessions: float) -> None:
        """Decay everything to `session`; the session index never moves backwards here."""
        if self.session is not None and session > self.session:
            factor = decay_factor(half_life_sessions, session - self.session)
            self.xtx *= factor
            self.xty *= factor
            self.weight *= factor
            self.y_sum *= factor
            self.y2_sum *= factor
            self.present *= factor
            self.wins *= factor
            self.losses *= factor
            self.pnl_sum *= factor
        if self.session is None or session > self.session:
            self.session = session

    def add(self, features: FloatArray, y: float, pnl_pct: float, weight: float, present: FloatArray) -> None:
        """Add one outcome of weight `weight`; `present` marks (0/1) the components it carried."""
        self.xtx += weight * np.outer(features, features)
        self.xty += (weight * y) * features
        self.weight += weight
        self.y_sum += weight * y
        self.y2_sum += weight * y * y
        self.present += weight * present
        if pnl_pct > 0.0:
            self.wins += weight * present
        elif pnl_pct < 0.0:
            self.losses += weight * present
        self.pnl_sum += (weight * pnl_pct) * present

    def mean_squares(self) -> FloatArray:
        """Per-coefficient mean squared feature, floored so an unseen component keeps a finite prior."""
        if self.weight <= 0.0:
            return np.full(_DIM, _MIN_MEAN_SQUARE)
        return np.maximum(np.diagonal(self.xtx) / self.weight, _MIN_MEAN_SQUARE)

    def to_state(self) -> dict[str, Any]:
        return {
            "xtx": self.xtx.tolist(),
            "xty": self.xty.tolist(),
            "weight": self.weight,
            "y_sum": self.y_sum,
            "y2_sum": self.y2_sum,
            "present": self.present.tolist(),
            "wins": self.wins.tolist(),
            "losses": self.losses.tolist(),
            "pnl_sum": self.pnl_sum.tolist(),
            "session": self.session,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Stats:
        stats = cls()
        try:
            stats.xtx = _array(state["xtx"], (_DIM, _DIM))
            stats.xty = _array(state["xty"], (_DIM,))
            stats.weight = float(state["weight"])
            stats.y_sum = float(state["y_sum"])
            stats.y2_sum = float(state["y2_sum"])
            stats.present = _array(state["present"], (len(ENTRY_COMPONENTS),))
            stats.wins = _array(state["wins"], (len(ENTRY_COMPONENTS),))
            stats.losses = _array(state["losses"], (len(ENTRY_COMPONENTS),))
            stats.pnl_sum = _array(state["pnl_sum"], (len(ENTRY_COMPONENTS),))
            session = state["session"]
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"bad entry statistics state: {error!r}") from error
        if session is not None and not isinstance(session, int):
            raise StateError(f"bad entry statistics session: {session!r}")
        stats.session = session
        return stats


@dataclass(frozen=True, slots=True)
class _Posterior:
    """Gaussian posterior of (a, b, d_1..d_K) for one scope, with the scope's evidence."""

    mean: FloatArray
    cov: FloatArray
    noise_var: float

    def z(self, index: int) -> float:
        return float(self.mean[index] / math.sqrt(self.cov[index, index]))

    def z_against(self, index: int, multiplier: float) -> float:
        """How many standard deviations the evidence on d_j lies from the effect `multiplier` stands for:
        d_j - (multiplier - 1) b, with the reference b's own uncertainty counted."""
        excess = multiplier - 1.0
        contrast = self.mean[index] - excess * self.mean[_SLOPE]
        variance = (
            self.cov[index, index] - 2.0 * excess * self.cov[index, _SLOPE] + excess * excess * self.cov[_SLOPE, _SLOPE]
        )
        return float(contrast / math.sqrt(max(variance, 1e-300)))

    def joint_z(self, seen: npt.NDArray[np.bool_]) -> float:
        """Evidence that the seen components' effects are not all equal (the base weights' proportions are wrong):
        the Wald statistic of their d_j, a chi-square on (seen - 1) degrees of freedom, as a normal z."""
        indices = np.flatnonzero(seen) + _FIRST_COMPONENT
        degrees = indices.size - 1
        if degrees < 1:
            return 0.0
        d = self.mean[indices]
        wald = float(d @ np.linalg.solve(self.cov[np.ix_(indices, indices)], d))
        # Wilson-Hilferty: the cube root of chi-square / k is close to normal.
        spread = 2.0 / (9.0 * degrees)
        return float(((wald / degrees) ** (1.0 / 3.0) - (1.0 - spread)) / math.sqrt(spread))

    def has_reference(self) -> bool:
        """The average component's effect is positive, so targets relative to it have a meaning."""
        return bool(self.mean[_SLOPE] > 0.0)

    def target(self, index: int) -> float:
        """Component's fitted effect per unit contribution relative to the average component's: 1 + d_j / b (b > 0)."""
        return float(1.0 + self.mean[index] / self.mean[_SLOPE])


@dataclass(frozen=True, slots=True)
class _Gate:
    """Whether a scope may learn: enough trades and a static score with an edge; and whether its components'
    effects as a whole differ (`is_reweighting`)."""

    score_z: float
    joint_z: float
    is_open: bool
    is_reweighting: bool

    @classmethod
    def of(cls, stats: _Stats, posterior: _Posterior, params: LearningParams) -> _Gate:
        if stats.weight < params.min_effective_samples or not posterior.has_reference():
            return cls(0.0, 0.0, is_open=False, is_reweighting=False)
        edge_z = _score_z(stats, params)
        if edge_z < params.z_threshold:
            return cls(edge_z, 0.0, is_open=False, is_reweighting=False)
        joint_z = posterior.joint_z(stats.present >= params.min_component_samples)
        return cls(edge_z, joint_z, is_open=True, is_reweighting=joint_z >= params.z_threshold)


class _StrategyState:
    __slots__ = ("multipliers", "scopes")

    def __init__(self) -> None:
        self.scopes: dict[str, _Stats] = {}
        self.multipliers: dict[str, dict[str, BoundedMultiplier]] = {}


class EntryModel:
    """Learns entry-component multipliers per strategy, strategy-wide, per regime and (optionally) per ticker.

    Credit is a regression: y = a + b * score + sum_j d_j * x_j, where x_j is component j's logged contribution
    (base weight x signal, so toxicity_penalty's is <= 0), score = sum_j x_j and y the P&L percent clipped to
    +-pnl_clip_pct, each trade weighted by its closed fraction. Component j's effect per unit contribution is
    b + d_j. The d_j share one ridge prior at 0 ("the base weights are right"), `ridge_prior_trades` trades of the
    average component each, and a and b are nearly free: so b is the average component's effect (each component
    counting at most once, a noisy one less), not the score's slope, which the dominant component would set. The
    target multiplier of j is 1 + d_j / b, its effect relative to the average component's: options_flow, most of
    the score, can be told apart from the rest, and above 1 for toxicity_penalty means toxic trades do worse than
    the -0.9 weight already implies (a harsher penalty). A component that always fires with a strong one gets no
    share of its credit unless its own contribution tracks the outcome.

    The sums (X'WX, X'Wy, ...) decay by half every `half_life_sessions` sessions of event time, strategy-wide,
    per regime and per ticker. A regime's (ticker's) prior is the strategy-wide posterior widened by a deviation
    variance worth `regime_prior_trades` (`ticker_prior_trades`) trades: a thin regime reads like the strategy,
    a well-fed one like itself, and regimes are never merged. The noise variance comes from the fit's residuals.

    Gates, each at z_threshold: nothing moves until the strategy has `min_effective_samples` effective trades and
    the static score shows an edge there (the slope of P&L on the score), nor in a regime (ticker) until it has
    as many trades and an edge of its own; a component must be in the trade and in `min_component_samples` of
    the scope's. Then a multiplier moves when the evidence on its own effect lies z_threshold standard deviations
    from what the multiplier stands for (from 1: the component's own z), or when the components' effects as a
    whole are z_threshold from equal (a Wald test: the base weights' proportions are wrong) and its own evidence
    is still `joint_component_z` from where it stands. Most components are too rare or too small for their own z
    to clear 2 in a few thousand noisy trades; the joint test lets them follow their shrunk estimates once the
    weighting as a whole is shown wrong. A moved multiplier that later evidence no longer supports is pulled
    back. Moves go toward the target, capped per trade (times the trade's weight) and per session, bounded to
    [min_multiplier, max_multiplier].

    A regime's (ticker's) multipliers start at 1 and follow the strategy-wide ones, on that scope's trades, unless
    the scope's pooled evidence departs from the strategy-wide multiplier by z_threshold (then they move toward
    the scope's own target, and stay apart while that evidence holds at `joint_component_z`). A thin regime's
    noise thus never reaches its multipliers, while an edge of its own does. `score` uses the trade's regime;
    ticker multipliers are reported for the shell to use as it sees fit.
    """

    def __init__(self, params: LearningParams) -> None:
        self.params = params
        self._strategies: dict[str, _StrategyState] = {}
        # (strategy, scope, component) -> the session of its last stability decay.
        self._decayed_at: dict[tuple[str, str, str], int] = {}

    def learn(self, trade: TradeOutcome, session: int) -> list[MultiplierChange]:
        """Fold one closed (or partially closed) trade into the model; the multipliers it moved.

        `session` is the trading-session index of `trade.event_us`, non-decreasing along the stream.
        """
        if not trade.weight > 0.0:
            raise ValueError(f"trade {trade.key!r} has weight {trade.weight!r}; outcomes weigh more than 0")
        params = self.params
        features, present = _features(trade.components)
        y = clip(trade.pnl_pct, -params.pnl_clip_pct, params.pnl_clip_pct)
        strategy = self._strategies.setdefault(trade.strategy, _StrategyState())
        scopes = [GLOBAL_SCOPE, regime_scope(trade.regime)]
        if params.per_ticker:
            scopes.append(ticker_scope(trade.symbol))
        for scope in scopes:
            stats = strategy.scopes.get(scope)
            if stats is None:
                stats = strategy.scopes[scope] = _Stats()
            stats.advance(session, params.half_life_sessions)
            stats.add(features, y, trade.pnl_pct, trade.weight, present)

        global_stats = strategy.scopes[GLOBAL_SCOPE]
        global_posterior = _global_posterior(global_stats, params)
        global_gate = _Gate.of(global_stats, global_posterior, params)
        moved = [name for name, contribution in trade.components if contribution != 0.0]
        origin = _Origin(trade.event_us, trade.strategy, params.max_step_per_trade * trade.weight, "")
        changes = self._move(
            origin,
            session,
            strategy=strategy,
            scope=GLOBAL_SCOPE,
            stats=global_stats,
            posterior=global_posterior,
            gate=global_gate,
            components=moved,
        )
        for scope in scopes[1:]:
            if not global_gate.is_open:
                break
            stats = strategy.scopes[scope]
            posterior = _pooled_posterior(stats, global_stats, global_posterior, self._prior_trades(scope), params)
            gate = _Gate.of(stats, posterior, params)
            changes += self._move(
                origin,
                session,
                strategy=strategy,
                scope=scope,
                stats=stats,
                posterior=posterior,
                gate=gate,
                components=moved,
                followed=strategy.multipliers.get(GLOBAL_SCOPE, {}),
            )
        return changes

    def settle_session(self, session: int, event_us: int) -> list[MultiplierChange]:
        """The daily (medium-term) update, once per session, at its close: every strategy-wide multiplier whose
        evidence at the day's end passes the same gates moves toward its target by what the day's trades left of
        the session's budget. Rare components that the per-trade cap held back catch up here; nothing moves
        further than max_step_per_session within the session. A function of the ledger and the session
        boundary only."""
        params = self.params
        changes: list[MultiplierChange] = []
        for name in sorted(self._strategies):
            strategy = self._strategies[name]
            stats = strategy.scopes.get(GLOBAL_SCOPE)
            if stats is None:
                continue
            posterior = _global_posterior(stats, params)
            gate = _Gate.of(stats, posterior, params)
            origin = _Origin(event_us, name, params.max_step_per_session, "daily_settle ")
            changes += self._move(
                origin,
                session,
                strategy=strategy,
                scope=GLOBAL_SCOPE,
                stats=stats,
                posterior=posterior,
                gate=gate,
                components=list(ENTRY_COMPONENTS),
            )
        return changes

    def decay_stale(
        self, session: int, event_us: int, last_evidence: dict[tuple[str, str, str], int], *, idle_sessions: int
    ) -> list[MultiplierChange]:
        """The weekly stability decay: a multiplier whose component has had no fresh evidence in its scope for
        `idle_sessions` sessions drifts back toward 1 with the evidence half-life, counted from the last evidence
        (applying it every week never compounds), within the session's step budget."""
        params = self.params
        changes: list[MultiplierChange] = []
        for name in sorted(self._strategies):
            strategy = self._strategies[name]
            for scope in sorted(strategy.multipliers):
                for component in sorted(strategy.multipliers[scope]):
                    multiplier = strategy.multipliers[scope][component]
                    last = last_evidence.get((name, component, scope))
                    if last is None or session - last < idle_sessions or multiplier.value == 1.0:
                        continue
                    # Decay since the later of the last evidence and the last decay run: successive weekly runs
                    # multiply to exactly the half-life decay since the evidence, never compounding it.
                    key = (name, scope, component)
                    kept = decay_factor(params.half_life_sessions, session - max(last, self._decayed_at.get(key, -1)))
                    target = 1.0 + (multiplier.value - 1.0) * kept
                    self._decayed_at[key] = session
                    old = multiplier.value
                    new = multiplier.step_toward(target, session, params.max_step_per_session, params)
                    if new != old:
                        changes.append(
                            MultiplierChange(
                                event_us=event_us,
                                strategy=name,
                                model=MODEL,
                                component=component,
                                regime=scope,
                                old=old,
                                new=new,
                                reason=f"stale_decay idle_sessions={session - last} kept={kept:.3f}",
                                samples=0.0,
                            )
                        )
        return changes

    def multiplier(self, strategy: str, component: str, regime: str | None = None) -> float:
        """The current multiplier, strategy-wide or of a regime (`ticker:SYM` for a ticker); a regime never seen
        falls back to the strategy-wide multiplier, a seen one has its own (1.0 until it follows or departs)."""
        state = self._strategies.get(strategy)
        if state is None:
            return 1.0
        if regime is not None and regime in state.scopes:
            scoped = state.multipliers.get(regime, {}).get(component)
            return 1.0 if scoped is None else scoped.value
        found = state.multipliers.get(GLOBAL_SCOPE, {}).get(component)
        return 1.0 if found is None else found.value

    def score(self, trade: TradeOutcome) -> float:
        """The trade's entry score re-weighted by the multipliers of its strategy and regime."""
        return math.fsum(
            self.multiplier(trade.strategy, name, regime_scope(trade.regime)) * contribution
            for name, contribution in trade.components
        )

    def strategies(self) -> list[str]:
        """Strategies seen, sorted."""
        return sorted(self._strategies)

    def scopes(self, strategy: str) -> list[str]:
        """The scopes a strategy has learned in besides strategy-wide: its regimes, and `ticker:SYM` scopes."""
        state = self._strategies.get(strategy)
        return sorted(scope for scope in state.scopes if scope != GLOBAL_SCOPE) if state is not None else []

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view: {strategy: {component: {multiplier, samples, z, target, effect, score_z, joint_z, wins,
        losses, total_pnl, by_regime: {regime: {...same...}}, by_ticker: {symbol: {...}}}}}."""
        params = self.params
        result: dict[str, Any] = {}
        for strategy_name in sorted(self._strategies):
            state = self._strategies[strategy_name]
            global_stats = state.scopes[GLOBAL_SCOPE]
            global_posterior = _global_posterior(global_stats, params)
            views: dict[str, dict[str, dict[str, Any]]] = {
                GLOBAL_SCOPE: _scope_view(state, GLOBAL_SCOPE, global_stats, global_posterior, params)
            }
            for scope in sorted(state.scopes):
                if scope == GLOBAL_SCOPE:
                    continue
                stats = state.scopes[scope]
                posterior = _pooled_posterior(stats, global_stats, global_posterior, self._prior_trades(scope), params)
                views[scope] = _scope_view(state, scope, stats, posterior, params)
            components: dict[str, Any] = {}
            for name in ENTRY_COMPONENTS:
                entry = dict(views[GLOBAL_SCOPE][name])
                entry["by_regime"] = {
                    scope: view[name]
                    for scope, view in views.items()
                    if scope != GLOBAL_SCOPE and not scope.startswith(TICKER_SCOPE_PREFIX)
                }
                if params.per_ticker:
                    entry["by_ticker"] = {
                        scope.removeprefix(TICKER_SCOPE_PREFIX): view[name]
                        for scope, view in views.items()
                        if scope.startswith(TICKER_SCOPE_PREFIX)
                    }
                components[name] = entry
            result[strategy_name] = components
        return result

    def to_state(self) -> dict[str, Any]:
        """Everything the model knows, JSON-able with floats kept exact; `from_state` restores it bit for bit."""
        return {
            "version": STATE_VERSION,
            "model": MODEL,
            "strategies": {
                name: {
                    "scopes": {scope: stats.to_state() for scope, stats in state.scopes.items()},
                    "multipliers": {
                        scope: {component: multiplier.to_state() for component, multiplier in by_component.items()}
                        for scope, by_component in state.multipliers.items()
                    },
                }
                for name, state in self._strategies.items()
            },
            "decayed_at": sorted([*key, session] for key, session in self._decayed_at.items()),
        }

    @classmethod
    def from_state(cls, params: LearningParams, state: dict[str, Any]) -> EntryModel:
        """A model that continues exactly where the one that wrote `state` stopped; StateError when unusable."""
        if state.get("model") != MODEL or state.get("version") != STATE_VERSION:
            raise StateError(
                f"entry model state is {state.get('model')!r} version {state.get('version')!r}, "
                f"expected {MODEL!r} version {STATE_VERSION}"
            )
        model = cls(params)
        strategies = state.get("strategies")
        if not isinstance(strategies, dict):
            raise StateError("entry model state has no strategies object")
        for name, raw in strategies.items():
            if not isinstance(raw, dict) or not isinstance(raw.get("scopes"), dict):
                raise StateError(f"entry model state for strategy {name!r} is malformed")
            strategy = _StrategyState()
            strategy.scopes = {scope: _Stats.from_state(stats) for scope, stats in raw["scopes"].items()}
            if GLOBAL_SCOPE not in strategy.scopes:
                raise StateError(f"entry model state for strategy {name!r} lacks its strategy-wide scope")
            multipliers = raw.get("multipliers", {})
            if not isinstance(multipliers, dict) or not all(isinstance(value, dict) for value in multipliers.values()):
                raise StateError(f"entry model state for strategy {name!r} has malformed multipliers")
            strategy.multipliers = {
                scope: {component: BoundedMultiplier.from_state(value) for component, value in by_component.items()}
                for scope, by_component in multipliers.items()
            }
            model._strategies[name] = strategy
        model._decayed_at = {
            (str(strategy), str(scope), str(component)): int(session)
            for strategy, scope, component, session in state.get("decayed_at", [])
        }
        return model

    def _prior_trades(self, scope: str) -> float:
        if scope.startswith(TICKER_SCOPE_PREFIX):
            return self.params.ticker_prior_trades
        return self.params.regime_prior_trades

    def _move(
        self,
        origin: _Origin,
        session: int,
        *,
        strategy: _StrategyState,
        scope: str,
        stats: _Stats,
        posterior: _Posterior,
        gate: _Gate,
        components: list[str],
        followed: dict[str, BoundedMultiplier] | None = None,
    ) -> list[MultiplierChange]:
        """Step the multipliers of `scope`; `followed` (for a regime or ticker) are the strategy-wide ones, which
        the scope follows unless its own evidence departs from them by z_threshold."""
        if followed is None and not gate.is_open:
            return []
        params = self.params
        multipliers = strategy.multipliers.setdefault(scope, {})
        changes: list[MultiplierChange] = []
        for name in components:
            index = _COMPONENT_INDEX[name]
            samples = float(stats.present[index - _FIRST_COMPONENT])
            if samples < params.min_component_samples:
                continue
            multiplier = multipliers.get(name)
            current = 1.0 if multiplier is None else multiplier.value
            # At 1 this is the component's own z; for a moved multiplier, whether the evidence rejects where it
            # stands, so a move that later evidence no longer supports can be undone.
            z_current = posterior.z_against(index, current)
            basis = ""
            if followed is None:
                if abs(z_current) < params.z_threshold and not (
                    gate.is_reweighting and abs(z_current) >= params.joint_component_z
                ):
                    continue
                # b > 0 here (the gate checked), so the target lies on the side z_current points to.
                target = posterior.target(index)
            else:
                strategy_wide = followed.get(name)
                target = 1.0 if strategy_wide is None else strategy_wide.value
                z_departure = abs(posterior.z_against(index, target))
                # Once a scope stands apart by more than a session's move, it stays apart on weaker evidence, so
                # a departure does not flicker around the threshold.
                apart = abs(current - target) > params.max_step_per_session
                departs = gate.is_open and (
                    z_departure >= params.z_threshold or (apart and z_departure >= params.joint_component_z)
                )
                if departs and abs(z_current) >= params.joint_component_z:
                    target = posterior.target(index)
                elif departs or current == target:
                    continue
                else:
                    basis = "follows_strategy "
            if multiplier is None:
                multiplier = multipliers[name] = BoundedMultiplier()
            old = multiplier.value
            new = multiplier.step_toward(target, session, origin.step_cap, params)
            if new != old:
                changes.append(
                    MultiplierChange(
                        event_us=origin.event_us,
                        strategy=origin.strategy,
                        model=MODEL,
                        component=name,
                        regime=scope,
                        old=old,
                        new=new,
                        reason=(
                            f"{origin.reason}{basis}component_z={posterior.z(index):+.2f} "
                            f"z_vs_current={z_current:+.2f} joint_z={gate.joint_z:+.2f} score_z={gate.score_z:+.2f} "
                            f"target={target:.3f}"
                        ),
                        samples=samples,
                    )
                )
        return changes


@dataclass(frozen=True, slots=True)
class _Origin:
    """What prompts a move: its event time, strategy, step cap and a reason prefix (a trade, a session close)."""

    event_us: int
    strategy: str
    step_cap: float
    reason: str


def regime_scope(regime: str) -> str:
    """The scope a regime label learns under: the label itself, unless it mimics `*` or a `ticker:` scope."""
    if regime == GLOBAL_SCOPE or regime.startswith(TICKER_SCOPE_PREFIX):
        return f"regime:{regime}"
    return regime


def _features(components: tuple[tuple[str, float], ...]) -> tuple[FloatArray, FloatArray]:
    """Regression row (1, score, x_1..x_K) and the 0/1 presence of each component."""
    features = np.zeros(_DIM)
    present = np.zeros(len(ENTRY_COMPONENTS))
    features[_INTERCEPT] = 1.0
    for name, contribution in components:
        index = _COMPONENT_INDEX.get(name)
        if index is None:
            raise ValueError(f"{name!r} is not a canonical entry component")
        features[index] += contribution
        if contribution != 0.0:
            present[index - _FIRST_COMPONENT] = 1.0
    features[_SLOPE] = math.fsum(contribution for _, contribution in components)
    return features, present


def _global_posterior(stats: _Stats, params: LearningParams) -> _Posterior:
    """Strategy-wide posterior (normal / inverse-gamma): ridge at 0 on each d_j worth `ridge_prior_trades` trades
    of the average component (one strength for all, so b is an average over components, not over score variance),
    `coefficient_prior_trades` on a and b; the noise variance comes from the ridge fit's residuals."""
    mean_squares = stats.mean_squares()
    prior = np.empty(_DIM)
    prior[_INTERCEPT] = params.coefficient_prior_trades * mean_squares[_INTERCEPT]
    prior[_SLOPE] = params.coefficient_prior_trades * mean_squares[_SLOPE]
    prior[_FIRST_COMPONENT:] = params.ridge_prior_trades * _common_mean_square(mean_squares)
    # Prior precisions in units of 1 / noise variance make the posterior mean independent of the noise level.
    unscaled_inverse = _symmetric_inverse(stats.xtx + np.diag(prior))
    mean = unscaled_inverse @ stats.xty
    # y'Wy - mean'X'Wy is the residual plus the prior penalty at the posterior mean.
    residual = max(0.0, stats.y2_sum - float(mean @ stats.xty))
    degrees = max(0.0, stats.weight - _DIM)
    noise_var = (residual + params.noise_prior_trades * params.noise_prior_var) / (degrees + params.noise_prior_trades)
    return _Posterior(mean, unscaled_inverse * noise_var, noise_var)


def _score_z(stats: _Stats, params: LearningParams) -> float:
    """How many standard errors the slope of P&L on the static score lies above 0 in this scope's own trades."""
    if stats.weight <= 0.0:
        return 0.0
    gram = stats.xtx[:_FIRST_COMPONENT, :_FIRST_COMPONENT]
    moment = stats.xty[:_FIRST_COMPONENT]
    # A tiny ridge keeps a scope whose scores never varied invertible; it reads as no edge.
    inverse = _symmetric_inverse(gram + np.diag(np.full(_FIRST_COMPONENT, _MIN_MEAN_SQUARE)))
    coefficients = inverse @ moment
    residual = max(0.0, stats.y2_sum - float(coefficients @ moment))
    degrees = max(0.0, stats.weight - _FIRST_COMPONENT)
    noise_var = (residual + params.noise_prior_trades * params.noise_prior_var) / (degrees + params.noise_prior_trades)
    return float(coefficients[_SLOPE] / math.sqrt(inverse[_SLOPE, _SLOPE] * noise_var))


def _common_mean_square(mean_squares: FloatArray) -> float:
    """The average component's mean squared contribution, over the components seen."""
    components = mean_squares[_FIRST_COMPONENT:]
    seen = components[components > _MIN_MEAN_SQUARE]
    return float(seen.mean()) if seen.size else _MIN_MEAN_SQUARE


def _pooled_posterior(
    stats: _Stats, global_stats: _Stats, global_posterior: _Posterior, prior_trades: float, params: LearningParams
) -> _Posterior:
    """A regime's (ticker's) posterior: its prior is the strategy-wide posterior widened by a deviation variance
    worth `prior_trades` trades, so it follows the strategy until its own evidence outweighs that."""
    prior_mean = global_posterior.mean
    # Residuals about the strategy-wide fit: no circularity, and a regime that differs looks noisier (cautious).
    residual = max(
        0.0,
        stats.y2_sum - 2.0 * float(prior_mean @ stats.xty) + float(prior_mean @ (stats.xtx @ prior_mean)),
    )
    noise_var = (residual + params.noise_prior_trades * global_posterior.noise_var) / (
        stats.weight + params.noise_prior_trades
    )
    # Like the ridge, a component's deviation is worth `prior_trades` trades of the average component, so a
    # rarely seen or weakly weighted component follows the strategy unless its regime is much better fed.
    mean_squares = global_stats.mean_squares()
    mean_squares[_FIRST_COMPONENT:] = _common_mean_square(mean_squares)
    deviation_var = noise_var / (prior_trades * mean_squares)
    prior_precision = _symmetric_inverse(global_posterior.cov + np.diag(deviation_var))
    cov = _symmetric_inverse(stats.xtx / noise_var + prior_precision)
    mean = cov @ (stats.xty / noise_var + prior_precision @ prior_mean)
    return _Posterior(mean, cov, noise_var)


def _symmetric_inverse(matrix: FloatArray) -> FloatArray:
    inverse = np.linalg.inv(matrix)
    return (inverse + inverse.T) * 0.5


def _scope_view(
    state: _StrategyState, scope: str, stats: _Stats, posterior: _Posterior, params: LearningParams
) -> dict[str, dict[str, Any]]:
    multipliers = state.multipliers.get(scope, {})
    has_slope = posterior.has_reference()
    edge_z = _score_z(stats, params)
    joint_z = posterior.joint_z(stats.present >= params.min_component_samples)
    view: dict[str, dict[str, Any]] = {}
    for name, index in _COMPONENT_INDEX.items():
        component = index - _FIRST_COMPONENT
        found = multipliers.get(name)
        view[name] = {
            "multiplier": 1.0 if found is None else found.value,
            "samples": float(stats.present[component]),
            "z": posterior.z(index),
            "target": posterior.target(index) if has_slope else None,
            "effect": float(posterior.mean[index]),
            "score_z": edge_z,
            "joint_z": joint_z,
            "wins": float(stats.wins[component]),
            "losses": float(stats.losses[component]),
            "total_pnl": float(stats.pnl_sum[component]),
        }
    return view


def _array(value: object, shape: tuple[int, ...]) -> FloatArray:
    array = np.array(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"expected shape {shape}, got {array.shape}")
    return array
