"""views.signals: signal episodes joined to trades and outcomes, read from the store (closed episodes as rows,
open ones from the learner's committed state), on the hand-made trading day of tests/bot_rows.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnd.config import Settings
from learnd.errors import StateError
from learnd.learning.signals import NAME as SIGNAL_LEARNER
from learnd.learning.signals import render_signals
from learnd.service.backfill import run_backfill
from learnd.store.database import reading
from learnd.views.signals import signals_document
from tests.bot_rows import append, open_row, signal_row, write_trading_day
from tests.conftest import build_settings, home_owned


@pytest.fixture
def settings(home: Path) -> Settings:
    write_trading_day(home)
    learned = build_settings(home, overrides={"signals.min_episodes": 10})
    run_backfill(learned, progress="none")
    return learned


def test_episodes_count_closed_rows_and_open_state_together(settings: Settings) -> None:
    """All 20 episodes: 15 closed (rows in the store) and S15-S19, whose last candidates are under the 5 minute
    gap from the latest one, still open in the learner's state; 10 became trades, 3 of them closed."""
    with reading(settings.db_path) as store:
        assert store is not None
        assert len(list(store.learner_rows(SIGNAL_LEARNER))) == 15
    document = signals_document(settings)
    assert (document["episodes"], document["open_episodes"]) == (20, 5)
    assert (document["converted"], document["with_outcome"]) == (10, 3)


def test_patterns_show_conversion_and_outcomes_per_regime(settings: Settings) -> None:
    """options_flow episodes all became trades (3 outcomes: 1.0, 0.5, -0.2 %), dark_pool ones none; each pattern
    per regime (all entries say mixed) and over all regimes."""
    rows = {(tuple(row["pattern"]), row["regime"]): row for row in signals_document(settings)["patterns"]}
    assert rows.keys() == {
        (("options_flow",), "mixed"),
        (("options_flow",), "all"),
        (("dark_pool",), "mixed"),
        (("dark_pool",), "all"),
    }
    flow = rows[("options_flow",), "all"]
    assert (flow["episodes"], flow["trades"], flow["conversion"], flow["outcomes"]) == (10, 10, 1.0, 3)
    assert (flow["win_rate"], flow["mean_pnl_pct"]) == (0.666667, 0.433333)
    dark = rows[("dark_pool",), "mixed"]
    assert (dark["episodes"], dark["trades"], dark["conversion"], dark["outcomes"]) == (10, 0, 0.0, 0)
    assert rows[("options_flow",), "mixed"] == {**flow, "regime": "mixed"}


def test_strategy_baseline_and_suggestions(settings: Settings) -> None:
    """The strategy converts half its episodes; each pattern's interval excludes that, so each gets a suggestion
    (raise options_flow, lower dark_pool), none of which applies to the weights by default."""
    document = signals_document(settings)
    assert document["strategies"]["equity"]["conversion"] == 0.5
    assert sorted((item["pattern"][0], item["regime"], item["direction"]) for item in document["suggestions"]) == [
        ("dark_pool", "all", "lower"),
        ("dark_pool", "mixed", "lower"),
        ("options_flow", "all", "raise"),
        ("options_flow", "mixed", "raise"),
    ]
    assert document["suggestions_enabled"] is False
    assert not any(item["applies_to_weights"] for item in document["suggestions"])


def test_parameters_come_from_the_settings(home: Path, settings: Settings) -> None:
    """The document states the episode gap, join window and thresholds it used, in seconds."""
    wider = build_settings(home, overrides={"signals.min_episodes": 11, "signals.gap_minutes": 2.0})
    params = signals_document(wider)["params"]
    assert (params["gap_s"], params["join_window_s"], params["min_episodes"]) == (120.0, 600.0, 11)
    assert signals_document(wider)["suggestions"] == []  # 10 episodes a pattern: below the minimum


def test_the_view_reads_while_a_daemon_owns_the_home(settings: Settings) -> None:
    """Read-only: it needs neither the home lock nor a write, so it answers the same while the home is owned."""
    before = signals_document(settings)
    with home_owned(settings):
        assert signals_document(settings) == before


def test_without_a_store_the_view_is_a_state_error(home: Path) -> None:
    """Nothing learned yet: StateError saying so, and no store is created."""
    settings = build_settings(home)
    with pytest.raises(StateError, match="no store yet"):
        signals_document(settings)
    assert not settings.db_path.exists()


def test_unknown_component_keys_of_signals_and_entries_are_reported(home: Path) -> None:
    """Keys that are no component, on signal lines and on trade entries, are counted by name and shown by
    `learnd signals` (JSON and text); they were counted in the learner's state and shown nowhere."""
    write_trading_day(home)
    ts = "2026-03-02T15:40:00+00:00"
    append(home / "logs" / "signals.jsonl", [signal_row(ts, "AMD", {"flow": 1.0, "sig_unknown": 1.0})] * 3)
    append(home / "logs" / "attribution.jsonl", [open_row(ts, "TSLA", components={"flow": 1.0, "entry_odd": 2.0})])
    settings = build_settings(home)
    run_backfill(settings, progress="none")
    document = signals_document(settings)
    assert document["unknown_components"] == {"signals": {"sig_unknown": 3}, "entries": {"entry_odd": 1}}
    text = render_signals(document)
    assert "Unknown component keys of signals (counted, never learned): sig_unknown x3" in text
    assert "Unknown component keys of entries (counted, never learned): entry_odd x1" in text
