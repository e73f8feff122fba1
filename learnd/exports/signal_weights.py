"""The bot's weights file, state/signal_weights.json: the one place that turns a LearnedModel into the layout the
bot reads (FORMATS.md) and writes it, atomically, when the model changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from learnd.exports.files import write_json_atomic
from learnd.learning.learner import LearnedModel
from learnd.learning.multipliers import GLOBAL_SCOPE
from learnd.learning.trades import iso_from_us
from learnd.records.components import ENTRY_BASE_WEIGHTS, EXIT_BASE_WEIGHTS
from learnd.records.parse import DEFAULT_STRATEGY


class SignalWeightsFile:
    """Writes the model to `path` whenever it is not the model written last (the first call always writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: LearnedModel | None = None

    def write(self, model: LearnedModel) -> bool:
        """Write `model` unless it is the one already on disk; True when it wrote."""
        if model is self._written:
            return False
        write_json_atomic(self.path, signal_weights(model))
        self._written = model
        return True


def signal_weights(model: LearnedModel) -> dict[str, Any]:
    """state/signal_weights.json: the layout the bot reads (FORMATS.md), for its default strategy at the top
    level and every strategy under `strategies`, plus `effective_weights` (strategy -> regime -> component ->
    base x multiplier)."""
    entry = model.entry
    exits = model.exits
    per_strategy = {
        name: _bot_layout(entry.get(name, {}), exits.get(name, {})) for name in sorted(set(entry) | set(exits))
    }
    top = per_strategy.get(DEFAULT_STRATEGY) or _bot_layout({}, {})
    effective: dict[str, Any] = {}
    for name, components in entry.items():
        regimes: dict[str, dict[str, float]] = {GLOBAL_SCOPE: {}}
        for component, view in components.items():
            base = ENTRY_BASE_WEIGHTS[component]
            regimes[GLOBAL_SCOPE][component] = base * view["multiplier"]
            for regime, regime_view in view["by_regime"].items():
                regimes.setdefault(regime, {})[component] = base * regime_view["multiplier"]
        effective[name] = regimes
    return {
        **top,
        "learnd": {
            "trades_learned": model.trades_learned,
            "partials_learned": model.partials_learned,
            "exits_learned": model.exits_learned,
            "last_trade_event_ts": iso_from_us(model.last_trade_us) if model.last_trade_us >= 0 else None,
        },
        "effective_weights": effective,
        "strategies": per_strategy,
    }


def beta_for_multiplier(multiplier: float, samples: float) -> tuple[float, float]:
    """Beta parameters whose mean the bot maps back to `multiplier` (0.25 + 1.5 m below 0.5, 1 + 3 (m - 0.5)
    above), with a total weight of samples + 2."""
    mean = (multiplier - 0.25) / 1.5 if multiplier < 1.0 else 0.5 + (multiplier - 1.0) / 3.0
    mean = min(1.0, max(0.0, mean))
    total = max(0.0, samples) + 2.0
    return mean * total, (1.0 - mean) * total


def _bot_layout(entry: dict[str, Any], exits: dict[str, Any]) -> dict[str, Any]:
    bands: dict[str, Any] = {}
    betas: dict[str, Any] = {}
    for component in ENTRY_BASE_WEIGHTS:
        view = entry.get(component)
        if view is None:
            bands[component] = {"current": 1.0, "sample_count": 0, "wins": 0, "losses": 0, "total_pnl": 0.0}
            continue
        bands[component] = _band(view)
        regimes: dict[str, Any] = {}
        for regime, regime_view in view["by_regime"].items():
            alpha, beta = beta_for_multiplier(regime_view["multiplier"], regime_view.get("samples", 0.0))
            regimes[regime.upper()] = {**_band(regime_view), "alpha": alpha, "beta": beta}
        betas[component] = regimes
    exit_bands = {name: {"current": view["multiplier"], "sample_count": view["count"]} for name, view in exits.items()}
    for name in EXIT_BASE_WEIGHTS:
        exit_bands.setdefault(name, {"current": 1.0, "sample_count": 0})
    return {
        "entry_weights": {
            "base_weights": dict(ENTRY_BASE_WEIGHTS),
            "weight_bands": bands,
            "regime_beta_distributions": betas,
        },
        "exit_model": {"base_weights": dict(EXIT_BASE_WEIGHTS), "weight_bands": exit_bands},
    }


def _band(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "current": view["multiplier"],
        "sample_count": view.get("samples", 0.0),
        "wins": view.get("wins", 0),
        "losses": view.get("losses", 0),
        "total_pnl": view.get("total_pnl", 0.0),
    }
