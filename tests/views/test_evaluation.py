"""`learnd evaluate --regime-blind`: the prequential evaluation with each trade scored the way the unchanged bot
scores it, with one figure per component whatever the regime (the figure the export writes in MIXED)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import orjson

from learnd.devtools.verify import daemon_environment
from learnd.exports.bot import MIXED_FIGURES
from learnd.learning.entry_model import EntryModel
from learnd.sessions.tables import calendar_for
from learnd.views.evaluation import RegimeBlindScoring, attribution_outcomes, run_evaluation
from tests.conftest import build_settings


def test_regime_blind_scoring_gives_a_trade_the_same_score_in_every_regime(learned_home: Path) -> None:
    """After learning the home's trades, a trade scores the same under any regime label, with the strategy-wide
    multipliers; learnd's own scoring, per regime, does tell some regimes apart."""
    settings = build_settings(learned_home)
    calendar = calendar_for(settings)
    model = EntryModel(settings.learning)
    blind = RegimeBlindScoring(model, MIXED_FIGURES["strategy_wide"])
    outcomes = attribution_outcomes(settings)
    for trade in outcomes:
        blind.learn(trade, calendar.session_index(trade.event_us))
    regimes = ("risk_on", "mixed", "low_vol_uptrend", "high_vol_neg_gamma", "never_seen")
    told_apart = 0
    for trade in outcomes[-50:]:
        expected = math.fsum(model.multiplier(trade.strategy, name) * value for name, value in trade.components)
        variants = [dataclasses.replace(trade, regime=regime) for regime in regimes]
        assert {blind.score(variant) for variant in variants} == {expected}
        told_apart += len({model.score(variant) for variant in variants}) > 1
    assert told_apart > 0


def test_the_regime_blind_evaluation_scores_the_same_trades_differently(learned_home: Path) -> None:
    """Both figures and learnd's own scoring are evaluated over the same trades; the static score is the same and
    the learned one is the mode's own."""
    settings = build_settings(learned_home)
    runs = {
        mode: run_evaluation(settings, bootstrap_samples=50, seed=1, regime_blind=mode)
        for mode in (None, "strategy_wide", "folded_pool")
    }
    assert len({run.scored_trades for run in runs.values()}) == 1
    assert len({run.overall.ic_static for run in runs.values()}) == 1
    assert len({run.overall.ic_learned for run in runs.values()}) == 3


def test_the_command_says_which_scoring_it_used(learned_home: Path) -> None:
    """`learnd evaluate --regime-blind strategy_wide --json` names its scoring; the default is per regime."""
    env = daemon_environment(learned_home)
    command = [sys.executable, "-m", "learnd", "evaluate", "--json", "--bootstrap", "20"]
    blind = subprocess.run([*command, "--regime-blind", "strategy_wide"], env=env, capture_output=True, check=True)
    default = subprocess.run(command, env=env, capture_output=True, check=True)
    assert orjson.loads(blind.stdout)["scoring"] == "regime_blind:strategy_wide"
    assert orjson.loads(default.stdout)["scoring"] == "per_regime"
