"""`learnd execution`: execution quality (fills, fallbacks, failures, slippage) per symbol, order type, side and
time-of-day bucket, with the symbols whose costs eat their P&L. Read-only.
"""

from __future__ import annotations

from typing import Any

from learnd.config import Settings
from learnd.learning.execution import NAME as EXECUTION_LEARNER
from learnd.learning.execution import ExecutionParams, aggregates_from_rows, execution_summary, symbol_outcomes
from learnd.records.parse import TradeOutcome
from learnd.sessions.tables import calendar_for
from learnd.store.database import reading, require
from learnd.store.ledger import ledger_records


def execution_document(settings: Settings) -> dict[str, Any]:
    """`learnd execution --json`: fills, fallbacks, failures and slippage per symbol, order type, side, bucket."""
    with reading(settings.db_path, settings.lock_path) as found:
        store = require(found, settings.db_path)
        aggregates = aggregates_from_rows(store.learner_rows(EXECUTION_LEARNER))
        outcomes = [record for record in ledger_records(store, "trade") if isinstance(record, TradeOutcome)]
    params = ExecutionParams.from_settings(settings.execution, calendar_for(settings).tz)
    return execution_summary(aggregates, symbol_outcomes(outcomes), params)
