"""Reports: the daily and weekly jobs' figures, computed from ledger records, and their Markdown renderings.

Pure: records, changes and numbers in, JSON-able dicts and text out; no IO, no clock (the shell writes the files).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final, TypeVar

from learnd.exports.bot import where_it_differs
from learnd.jobs.longrun import (
    RECENT_SESSIONS,
    Cell,
    CellOutcomes,
    EarlierCell,
    LongRun,
    OutcomeRun,
    SessionOutcomes,
    Tally,
    is_attributed,
    session_runs,
)
from learnd.learning.entry_model import regime_scope
from learnd.learning.multipliers import GLOBAL_SCOPE
from learnd.learning.stats import MannWhitneyResult, mann_whitney_sorted
from learnd.records.parse import ExitOutcome, TradeOutcome

ATTRIBUTION_METHOD: Final = (
    "each outcome's pnl_pct x closed fraction is split across its components in proportion to |contribution|; "
    "components with a zero contribution get nothing; an outcome with no nonzero component is unattributed"
)
OUTCOME_RULE: Final = "win: pnl_pct > 0, loss: pnl_pct < 0; each close or partial close counts as one outcome"
DRIFT_METHOD: Final = "mann_whitney_u"
DEFAULT_RECENT_SESSIONS: Final = RECENT_SESSIONS
DEFAULT_ALPHA: Final = 0.05
DEFAULT_MIN_GROUP_TRADES: Final = 10
DEFAULT_IDLE_SESSIONS: Final = 20
DEFAULT_DECAY_HALF_LIFE_SESSIONS: Final = 60.0
NO_EXIT_COMPONENT: Final = "(none)"
_DIGITS: Final = 6
_PROFILE_COMPONENTS: Final = 3

_Cell = TypeVar("_Cell", str, tuple[str, str])


def daily_report(
    day: date,
    trades: Sequence[TradeOutcome],
    exits: Sequence[ExitOutcome],
    changes: Sequence[Mapping[str, Any]],
    *,
    late_trades: Sequence[TradeOutcome] = (),
    model_snapshot: Mapping[str, Any] | None = None,
    outcomes: SessionOutcomes | None = None,
) -> dict[str, Any]:
    """The daily report of trading day `day`: JSON-able, deterministic, no wall-clock field.

    `trades` closed on `day` in exchange time (the caller selects them with the calendar); `late_trades` closed
    earlier but arrived after their day's batch ran: they are listed and counted here, and summarised apart so
    the day's own figures match a backfill. `changes` are weight_learning.jsonl documents of the day
    ({event_us, strategy, model, component, regime, old, new, ...}); a scope's change over the day runs from the
    `old` of its first change to the `new` of its last (event order, input order on ties). `model_snapshot`
    (EntryModel.snapshot()) adds the current multipliers. Per strategy: summary, components (and by regime),
    regimes, multiplier changes, exit reasons by outcome (the day's orders are the report's execution_quality
    section, built from the execution learner's groups by the job). `outcomes` are `trades`
    attributed and grouped by cell (SessionOutcomes.of(trades) when not given; the long-run figures hold them for
    a session they took in whole).
    """
    if outcomes is None:
        outcomes = SessionOutcomes.of(trades)
    strategies = sorted(
        {trade.strategy for trade in trades}
        | {exit_.strategy for exit_ in exits}
        | {str(change["strategy"]) for change in changes}
    )
    per_strategy: dict[str, Any] = {}
    for strategy in strategies:
        own_trades = [trade for trade in trades if trade.strategy == strategy]
        own_changes = [change for change in changes if change["strategy"] == strategy]
        moves = _multiplier_moves(own_changes)
        snapshot = (model_snapshot or {}).get(strategy)
        per_strategy[strategy] = {
            "summary": _trade_summary(own_trades),
            "components": _daily_components(outcomes.cells.get(strategy, {}), moves.get("entry", {}), snapshot),
            "regimes": _regime_totals(own_trades),
            "multiplier_changes": moves,
            "exit_reasons": _exit_reasons([exit_ for exit_ in exits if exit_.strategy == strategy]),
        }
    late_sorted = sorted(late_trades, key=lambda trade: (trade.event_us, trade.key))
    return {
        "report": "daily",
        "day": day.isoformat(),
        "attribution_method": ATTRIBUTION_METHOD,
        "outcome_rule": OUTCOME_RULE,
        "strategies": per_strategy,
        "late": {
            "count": len(late_sorted),
            "trades": [_trade_row(trade) for trade in late_sorted],
            "by_strategy": {
                strategy: _trade_summary([trade for trade in late_sorted if trade.strategy == strategy])
                for strategy in sorted({trade.strategy for trade in late_sorted})
            },
        },
    }


def longrun_of(
    trades: Iterable[TradeOutcome], session_of: Callable[[int], int], current_session: int, recent_sessions: int
) -> LongRun:
    """The long-run figures of `trades` (all of them) as a weekly report at `current_session` reads them."""
    longrun = LongRun()
    longrun.earlier_through = current_session - recent_sessions
    for session, run in session_runs(trades, session_of):
        longrun.absorb(run, session)
    longrun.through = current_session
    return longrun


def weekly_report(
    week: str,
    longrun: LongRun,
    *,
    recent_sessions: int = DEFAULT_RECENT_SESSIONS,
    current_session: int,
    model_snapshot: Mapping[str, Any] | None,
    stale_decays: Sequence[Mapping[str, Any]] = (),
    last_evidence_session: Mapping[tuple[str, str, str], int] | None = None,
    alpha: float = DEFAULT_ALPHA,
    min_group_trades: int = DEFAULT_MIN_GROUP_TRADES,
    idle_sessions: int = DEFAULT_IDLE_SESSIONS,
    half_life_sessions: float = DEFAULT_DECAY_HALF_LIFE_SESSIONS,
) -> dict[str, Any]:
    """The weekly long-term report from the long-run figures of the whole ledger (`longrun_of`, or kept up to
    date by the job runner): JSON-able, deterministic, no wall clock; it costs the recent window, not all history.

    Recent means the last `recent_sessions` sessions up to `current_session` (session_of(event_us) >
    current_session - recent_sessions); earlier is everything before; long-run is both.

    Drift test: a two-sided Mann-Whitney U test of a component's recent attributed outcomes (one per trade that
    carried it) against its earlier ones, Bonferroni-corrected across the components tested in the strategy
    (family-wise error <= `alpha`); a component is tested when both groups hold `min_group_trades` outcomes.
    Why this one: trade P&L is fat-tailed and skewed, so a t test's mean and variance are led by a few outliers
    and its normal approximation is poor at 20-session sample sizes, while a rank test is insensitive to outliers,
    assumes no distribution and needs no library beyond the normal tail. It asks the question the weekly job
    needs (do recent outcomes sit lower or higher than before?) and treats recent versus earlier as two samples,
    which matches a weekly look at one fixed window better than a sequential change-point test (CUSUM, Page-
    Hinkley) whose thresholds assume it watches every session. Regime analysis applies the same test per
    (component, regime) cell, Bonferroni-corrected across the cells tested.

    Stability decay: `stale_decays` are the change documents of the decay the trade learner applied at the week's
    close (multipliers with no evidence in their scope for `idle_sessions` sessions, drawn back toward 1 with the
    half-life from their last evidence), listed as it made them; `last_evidence_session` defaults to the sessions
    of each cell's last evidence in `longrun`. Ticker profiles: outcomes, win rate, mean
    P&L and the components with the best and worst attributed P&L per symbol. `longrun` must be kept through
    `current_session`, its earlier samples through current_session - recent_sessions (ValueError otherwise).
    """
    if longrun.earlier_through != current_session - recent_sessions:
        raise ValueError(
            f"long-run figures split at session {longrun.earlier_through}, the report at "
            f"{current_session - recent_sessions}"
        )
    evidence = dict(last_evidence_session) if last_evidence_session is not None else longrun.last_evidence()
    per_strategy: dict[str, Any] = {}
    for strategy in sorted(longrun.strategies):
        figures = longrun.strategies[strategy]
        recent = longrun.recent_cells(strategy)
        earlier = longrun.earlier_cells(strategy)
        snapshot = (model_snapshot or {}).get(strategy)
        per_strategy[strategy] = {
            "summary": {
                "trades": figures.trades,
                "recent_trades": longrun.recent_count(strategy),
                "first_session": figures.first_session,
                "last_session": figures.last_session,
            },
            "drift": _drift(recent, earlier, snapshot, alpha, min_group_trades),
            "regimes": _regime_analysis(recent, earlier, snapshot, alpha, min_group_trades),
            "tickers": _ticker_profiles(longrun, strategy),
            "standardized": standardized_components(snapshot),
        }
    return {
        "report": "weekly",
        "week": week,
        "current_session": current_session,
        "recent_sessions": recent_sessions,
        "attribution_method": ATTRIBUTION_METHOD,
        "outcome_rule": OUTCOME_RULE,
        "drift_test": {
            "method": DRIFT_METHOD,
            "description": (
                "two-sided Mann-Whitney U (normal approximation, tie and continuity corrected) of recent vs "
                "earlier attributed outcomes, Bonferroni-corrected across components (regime cells) tested"
            ),
            "alpha": alpha,
            "min_group_trades": min_group_trades,
        },
        "strategies": per_strategy,
        "stale_multipliers": {
            "idle_sessions": idle_sessions,
            "half_life_sessions": half_life_sessions,
            "rule": "m -> 1 + (m - 1) * 0.5 ** (sessions_idle / half_life_sessions), within the session's step cap",
            "applied": [_stale_decay_row(change, evidence, current_session) for change in stale_decays],
        },
    }


def _stale_decay_row(
    change: Mapping[str, Any], evidence: Mapping[tuple[str, str, str], int], current_session: int
) -> dict[str, Any]:
    last = evidence.get((change["strategy"], change["component"], change["regime"]))
    return {
        "strategy": change["strategy"],
        "component": change["component"],
        "regime": change["regime"],
        "last_evidence_session": last,
        "sessions_idle": None if last is None else current_session - last,
        "multiplier": _round(change["old"]),
        "decayed": _round(change["new"]),
    }


def standardized_components(snapshot: Mapping[str, Any] | None) -> dict[str, float]:
    """The components of one strategy's snapshot that the learner takes on a standardized scale (logged off the
    contribution scale, raw), with the factor their logged values are learned at."""
    return {
        name: float(view["scale_factor"])
        for name, view in sorted((snapshot or {}).items())
        if isinstance(view, Mapping) and view.get("standardized")
    }


def render_daily_markdown(report: Mapping[str, Any]) -> str:
    """A readable Markdown rendering of `daily_report`'s output: one section per strategy, tables throughout."""
    lines = [f"# Daily report {report['day']}", "", f"Attribution: {report['attribution_method']}.", ""]
    lines += [f"Outcomes: {report['outcome_rule']}.", ""]
    for strategy, body in report["strategies"].items():
        summary = body["summary"]
        lines += [f"## Strategy `{strategy}`", "", "### Summary", ""]
        lines += _table(
            ["outcomes", "wins", "losses", "win rate", "P&L %", "P&L USD", "unattributed P&L %"],
            [
                [
                    summary["trades"],
                    summary["wins"],
                    summary["losses"],
                    _pct(summary["win_rate"]),
                    _num(summary["pnl_pct"]),
                    _num(summary["pnl_usd"]),
                    _num(summary["unattributed_pnl_pct"]),
                ]
            ],
        )
        if summary["unknown_components"]:
            unknown = ", ".join(f"`{key}` x{count}" for key, count in summary["unknown_components"].items())
            lines += [f"Unknown component keys: {unknown}", ""]
        lines += ["### Components", ""]
        lines += _table(
            ["component", "outcomes", "win rate", "attributed P&L %", "multiplier change", "multiplier"],
            [
                [
                    f"`{name}`",
                    row["trades"],
                    _pct(row["win_rate"]),
                    _num(row["attributed_pnl_pct"]),
                    _change(row["multiplier_change"]),
                    _num(row.get("multiplier")),
                ]
                for name, row in body["components"].items()
            ],
        )
        lines += ["### Components by regime", ""]
        lines += _table(
            ["component", "regime", "outcomes", "win rate", "attributed P&L %", "multiplier change", "multiplier"],
            [
                [
                    f"`{name}`",
                    regime,
                    cell["trades"],
                    _pct(cell["win_rate"]),
                    _num(cell["attributed_pnl_pct"]),
                    _change(cell["multiplier_change"]),
                    _num(cell.get("multiplier")),
                ]
                for name, row in body["components"].items()
                for regime, cell in row["by_regime"].items()
            ],
        )
        lines += ["### Regimes", ""]
        lines += _table(
            ["regime", "outcomes", "win rate", "P&L %", "mean P&L %"],
            [
                [regime, row["trades"], _pct(row["win_rate"]), _num(row["pnl_pct"]), _num(row["mean_pnl_pct"])]
                for regime, row in body["regimes"].items()
            ],
        )
        lines += ["### Multiplier changes over the day", ""]
        lines += _table(
            ["model", "component", "scope", "start", "end", "change", "moves"],
            [
                [
                    model,
                    f"`{component}`",
                    scope,
                    _num(move["start"]),
                    _num(move["end"]),
                    _num(move["delta"]),
                    move["moves"],
                ]
                for model, by_component in body["multiplier_changes"].items()
                for component, by_scope in by_component.items()
                for scope, move in by_scope.items()
            ],
        )
        lines += ["### Exit reasons by outcome", ""]
        lines += _table(
            ["exit component", "exits", "wins", "losses", "win rate", "mean P&L %"],
            [
                [
                    f"`{name}`",
                    row["exits"],
                    row["wins"],
                    row["losses"],
                    _pct(row["win_rate"]),
                    _num(row["mean_pnl_pct"]),
                ]
                for name, row in body["exit_reasons"].items()
            ],
        )
    late = report["late"]
    lines += ["## Late trades", "", f"{late['count']} late outcome(s), arrived after their day's batch ran.", ""]
    lines += _table(
        ["closed (UTC)", "strategy", "symbol", "regime", "pnl %", "fraction", "key"],
        [
            [
                row["closed_utc"],
                row["strategy"],
                row["symbol"],
                row["regime"],
                _num(row["pnl_pct"]),
                _num(row["weight"]),
                f"`{row['key']}`",
            ]
            for row in late["trades"]
        ],
    )
    return "\n".join(lines).rstrip("\n") + "\n"


