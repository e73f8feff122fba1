"""Prequential evaluation: score each closed trade with the model learned so far, then learn from it.

Pure: takes records and a model factory, returns a frozen Evaluation; no IO, no clock.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from learnd.learning.multipliers import MultiplierChange
from learnd.learning.stats import CONFIDENCE, ArrayLike, FloatArray, spearman, spearman_difference_interval
from learnd.records.parse import TradeOutcome

TOP_SHARE: Final = 0.2
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class ScoringModel(Protocol):
    """What evaluation needs of a model (learnd.entry_model.EntryModel has it)."""

    def learn(self, trade: TradeOutcome, session: int) -> Sequence[MultiplierChange]:
        """Fold one outcome in; the multiplier changes it caused."""
        ...

    def settle_session(self, session: int, event_us: int) -> Sequence[MultiplierChange]:
        """Close trading session `session` (its daily update); the multiplier changes it caused."""
        ...

    def score(self, trade: TradeOutcome) -> float:
        """The trade's score under the multipliers learned so far."""
        ...


@dataclass(frozen=True, slots=True)
class GroupEvaluation:
    """Learned against static scores on one slice of the scored trades (all, one regime, month or strategy).

    The static score is the bot's own `entry_score` where the row carries it (the score the bot ranks by), else the
    sum of the logged contributions; `ic_sum` is the sum's IC on every trade, the other static baseline (they
    differ where the bot logs a component raw, off the contribution scale). `interval` is the 95 % day-block
    bootstrap interval of `ic_difference` (learned minus static Spearman IC), None when the slice spans fewer than
    two trading days.
    """

    label: str
    trades: int
    days: int
    ic_learned: float
    ic_static: float
    ic_sum: float
    ic_difference: float
    interval: tuple[float, float] | None
    hit_rate_learned: float
    hit_rate_static: float
    win_rate: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able plain data, keys sorted."""
        return {
            "days": self.days,
            "hit_rate_learned": self.hit_rate_learned,
            "hit_rate_static": self.hit_rate_static,
            "ic_difference": self.ic_difference,
            "ic_learned": self.ic_learned,
            "ic_static": self.ic_static,
            "ic_sum": self.ic_sum,
            "interval": list(self.interval) if self.interval is not None else None,
            "trades": self.trades,
            "win_rate": self.win_rate,
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Result of a prequential run: IC and top-quintile hit rates, learned vs static, and multiplier turnover."""

    overall: GroupEvaluation
    by_regime: tuple[GroupEvaluation, ...]
    by_month: tuple[GroupEvaluation, ...]
    by_strategy: tuple[GroupEvaluation, ...]
    scored_trades: int
    entry_score_trades: int
    learned_outcomes: int
    partial_outcomes: int
    duplicate_outcomes: int
    sessions: int
    turnover_per_session: float
    turnover_total: float
    change_count: int
    bootstrap_samples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able plain data with sorted keys (slices keyed by their label)."""
        return {
            "bootstrap_samples": self.bootstrap_samples,
            "by_month": {group.label: group.to_dict() for group in self.by_month},
            "by_regime": {group.label: group.to_dict() for group in self.by_regime},
            "by_strategy": {group.label: group.to_dict() for group in self.by_strategy},
            "change_count": self.change_count,
            "confidence_level": CONFIDENCE,
            "duplicate_outcomes": self.duplicate_outcomes,
            "entry_score_trades": self.entry_score_trades,
            "learned_outcomes": self.learned_outcomes,
            "overall": self.overall.to_dict(),
            "partial_outcomes": self.partial_outcomes,
            "scored_trades": self.scored_trades,
            "seed": self.seed,
            "sessions": self.sessions,
            "top_share": TOP_SHARE,
            "turnover_per_session": self.turnover_per_session,
            "turnover_total": self.turnover_total,
        }

    def render_text(self) -> str:
        """A readable table: one row per slice, then the turnover line."""
        header = (
            f"prequential evaluation: {self.scored_trades} closed trades scored, {self.partial_outcomes} partial "
            f"outcomes learned only, {self.duplicate_outcomes} repeated outcomes skipped, {self.sessions} sessions; "
            f"{self.bootstrap_samples} day-block bootstrap "
            f"samples (seed {self.seed})"
        )
        baseline = (
            f"static = the bot's entry_score on {self.entry_score_trades} of {self.scored_trades} trades, the sum of "
            "the logged components on the rest; IC sum = the sum of the components on every trade"
        )
        columns = (
            f"{'slice':<32} {'trades':>6} {'days':>5} {'IC learned':>10} {'IC static':>9} {'IC sum':>7} "
            f"{'diff':>8}  {'95% interval':<19} {'top20% win learned/static':>25}"
        )
        lines = [header, baseline, "", columns, "-" * len(columns)]
        sections = (
            ("", (self.overall,)),
            ("strategy ", self.by_strategy),
            ("regime ", self.by_regime),
            ("month ", self.by_month),
        )
        for prefix, groups in sections:
            lines.extend(_render_row(prefix + group.label, group) for group in groups)
        lines.append("")
        lines.append(
            f"multiplier turnover: {self.turnover_per_session:.4f} per session "
            f"(total {self.turnover_total:.4f} over {self.sessions} sessions, {self.change_count} changes)"
        )
        return "\n".join(lines) + "\n"


def evaluate(
    trades: Sequence[TradeOutcome],
    session_of: Callable[[int], int],
    model_factory: Callable[[], ScoringModel],
    *,
    bootstrap_samples: int = 1000,
    seed: int = 0,
    session_day: Callable[[int], date] | None = None,
) -> Evaluation:
    """Test-then-train over `trades` in event order: each closed trade is scored, then learned from.

    The learned score is the model's before it has seen the trade; the static score is the bot's `entry_score`
    where the row carries it, else the base-weight score (the sum of the logged contributions), which is also
    reported on its own (`ic_sum`). Partial closes are learned from but not scored; an outcome whose key was
    already seen (the bot repeating a row) is skipped. A session closes in the model (its daily update) when the
    first trade of a later one comes, as in the trade learner. `session_of` maps event microseconds to a
    trading-session index (the day blocks of the bootstrap); `session_day`, a session index to its day, puts each
    trade in its session's month (an after-hours close on a month's last day is that month's); without it, the
    month of the trade's UTC date.
    """
    if bootstrap_samples < 1:
        raise ValueError(f"bootstrap_samples must be >= 1, got {bootstrap_samples}")
    model = model_factory()
    ordered = sorted(trades, key=lambda trade: (trade.event_us, trade.key))
    learned: list[float] = []
    static: list[float] = []
    summed: list[float] = []
    pnl: list[float] = []
    days: list[int] = []
    scored: list[TradeOutcome] = []
    turnover: dict[int, float] = {}
    change_count = 0
    seen: set[str] = set()
    open_session: int | None = None
    entry_scores = 0
    for trade in ordered:
        if trade.key in seen:
            continue
        seen.add(trade.key)
        session = session_of(trade.event_us)
        if open_session is not None and session > open_session:
            settled = model.settle_session(open_session, trade.event_us)
            change_count += len(settled)
            turnover[open_session] = turnover.get(open_session, 0.0) + math.fsum(abs(c.new - c.old) for c in settled)
        open_session = session if open_session is None else max(open_session, session)
        if not trade.is_partial:
            learned.append(model.score(trade))
            total = math.fsum(contribution for _, contribution in trade.components)
            summed.append(total)
            static.append(total if trade.entry_score is None else trade.entry_score)
            entry_scores += trade.entry_score is not None
            pnl.append(trade.pnl_pct)
            days.append(session)
            scored.append(trade)
        changes = model.learn(trade, session)
        change_count += len(changes)
        turnover[session] = turnover.get(session, 0.0) + math.fsum(abs(c.new - c.old) for c in changes)

    columns = _Columns(
        learned=np.asarray(learned, dtype=np.float64),
        static=np.asarray(static, dtype=np.float64),
        summed=np.asarray(summed, dtype=np.float64),
        pnl=np.asarray(pnl, dtype=np.float64),
        days=np.asarray(days, dtype=np.int64),
    )
    if session_day is not None:
        months = [f"{day.year:04d}-{day.month:02d}" for day in map(session_day, days)]
    else:
        months = [_utc_month(trade.event_us) for trade in scored]
    slices = {
        "regime": [trade.regime for trade in scored],
        "month": months,
        "strategy": [trade.strategy for trade in scored],
    }

    def by(kind: str) -> tuple[GroupEvaluation, ...]:
        labels = np.asarray(slices[kind], dtype=object)
        return tuple(
            _evaluate_group(
                value, columns, labels == value, samples=bootstrap_samples, seed=_group_seed(seed, f"{kind}:{value}")
            )
            for value in sorted(set(slices[kind]))
        )

    turnover_total = math.fsum(turnover.values())
    return Evaluation(
        overall=_evaluate_group("overall", columns, None, samples=bootstrap_samples, seed=_group_seed(seed, "overall")),
        by_regime=by("regime"),
        by_month=by("month"),
        by_strategy=by("strategy"),
        scored_trades=len(scored),
        entry_score_trades=entry_scores,
        learned_outcomes=len(seen),
        partial_outcomes=len(seen) - len(scored),
        duplicate_outcomes=len(ordered) - len(seen),
        sessions=len(turnover),
        turnover_per_session=turnover_total / len(turnover) if turnover else 0.0,
        turnover_total=turnover_total,
        change_count=change_count,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
    )


def top_hit_rate(scores: ArrayLike, pnl: ArrayLike, share: float = TOP_SHARE) -> float:
    """Win rate (pnl > 0) of the `share` highest-scored trades (at least one; ties broken by position)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return 0.0
    count = max(1, math.ceil(share * values.size))
    top = np.argsort(-values, kind="stable")[:count]
    return float(np.mean(np.asarray(pnl, dtype=np.float64)[top] > 0.0))


