"""`learnd weights`: the learned model as last committed, strategy-wide and per regime, with its evidence, and
what the unchanged bot applies of it (intended against applied).

Read-only: the trade learner's committed state, read through the store's read-only opener.
"""

from __future__ import annotations

from typing import Any

from learnd.config import Settings
from learnd.errors import StateError, UsageError
from learnd.exports.bot import BotRules, bot_application, render_bot_application
from learnd.learning.learner import LearnedModel
from learnd.learning.trades import NAME, TradeLearner, iso_from_us
from learnd.sessions.tables import calendar_for
from learnd.store.database import reading


def load_model(settings: Settings) -> LearnedModel:
    """The model the trade learner last committed (an empty one when nothing was learned yet); StateError when an
    older learnd wrote it and it has not been relearned yet."""
    with reading(settings.db_path, settings.lock_path) as store:
        state = store.learner_state(NAME) if store is not None else None
    learner = TradeLearner(settings.learning, calendar_for(settings), state)
    if learner.is_relearning:
        raise StateError(
            "the entry model was written by an older learnd; it is relearned from the ledger at the next commit "
            "(start the daemon or run `learnd backfill`)"
        )
    return learner.model()


def weights_document(settings: Settings, strategy: str | None, regime: str | None) -> dict[str, Any]:
    """`learnd weights --json`: the canonical model view, with what the unchanged bot applies (`bot`). A strategy or
    regime asked for that nothing was learned of is a UsageError naming those that were (an empty table read as
    'nothing learned', and a typo went unnoticed)."""
    model = load_model(settings)
    strategies = sorted(set(model.entry) | set(model.exits))
    if strategy is not None and strategy not in strategies:
        raise UsageError(f"--strategy {strategy!r}: nothing learned of it (learned: {_listed(strategies)})")
    regimes = sorted({name for views in model.entry.values() for view in views.values() for name in view["by_regime"]})
    if regime is not None and regime.casefold() not in regimes:
        raise UsageError(f"--regime {regime!r}: nothing learned in it (learned: {_listed(regimes)})")
    return weights_view(model, strategy, regime, rules=BotRules.from_settings(settings.bot))


def _listed(names: list[str]) -> str:
    return ", ".join(names) or "nothing yet"


def weights_view(
    model: LearnedModel, strategy: str | None = None, regime: str | None = None, *, rules: BotRules | None = None
) -> dict[str, Any]:
    """The canonical model view behind `learnd weights --json`: sorted, no wall-clock fields. With the bot's
    `rules`, `bot` says per component what learnd learned, what it writes in the MIXED bucket (what it wants the
    bot to apply) and what the unchanged bot's scorer applies (exports.bot.bot_application)."""
    strategies: dict[str, Any] = {}
    for name in sorted(set(model.entry) | set(model.exits)):
        if strategy is not None and name != strategy:
            continue
        components = model.entry.get(name, {})
        if regime is not None:
            folded = regime.casefold()
            components = {
                component: {**view, "by_regime": {k: v for k, v in view["by_regime"].items() if k == folded}}
                for component, view in components.items()
            }
        strategies[name] = {"entry": components, "exit": model.exits.get(name, {})}
    document: dict[str, Any] = {
        "trades_learned": model.trades_learned,
        "partials_learned": model.partials_learned,
        "exits_learned": model.exits_learned,
        "last_trade_event_ts": iso_from_us(model.last_trade_us) if model.last_trade_us >= 0 else None,
        "strategies": strategies,
    }
    if rules is not None:
        document["bot"] = bot_application(model.entry, rules, model.exits)
    return document


def render_weights(document: dict[str, Any]) -> str:
    """A readable table per strategy: entry multipliers (strategy-wide and per regime), then exit multipliers."""
    lines = [
        f"trades learned {document['trades_learned']}  partial closes {document['partials_learned']}  "
        f"exit outcomes {document['exits_learned']}  last trade {document['last_trade_event_ts']}",
    ]
    for strategy, view in document["strategies"].items():
        entry = view["entry"]
        regimes = sorted({regime for component in entry.values() for regime in component["by_regime"]})
        lines += ["", f"strategy {strategy}: entry multipliers (z = evidence vs the average component)"]
        lines.append(
            f"  {'component':<20} {'mult':>6} {'z':>6} {'samples':>8}  " + " ".join(f"{r[:12]:>12}" for r in regimes)
        )
        for component, data in entry.items():
            cells = " ".join(
                f"{data['by_regime'][r]['multiplier']:>12.3f}" if r in data["by_regime"] else f"{'-':>12}"
                for r in regimes
            )
            z = data.get("z")
            z_text = f"{z:>6.2f}" if isinstance(z, float) else f"{'-':>6}"
            label = f"{component}*" if data.get("standardized") else component
            lines.append(f"  {label:<20} {data['multiplier']:>6.3f} {z_text} {data['samples']:>8.1f}  {cells}")
        standardized = [(name, data["scale_factor"]) for name, data in entry.items() if data.get("standardized")]
        if standardized:
            lines.append(
                "  * learned on a standardized scale (logged off the contribution scale): "
                + ", ".join(f"{name} x {factor:.4g}" for name, factor in standardized)
            )
        lines += ["", f"strategy {strategy}: exit multipliers"]
        lines.append(f"  {'exit component':<20} {'mult':>6} {'count':>6} {'win rate':>9} {'mean pnl %':>10}")
        for component, data in view["exit"].items():
            win = data.get("win_rate")
            mean = data.get("mean_pnl_pct")
            lines.append(
                f"  {component:<20} {data['multiplier']:>6.3f} {data['count']:>6} "
                f"{(f'{win:.3f}' if win is not None else '-'):>9} {(f'{mean:+.3f}' if mean is not None else '-'):>10}"
            )
    text = "\n".join(lines) + "\n"
    if "bot" in document:
        text += "\n" + render_bot_application(document["bot"])
    return text