def render_bot_markdown(section: Mapping[str, Any]) -> str:
    """The daily report's section on what the unchanged bot applies, as of the day's close
    (exports.bot.bot_application's output): intended against applied, per component."""
    lines = [
        "",
        "## What the bot applies",
        "",
        f"The bot reads the weights of strategy `{section['strategy']}` (the file's top level) and its scorer applies "
        "the MIXED bucket to every trade, whatever the regime. learned: learnd's strategy-wide multiplier; MIXED: "
        "what learnd writes there, what it wants the bot to apply; applied: what the unchanged scorer multiplies the "
        "base weight by.",
        "",
    ]
    if not section["adaptive_weights"]:
        lines += ["The bot runs with DISABLE_ADAPTIVE_WEIGHTS: it ignores the file.", ""]
    rows = [
        [
            f"`{name}`",
            _num(row["learned"]),
            _num(row["mixed"]),
            _num(row["applied_multiplier"]),
            _num(row["applied_weight"]),
            where_it_differs(row, _num) or "-",
        ]
        for name, row in section["components"].items()
    ]
    lines += _table(["component", "learned", "MIXED", "applied", "applied weight", "where it differs"], rows)
    if section["regime_pairs"]:
        lines += [
            f"The scorer applies what learnd learned in {section['regime_pairs_applied_as_learned']} of "
            f"{section['regime_pairs']} component x regime pairs.",
            "",
        ]
    for other, row in section["other_strategies"].items():
        lines += [
            f"Strategy `{other}` is scored with `{row['scored_with']}`'s weights: "
            f"{len(row['components_differing'])} components differ from what learnd learned for it.",
            "",
        ]
    return "\n".join(lines)


