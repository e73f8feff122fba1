"""`learnd schedule`: the jobs' next runs from the exchange calendar and their last runs from the store. Read-only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from learnd.config import Settings
from learnd.jobs.schedule import JOBS, enabled_jobs, next_periods
from learnd.sessions.exchange import from_epoch_us
from learnd.sessions.tables import calendar_for
from learnd.store.database import reading


def schedule_document(settings: Settings, start: datetime | None, count: int) -> dict[str, Any]:
    """{"jobs": {job: {"enabled", "next_runs": [UTC ISO...], "next_runs_exchange": [...], "last_run": {...}|None}}}"""
    calendar = calendar_for(settings)
    after = start.astimezone(UTC) if start is not None else datetime.now(UTC)
    last_runs: dict[str, tuple[str, str, int, str] | None] = dict.fromkeys(JOBS)
    failed: dict[str, int] = dict.fromkeys(JOBS, 0)
    with reading(settings.db_path, settings.lock_path) as store:
        if store is not None:
            for job in JOBS:
                last_runs[job] = store.last_job_run(job)
                failed[job] = store.failed_job_runs(job)
    enabled = enabled_jobs(settings)
    jobs: dict[str, Any] = {}
    for job in JOBS:
        periods = next_periods(calendar, settings, job, after, count)
        last = last_runs[job]
        jobs[job] = {
            "enabled": job in enabled,
            "next_runs": [period.due.isoformat() for period in periods],
            "next_runs_exchange": [calendar.to_exchange_time(period.due).isoformat() for period in periods],
            "next_periods": [period.label for period in periods],
            "last_run": None
            if last is None
            else {
                "period": last[0],
                "status": last[1],
                "due": from_epoch_us(last[2]).isoformat(),
                "detail": last[3].splitlines()[-1] if last[3] else "",
            },
            "failed_runs": failed[job],
        }
    return {"exchange": calendar.code, "timezone": calendar.tz, "from": after.isoformat(), "jobs": jobs}


def render_schedule(document: dict[str, Any]) -> str:
    """A readable list per job."""
    lines = [f"exchange {document['exchange']} ({document['timezone']}), runs after {document['from']}"]
    for job, view in document["jobs"].items():
        state = "" if view["enabled"] else " (disabled)"
        lines += ["", f"{job}{state}:"]
        for label, utc, local in zip(view["next_periods"], view["next_runs"], view["next_runs_exchange"], strict=True):
            lines.append(f"  {label:<12} {utc}  ({local} exchange time)")
        last = view["last_run"]
        lines.append(f"  last run: {last['period']} {last['status']}" if last else "  last run: never")
    return "\n".join(lines) + "\n"
