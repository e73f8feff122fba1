"""`learnd evaluate`: prequential evaluation (test, then train) of the learner against the static weights over
every attribution line on disk (current and rotated files). Read-only; reuses the pure core.
"""

from __future__ import annotations

from learnd.config import Settings
from learnd.errors import RecordError
from learnd.learning.entry_model import EntryModel
from learnd.learning.evaluate import Evaluation, evaluate
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


def run_evaluation(settings: Settings, *, bootstrap_samples: int, seed: int) -> Evaluation:
    """Prequential evaluation of the learner against the static base weights over the attribution logs."""
    calendar = calendar_for(settings)
    params = settings.learning
    return evaluate(
        attribution_outcomes(settings),
        calendar.session_index,
        lambda: EntryModel(params),
        bootstrap_samples=bootstrap_samples,
        seed=seed,
    )