def render_weekly_markdown(report: Mapping[str, Any]) -> str:
    """A readable Markdown rendering of `weekly_report`'s output: drift, regimes, decay candidates, tickers."""
    test = report["drift_test"]
    lines = [
        f"# Weekly report {report['week']}",
        "",
        f"Session {report['current_session']}; recent = last {report['recent_sessions']} sessions.",
        "",
        f"Drift test: {test['description']}; alpha {test['alpha']}, at least {test['min_group_trades']} outcomes "
        "per group.",
        "",
        f"Attribution: {report['attribution_method']}.",
        "",
    ]
    for strategy, body in report["strategies"].items():
        summary = body["summary"]
        lines += [
            f"## Strategy `{strategy}`",
            "",
            f"{summary['trades']} outcomes ({summary['recent_trades']} recent), sessions "
            f"{summary['first_session']}..{summary['last_session']}.",
            "",
            "### Drift: recent vs long-run attributed P&L",
            "",
        ]
        lines += _table(
            [
                "component",
                "long-run n",
                "long-run mean %",
                "long-run win",
                "recent n",
                "recent mean %",
                "recent win",
                "earlier mean %",
                "p (Bonferroni)",
                "drift",
                "multiplier",
            ],
            [
                [
                    f"`{name}`",
                    row["long_run"]["trades"],
                    _num(row["long_run"]["mean_attributed_pnl_pct"]),
                    _pct(row["long_run"]["win_rate"]),
                    row["recent"]["trades"],
                    _num(row["recent"]["mean_attributed_pnl_pct"]),
                    _pct(row["recent"]["win_rate"]),
                    _num(row["earlier"]["mean_attributed_pnl_pct"]),
                    _num(row["test"]["p_adjusted"] if row["test"] else None),
                    _drift_word(row),
                    _num(row.get("multiplier")),
                ]
                for name, row in body["drift"]["components"].items()
            ],
        )
        standardized = body.get("standardized") or {}
        if standardized:
            lines += [
                "Learned on a standardized scale (logged off the contribution scale, e.g. raw; attributed P&L "
                "above uses the logged values): "
                + ", ".join(f"`{name}` x {factor:.4g}" for name, factor in standardized.items())
                + ".",
                "",
            ]
        lines += ["### Regime analysis", ""]
        lines += _table(
            ["component", "works in (long-run)", "works in (recent)", "shifting in"],
            [
                [
                    f"`{name}`",
                    ", ".join(row["works_in"]) or "-",
                    ", ".join(row["recent_works_in"]) or "-",
                    ", ".join(row["shifting_in"]) or "-",
                ]
                for name, row in body["regimes"]["components"].items()
            ],
        )
        lines += _table(
            [
                "component",
                "regime",
                "long-run n",
                "long-run mean %",
                "long-run win",
                "recent n",
                "recent mean %",
                "recent win",
                "p (Bonferroni)",
                "shift",
            ],
            [
                [
                    f"`{name}`",
                    regime,
                    cell["long_run"]["trades"],
                    _num(cell["long_run"]["mean_attributed_pnl_pct"]),
                    _pct(cell["long_run"]["win_rate"]),
                    cell["recent"]["trades"],
                    _num(cell["recent"]["mean_attributed_pnl_pct"]),
                    _pct(cell["recent"]["win_rate"]),
                    _num(cell["test"]["p_adjusted"] if cell["test"] else None),
                    _drift_word(cell),
                ]
                for name, row in body["regimes"]["components"].items()
                for regime, cell in row["by_regime"].items()
            ],
        )
        lines += ["### Ticker profiles", ""]
        lines += _table(
            ["symbol", "outcomes", "win rate", "mean P&L %", "P&L %", "best components", "worst components"],
            [
                [
                    symbol,
                    row["trades"],
                    _pct(row["win_rate"]),
                    _num(row["mean_pnl_pct"]),
                    _num(row["pnl_pct"]),
                    _components_text(row["best_components"]),
                    _components_text(row["worst_components"]),
                ]
                for symbol, row in body["tickers"].items()
            ],
        )
    stale = report["stale_multipliers"]
    lines += [
        "## Stability decay",
        "",
        f"Applied by the learner at the week's close to multipliers with no fresh evidence for "
        f"{stale['idle_sessions']}+ sessions: {stale['rule']} (half-life {stale['half_life_sessions']} sessions).",
        "",
    ]
    lines += _table(
        ["strategy", "component", "scope", "last evidence", "sessions idle", "multiplier", "decayed"],
        [
            [
                row["strategy"],
                f"`{row['component']}`",
                row["regime"],
                row["last_evidence_session"],
                row["sessions_idle"],
                _num(row["multiplier"]),
                _num(row["decayed"]),
            ]
            for row in stale["applied"]
        ],
    )
    return "\n".join(lines).rstrip("\n") + "\n"


