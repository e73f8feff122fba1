"""Tests for bench.processes.job_catch_up: a backfill's log events split into ingest and job catch-up, and each
period's cost. The events are written here as the backfill logs them (a seam: no backfill runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench.processes import BackfillRun, Peak, job_catch_up

STARTED = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def event(name: str, at_s: float, **fields: Any) -> dict[str, Any]:
    moment = STARTED + timedelta(seconds=at_s)
    return {"event": name, "timestamp": moment.isoformat().replace("+00:00", "Z"), "level": "info", **fields}


def backfill(events: list[dict[str, Any]]) -> BackfillRun:
    return BackfillRun(Peak(0, 80.0, 100.0, STARTED), events)


def test_periods_cost_the_time_since_the_previous_one_and_the_first_costs_its_jobs_median() -> None:
    """Daily periods of 0.1 s then 0.3 s and a weekly one of 2 s after ingest ends at 10 s: the first period
    (which has no predecessor) is taken at the median of the first daily ones, 0.2 s."""
    daily_s = [0.1, 0.3, 0.1, 0.3]
    events = [event("record_quarantined", 3.0)]
    moment = 10.2  # ingest ends at 10 s; the first daily period takes 0.2 s
    events.append(event("job_ran", moment, job="daily"))
    for cost in daily_s:
        moment += cost
        events.append(event("job_ran", moment, job="daily"))
    moment += 2.0
    events.append(event("job_ran", moment, job="weekly"))
    events.append(event("backfill_finished", moment + 0.5, job_periods_count=6))
    catch_up = job_catch_up(backfill(events))
    assert catch_up.periods == 6
    assert catch_up.failed == 0
    assert catch_up.costs_s["daily"] == pytest.approx(daily_s)
    assert catch_up.costs_s["weekly"] == pytest.approx([2.0])
    assert catch_up.ingest_s == pytest.approx(10.0)
    assert catch_up.jobs_s == pytest.approx(0.2 + sum(daily_s) + 2.0 + 0.5)


def test_start_and_end_of_history_never_share_a_period() -> None:
    costs = [1.0] * 5 + [3.0] * 5
    events = [event("job_ran", 1.0, job="daily")]
    moment = 1.0
    for cost in costs:
        moment += cost
        events.append(event("job_ran", moment, job="daily"))
    events.append(event("backfill_finished", 100.0))
    catch_up = job_catch_up(backfill(events))
    assert catch_up.edge_s("daily", end=False) == pytest.approx(1.0)
    assert catch_up.edge_s("daily", end=True) == pytest.approx(3.0)


def test_a_failed_period_is_counted_as_run_and_failed() -> None:
    events = [
        event("job_ran", 5.0, job="daily"),
        event("job_failed", 5.5, job="daily", error="disk full"),
        event("backfill_finished", 6.0),
    ]
    catch_up = job_catch_up(backfill(events))
    assert (catch_up.periods, catch_up.failed) == (2, 1)


def test_a_backfill_without_periods_is_all_ingest() -> None:
    catch_up = job_catch_up(backfill([event("backfill_finished", 7.0, job_periods_count=0)]))
    assert catch_up.ingest_s == pytest.approx(7.0)
    assert (catch_up.jobs_s, catch_up.periods) == (0.0, 0)


def test_each_period_s_cpu_is_read_from_its_job_ran_and_a_failed_one_has_none() -> None:
    """The CPU a period logs (`cpu_ms`) is its cost on the CPU clock, every period counted (the first too), apart
    from the wall time between periods; a failed period logs none."""
    events = [
        event("job_ran", 5.0, job="daily", cpu_ms=120.0),
        event("job_ran", 6.0, job="daily", cpu_ms=80.0),
        event("job_failed", 6.5, job="daily", error="disk full"),
        event("job_ran", 9.0, job="weekly", cpu_ms=1500.0),
        event("backfill_finished", 9.5),
    ]
    catch_up = job_catch_up(backfill(events))
    assert catch_up.cpu_costs_s == {"daily": pytest.approx([0.12, 0.08]), "weekly": pytest.approx([1.5])}
    assert catch_up.costs_s["daily"] == pytest.approx([1.0, 0.5])
    assert catch_up.edge_s("daily", end=False, cpu=True) == pytest.approx(0.12)
    assert catch_up.edge_s("daily", end=True, cpu=True) == pytest.approx(0.08)
