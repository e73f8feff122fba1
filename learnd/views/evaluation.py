"""`learnd evaluate`: prequential evaluation (test, then train) of the learner against the static weights over
every attribution line on disk (current and rotated files). Read-only; reuses the pure core. `--regime-blind`
scores each trade the way the unchanged bot does: with the one figure per component the export writes in MIXED.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from learnd.config import Settings
from learnd.errors import RecordError
from learnd.exports.bot import MIXED_FIGURES
from learnd.learning.entry_model import EntryModel
from learnd.learning.evaluate import Evaluation, ScoringModel, evaluate
from learnd.learning.multipliers import MultiplierChange
from learnd.records.decode import BadLine, decode_line
from learnd.records.parse import TradeOutcome, parse_record
from learnd.sessions.tables import calendar_for
from learnd.sources.files import complete_lines


def attribution_outcomes(settings: Settings) -> list[TradeOutcome]:
    """Every closed or partial trade in the attribution sources (rotated copies first), each key once, in
    event order (event time, then key)."""
    seen: dict[str, TradeOutcome] = {}
    for source in settings.sources:
        if source.kind != "attribution":
            continue
        for raw in complete_lines(source.path):
            decoded = decode_line(raw)
            if isinstance(decoded, BadLine):
                continue
            try:
                record = parse_record("attribution", decoded)
            except RecordError:
                continue  # malformed rows are the quarantine's business; evaluate scores what is usable
            if isinstance(record, TradeOutcome):
                seen.setdefault(record.key, record)
    return sorted(seen.values(), key=lambda trade: (trade.event_us, trade.key))


def run_evaluation(
    settings: Settings, *, bootstrap_samples: int, seed: int, regime_blind: str | None = None
) -> Evaluation:
    """Prequential evaluation of the learner against the static base weights over the attribution logs. With
    `regime_blind` (a key of exports.bot.MIXED_FIGURES), the learned score is the bot's: each trade scored with that
    figure, whatever its regime; otherwise learnd's own, with the multipliers of the trade's regime."""
    calendar = calendar_for(settings)
    params = settings.learning
    figure = MIXED_FIGURES[regime_blind] if regime_blind is not None else None

    def model_factory() -> ScoringModel:
        model = EntryModel(params)
        return model if figure is None else RegimeBlindScoring(model, figure)

    return evaluate(
        attribution_outcomes(settings),
        calendar.session_index,
        model_factory,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
        session_day=calendar.sessions.__getitem__,
    )


class RegimeBlindScoring:
    """The learner scored the way the unchanged bot scores (FORMATS.md): every trade, whatever its regime, with one
    multiplier per component, `figure` of the component's view in the model as it stood before the trade."""

    def __init__(self, model: EntryModel, figure: Callable[[Mapping[str, Any]], float]) -> None:
        self.model = model
        self.figure = figure
        self._multipliers: dict[str, dict[str, float]] | None = None

    def learn(self, trade: TradeOutcome, session: int) -> Sequence[MultiplierChange]:
        self._multipliers = None
        return self.model.learn(trade, session)

    def settle_session(self, session: int, event_us: int) -> Sequence[MultiplierChange]:
        self._multipliers = None
        return self.model.settle_session(session, event_us)

    def score(self, trade: TradeOutcome) -> float:
        if self._multipliers is None:
            # A component learned on a standardized scale contributes at that scale (its factor times its value).
            self._multipliers = {
                strategy: {name: self.figure(view) * view.get("scale_factor", 1.0) for name, view in components.items()}
                for strategy, components in self.model.snapshot().items()
            }
        own = self._multipliers.get(trade.strategy, {})
        return math.fsum(own.get(name, 1.0) * contribution for name, contribution in trade.components)