def _trade_summary(trades: Sequence[TradeOutcome]) -> dict[str, Any]:
    weighted = [trade.pnl_pct * trade.weight for trade in trades]
    unknown: dict[str, int] = {}
    for trade in trades:
        for key in trade.unknown_components:
            unknown[key] = unknown.get(key, 0) + 1
    view = Tally.of([trade.pnl_pct for trade in trades], weighted).view("pnl_pct")
    view["partials"] = sum(1 for trade in trades if trade.is_partial)
    view["pnl_usd"] = _round(math.fsum([trade.pnl_usd for trade in trades]))
    view["unattributed_pnl_pct"] = _round(
        math.fsum([value for trade, value in zip(trades, weighted, strict=True) if not is_attributed(trade)])
    )
    view["unknown_components"] = dict(sorted(unknown.items()))
    return view


def _daily_components(
    cells: Mapping[Cell, OutcomeRun],
    entry_moves: Mapping[str, Mapping[str, dict[str, Any]]],
    snapshot: Mapping[str, Any] | None,
) -> dict[str, Any]:
    overall: dict[str, OutcomeRun] = {}
    by_regime: dict[str, dict[str, OutcomeRun]] = {}
    for cell, outcomes in cells.items():
        if isinstance(cell, str):
            overall[cell] = outcomes
        else:
            by_regime.setdefault(cell[0], {})[cell[1]] = outcomes
    result: dict[str, Any] = {}
    for name in sorted(set(overall) | set(entry_moves)):
        moves = entry_moves.get(name, {})
        found = overall.get(name)
        view = (found.tally() if found is not None else Tally()).view()
        view["multiplier_change"] = moves.get(GLOBAL_SCOPE)
        regimes: dict[str, Any] = {}
        for regime, outcomes in sorted(by_regime.get(name, {}).items()):
            cell_view = outcomes.tally().view()
            cell_view["multiplier_change"] = moves.get(regime_scope(regime))
            regimes[regime] = cell_view
        view["by_regime"] = regimes
        if snapshot is not None:
            _add_multipliers(view, snapshot.get(name))
        result[name] = view
    return result


