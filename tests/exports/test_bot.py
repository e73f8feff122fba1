"""The unchanged bot's reading, as learnd reports it: buckets by regime label, the MIXED figure, pins, caps, the
switch that makes the bot ignore the file, and intended against applied per component."""

from __future__ import annotations

from typing import Any

import pytest

from learnd.config import BotSettings
from learnd.errors import ConfigError
from learnd.exports.bot import (
    MIXED,
    BotRules,
    bot_application,
    bot_bucket,
    folded_pool_multiplier,
    render_bot_application,
    strategy_wide_multiplier,
)
from learnd.records.components import ENTRY_COMPONENTS

DEFAULT_RULES = BotRules.from_settings(BotSettings())


def view(multiplier: float, by_regime: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """A component's snapshot view: strategy-wide multiplier, and per regime (multiplier, samples)."""
    return {
        "multiplier": multiplier,
        "samples": 100.0,
        "by_regime": {regime: {"multiplier": m, "samples": s} for regime, (m, s) in (by_regime or {}).items()},
    }


@pytest.mark.parametrize(
    ("label", "bucket"),
    [
        ("risk_on", "RISK_ON"),
        ("RISK_OFF", "RISK_OFF"),
        ("Risk_Off", "RISK_OFF"),
        ("mixed", MIXED),
        ("neutral", MIXED),
        ("low_vol_uptrend", MIXED),
        ("unknown", MIXED),
        ("bull", MIXED),
    ],
)
def test_a_label_reads_the_bucket_the_bot_folds_it_into(label: str, bucket: str) -> None:
    """Upper-cased; RISK_ON and RISK_OFF by name; everything else MIXED."""
    assert bot_bucket(label) == bucket


def test_the_folded_pool_weighs_the_folded_regimes_by_samples() -> None:
    """The alternative MIXED figure pools only the labels the bot folds into MIXED (risk_on left out), by samples;
    the strategy-wide figure is the model's own."""
    component = view(1.2, {"mixed": (1.0, 30.0), "low_vol_uptrend": (2.0, 10.0), "risk_on": (0.3, 500.0)})
    assert folded_pool_multiplier(component) == pytest.approx((1.0 * 30 + 2.0 * 10) / 40)
    assert strategy_wide_multiplier(component) == 1.2
    assert folded_pool_multiplier(view(1.2, {"risk_on": (0.3, 5.0)})) == 1.2


def test_pins_caps_and_the_off_switch() -> None:
    """options_flow is scored at its base weight; etf_flow's weight is capped at 0.06 (a multiplier of 0.2 on 0.3),
    but not a smaller one; with adaptive weights off nothing of the file is applied, while the cap still holds."""
    pinned = DEFAULT_RULES.applied("options_flow", 0.5)
    assert (pinned.multiplier, pinned.weight, pinned.limits) == (1.0, 2.4, ("pinned at its static weight",))
    capped = DEFAULT_RULES.applied("etf_flow", 1.5)
    assert capped.weight == 0.06 and capped.multiplier == pytest.approx(0.2)
    assert DEFAULT_RULES.applied("etf_flow", 0.1).limits == ()
    assert DEFAULT_RULES.applied("dark_pool", 1.7).multiplier == 1.7
    off = BotRules.from_settings(BotSettings(adaptive_weights=False))
    assert off.applied("dark_pool", 1.7).multiplier == 1.0
    assert off.applied("squeeze_score", 1.7).weight == 0.06
    assert "file ignored (DISABLE_ADAPTIVE_WEIGHTS)" in off.applied("dark_pool", 1.7).limits


def test_a_pin_or_cap_that_names_no_component_is_a_config_error() -> None:
    """The key is named, so the operator finds the typo."""
    with pytest.raises(ConfigError, match=r"bot\.pinned_components: 'option_flow'"):
        BotRules.from_settings(BotSettings(pinned_components=("option_flow",)))


def test_exits_learned_outside_the_bots_table_are_named_as_never_read() -> None:
    """FORMATS.md: the bot reads the seven exit components of its own table and drops any other name silently. Of
    the exits learned for the strategy the bot reads, those are listed with their multipliers, and said plainly;
    without exits given (a report's end-of-session snapshot holds none) the section has no such list."""
    exits = {
        "equity": {
            "drawdown_velocity": {"multiplier": 0.8, "count": 40},
            "trail_stop": {"multiplier": 1.2, "count": 55},
            "profit_target": {"multiplier": 0.9, "count": 30},
        },
        "momentum": {"stop": {"multiplier": 1.4, "count": 12}},
    }
    section = bot_application({}, DEFAULT_RULES, exits)
    assert section["exits_not_read"] == {"profit_target": 0.9, "trail_stop": 1.2}
    text = render_bot_application(section)
    assert (
        "exits learned that the bot never reads (it drops names outside its table of 7): profit_target 0.900, "
        "trail_stop 1.200" in text
    )
    assert "exits_not_read" not in bot_application({}, DEFAULT_RULES)


def test_intended_against_applied_per_component_and_regime() -> None:
    """MIXED holds the strategy-wide figure; a regime of its own is listed as not applied (the scorer is
    regime-blind); pinned and capped components say so; the pair count and the largest gap follow; another
    strategy is scored with equity's weights."""
    entry = {
        "equity": {
            "dark_pool": view(1.5, {"mixed": (1.5, 50.0), "high_vol_neg_gamma": (2.1, 40.0)}),
            "options_flow": view(0.6, {"mixed": (0.6, 50.0), "high_vol_neg_gamma": (0.6, 40.0)}),
            "etf_flow": view(1.3, {"mixed": (1.3, 50.0), "high_vol_neg_gamma": (1.3, 40.0)}),
        },
        "momentum": {"dark_pool": view(0.8), "options_flow": view(1.0)},
    }
    section = bot_application(entry, DEFAULT_RULES)
    rows = section["components"]
    assert set(rows) == set(ENTRY_COMPONENTS)
    assert rows["dark_pool"]["mixed"] == 1.5 and rows["dark_pool"]["applied_multiplier"] == 1.5
    assert rows["dark_pool"]["regimes_not_applied"] == {"high_vol_neg_gamma": 2.1}
    assert rows["options_flow"]["applied_multiplier"] == 1.0 and rows["options_flow"]["regimes_not_applied"] == {}
    assert rows["etf_flow"]["applied_weight"] == 0.06
    assert rows["insider"]["learned"] == 1.0 and rows["insider"]["applied_multiplier"] == 1.0
    # 3 components x 2 regimes: dark_pool's mixed pair reaches trading, its edge does not; options_flow's and
    # etf_flow's pairs do not (pin, cap).
    assert (section["regime_pairs"], section["regime_pairs_applied_as_learned"]) == (6, 1)
    assert section["largest_gap"]["component"] == "etf_flow"
    assert section["other_strategies"] == {"momentum": {"scored_with": "equity", "components_differing": ["dark_pool"]}}
    text = render_bot_application(section)
    assert "regime-blind: high_vol_neg_gamma 2.100 not applied" in text
    assert "1 of 6 component x regime pairs" in text
    assert "strategy momentum: scored with equity's weights" in text
