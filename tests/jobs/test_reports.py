"""Daily and weekly report figures, the drift test, stale-multiplier decay and the Markdown renderings."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import date
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from learnd.jobs.longrun import RECENT_SESSIONS, LongRun
from learnd.jobs.reports import (
    daily_report,
    longrun_of,
    render_daily_markdown,
    render_weekly_markdown,
    weekly_report,
)
from learnd.records.components import exit_components
from learnd.records.parse import ExitOutcome, TradeOutcome

DAY = date(2026, 3, 2)
SESSION_US = 86_400_000_000
BASE_US = 1_772_400_000_000_000


def make_trade(
    key: str,
    pnl_pct: float,
    components: dict[str, float],
    *,
    regime: str = "mixed",
    symbol: str = "AMD",
    strategy: str = "equity",
    event_us: int = BASE_US,
    weight: float = 1.0,
) -> TradeOutcome:
    return TradeOutcome(
        key=key,
        strategy=strategy,
        symbol=symbol,
        regime=regime,
        event_us=event_us,
        entry_us=None,
        pnl_pct=pnl_pct,
        pnl_usd=pnl_pct * 10.0,
        weight=weight,
        components=tuple(sorted(components.items())),
        unknown_components=(),
        entry_score=None,
        hold_minutes=None,
        close_reason=None,
        side="long",
        is_partial=weight < 1.0,
    )


def make_exit(key: str, reason: str, pnl_pct: float, weight: float = 1.0) -> ExitOutcome:
    return ExitOutcome(
        key=key,
        strategy="equity",
        symbol="AMD",
        regime="unknown",
        event_us=BASE_US,
        pnl_pct=pnl_pct,
        pnl_usd=None,
        weight=weight,
        hold_minutes=None,
        reason=reason,
        exit_components=tuple(exit_components(reason)),
    )


def change(
    event_us: int, component: str, regime: str, old: float, new: float, *, model: str = "entry"
) -> dict[str, Any]:
    return {
        "event_us": event_us,
        "strategy": "equity",
        "model": model,
        "component": component,
        "regime": regime,
        "old": old,
        "new": new,
        "reason": "test",
        "samples": 60.0,
    }


DAY_TRADES = [
    make_trade("close_1", 2.0, {"options_flow": 3.0, "toxicity_penalty": -1.0}),
    make_trade("close_2", -1.0, {"options_flow": 1.0, "dark_pool": 1.0}, regime="risk_off", symbol="NVDA"),
    make_trade("scale_3", 4.0, {"dark_pool": 2.0}, weight=0.5),
    make_trade("close_4", -3.0, {}, symbol="TSLA"),
]
DAY_CHANGES = [
    change(BASE_US + 20, "options_flow", "*", 1.02, 1.04),
    change(BASE_US + 10, "options_flow", "*", 1.0, 1.02),
    change(BASE_US + 15, "options_flow", "mixed", 1.0, 0.98),
    change(BASE_US + 30, "trail_stop", "*", 1.0, 1.1, model="exit"),
]
DAY_EXITS = [
    make_exit("e1", "trail_stop+signal_decay(0.4)", 1.0),
    make_exit("e2", "trail_stop", -2.0),
    make_exit("e3", "time_exit(4h)", -1.0),
    make_exit("e4", "profit_target", 4.0, weight=0.1),  # a scale-out of a tenth of the position
    make_exit("e5", "profit_target", -1.0),
]
LATE = [
    make_trade("close_late_b", 1.0, {"options_flow": 1.0}, event_us=BASE_US - 2 * SESSION_US),
    make_trade("close_late_a", -0.5, {"dark_pool": 1.0}, event_us=BASE_US - 3 * SESSION_US),
]
SNAPSHOT = {"equity": {"options_flow": {"multiplier": 1.04, "by_regime": {"mixed": {"multiplier": 0.98}}}}}


def build_daily() -> dict[str, Any]:
    return daily_report(DAY, DAY_TRADES, DAY_EXITS, DAY_CHANGES, late_trades=LATE, model_snapshot=SNAPSHOT)


def test_daily_summary_and_component_figures_match_hand_computation() -> None:
    """Win rate, attributed P&L per component and per regime, and unattributed P&L, computed by hand."""
    body = build_daily()["strategies"]["equity"]
    summary = body["summary"]
    assert (summary["trades"], summary["wins"], summary["losses"], summary["partials"]) == (4, 2, 2, 1)
    assert summary["win_rate"] == 0.5
    assert summary["pnl_pct"] == 0.0  # 2 - 1 + 4 * 0.5 - 3
    assert summary["unattributed_pnl_pct"] == -3.0
    flow = body["components"]["options_flow"]
    assert (flow["trades"], flow["wins"], flow["losses"], flow["win_rate"]) == (2, 1, 1, 0.5)
    assert flow["attributed_pnl_pct"] == 1.0  # 1.5 - 0.5
    assert flow["by_regime"]["mixed"]["attributed_pnl_pct"] == 1.5
    assert flow["by_regime"]["risk_off"]["attributed_pnl_pct"] == -0.5
    assert body["components"]["dark_pool"]["attributed_pnl_pct"] == 1.5  # -0.5 + 2.0
    assert body["components"]["toxicity_penalty"]["attributed_pnl_pct"] == 0.5
    assert body["regimes"]["mixed"] == {
        "trades": 3,
        "wins": 2,
        "losses": 1,
        "win_rate": pytest.approx(2 / 3, abs=1e-6),
        "pnl_pct": 1.0,
        "mean_pnl_pct": pytest.approx(1 / 3, abs=1e-6),
    }


def test_daily_multiplier_change_runs_from_first_old_to_last_new_in_event_order() -> None:
    """Changes given out of order still read 1.0 -> 1.04 over two moves; regime and exit changes are kept apart."""
    body = build_daily()["strategies"]["equity"]
    flow = body["components"]["options_flow"]
    assert flow["multiplier_change"] == {"start": 1.0, "end": 1.04, "delta": 0.04, "moves": 2}
    assert flow["by_regime"]["mixed"]["multiplier_change"] == {"start": 1.0, "end": 0.98, "delta": -0.02, "moves": 1}
    assert flow["by_regime"]["risk_off"]["multiplier_change"] is None
    assert (flow["multiplier"], flow["by_regime"]["mixed"]["multiplier"]) == (1.04, 0.98)
    assert body["multiplier_changes"]["exit"]["trail_stop"]["*"]["delta"] == 0.1


def test_daily_exit_reasons_by_outcome() -> None:
    """Each exit counts once for every exit component its composite reason names."""
    reasons = build_daily()["strategies"]["equity"]["exit_reasons"]
    assert reasons["trail_stop"] == {"exits": 2, "wins": 1, "losses": 1, "win_rate": 0.5, "mean_pnl_pct": -0.5}
    assert reasons["entry_decay"] == {"exits": 1, "wins": 1, "losses": 0, "win_rate": 1.0, "mean_pnl_pct": 1.0}
    assert reasons["time_decay"]["losses"] == 1
    # The scale-out is one outcome, a win, for a tenth of its P&L: (4 * 0.1 - 1) / 2.
    assert reasons["profit_target"] == {"exits": 2, "wins": 1, "losses": 1, "win_rate": 0.5, "mean_pnl_pct": -0.3}


def test_daily_late_trades_are_listed_and_counted_apart_from_the_day() -> None:
    """Late trades are counted and listed in event order; the day's own figures ignore them."""
    report = build_daily()
    late = report["late"]
    assert late["count"] == 2
    assert [row["key"] for row in late["trades"]] == ["close_late_a", "close_late_b"]
    assert late["by_strategy"]["equity"]["trades"] == 2
    assert report["strategies"]["equity"]["summary"]["trades"] == 4


