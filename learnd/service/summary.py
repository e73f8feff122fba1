"""What was learned, in short, for an operator's first minutes: after the daemon's catch-up, per strategy the
components whose multipliers moved most (with their evidence and samples) and the trades behind them. Logged as one
event, or printed readably on a terminal.
"""

from __future__ import annotations

from typing import Any, Final

from learnd.learning.learner import LearnedModel
from learnd.learning.trades import iso_from_us

SHOWN_COMPONENTS: Final = 5


def learned_summary(model: LearnedModel, count: int = SHOWN_COMPONENTS) -> dict[str, Any]:
    """The `count` entry components that moved furthest from 1 per strategy (strategy-wide multiplier, z, samples),
    and the outcomes learned."""
    strategies: dict[str, list[dict[str, Any]]] = {}
    for strategy in sorted(model.entry):
        components = model.entry[strategy]
        moved = sorted(
            (name for name, view in components.items() if view["multiplier"] != 1.0),
            key=lambda name: (-abs(components[name]["multiplier"] - 1.0), name),
        )
        strategies[strategy] = [
            {
                "component": name,
                "multiplier": round(components[name]["multiplier"], 4),
                "z": round(components[name]["z"], 2),
                "samples": round(components[name]["samples"], 1),
            }
            for name in moved[:count]
        ]
    return {
        "trades_learned": model.trades_learned,
        "partials_learned": model.partials_learned,
        "last_trade_event_ts": iso_from_us(model.last_trade_us) if model.last_trade_us >= 0 else None,
        "strategies": strategies,
    }


def render_learned_summary(summary: dict[str, Any]) -> str:
    """learned_summary() as a few lines for a terminal."""
    if not summary["trades_learned"]:
        return "learned: no closed trade yet; multipliers stay at 1 until trades arrive\n"
    lines = [
        f"learned from {summary['trades_learned']} closed trades and {summary['partials_learned']} partial closes "
        f"(last trade {summary['last_trade_event_ts']})"
    ]
    for strategy, moved in summary["strategies"].items():
        if not moved:
            lines.append(f"  strategy {strategy}: no multiplier has moved yet (evidence below the gates)")
            continue
        lines.append(f"  strategy {strategy}: moved most (multiplier, evidence z, samples)")
        lines.extend(
            f"    {row['component']:<20} {row['multiplier']:>6.3f}  z {row['z']:>+5.2f}  {row['samples']:>7.1f} samples"
            for row in moved
        )
    lines.append("  `learnd weights` shows every component, and what the unchanged bot applies")
    return "\n".join(lines) + "\n"