def _add_multipliers(view: dict[str, Any], entry: Mapping[str, Any] | None) -> None:
    """Current multipliers from a snapshot entry, strategy-wide and per regime shown (a regime never seen has
    none)."""
    if entry is None:
        view["multiplier"] = None
        return
    view["multiplier"] = _round_opt(entry.get("multiplier"))
    scoped = entry.get("by_regime") or {}
    for regime, cell in view["by_regime"].items():
        found = scoped.get(regime_scope(regime))
        cell["multiplier"] = _round_opt(found.get("multiplier")) if found else None


def _regime_totals(trades: Sequence[TradeOutcome]) -> dict[str, Any]:
    outcomes: dict[str, tuple[list[float], list[float]]] = {}
    for trade in trades:
        pnls, weighted = outcomes.setdefault(trade.regime, ([], []))
        pnls.append(trade.pnl_pct)
        weighted.append(trade.pnl_pct * trade.weight)
    return {regime: Tally.of(pnls, weighted).view("pnl_pct") for regime, (pnls, weighted) in sorted(outcomes.items())}


def _multiplier_moves(changes: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{model: {component: {scope: {start, end, delta, moves}}}}: first `old` to last `new` in event order."""
    ordered = sorted(enumerate(changes), key=lambda pair: (int(pair[1]["event_us"]), pair[0]))
    spans: dict[tuple[str, str, str], list[Any]] = {}
    for _, change in ordered:
        key = (str(change["model"]), str(change["component"]), str(change["regime"]))
        span = spans.get(key)
        if span is None:
            spans[key] = [float(change["old"]), float(change["new"]), 1]
        else:
            span[1] = float(change["new"])
            span[2] += 1
    result: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for (model, component, scope), (start, end, moves) in sorted(spans.items()):
        result.setdefault(model, {}).setdefault(component, {})[scope] = {
            "start": _round(start),
            "end": _round(end),
            "delta": _round(end - start),
            "moves": moves,
        }
    return result


def _exit_reasons(exits: Sequence[ExitOutcome]) -> dict[str, Any]:
    """Per exit component: each exit naming it is one outcome (OUTCOME_RULE), its P&L the share of the position it
    closed (a scale-out's P&L times its fraction, as the trade summary and the exit model take it)."""
    pnls: dict[str, tuple[list[float], list[float]]] = {}
    for exit_ in exits:
        for name in exit_.exit_components or (NO_EXIT_COMPONENT,):
            signs, shares = pnls.setdefault(name, ([], []))
            signs.append(exit_.pnl_pct)
            shares.append(exit_.pnl_pct * exit_.weight)
    result: dict[str, Any] = {}
    for name, (signs, shares) in sorted(pnls.items()):
        tally = Tally.of(signs, shares)
        total = tally.total.value
        result[name] = {
            "exits": tally.trades,
            "wins": tally.wins,
            "losses": tally.losses,
            "win_rate": _ratio(tally.wins, tally.trades),
            "mean_pnl_pct": _ratio(total, tally.trades),
        }
    return result


def _trade_row(trade: TradeOutcome) -> dict[str, Any]:
    return {
        "key": trade.key,
        "strategy": trade.strategy,
        "symbol": trade.symbol,
        "regime": trade.regime,
        "event_us": trade.event_us,
        "closed_utc": datetime.fromtimestamp(trade.event_us / 1_000_000, tz=UTC).isoformat(timespec="seconds"),
        "pnl_pct": _round(trade.pnl_pct),
        "weight": _round(trade.weight),
    }


def _group_view(recent: CellOutcomes | None, earlier: EarlierCell | None) -> dict[str, Any]:
    """long_run / recent / earlier tallies of a cell."""
    recent_tally = recent.tally if recent is not None else Tally()
    earlier_tally = earlier.tally if earlier is not None else Tally()
    return {
        "long_run": earlier_tally.merged(recent_tally).view(),
        "recent": recent_tally.view(),
        "earlier": earlier_tally.view(),
    }


def _tested(
    cells: Mapping[_Cell, tuple[CellOutcomes | None, EarlierCell | None]], alpha: float, min_group_trades: int
) -> dict[_Cell, dict[str, Any]]:
    """Views of each cell with its Mann-Whitney test (recent vs earlier), Bonferroni over the cells tested."""
    tests: dict[_Cell, MannWhitneyResult] = {}
    for name, (recent, earlier) in cells.items():
        if (
            recent is not None
            and earlier is not None
            and recent.tally.trades >= min_group_trades
            and earlier.tally.trades >= min_group_trades
        ):
            tests[name] = mann_whitney_sorted(recent.values(), earlier.sorted_sample())
    family = len(tests)
    views: dict[_Cell, dict[str, Any]] = {}
    for name in sorted(cells):
        recent, earlier = cells[name]
        if recent is None and earlier is not None:
            if earlier.view_alone is None:
                earlier.view_alone = _group_view(None, earlier)
            view = dict(earlier.view_alone)
        else:
            view = _group_view(recent, earlier)
        result = tests.get(name)
        if result is None:
            view["test"] = None
            view["is_drift"] = False
            view["direction"] = None
        else:
            adjusted = min(1.0, result.p_value * family)
            is_drift = adjusted < alpha
            view["test"] = {
                "u": _round(result.u),
                "z": _round(result.z),
                "p_value": _round_p(result.p_value),
                "p_adjusted": _round_p(adjusted),
                "superiority": _round(result.superiority),
                "family_size": family,
            }
            view["is_drift"] = is_drift
            view["direction"] = ("worse" if result.z < 0.0 else "better") if is_drift else None
        views[name] = view
    return views


def _cells(
    recent: Mapping[Cell, CellOutcomes], earlier: Mapping[Cell, EarlierCell], *, by_regime: bool
) -> dict[Any, tuple[CellOutcomes | None, EarlierCell | None]]:
    """Each cell (component, or (component, regime)) with its recent outcomes and its earlier ones."""
    names = {cell for cell in (*earlier, *recent) if isinstance(cell, tuple) == by_regime}
    return {cell: (recent.get(cell), earlier.get(cell)) for cell in names}


def _drift(
    recent: Mapping[Cell, CellOutcomes],
    earlier: Mapping[Cell, EarlierCell],
    snapshot: Mapping[str, Any] | None,
    alpha: float,
    min_group_trades: int,
) -> dict[str, Any]:
    views = _tested(_cells(recent, earlier, by_regime=False), alpha, min_group_trades)
    if snapshot is not None:
        for name, view in views.items():
            entry = snapshot.get(name)
            view["multiplier"] = _round_opt(entry.get("multiplier")) if entry else None
    return {
        "components": views,
        "flagged": [name for name, view in views.items() if view["is_drift"]],
    }


def _regime_analysis(
    recent: Mapping[Cell, CellOutcomes],
    earlier: Mapping[Cell, EarlierCell],
    snapshot: Mapping[str, Any] | None,
    alpha: float,
    min_group_trades: int,
) -> dict[str, Any]:
    views = _tested(_cells(recent, earlier, by_regime=True), alpha, min_group_trades)
    components: dict[str, Any] = {}
    for (name, regime), view in views.items():
        if snapshot is not None:
            entry = snapshot.get(name) or {}
            found = (entry.get("by_regime") or {}).get(regime_scope(regime))
            view["multiplier"] = _round_opt(found.get("multiplier")) if found else None
        components.setdefault(name, {})[regime] = view
    result: dict[str, Any] = {}
    for name in sorted(components):
        by_regime = components[name]
        result[name] = {
            "works_in": _works_in(by_regime, "long_run", min_group_trades),
            "recent_works_in": _works_in(by_regime, "recent", min_group_trades),
            "shifting_in": sorted(regime for regime, view in by_regime.items() if view["is_drift"]),
            "by_regime": by_regime,
        }
    return {
        "components": result,
        "flagged": [
            {"component": name, "regime": regime, "direction": row["by_regime"][regime]["direction"]}
            for name, row in result.items()
            for regime in row["shifting_in"]
        ],
    }


def _works_in(by_regime: Mapping[str, Mapping[str, Any]], group: str, min_trades: int) -> list[str]:
    """Regimes where the component's mean attributed P&L is positive on `min_trades` outcomes or more, best first."""
    good = [
        (view[group]["mean_attributed_pnl_pct"], regime)
        for regime, view in by_regime.items()
        if view[group]["trades"] >= min_trades and (view[group]["mean_attributed_pnl_pct"] or 0.0) > 0.0
    ]
    return [regime for _, regime in sorted(good, key=lambda pair: (-pair[0], pair[1]))]


def _ticker_profiles(longrun: LongRun, strategy: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for symbol in sorted(symbol for owner, symbol in longrun.symbols if owner == strategy):
        kept = longrun.ticker_views.get((strategy, symbol))
        if kept is not None:
            result[symbol] = kept
            continue
        figures = longrun.symbols[strategy, symbol]
        view = figures.profile.view("pnl_pct")
        ranked = sorted(
            ((tally.total.value, name, tally.trades) for name, tally in figures.shares.items()),
            key=lambda row: (-row[0], row[1]),
        )
        view["best_components"] = [_ranked(row) for row in ranked if row[0] > 0.0][:_PROFILE_COMPONENTS]
        view["worst_components"] = [_ranked(row) for row in reversed(ranked) if row[0] < 0.0][:_PROFILE_COMPONENTS]
        view["last_event_us"] = figures.last_event_us
        result[symbol] = longrun.ticker_views[strategy, symbol] = view
    return result


def _ranked(row: tuple[float, str, int]) -> dict[str, Any]:
    return {"component": row[1], "attributed_pnl_pct": _round(row[0]), "trades": row[2]}


def _round(value: float) -> float:
    # Adding 0.0 turns -0.0 into 0.0, so a zero prints one way whatever its history.
    return round(value, _DIGITS) + 0.0


def _round_opt(value: object) -> float | None:
    return _round(float(value)) if isinstance(value, int | float) else None


def _round_p(value: float) -> float:
    """p-values keep significant digits (tiny ones matter for the reader), not decimal places."""
    return float(f"{value:.6g}") + 0.0


def _ratio(numerator: float, denominator: float) -> float | None:
    return _round(numerator / denominator) if denominator else None


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        cells = ["-" if value is None else str(value) for value in row]
        line = " | ".join(cells)
        # Joined as they are unless a cell holds a `|` or a newline (rare: most rows are numbers and names).
        if "\n" in line or line.count("|") != len(cells) - 1:
            line = " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells)
        lines.append(f"| {line} |")
    return [*lines, ""]


def _num(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if value != 0.0 and abs(value) < 1e-3 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _pct(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, float) else "-"


def _change(move: Mapping[str, Any] | None) -> str:
    if move is None:
        return "-"
    return f"{_num(move['start'])} -> {_num(move['end'])} ({move['delta']:+.4f})"


def _drift_word(view: Mapping[str, Any]) -> str:
    if view["test"] is None:
        return "too few"
    return f"**{view['direction']}**" if view["is_drift"] else "stable"


def _components_text(rows: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"`{row['component']}` {_num(row['attributed_pnl_pct'])}" for row in rows) or "-"
