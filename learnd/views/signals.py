"""`learnd signals`: signal episodes per component pattern and regime, their conversion to trades and outcomes.

Read-only: closed episodes from the store, open ones from the learner's committed state.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from learnd.config import Settings
from learnd.learning.signals import NAME as SIGNAL_LEARNER
from learnd.learning.signals import (
    SignalParams,
    episodes_from_rows,
    open_episodes_from_state,
    signal_summary,
    unknown_components_from_state,
)
from learnd.records.parse import TradeEntry, TradeOutcome
from learnd.store.database import reading, require
from learnd.store.ledger import ledger_records


def signals_document(settings: Settings) -> dict[str, Any]:
    """`learnd signals --json`: signal episodes per pattern and regime, their conversion to trades and outcomes."""
    params = SignalParams.from_settings(settings.signals)
    with reading(settings.db_path, settings.lock_path) as found:
        store = require(found, settings.db_path)
        state = store.learner_state(SIGNAL_LEARNER)
        episodes = episodes_from_rows(store.learner_rows(SIGNAL_LEARNER))
        episodes += open_episodes_from_state(state, params)
        entries = [record for record in ledger_records(store, "entry") if isinstance(record, TradeEntry)]
        outcomes = [record for record in ledger_records(store, "trade") if isinstance(record, TradeOutcome)]
    summary = signal_summary(episodes, entries, outcomes, params)
    # Counted, never learned (FORMATS.md: unknown keys are counted and reported): the signal lines' and the trade
    # entries' (the closes' are in the daily reports).
    summary["unknown_components"] = {
        "signals": unknown_components_from_state(state),
        "entries": dict(sorted(Counter(key for entry in entries for key in entry.unknown_components).items())),
    }
    return summary
