"""The weights file for the bot as it is: loaded by a model of the unchanged bot (tests/exports/unchanged_bot.py,
built from FORMATS.md), the multipliers it applies equal what `learnd weights` says learnd wants it to apply."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from learnd.devtools.verify import daemon_environment
from learnd.exports.bot import LEGACY_ALIASES, MIXED, NAMED_BUCKETS, beta_for_multiplier, bot_multiplier
from learnd.exports.signal_weights import signal_weights
from learnd.learning.learner import LearnedModel
from learnd.records.components import ENTRY_COMPONENTS
from tests.conftest import build_settings
from tests.exports.unchanged_bot import UnchangedBot

# The Beta round trip (multiplier -> alpha, beta -> mean -> multiplier) is exact to a few ulps.
ROUND_TRIP = 1e-12


def weights_json(home: Path) -> dict[str, Any]:
    """`learnd weights --json` on `home`, as an operator runs it (a subprocess)."""
    env = daemon_environment(home)
    result = subprocess.run(
        [sys.executable, "-m", "learnd", "weights", "--json"], env=env, capture_output=True, check=True, timeout=60
    )
    document: dict[str, Any] = orjson.loads(result.stdout)
    return document


@pytest.fixture(scope="module")
def learned(learned_home: Path) -> tuple[UnchangedBot, dict[str, Any], dict[str, Any]]:
    """The bot model loaded from the learned home's export, `learnd weights --json`, and the export itself."""
    path = build_settings(learned_home).signal_weights_path
    return UnchangedBot(path), weights_json(learned_home), orjson.loads(path.read_bytes())


def test_the_bots_mixed_bucket_holds_what_learnd_wants_applied(
    learned: tuple[UnchangedBot, dict[str, Any], dict[str, Any]],
) -> None:
    """For every component, the multiplier the bot's optimizer returns for MIXED (the bucket its scorer trades on)
    equals what `learnd weights` says learnd wants the bot to apply (bot.components.<c>.mixed), which is the
    strategy-wide multiplier learnd learned."""
    bot, document, _ = learned
    assert bot.loaded
    wanted = document["bot"]["components"]
    equity = document["strategies"]["equity"]["entry"]
    for component in ENTRY_COMPONENTS:
        assert bot.multiplier(component, "MIXED") == pytest.approx(wanted[component]["mixed"], abs=ROUND_TRIP)
        assert wanted[component]["mixed"] == equity[component]["multiplier"]
    moved = [name for name in ENTRY_COMPONENTS if abs(wanted[name]["mixed"] - 1.0) > 0.05]
    assert len(moved) >= 5, "the learned home should have moved multipliers, or this test shows nothing"


def test_the_bots_scorer_applies_what_learnd_weights_says_it_applies(
    learned: tuple[UnchangedBot, dict[str, Any], dict[str, Any]],
) -> None:
    """The weight the unchanged scorer multiplies each component by (pins, caps, regime blindness included) equals
    `learnd weights`'s applied_weight, and its pins and caps show as limits there."""
    bot, document, _ = learned
    rows = document["bot"]["components"]
    for component in ENTRY_COMPONENTS:
        assert bot.scoring_weight(component) == pytest.approx(rows[component]["applied_weight"], abs=ROUND_TRIP)
    assert rows["options_flow"]["applied_multiplier"] == 1.0
    assert rows["options_flow"]["limits"] == ["pinned at its static weight"]
    for capped in ("etf_flow", "squeeze_score"):
        assert rows[capped]["applied_weight"] <= 0.06
    assert any("capped" in limit for capped in ("etf_flow", "squeeze_score") for limit in rows[capped]["limits"])


