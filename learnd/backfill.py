"""One-shot backfill: apply everything present and not yet applied, then exit. Reuses the engine, never the daemon."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from learnd.config import Settings
from learnd.engine import Engine, LearnerFactory

log = structlog.get_logger("learnd.backfill")


@dataclass(frozen=True, slots=True)
class BackfillReport:
    """What one backfill applied."""

    lines_count: int
    applied_count: int
    duplicate_count: int
    ignored_count: int
    quarantined_count: int
    commit_count: int


def run_backfill(settings: Settings, *, learner_factory: LearnerFactory | None = None) -> BackfillReport:
    """Read every source from its checkpoint (or from 0) to its current end, committing in large batches."""
    engine = Engine(settings, start_at_end=False, purpose="backfill", learner_factory=learner_factory)
    try:
        drain(engine, settings.backfill_batch_lines)
        engine.write_exports()
        totals = engine.totals
        report = BackfillReport(
            lines_count=totals.lines_count,
            applied_count=totals.applied_count,
            duplicate_count=totals.duplicate_count,
            ignored_count=totals.ignored_count,
            quarantined_count=totals.quarantined_count,
            commit_count=totals.commit_count,
        )
        log.info("backfill_finished", **{name: getattr(report, name) for name in report.__slots__})
        return report
    finally:
        engine.close()


def drain(engine: Engine, batch_lines: int) -> None:
    """Poll and commit until a poll reads nothing: everything complete at this moment is applied."""
    while True:
        read = engine.poll(batch_lines)
        engine.commit(export=False)
        if read == 0:
            break