@dataclass(frozen=True, slots=True)
class _Columns:
    learned: FloatArray
    static: FloatArray
    summed: FloatArray
    pnl: FloatArray
    days: npt.NDArray[np.int64]


def _evaluate_group(
    label: str, columns: _Columns, mask: npt.NDArray[np.bool_] | None, *, samples: int, seed: int
) -> GroupEvaluation:
    learned, static, summed = columns.learned, columns.static, columns.summed
    pnl, days = columns.pnl, columns.days
    if mask is not None:
        learned, static, summed, pnl, days = learned[mask], static[mask], summed[mask], pnl[mask], days[mask]
    ic_learned = spearman(learned, pnl)
    ic_static = spearman(static, pnl)
    return GroupEvaluation(
        label=label,
        trades=int(pnl.size),
        days=int(np.unique(days).size),
        ic_learned=ic_learned,
        ic_static=ic_static,
        ic_sum=spearman(summed, pnl),
        ic_difference=ic_learned - ic_static,
        interval=spearman_difference_interval(learned, static, pnl, days, samples=samples, seed=seed),
        hit_rate_learned=top_hit_rate(learned, pnl),
        hit_rate_static=top_hit_rate(static, pnl),
        win_rate=float(np.mean(pnl > 0.0)) if pnl.size else 0.0,
    )


def _group_seed(seed: int, label: str) -> int:
    # Each slice draws from its own stream, so adding a slice (a new month) leaves the others' intervals alone.
    return zlib.crc32(f"{seed}:{label}".encode())


def _utc_month(event_us: int) -> str:
    moment = _EPOCH + timedelta(microseconds=event_us)
    return f"{moment.year:04d}-{moment.month:02d}"


def _render_row(label: str, group: GroupEvaluation) -> str:
    interval = f"[{group.interval[0]:+.4f}, {group.interval[1]:+.4f}]" if group.interval is not None else "n/a"
    hits = f"{group.hit_rate_learned:.3f} / {group.hit_rate_static:.3f}"
    return (
        f"{label:<32} {group.trades:>6} {group.days:>5} {group.ic_learned:>10.4f} {group.ic_static:>9.4f} "
        f"{group.ic_sum:>7.4f} {group.ic_difference:>+8.4f}  {interval:<19} {hits:>25}"
    )