def test_daily_report_is_byte_identical_for_identical_input() -> None:
    """Two builds dump to the same bytes with sorted keys, and the report carries no wall-clock field."""
    first = orjson.dumps(build_daily(), option=orjson.OPT_SORT_KEYS)
    assert first == orjson.dumps(build_daily(), option=orjson.OPT_SORT_KEYS)
    assert b"generated" not in first


pnl_values = st.floats(min_value=-20.0, max_value=20.0, allow_nan=False)
contribution_values = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False)
component_sets = st.dictionaries(
    st.sampled_from(["options_flow", "dark_pool", "toxicity_penalty", "insider"]), contribution_values, max_size=4
)
trade_lists = st.lists(
    st.tuples(pnl_values, component_sets, st.sampled_from(["mixed", "risk_on"]), st.sampled_from([0.5, 1.0])),
    max_size=12,
).map(
    lambda rows: [
        make_trade(f"close_{index}", pnl, components, regime=regime, weight=weight)
        for index, (pnl, components, regime, weight) in enumerate(rows)
    ]
)


@given(trade_lists, st.randoms(use_true_random=False))
def test_daily_report_does_not_depend_on_trade_order(trades: list[TradeOutcome], shuffler: random.Random) -> None:
    """Exactly rounded sums make the report a function of the set of trades, not of their order."""
    shuffled = list(trades)
    shuffler.shuffle(shuffled)
    original = orjson.dumps(daily_report(DAY, trades, (), ()), option=orjson.OPT_SORT_KEYS)
    assert orjson.dumps(daily_report(DAY, shuffled, (), ()), option=orjson.OPT_SORT_KEYS) == original


