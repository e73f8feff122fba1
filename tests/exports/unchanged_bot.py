"""A MODEL of the unchanged bot's loader and scorer, built from FORMATS.md ("How the bot actually uses
state/signal_weights.json") and nothing of learnd's code: it is not the bot. The tests hold learnd's export, and what
`learnd weights` says the bot will apply, against it.

The facts modelled, each from FORMATS.md:
- the file is read once, with a plain json.load; a file it cannot parse falls back to defaults, silently;
- a regime label is upper-cased; RISK_ON and RISK_OFF are looked up by name, every other label reads MIXED;
- a Beta bucket's mean m becomes a multiplier: 0.25 + 1.5 m below 0.5, 1 + 3 (m - 0.5) above;
- the scorer asks with the default regime (`neutral`), so it always reads MIXED;
- the scorer scores options_flow at its static weight, and caps etf_flow and squeeze_score at 0.06;
- an older helper asks for multipliers under legacy names and gets 1.0 where the file has no such key;
- only the top-level weights are read (never `strategies`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

NAMED_BUCKETS: Final = ("RISK_ON", "RISK_OFF")
PINNED: Final = ("options_flow",)
CAPPED: Final = ("etf_flow", "squeeze_score")
PASSIVE_WEIGHT_CAP: Final = 0.06
SCORER_REGIME: Final = "neutral"


class UnchangedBot:
    """The bot's optimizer object, built once at start from the file, and its composite scorer."""

    def __init__(self, path: Path) -> None:
        try:
            with open(path) as handle:
                document: Any = json.load(handle)
            entry = document["entry_weights"]
            self.base_weights: dict[str, float] = dict(entry["base_weights"])
            self.buckets: dict[str, dict[str, dict[str, float]]] = dict(entry["regime_beta_distributions"])
            self.loaded = True
        except (OSError, ValueError, KeyError, TypeError):
            # The bot's bare `except`: defaults, no log line.
            self.base_weights, self.buckets, self.loaded = {}, {}, False

    def multiplier(self, component: str, regime: str) -> float:
        """What the optimizer returns for a component in a regime (1.0 when the file has no such bucket)."""
        label = regime.upper()
        bucket = self.buckets.get(component, {}).get(label if label in NAMED_BUCKETS else "MIXED")
        if bucket is None:
            return 1.0
        mean = bucket["alpha"] / (bucket["alpha"] + bucket["beta"])
        return 0.25 + 1.5 * mean if mean < 0.5 else 1.0 + 3.0 * (mean - 0.5)

    def scoring_weight(self, component: str) -> float:
        """The weight the composite scorer multiplies a component's signal by, for a trade in any regime: it asks
        the optimizer with the default regime."""
        base = self.base_weights[component]
        weight = base * self.multiplier(component, SCORER_REGIME)
        if component in PINNED:
            weight = base
        if component in CAPPED:
            weight = min(weight, PASSIVE_WEIGHT_CAP)
        return weight

    def legacy_multiplier(self, name: str) -> float:
        """The older helper's lookup under a legacy name (it reads the MIXED bucket like the scorer)."""
        return self.multiplier(name, SCORER_REGIME)
