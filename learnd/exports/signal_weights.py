"""The bot's weights file, state/signal_weights.json (or paths.signal_weights): the one place that turns a
LearnedModel into the layout the unchanged bot reads (FORMATS.md), with learnd's full model beside it, and writes it,
atomically, when the model changed. The file is learnd's (exports.guard): another writer's change is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from learnd.exports.bot import (
    LEGACY_ALIASES,
    MIXED,
    MIXED_RULE,
    NAMED_BUCKETS,
    beta_for_multiplier,
    bot_bucket,
    mixed_multiplier,
)
from learnd.exports.files import json_bytes
from learnd.exports.guard import ForeignWrite, OwnedFile
from learnd.learning.learner import LearnedModel
from learnd.learning.multipliers import GLOBAL_SCOPE
from learnd.learning.trades import iso_from_us
from learnd.records.components import COMPONENT_ALIASES, ENTRY_BASE_WEIGHTS, EXIT_BASE_WEIGHTS
from learnd.records.parse import DEFAULT_STRATEGY


class SignalWeightsFile:
    """Writes the model to `path` whenever it is not the model written last (the first call always writes), and
    knows whether the file still holds what it wrote (`owned`)."""

    def __init__(self, path: Path, record_path: Path) -> None:
        self.path = path
        self.owned = OwnedFile(path, record_path)
        self._written: LearnedModel | None = None

    def write(self, model: LearnedModel) -> tuple[bool, ForeignWrite | None]:
        """Write `model` unless it is the one already written; whether it wrote, and the change another writer
        had made to the file since learnd's last write (None when there was none)."""
        if model is self._written:
            return False, None
        found = self.owned.write(json_bytes(signal_weights(model)))
        self._written = model
        return True, found

    def foreign(self, model: LearnedModel | None) -> ForeignWrite | None:
        """Another writer's change to the file (exports.guard.OwnedFile.foreign), described against what learnd
        wrote last or, before this process wrote, against `model`'s export."""
        return self.owned.foreign(lambda: json_bytes(signal_weights(model)) if model is not None else None)


def signal_weights(model: LearnedModel) -> dict[str, Any]:
    """state/signal_weights.json: the layout the unchanged bot reads (FORMATS.md) at the top level, for its
    default strategy; learnd's full model beside it: `learned_multipliers` and `effective_weights` (strategy ->
    regime, `*` strategy-wide -> component -> multiplier, and base x multiplier), `component_aliases` (logged and
    legacy keys -> canonical names), and every strategy in the bot's layout under `strategies` (the bot never
    reads it)."""
    entry = model.entry
    exits = model.exits
    per_strategy = {
        name: _bot_layout(entry.get(name, {}), exits.get(name, {})) for name in sorted(set(entry) | set(exits))
    }
    top = per_strategy.get(DEFAULT_STRATEGY) or _bot_layout({}, {})
    learned: dict[str, Any] = {}
    effective: dict[str, Any] = {}
    for name, components in entry.items():
        regimes: dict[str, dict[str, float]] = {GLOBAL_SCOPE: {}}
        for component, view in components.items():
            regimes[GLOBAL_SCOPE][component] = view["multiplier"]
            for regime, regime_view in view["by_regime"].items():
                regimes.setdefault(regime, {})[component] = regime_view["multiplier"]
        learned[name] = regimes
        effective[name] = {
            regime: {component: ENTRY_BASE_WEIGHTS[component] * value for component, value in values.items()}
            for regime, values in regimes.items()
        }
    return {
        **top,
        "learnd": {
            "trades_learned": model.trades_learned,
            "partials_learned": model.partials_learned,
            "exits_learned": model.exits_learned,
            "last_trade_event_ts": iso_from_us(model.last_trade_us) if model.last_trade_us >= 0 else None,
            "bot_buckets": MIXED_RULE,
        },
        "component_aliases": {key: name for key, name in COMPONENT_ALIASES.items() if key != name},
        "learned_multipliers": learned,
        "effective_weights": effective,
        "strategies": per_strategy,
    }


def _bot_layout(entry: Mapping[str, Any], exits: Mapping[str, Any]) -> dict[str, Any]:
    """One strategy in the bot's layout. MIXED, the bucket the bot's scorer reads for every trade, and
    `weight_bands.current` hold the figure learnd wants applied when the regime is not known; RISK_ON and
    RISK_OFF appear only where learnd learned those labels; the legacy names FORMATS.md maps repeat their
    component's entries."""
    bands: dict[str, Any] = {}
    betas: dict[str, Any] = {}
    for component in ENTRY_BASE_WEIGHTS:
        view = entry.get(component)
        if view is None:
            empty = {"current": 1.0, "sample_count": 0, "wins": 0, "losses": 0, "total_pnl": 0.0}
            alpha, beta = beta_for_multiplier(1.0, 0.0)
            bands[component] = empty
            betas[component] = {MIXED: {**empty, "alpha": alpha, "beta": beta}}
            continue
        mixed = _band(view, mixed_multiplier(view))
        bands[component] = mixed
        buckets = {MIXED: _bucket(mixed)}
        for regime, regime_view in view["by_regime"].items():
            bucket = bot_bucket(regime)
            if bucket in NAMED_BUCKETS:
                buckets[bucket] = _bucket(_band(regime_view, regime_view["multiplier"]))
        betas[component] = dict(sorted(buckets.items()))
    for legacy, component in LEGACY_ALIASES.items():
        bands[legacy] = bands[component]
        betas[legacy] = betas[component]
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


def _band(view: Mapping[str, Any], multiplier: float) -> dict[str, Any]:
    return {
        "current": multiplier,
        "sample_count": view.get("samples", 0.0),
        "wins": view.get("wins", 0),
        "losses": view.get("losses", 0),
        "total_pnl": view.get("total_pnl", 0.0),
    }


def _bucket(band: Mapping[str, Any]) -> dict[str, Any]:
    alpha, beta = beta_for_multiplier(band["current"], band["sample_count"])
    return {**band, "alpha": alpha, "beta": beta}
