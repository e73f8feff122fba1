"""Read-only views for operators: the learned model (`weights`) and its prequential evaluation (`evaluate`).

Reuses the store and the pure core; never the daemon.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from learnd.config import Settings
from learnd.errors import RecordError
from learnd.learning.entry_model import EntryModel
from learnd.learning.evaluate import Evaluation, evaluate
from learnd.learning.execution import NAME as EXECUTION_LEARNER
from learnd.learning.execution import aggregates_from_rows, execution_summary
from learnd.learning.signals import NAME as SIGNAL_LEARNER
from learnd.learning.signals import episodes_from_rows, open_episodes_from_state, signal_summary
from learnd.learning.trades import NAME, TradeLearner
from learnd.records.decode import BadLine, decode_line
from learnd.records.parse import Record, TradeEntry, TradeOutcome, parse_record
from learnd.service.engine import execution_params, load_calendar, signal_params
from learnd.sources.files import complete_lines
from learnd.store.database import Store
from learnd.store.ledger import record_of


def load_trade_learner(settings: Settings) -> TradeLearner:
    """The trade learner as last committed (an empty one when nothing was learned yet)."""
    state: bytes | None = None
    if settings.db_path.exists():
        store = Store.open(settings.db_path, readonly=True)
        try:
            state = store.learner_state(NAME)
        finally:
            store.close()
    return TradeLearner(settings.learning, load_calendar(settings), state)


def weights_document(settings: Settings, strategy: str | None, regime: str | None) -> dict[str, Any]:
    """`learnd weights --json`: the canonical model view."""
    return load_trade_learner(settings).weights(strategy, regime)


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
            lines.append(f"  {component:<20} {data['multiplier']:>6.3f} {z_text} {data['samples']:>8.1f}  {cells}")
        lines += ["", f"strategy {strategy}: exit multipliers"]
        lines.append(f"  {'exit component':<20} {'mult':>6} {'count':>6} {'win rate':>9} {'mean pnl %':>10}")
        for component, data in view["exit"].items():
            win = data.get("win_rate")
            mean = data.get("mean_pnl_pct")
            lines.append(
                f"  {component:<20} {data['multiplier']:>6.3f} {data['count']:>6} "
                f"{(f'{win:.3f}' if win is not None else '-'):>9} {(f'{mean:+.3f}' if mean is not None else '-'):>10}"
            )
    return "\n".join(lines) + "\n"


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


def signals_document(settings: Settings) -> dict[str, Any]:
    """`learnd signals --json`: signal episodes per pattern and regime, their conversion to trades and outcomes."""
    params = signal_params(settings)
    with _readonly_store(settings) as store:
        episodes = episodes_from_rows(store.learner_rows(SIGNAL_LEARNER))
        episodes += open_episodes_from_state(store.learner_state(SIGNAL_LEARNER), params)
        entries = [record for record in _ledger(store, "entry") if isinstance(record, TradeEntry)]
        outcomes = [record for record in _ledger(store, "trade") if isinstance(record, TradeOutcome)]
    return signal_summary(episodes, entries, outcomes, params)


def execution_document(settings: Settings) -> dict[str, Any]:
    """`learnd execution --json`: fills, fallbacks, failures and slippage per symbol, order type, side, bucket."""
    with _readonly_store(settings) as store:
        aggregates = aggregates_from_rows(store.learner_rows(EXECUTION_LEARNER))
        outcomes = [record for record in _ledger(store, "trade") if isinstance(record, TradeOutcome)]
    return execution_summary(aggregates, outcomes, execution_params(settings, load_calendar(settings)))


@contextmanager
def _readonly_store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings.db_path, readonly=True)
    try:
        yield store
    finally:
        store.close()


def _ledger(store: Store, kind: str) -> Iterator[Record]:
    for row in store.ledger(kind):
        yield record_of(row)


def run_evaluation(settings: Settings, *, bootstrap_samples: int, seed: int) -> Evaluation:
    """Prequential evaluation of the learner against the static base weights over the attribution logs."""
    calendar = load_calendar(settings)
    params = settings.learning
    return evaluate(
        attribution_outcomes(settings),
        calendar.session_index,
        lambda: EntryModel(params),
        bootstrap_samples=bootstrap_samples,
        seed=seed,
    )