def session_of(event_us: int) -> int:
    return (event_us - BASE_US) // SESSION_US


def ledger(seed: int, *, sessions: int = 100, per_session: int = 2) -> list[TradeOutcome]:
    """`options_flow` earns +0.6 % then loses 0.6 % in the last 20 sessions; four others are stationary; in
    `risk_on`, `dark_pool` flips the same way while it stays stationary in `risk_off`."""
    rng = random.Random(seed)
    trades: list[TradeOutcome] = []
    for session in range(sessions):
        is_recent = session >= sessions - 20
        means = {
            ("options_flow", "mixed"): -0.6 if is_recent else 0.6,
            ("insider", "mixed"): 0.2,
            ("congress", "mixed"): -0.1,
            ("whale_persistence", "mixed"): 0.0,
            ("dark_pool", "risk_on"): -0.8 if is_recent else 0.8,
            ("dark_pool", "risk_off"): 0.3,
        }
        for (component, regime), mean in means.items():
            for index in range(per_session):
                trades.append(
                    make_trade(
                        f"close_{component}_{regime}_{session}_{index}",
                        rng.gauss(mean, 1.0),
                        {component: 1.0},
                        regime=regime,
                        symbol=rng.choice(["AMD", "NVDA"]),
                        event_us=BASE_US + session * SESSION_US + index,
                    )
                )
    return trades


