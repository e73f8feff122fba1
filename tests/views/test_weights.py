"""`learnd weights`: the learned model, and beside it what the unchanged bot applies (its pins and caps read from
config with the bot's defaults, and its regime blindness)."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnd.config import load_settings
from learnd.errors import ConfigError, UsageError
from learnd.views.weights import render_weights, weights_document
from tests.conftest import build_settings


def test_the_bot_section_follows_the_bots_pins_and_caps_from_config(learned_home: Path) -> None:
    """With the bot's defaults options_flow is pinned and etf_flow capped; a bot configured without pins and with a
    higher cap applies learnd's figures there (and the document says what learnd learned either way)."""
    default = weights_document(build_settings(learned_home), None, None)["bot"]["components"]
    assert default["options_flow"]["applied_multiplier"] == 1.0
    assert default["options_flow"]["learned"] != 1.0
    assert default["etf_flow"]["applied_weight"] == 0.06
    unpinned = weights_document(
        build_settings(learned_home, overrides={"bot.pinned_components": "", "bot.weight_cap": 5.0}), None, None
    )["bot"]["components"]
    assert unpinned["options_flow"]["applied_multiplier"] == unpinned["options_flow"]["mixed"]
    assert unpinned["etf_flow"]["applied_multiplier"] == unpinned["etf_flow"]["mixed"]
    assert unpinned["options_flow"]["limits"] == [] and unpinned["etf_flow"]["limits"] == []


def test_the_bot_honours_its_own_environment_switches(learned_home: Path) -> None:
    """DISABLE_ADAPTIVE_WEIGHTS=1 and UW_PASSIVE_ML_WEIGHT_CAP, the bot's own variables, are read like its config:
    nothing of the file is applied, and the passive components' static weights are capped lower."""
    settings = load_settings(
        home=learned_home, environ={"DISABLE_ADAPTIVE_WEIGHTS": "1", "UW_PASSIVE_ML_WEIGHT_CAP": "0.05"}
    )
    section = weights_document(settings, None, None)["bot"]
    assert section["adaptive_weights"] is False
    passive = {"etf_flow", "squeeze_score"}
    assert all(row["applied_multiplier"] == 1.0 for name, row in section["components"].items() if name not in passive)
    assert all(section["components"][name]["applied_weight"] == 0.05 for name in passive)


def test_the_text_shows_intended_against_applied(learned_home: Path) -> None:
    """The readable output ends with the table of learned, MIXED and applied, the limits, and the pair count."""
    text = render_weights(weights_document(build_settings(learned_home), None, None))
    section = text[text.index("what the unchanged bot applies") :]
    assert "options_flow" in section and "pinned at its static weight" in section
    assert "weight capped at 0.06" in section
    assert "component x regime pairs" in section
    assert "strategy momentum: scored with equity's weights" in section


def test_a_pin_naming_no_component_stops_the_command(learned_home: Path) -> None:
    """A typo in [bot] is a configuration error naming the key, not a silently ignored pin."""
    settings = build_settings(learned_home, overrides={"bot.pinned_components": "options_flw"})
    with pytest.raises(ConfigError, match=r"bot\.pinned_components"):
        weights_document(settings, None, None)


def test_a_strategy_or_regime_nothing_was_learned_of_is_a_usage_error_naming_those_that_were(
    learned_home: Path,
) -> None:
    """`weights --strategy nosuch` printed an empty table and exited 0, as if nothing were learned: a usage error now
    (exit 2 on the command line), naming what was learned; a name that was learned (any case for a regime) works."""
    settings = build_settings(learned_home)
    with pytest.raises(UsageError, match=r"--strategy 'nosuch': nothing learned of it \(learned: equity"):
        weights_document(settings, "nosuch", None)
    with pytest.raises(UsageError, match=r"--regime 'calm': nothing learned in it \(learned: .*mixed"):
        weights_document(settings, None, "calm")
    document = weights_document(settings, "equity", "MIXED")
    assert list(document["strategies"]) == ["equity"]
    assert all(set(view["by_regime"]) == {"mixed"} for view in document["strategies"]["equity"]["entry"].values())
