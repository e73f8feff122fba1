"""Closed trades become entry-weight multipliers: the entry learner, fed TradeOutcomes by the shell.

Pure and deterministic: no IO, no clock; time is the session index the shell derives from the record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from learnd.components import ENTRY_COMPONENTS
from learnd.errors import StateError
from learnd.learning import (
    GLOBAL_SCOPE,
    TICKER_SCOPE_PREFIX,
    BoundedMultiplier,
    LearningParams,
    MultiplierChange,
    clip,
    decay_factor,
    ticker_scope,
)
from learnd.records import TradeOutcome

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
        """How many standard deviations the evidence on d_j lies from the effect `multiplier` stands for."""
        implied = (multiplier - 1.0) * self.mean[_SLOPE]
        return float((self.mean[index] - implied) / math.sqrt(self.cov[index, index]))

    def has_edge(self, threshold: float) -> bool:
        """The score as a whole predicts outcomes: b is positive and clears the z threshold."""
        return self.mean[_SLOPE] > 0.0 and self.z(_SLOPE) >= threshold

    def target(self, index: int) -> float:
        """Component's fitted effect per unit contribution relative to the score's: 1 + d_j / b (b > 0)."""
        return float(1.0 + self.mean[index] / self.mean[_SLOPE])


class _StrategyState:
    __slots__ = ("multipliers", "scopes")

    def __init__(self) -> None:
        self.scopes: dict[str, _Stats] = {}
        self.multipliers: dict[str, dict[str, BoundedMultiplier]] = {}


class EntryModel:
    """Learns entry-component multipliers per strategy, strategy-wide, per regime and (optionally) per ticker.

    Credit is a regression: y = a + b * score + sum_j d_j * x_j, where x_j is component j's logged contribution
    (base weight x signal, so toxicity_penalty's is <= 0), score = sum_j x_j and y the P&L percent clipped to
    +-pnl_clip_pct, each trade weighted by its closed fraction. The d_j have a ridge prior at 0 ("the base
    weights are right") worth `ridge_prior_trades` trades; a and b are nearly free. A component that always fires
    with a strong one gets no share of its credit unless its own contribution tracks the outcome. The target
    multiplier of component j is 1 + d_j / b, its effect per unit contribution relative to the score's: above 1
    for toxicity_penalty means toxic trades do worse than the -0.9 weight already implies (a harsher penalty).

    The sums (X'WX, X'Wy, ...) decay by half every `half_life_sessions` sessions of event time, strategy-wide,
    per regime and per ticker. A regime's (ticker's) prior is the strategy-wide posterior widened by a deviation
    variance worth `regime_prior_trades` (`ticker_prior_trades`) trades: a thin regime reads like the strategy,
    a well-fed one like itself, and regimes are never merged. The noise variance comes from the fit's residuals.

    A multiplier moves only while the strategy-wide score shows an edge (b / sd(b) >= z_threshold after
    `min_effective_samples`), its own scope's score does too, the component was present in the trade and in
    `min_component_samples` of the scope's, and the evidence on d_j is z_threshold standard deviations from the
    effect the multiplier stands for: from 1 that is the component's own z; once moved, a multiplier that later
    evidence no longer supports can be pulled back. Each move goes toward the target, capped per trade (times the
    trade's weight) and per session, bounded to [min_multiplier, max_multiplier]; otherwise it is held. A
    regime's (ticker's) multipliers start at 1 and move on that scope's pooled evidence; `score` uses the
    trade's regime, ticker multipliers are reported for the shell to use as it sees fit.
    """

    def __init__(self, params: LearningParams) -> None:
        self.params = params
        self._strategies: dict[str, _StrategyState] = {}

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
        global_open = global_stats.weight >= params.min_effective_samples and global_posterior.has_edge(
            params.z_threshold
        )
        moved = [name for name, contribution in trade.components if contribution != 0.0]
        changes: list[MultiplierChange] = []
        changes += self._move(
            trade,
            session,
            strategy=strategy,
            scope=GLOBAL_SCOPE,
            stats=global_stats,
            posterior=global_posterior,
            is_open=global_open,
            components=moved,
            global_posterior=global_posterior,
        )
        for scope in scopes[1:]:
            stats = strategy.scopes[scope]
            posterior = _pooled_posterior(stats, global_stats, global_posterior, self._prior_trades(scope), params)
            is_open = (
                global_open and stats.weight >= params.min_effective_samples and posterior.has_edge(params.z_threshold)
            )
            changes += self._move(
                trade,
                session,
                strategy=strategy,
                scope=scope,
                stats=stats,
                posterior=posterior,
                is_open=is_open,
                components=moved,
                global_posterior=global_posterior,
            )
        return changes

    def multiplier(self, strategy: str, component: str, regime: str | None = None) -> float:
        """The current multiplier, strategy-wide or of a regime (`ticker:SYM` for a ticker); a regime never seen
        falls back to the strategy-wide multiplier, a seen one has its own (1.0 until its evidence moves it)."""
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

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view: {strategy: {component: {multiplier, samples, z, target, effect, wins, losses,
        total_pnl, by_regime: {regime: {...same...}}, by_ticker: {symbol: {...}}}}}."""
        params = self.params
        result: dict[str, Any] = {}
        for strategy_name in sorted(self._strategies):
            state = self._strategies[strategy_name]
            global_stats = state.scopes[GLOBAL_SCOPE]
            global_posterior = _global_posterior(global_stats, params)
            views: dict[str, dict[str, dict[str, Any]]] = {
                GLOBAL_SCOPE: _scope_view(state, GLOBAL_SCOPE, global_stats, global_posterior)
            }
            for scope in sorted(state.scopes):
                if scope == GLOBAL_SCOPE:
                    continue
                stats = state.scopes[scope]
                posterior = _pooled_posterior(stats, global_stats, global_posterior, self._prior_trades(scope), params)
                views[scope] = _scope_view(state, scope, stats, posterior)
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
        return model

    def _prior_trades(self, scope: str) -> float:
        if scope.startswith(TICKER_SCOPE_PREFIX):
            return self.params.ticker_prior_trades
        return self.params.regime_prior_trades

    def _move(
        self,
        trade: TradeOutcome,
        session: int,
        *,
        strategy: _StrategyState,
        scope: str,
        stats: _Stats,
        posterior: _Posterior,
        is_open: bool,
        components: list[str],
        global_posterior: _Posterior,
    ) -> list[MultiplierChange]:
        if not is_open:
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
            if abs(z_current) < params.z_threshold:
                continue
            # b > 0 here (the scope has an edge), so the target lies on the side z_current points to.
            target = posterior.target(index)
            if multiplier is None:
                multiplier = multipliers[name] = BoundedMultiplier()
            old = multiplier.value
            z = posterior.z(index)
            new = multiplier.step_toward(target, session, params.max_step_per_trade * trade.weight, params)
            if new != old:
                changes.append(
                    MultiplierChange(
                        event_us=trade.event_us,
                        strategy=trade.strategy,
                        model=MODEL,
                        component=name,
                        regime=scope,
                        old=old,
                        new=new,
                        reason=(
                            f"component_z={z:+.2f} z_vs_current={z_current:+.2f} score_z={posterior.z(_SLOPE):+.2f} "
                            f"strategy_score_z={global_posterior.z(_SLOPE):+.2f} target={target:.3f}"
                        ),
                        samples=samples,
                    )
                )
        return changes


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
    """Strategy-wide posterior (normal / inverse-gamma): ridge at 0 on each d_j worth `ridge_prior_trades`
    trades, `coefficient_prior_trades` on a and b; the noise variance comes from the ridge fit's residuals."""
    mean_squares = stats.mean_squares()
    prior_trades = np.full(_DIM, params.ridge_prior_trades)
    prior_trades[_INTERCEPT] = params.coefficient_prior_trades
    prior_trades[_SLOPE] = params.coefficient_prior_trades
    # Prior precisions in units of 1 / noise variance make the posterior mean independent of the noise level.
    unscaled_inverse = _symmetric_inverse(stats.xtx + np.diag(prior_trades * mean_squares))
    mean = unscaled_inverse @ stats.xty
    # y'Wy - mean'X'Wy is the residual plus the prior penalty at the posterior mean.
    residual = max(0.0, stats.y2_sum - float(mean @ stats.xty))
    degrees = max(0.0, stats.weight - _DIM)
    noise_var = (residual + params.noise_prior_trades * params.noise_prior_var) / (degrees + params.noise_prior_trades)
    return _Posterior(mean, unscaled_inverse * noise_var, noise_var)


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
    deviation_var = noise_var / (prior_trades * global_stats.mean_squares())
    prior_precision = _symmetric_inverse(global_posterior.cov + np.diag(deviation_var))
    cov = _symmetric_inverse(stats.xtx / noise_var + prior_precision)
    mean = cov @ (stats.xty / noise_var + prior_precision @ prior_mean)
    return _Posterior(mean, cov, noise_var)


def _symmetric_inverse(matrix: FloatArray) -> FloatArray:
    inverse = np.linalg.inv(matrix)
    return (inverse + inverse.T) * 0.5


def _scope_view(
    state: _StrategyState,
    scope: str,
    stats: _Stats,
    posterior: _Posterior,
) -> dict[str, dict[str, Any]]:
    multipliers = state.multipliers.get(scope, {})
    has_slope = posterior.mean[_SLOPE] > 0.0
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
            "score_z": posterior.z(_SLOPE),
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