def build_weekly(trades: list[TradeOutcome], snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
    longrun = longrun_of(trades, session_of, 99, RECENT_SESSIONS)
    return weekly_report("2026-W10", longrun, current_session=99, model_snapshot=snapshot)


@pytest.mark.parametrize("seed", range(8))
def test_drift_flags_a_planted_sign_flip_and_not_stationary_components(seed: int) -> None:
    """At alpha 0.05 (Bonferroni), only the component whose outcomes flip sign in the last 20 sessions drifts."""
    drift = build_weekly(ledger(seed))["strategies"]["equity"]["drift"]
    assert "options_flow" in drift["flagged"]
    assert drift["components"]["options_flow"]["direction"] == "worse"
    for stationary in ("insider", "congress", "whale_persistence"):
        assert stationary not in drift["flagged"]
        assert drift["components"][stationary]["test"] is not None


def test_drift_needs_enough_outcomes_in_both_groups() -> None:
    """A component with fewer than min_group_trades recent outcomes is reported untested, never flagged."""
    drift = build_weekly(ledger(0, sessions=85, per_session=1))["strategies"]["equity"]["drift"]
    assert drift["components"]["insider"]["recent"]["trades"] == 5
    assert drift["components"]["insider"]["test"] is None
    assert "insider" not in drift["flagged"]


@pytest.mark.parametrize("seed", range(4))
def test_regime_analysis_detects_a_shift_in_one_regime_only(seed: int) -> None:
    """dark_pool stops working in risk_on but not in risk_off: only that cell is flagged; works-in lists move."""
    regimes = build_weekly(ledger(seed))["strategies"]["equity"]["regimes"]
    dark_pool = regimes["components"]["dark_pool"]
    assert dark_pool["shifting_in"] == ["risk_on"]
    assert {"component": "dark_pool", "regime": "risk_on", "direction": "worse"} in regimes["flagged"]
    assert "risk_on" in dark_pool["works_in"]
    assert "risk_on" not in dark_pool["recent_works_in"]
    assert "risk_off" in dark_pool["recent_works_in"]


def test_ticker_profiles_rank_best_and_worst_components() -> None:
    """Per symbol: outcomes, win rate, mean P&L and components by attributed P&L, best first / worst first."""
    trades = [
        make_trade("c1", 2.0, {"options_flow": 1.0}, symbol="AMD"),
        make_trade("c2", -1.0, {"dark_pool": 1.0}, symbol="AMD"),
        make_trade("c3", 1.0, {"insider": 1.0}, symbol="AMD"),
    ]
    profile = build_weekly(trades)["strategies"]["equity"]["tickers"]["AMD"]
    assert profile["trades"] == 3
    assert profile["win_rate"] == profile["mean_pnl_pct"] == pytest.approx(2 / 3, abs=1e-6)
    assert [row["component"] for row in profile["best_components"]] == ["options_flow", "insider"]
    assert [row["component"] for row in profile["worst_components"]] == ["dark_pool"]


def test_weekly_lists_the_stale_decay_the_learner_applied_with_the_evidence_in_the_ledger() -> None:
    """The weekly report lists the decay the week's close applied, as it was made (before and after), with each
    cell's last evidence from the trades; it proposes nothing of its own."""
    trades = [make_trade("c1", 1.0, {"insider": 1.0}, event_us=BASE_US + 10 * SESSION_US)]
    assert longrun_of(trades, session_of, 99, RECENT_SESSIONS).evidence()[("equity", "insider", "*")] == 10
    snapshot = {"equity": {"insider": {"multiplier": 1.9, "by_regime": {"mixed": {"multiplier": 1.0}}}}}
    applied = {"strategy": "equity", "component": "insider", "regime": "*", "old": 2.0, "new": 1.9}
    longrun = longrun_of(trades, session_of, 99, RECENT_SESSIONS)
    report = weekly_report("2026-W10", longrun, current_session=99, model_snapshot=snapshot, stale_decays=[applied])
    assert report["stale_multipliers"]["applied"] == [
        {
            "strategy": "equity",
            "component": "insider",
            "regime": "*",
            "last_evidence_session": 10,
            "sessions_idle": 89,
            "multiplier": 2.0,
            "decayed": 1.9,
        }
    ]
    # Nothing applied, nothing listed: an idle multiplier away from 1 is no proposal.
    assert build_weekly(trades, snapshot)["stale_multipliers"]["applied"] == []


def test_weekly_report_is_byte_identical_for_identical_input() -> None:
    """The weekly report has no wall-clock field and dumps identically twice."""
    trades = ledger(3, sessions=30, per_session=1)
    first = orjson.dumps(build_weekly(trades), option=orjson.OPT_SORT_KEYS)
    assert first == orjson.dumps(build_weekly(list(reversed(trades))), option=orjson.OPT_SORT_KEYS)


def test_daily_markdown_renders_every_section() -> None:
    """Summary, components, regimes, multiplier changes, exit reasons, execution and late trades all appear."""
    text = render_daily_markdown(build_daily())
    for heading in (
        "# Daily report 2026-03-02",
        "### Summary",
        "### Components",
        "### Components by regime",
        "### Regimes",
        "### Multiplier changes over the day",
        "### Exit reasons by outcome",
        "## Late trades",
    ):
        assert heading in text
    assert "| `options_flow` | 2 | 50.0% | 1 | 1 -> 1.04 (+0.0400) | 1.04 |" in text
    assert "close_late_a" in text


def test_markdown_table_cells_escape_pipes_and_newlines() -> None:
    """A cell holding `|` or a newline keeps the table's shape (`\\|`, a space); the other cells of its row and the
    other rows read as they are."""
    report = build_daily()
    reasons = report["strategies"]["equity"]["exit_reasons"]
    (row, *_) = reasons.values()
    reasons["stop|trail\nlate"] = row
    text = render_daily_markdown(report)
    assert "| `stop\\|trail late` | " in text
    header = next(line for line in text.splitlines() if line.startswith("| exit component |"))
    escaped = next(line for line in text.splitlines() if line.startswith("| `stop"))
    assert escaped.replace("\\|", "").count("|") == header.count("|")
    assert "| `options_flow` | 2 | 50.0% | 1 | 1 -> 1.04 (+0.0400) | 1.04 |" in text


def test_weekly_markdown_renders_every_section() -> None:
    """Drift, regime analysis, ticker profiles and the stability decay all appear."""
    snapshot = {"equity": {"insider": {"multiplier": 1.4}}}
    text = render_weekly_markdown(build_weekly(ledger(1), snapshot))
    for heading in (
        "# Weekly report 2026-W10",
        "### Drift: recent vs long-run attributed P&L",
        "### Regime analysis",
        "### Ticker profiles",
        "## Stability decay",
    ):
        assert heading in text
    assert "**worse**" in text


def test_reports_import_no_shell_package() -> None:
    """The report core stays pure: importing it pulls in no IO, clock-driven or scheduling package."""
    probe = (
        "import sys, learnd.jobs.reports; "
        "shell = {'asyncio', 'sqlite3', 'watchfiles', 'apscheduler', 'structlog', 'exchange_calendars'}; "
        "sys.exit(sorted(shell & {name.split('.')[0] for name in sys.modules}) or 0)"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr


def test_weekly_reports_of_figures_kept_across_weeks_read_as_of_figures_built_afresh() -> None:
    """Views a weekly report keeps on the figures for the next (a symbol's profile until it trades again, a cell's
    view while the recent window holds none of it) leave every report as that of figures built for it alone; the
    quiet sessions make cells the recent window does not hold."""
    trades = [trade for trade in ledger(5, sessions=80) if not 30 <= session_of(trade.event_us) < 58]
    by_session: dict[int, list[TradeOutcome]] = {}
    for trade in trades:
        by_session.setdefault(session_of(trade.event_us), []).append(trade)
    kept = LongRun()
    reports = kept_views = 0
    for session in range(80):
        kept.absorb(by_session.get(session, []), session)
        kept.through = session
        kept.settle_earlier(session - RECENT_SESSIONS)
        if session % 5 != 4 or session < RECENT_SESSIONS:
            continue
        afresh = longrun_of(
            [trade for trade in trades if session_of(trade.event_us) <= session], session_of, session, RECENT_SESSIONS
        )
        report = weekly_report(f"W{session}", kept, current_session=session, model_snapshot=None)
        assert report == weekly_report(f"W{session}", afresh, current_session=session, model_snapshot=None)
        reports += 1
        kept_views += sum(cell.view_alone is not None for cells in kept.earlier.values() for cell in cells.values())
    assert kept.ticker_views
    assert kept_views > 0
    assert reports == 12
