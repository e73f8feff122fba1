"""Prequential evaluation: score each closed trade with the model learned so far, then learn from it.

Pure: takes records and a model factory, returns a frozen Evaluation; no IO, no clock.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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

    def score(self, trade: TradeOutcome) -> float:
        """The trade's score under the multipliers learned so far."""
        ...


@dataclass(frozen=True, slots=True)
class GroupEvaluation:
    """Learned against static scores on one slice of the scored trades (all, one regime, month or strategy).

    `interval` is the 95 % day-block bootstrap interval of `ic_difference` (learned minus static Spearman IC),
    None when the slice spans fewer than two trading days.
    """

    label: str
    trades: int
    days: int
    ic_learned: float
    ic_static: float
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
        columns = (
            f"{'slice':<32} {'trades':>6} {'days':>5} {'IC learned':>10} {'IC static':>9} {'diff':>8}  "
            f"{'95% interval':<19} {'top20% win learned/static':>25}"
        )
        lines = [header, "", columns, "-" * len(columns)]
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
) -> Evaluation:
    """Test-then-train over `trades` in event order: each closed trade is scored, then learned from.

    The learned score is the model's before it has seen the trade; the static score is the base-weight entry
    score (the sum of the logged contributions). Partial closes are learned from but not scored; an outcome whose
    key was already seen (the bot repeating a row) is skipped. `session_of` maps event microseconds to a
    trading-session index (the day blocks of the bootstrap).
    """
    if bootstrap_samples < 1:
        raise ValueError(f"bootstrap_samples must be >= 1, got {bootstrap_samples}")
    model = model_factory()
    ordered = sorted(trades, key=lambda trade: (trade.event_us, trade.key))
    learned: list[float] = []
    static: list[float] = []
    pnl: list[float] = []
    days: list[int] = []
    scored: list[TradeOutcome] = []
    turnover: dict[int, float] = {}
    change_count = 0
    seen: set[str] = set()
    for trade in ordered:
        if trade.key in seen:
            continue
        seen.add(trade.key)
        session = session_of(trade.event_us)
        if not trade.is_partial:
            learned.append(model.score(trade))
            static.append(math.fsum(contribution for _, contribution in trade.components))
            pnl.append(trade.pnl_pct)
            days.append(session)
            scored.append(trade)
        changes = model.learn(trade, session)
        change_count += len(changes)
        turnover[session] = turnover.get(session, 0.0) + math.fsum(abs(c.new - c.old) for c in changes)

    columns = _Columns(
        learned=np.asarray(learned, dtype=np.float64),
        static=np.asarray(static, dtype=np.float64),
        pnl=np.asarray(pnl, dtype=np.float64),
        days=np.asarray(days, dtype=np.int64),
    )
    slices = {
        "regime": [trade.regime for trade in scored],
        "month": [_utc_month(trade.event_us) for trade in scored],
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
    pnl: FloatArray
    days: npt.NDArray[np.int64]


def _evaluate_group(
    label: str, columns: _Columns, mask: npt.NDArray[np.bool_] | None, *, samples: int, seed: int
) -> GroupEvaluation:
    learned, static, pnl, days = columns.learned, columns.static, columns.pnl, columns.days
    if mask is not None:
        learned, static, pnl, days = learned[mask], static[mask], pnl[mask], days[mask]
    ic_learned = spearman(learned, pnl)
    ic_static = spearman(static, pnl)
    return GroupEvaluation(
        label=label,
        trades=int(pnl.size),
        days=int(np.unique(days).size),
        ic_learned=ic_learned,
        ic_static=ic_static,
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
        f"{group.ic_difference:>+8.4f}  {interval:<19} {hits:>25}"
    )
