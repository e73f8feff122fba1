"""The unchanged bot's reading of its weights file (FORMATS.md, "How the bot actually uses
state/signal_weights.json"): the bucket it reads for a regime, the multiplier learnd writes in the bucket it trades
on (MIXED), what its scorer applies after its pins and caps, and so where learning does not reach trading.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from learnd.config import BotSettings
from learnd.errors import ConfigError
from learnd.records.components import COMPONENT_ALIASES, ENTRY_BASE_WEIGHTS, ENTRY_COMPONENTS, EXIT_BASE_WEIGHTS
from learnd.records.parse import DEFAULT_STRATEGY

# The bot reads only the top-level weights: every strategy is scored with the default strategy's.
BOT_STRATEGY: Final = DEFAULT_STRATEGY
# The buckets its loader looks up by name (after upper-casing the label); every other label reads MIXED, and its
# scorer reads MIXED for every trade.
NAMED_BUCKETS: Final[tuple[str, ...]] = ("RISK_ON", "RISK_OFF")
MIXED: Final = "MIXED"
# What learnd writes in MIXED, the bucket the bot trades on (chosen with `learnd evaluate --regime-blind`, see README).
MIXED_RULE: Final = (
    "MIXED holds the strategy-wide multiplier: the figure learnd wants applied to a trade whose regime the bot's "
    "scorer cannot tell; RISK_ON and RISK_OFF hold learnd's own figure where it learned those labels"
)
# Legacy names an older helper of the bot asks multipliers for. FORMATS.md maps these four; `net_premium` and
# `volatility` have no mapping, so they get no key (and the helper keeps getting 1.0 for them).
LEGACY_NAMES: Final[tuple[str, ...]] = ("flow_count", "flow_premium", "darkpool", "gamma")
LEGACY_ALIASES: Final[dict[str, str]] = {name: COMPONENT_ALIASES[name] for name in LEGACY_NAMES}
# Two multipliers closer than this are the same figure (the rest is float noise of the Beta round trip).
SAME: Final = 1e-9


def bot_multiplier(alpha: float, beta: float) -> float:
    """The multiplier the bot decodes from a Beta bucket: its mean m maps to 0.25 + 1.5 m below 0.5 and
    1 + 3 (m - 0.5) above (FORMATS.md)."""
    mean = alpha / (alpha + beta)
    return 0.25 + 1.5 * mean if mean < 0.5 else 1.0 + 3.0 * (mean - 0.5)


def beta_for_multiplier(multiplier: float, samples: float) -> tuple[float, float]:
    """Beta parameters the bot decodes back to `multiplier` (bot_multiplier's inverse), with a total weight of
    samples + 2."""
    mean = (multiplier - 0.25) / 1.5 if multiplier < 1.0 else 0.5 + (multiplier - 1.0) / 3.0
    mean = min(1.0, max(0.0, mean))
    total = max(0.0, samples) + 2.0
    return mean * total, (1.0 - mean) * total


def bot_bucket(regime: str) -> str:
    """The regime bucket the bot's loader reads for a regime label: RISK_ON or RISK_OFF by name, MIXED otherwise."""
    label = regime.upper()
    return label if label in NAMED_BUCKETS else MIXED


def strategy_wide_multiplier(view: Mapping[str, Any]) -> float:
    """A component's strategy-wide multiplier: learnd's figure for a trade whose regime is not known."""
    return float(view["multiplier"])


def folded_pool_multiplier(view: Mapping[str, Any]) -> float:
    """The alternative for MIXED: the component's multipliers in the regimes the bot folds into MIXED, weighted by
    the component's (decayed) samples in each; the strategy-wide figure when those regimes hold none."""
    pooled = [
        (float(regime_view["samples"]), float(regime_view["multiplier"]))
        for regime, regime_view in view["by_regime"].items()
        if bot_bucket(regime) == MIXED
    ]
    total = math.fsum(samples for samples, _ in pooled)
    if total <= 0.0:
        return strategy_wide_multiplier(view)
    return math.fsum(samples * multiplier for samples, multiplier in pooled) / total


# The figure the export writes in MIXED (and weight_bands.current), by the name `evaluate --regime-blind` uses.
MIXED_FIGURES: Final = {"strategy_wide": strategy_wide_multiplier, "folded_pool": folded_pool_multiplier}
mixed_multiplier: Final = strategy_wide_multiplier


@dataclass(frozen=True, slots=True)
class BotWeight:
    """What the bot's scorer multiplies a component's contribution by, relative to its base weight, and why that
    differs from the file (`limits`)."""

    multiplier: float
    weight: float
    limits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BotRules:
    """The scorer's overrides (config `[bot]`, the bot's defaults): pinned and capped components, the cap, and
    whether it reads the file at all."""

    pinned: frozenset[str]
    capped: frozenset[str]
    weight_cap: float
    adaptive_weights: bool

    @classmethod
    def from_settings(cls, bot: BotSettings) -> BotRules:
        """The rules of `[bot]`; ConfigError naming the key when a name is not an entry component."""
        for key in ("pinned_components", "capped_components"):
            for name in getattr(bot, key):
                if name not in ENTRY_BASE_WEIGHTS:
                    raise ConfigError(f"bot.{key}: {name!r} is not an entry component ({', '.join(ENTRY_COMPONENTS)})")
        return cls(
            frozenset(bot.pinned_components), frozenset(bot.capped_components), bot.weight_cap, bot.adaptive_weights
        )

    def applied(self, component: str, multiplier: float) -> BotWeight:
        """What the scorer applies to `component` when the file's MIXED bucket holds `multiplier`."""
        base = ENTRY_BASE_WEIGHTS[component]
        limits: list[str] = []
        if not self.adaptive_weights:
            multiplier = 1.0
            limits.append("file ignored (DISABLE_ADAPTIVE_WEIGHTS)")
        weight = base * multiplier
        if component in self.pinned:
            weight = base
            limits.append("pinned at its static weight")
        if component in self.capped and weight > self.weight_cap:
            weight = self.weight_cap
            limits.append(f"weight capped at {self.weight_cap:g}")
        return BotWeight(weight / base, weight, tuple(limits))


def bot_application(
    entry: Mapping[str, Mapping[str, Any]],
    rules: BotRules,
    exits: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Intended against applied: per component of the strategy the bot reads, what learnd learned (strategy-wide
    and per regime), what it writes in MIXED, and what the unchanged scorer applies to every trade; then how many
    component x regime pairs trade on what was learned, and how the other strategies fare with the bot's weights.
    With `exits` (LearnedModel.exits), also the learned exit multipliers the bot never reads (`exits_not_read`:
    names outside its table of seven, which it drops silently).

    `entry` is a model snapshot (strategy -> component -> view, as LearnedModel.entry).
    """
    own = entry.get(BOT_STRATEGY, {})
    components: dict[str, Any] = {}
    pairs = reached = 0
    largest: tuple[float, str, str] = (0.0, "", "")
    for name in ENTRY_COMPONENTS:
        view = own.get(name)
        learned = strategy_wide_multiplier(view) if view is not None else 1.0
        by_regime = {regime: float(v["multiplier"]) for regime, v in view["by_regime"].items()} if view else {}
        mixed = mixed_multiplier(view) if view is not None else 1.0
        applied = rules.applied(name, mixed)
        # Regimes whose own figure the bot never applies, because it scores every trade with MIXED.
        missed = {regime: value for regime, value in by_regime.items() if abs(value - mixed) > SAME}
        for regime, value in [("*", learned), *by_regime.items()]:
            gap = abs(value - applied.multiplier)
            pairs += regime != "*"
            reached += regime != "*" and gap <= SAME
            if gap > largest[0] + SAME:
                largest = (gap, name, regime)
        components[name] = {
            "base_weight": ENTRY_BASE_WEIGHTS[name],
            "learned": learned,
            "learned_by_regime": by_regime,
            "mixed": mixed,
            "applied_multiplier": applied.multiplier,
            "applied_weight": applied.weight,
            "limits": list(applied.limits),
            "regimes_not_applied": missed,
        }
    others: dict[str, Any] = {}
    for strategy in sorted(set(entry) - {BOT_STRATEGY}):
        differing = [
            name
            for name in ENTRY_COMPONENTS
            if name in entry[strategy]
            and abs(strategy_wide_multiplier(entry[strategy][name]) - components[name]["applied_multiplier"]) > SAME
        ]
        others[strategy] = {"scored_with": BOT_STRATEGY, "components_differing": differing}
    section: dict[str, Any] = {
        "strategy": BOT_STRATEGY,
        "mixed_rule": MIXED_RULE,
        "adaptive_weights": rules.adaptive_weights,
        "components": components,
        "regime_pairs": pairs,
        "regime_pairs_applied_as_learned": reached,
        "largest_gap": {"gap": largest[0], "component": largest[1], "regime": largest[2]} if largest[1] else None,
        "other_strategies": others,
    }
    if exits is not None:
        section["exits_not_read"] = {
            name: float(view["multiplier"])
            for name, view in sorted(exits.get(BOT_STRATEGY, {}).items())
            if name not in EXIT_BASE_WEIGHTS
        }
    return section


def where_it_differs(row: Mapping[str, Any], number: Callable[[float], str] = "{:.3f}".format) -> str:
    """Why a component of bot_application() is not applied as learned: its pins and caps, and the regimes whose
    own figure the regime-blind scorer never applies ("" when nothing stands in the way)."""
    notes = list(row["limits"])
    if row["regimes_not_applied"]:
        regimes = ", ".join(f"{regime} {number(value)}" for regime, value in row["regimes_not_applied"].items())
        notes.append(f"regime-blind: {regimes} not applied")
    return "; ".join(notes)


def render_bot_application(section: Mapping[str, Any]) -> str:
    """A readable table of bot_application(): learned, written (MIXED), applied, and what stands in the way."""
    strategy = section["strategy"]
    lines = [
        f"what the unchanged bot applies (strategy {strategy}, the file's top level; its scorer reads MIXED for "
        "every trade)",
    ]
    if not section["adaptive_weights"]:
        lines.append("  the bot runs with DISABLE_ADAPTIVE_WEIGHTS: it ignores the file, nothing learned is applied")
    lines.append(f"  {'component':<20} {'learned':>7} {'MIXED':>7} {'applied':>7} {'weight':>7}  where it differs")
    for name, row in section["components"].items():
        lines.append(
            f"  {name:<20} {row['learned']:>7.3f} {row['mixed']:>7.3f} {row['applied_multiplier']:>7.3f} "
            f"{row['applied_weight']:>7.3f}  {where_it_differs(row)}".rstrip()
        )
    pairs = section["regime_pairs"]
    if pairs:
        lines.append(
            f"  the scorer applies what learnd learned in {section['regime_pairs_applied_as_learned']} of {pairs} "
            "component x regime pairs"
        )
    largest = section["largest_gap"]
    if largest is not None:
        where = "strategy-wide" if largest["regime"] == "*" else f"regime {largest['regime']}"
        lines.append(f"  largest gap {largest['gap']:.3f}: {largest['component']} ({where})")
    for other, row in section["other_strategies"].items():
        lines.append(
            f"  strategy {other}: scored with {row['scored_with']}'s weights; {len(row['components_differing'])} "
            f"of {len(ENTRY_COMPONENTS)} components differ from what learnd learned for it"
        )
    unread = section.get("exits_not_read")
    if unread:
        listed = ", ".join(f"{name} {value:.3f}" for name, value in unread.items())
        lines.append(
            f"  exits learned that the bot never reads (it drops names outside its table of {len(EXIT_BASE_WEIGHTS)}):"
            f" {listed}"
        )
    return "\n".join(lines) + "\n"