def test_each_regime_reads_its_bucket_as_the_bot_folds_it(
    learned: tuple[UnchangedBot, dict[str, Any], dict[str, Any]],
) -> None:
    """A regime learnd learned as RISK_ON gets learnd's own figure for it; every other label (mixed, neutral,
    low_vol_uptrend, unknown, ...) reads MIXED, the strategy-wide figure."""
    bot, document, _ = learned
    equity = document["strategies"]["equity"]["entry"]
    regimes = set(equity["options_flow"]["by_regime"])
    assert "risk_on" in regimes and len(regimes) >= 4
    for component in ENTRY_COMPONENTS:
        view = equity[component]
        for regime in [*regimes, "neutral", "unknown", "NEUTRAL"]:
            named = regime.upper() in NAMED_BUCKETS
            wanted = view["by_regime"][regime]["multiplier"] if named else view["multiplier"]
            assert bot.multiplier(component, regime) == pytest.approx(wanted, abs=ROUND_TRIP)


def test_named_buckets_appear_only_where_learnd_learned_the_label(
    learned: tuple[UnchangedBot, dict[str, Any], dict[str, Any]],
) -> None:
    """The file holds MIXED for every component, RISK_ON because the history has it, and no RISK_OFF (never seen),
    nor any bucket the bot would not read."""
    _, _, exported = learned
    buckets = exported["entry_weights"]["regime_beta_distributions"]
    for component in ENTRY_COMPONENTS:
        assert set(buckets[component]) == {MIXED, "RISK_ON"}


def test_legacy_names_whose_mapping_formats_gives_answer_their_components_multiplier(
    learned: tuple[UnchangedBot, dict[str, Any], dict[str, Any]],
) -> None:
    """The older helper asking under flow_count, flow_premium, darkpool or gamma gets the canonical component's
    multiplier; net_premium and volatility (no mapping in FORMATS.md) still get 1.0; base_weights has no alias
    (the helper multiplies by the base weight itself)."""
    bot, _, exported = learned
    for legacy, component in LEGACY_ALIASES.items():
        assert bot.legacy_multiplier(legacy) == bot.multiplier(component, "MIXED")
    assert bot.multiplier("options_flow", "MIXED") != 1.0
    for unmapped in ("net_premium", "volatility"):
        assert bot.legacy_multiplier(unmapped) == 1.0
    assert set(exported["entry_weights"]["base_weights"]) == set(ENTRY_COMPONENTS)


def test_the_full_model_stays_in_the_file(
    learned: tuple[UnchangedBot, dict[str, Any], dict[str, Any]],
) -> None:
    """learned_multipliers and effective_weights hold every strategy's strategy-wide and per-regime figures, as
    `learnd weights --json` has them."""
    _, document, exported = learned
    for strategy, view in document["strategies"].items():
        learned_multipliers = exported["learned_multipliers"][strategy]
        for component, entry in view["entry"].items():
            assert learned_multipliers["*"][component] == entry["multiplier"]
            for regime, regime_view in entry["by_regime"].items():
                assert learned_multipliers[regime][component] == regime_view["multiplier"]
                assert exported["effective_weights"][strategy][regime][component] == pytest.approx(
                    exported["entry_weights"]["base_weights"][component] * regime_view["multiplier"], rel=1e-15
                )


def test_an_empty_model_still_gives_the_bot_a_mixed_bucket_at_one() -> None:
    """Before any trade the file tells the bot 1.0 for every component in MIXED (not whatever its defaults are)."""
    empty = LearnedModel(entry={}, exits={}, trades_learned=0, partials_learned=0, exits_learned=0, last_trade_us=-1)
    document = signal_weights(empty)
    buckets = document["entry_weights"]["regime_beta_distributions"]
    for component in ENTRY_COMPONENTS:
        assert set(buckets[component]) == {MIXED}
        assert bot_multiplier(buckets[component][MIXED]["alpha"], buckets[component][MIXED]["beta"]) == 1.0


@pytest.mark.parametrize("multiplier", [0.25, 0.4, 0.999, 1.0, 1.37, 2.5])
def test_beta_parameters_decode_back_to_the_multiplier(multiplier: float) -> None:
    """The bot's mean-to-multiplier mapping gives back what learnd wrote, on both sides of 1."""
    alpha, beta = beta_for_multiplier(multiplier, 123.0)
    assert bot_multiplier(alpha, beta) == pytest.approx(multiplier, abs=ROUND_TRIP)
