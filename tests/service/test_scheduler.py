"""Scheduled jobs: catch-up without repeats, live vs backfill reports, and failures that never stop learning.

The wall clock is the one seam faked here (JobRunner's `clock`): everything else is real files and SQLite.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from learnd.config import Settings, load_settings
from learnd.devtools.simulate import simulate
from learnd.jobs.schedule import DAILY, WEEKLY
from learnd.learning import trades as trades_module
from learnd.records.parse import parse_event_us
from learnd.service import scheduler
from learnd.service.backfill import drain
from learnd.service.engine import Engine
from learnd.service.scheduler import JobRunner, replay_history
from learnd.sessions.exchange import from_epoch_us
from learnd.sessions.tables import calendar_for
from learnd.store.database import Store
from tests.service.test_daemon import daemon_env, reap, wait_for_log


def settings_for(home: Path) -> Settings:
    return load_settings(home=home, environ={}, overrides={"metrics_enabled": "false"})


def trade_row(ts: str, key: str, pnl: float = 0.5) -> bytes:
    row = {
        "ts": ts,
        "type": "attribution",
        "trade_id": f"close_AMD_{key}",
        "symbol": "AMD",
        "pnl_usd": 1.0,
        "pnl_pct": pnl,
        "market_regime": "mixed",
        "context": {"components": {"flow": 1.0, "dark_pool": 0.3}},
    }
    return orjson.dumps(row) + b"\n"


class Clock:
    """The seam: what JobRunner believes the time is."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def job_runs(home: Path, job: str) -> list[tuple[str, str]]:
    store = Store.open(settings_for(home).db_path, readonly=True)
    try:
        return [(period, status) for period, status, _, _ in store.job_runs(job)]
    finally:
        store.close()


def learned_engine(home: Path, rows: bytes, settings: Settings | None = None) -> Engine:
    """An engine on `home` whose attribution log holds `rows`, all of them learned and committed (close it)."""
    (home / "logs").mkdir(exist_ok=True)
    (home / "logs" / "attribution.jsonl").write_bytes(rows)
    engine = Engine(settings or settings_for(home), start_at_end=False, purpose="test")
    try:
        drain(engine, 1000)
        engine.commit()
    except BaseException:
        engine.close()
        raise
    return engine


def test_missed_runs_catch_up_once_across_restarts_and_never_repeat(tmp_path: Path) -> None:
    """Down over Thanksgiving: the restart runs each missed day (not the holiday) and week once; a second
    restart runs nothing."""
    home = tmp_path
    (home / "logs").mkdir()
    (home / "logs" / "attribution.jsonl").write_bytes(trade_row("2026-11-25T15:00:00+00:00", "a"))
    settings = settings_for(home)
    clock = Clock(datetime(2026, 11, 25, 22, 0, tzinfo=UTC))
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 1000)
        runner = JobRunner(engine, calendar_for(settings), clock=clock)
        assert runner.run_due(DAILY) == 1
        assert runner.run_due(WEEKLY) == 0  # the first trade's week has not ended yet
    finally:
        engine.close()
    clock.moment = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    for restart in range(2):
        engine = Engine(settings, start_at_end=False, purpose="test")
        try:
            runner = JobRunner(engine, calendar_for(settings), clock=clock)
            daily, weekly = runner.run_due(DAILY), runner.run_due(WEEKLY)
        finally:
            engine.close()
        assert (daily, weekly) == ((3, 1) if restart == 0 else (0, 0))
    assert job_runs(home, DAILY) == [(day, "ok") for day in ("2026-11-25", "2026-11-27", "2026-11-30", "2026-12-01")]
    assert job_runs(home, WEEKLY) == [("2026-W48", "ok")]
    assert (home / "data" / "reports" / "daily" / "2026-11-27.md").exists()
    assert not (home / "data" / "reports" / "daily" / "2026-11-26.json").exists()


def lines_by_time(path: Path) -> list[tuple[int, bytes]]:
    """Each line of a log with the event time it was written at (a garbage line inherits its predecessor's)."""
    result: list[tuple[int, bytes]] = []
    last = 0
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            row = orjson.loads(line)
            last = parse_event_us(row.get("ts")) if isinstance(row, dict) and "ts" in row else last
        except (orjson.JSONDecodeError, ValueError):
            pass  # garbage rides along with the line before it, as a crashed writer's would
        result.append((last, line))
    return result


def report_files(home: Path) -> dict[str, bytes]:
    root = home / "data" / "reports"
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("simulated")
    simulate(source, trades=160, seed=3, start=date(2026, 3, 2))
    return source


def test_backfill_writes_the_same_reports_as_a_live_run_over_the_same_days(simulated: Path, tmp_path: Path) -> None:
    """A live run that saw each day's lines before that day's jobs ran, and a one-shot backfill with history
    replay, write byte-identical daily and weekly reports."""
    assert_live_and_backfill_reports_equal(simulated, tmp_path)


def test_orders_after_the_close_are_in_the_same_reports_live_and_in_a_backfill(simulated: Path, tmp_path: Path) -> None:
    """Orders the bot logs after a session's close (an after-hours close at 16:30 New York, a failed close on a
    Saturday) come after that day's jobs ran live: they are in the next session's report, live and in a backfill
    alike (the daily report read them under the day they were dated, so only the backfill's had them)."""
    source = tmp_path / "source"
    shutil.copytree(simulated, source)
    orders = source / "logs" / "orders.jsonl"
    late = [
        {"ts": "2026-03-03T21:30:00+00:00", "type": "order", "action": "close_position", "symbol": "ZZAH",
         "side": "sell", "filled_qty": 5, "filled_avg_price": 10.0, "slippage_bps": 3.0, "strategy_id": "equity"},
        {"ts": "2026-03-07T15:00:00+00:00", "type": "order", "action": "close_position_failed", "symbol": "ZZSA",
         "side": "sell", "filled_qty": 0, "strategy_id": "equity"},
    ]  # fmt: skip
    timeline = lines_by_time(orders) + [(parse_event_us(row["ts"]), orjson.dumps(row) + b"\n") for row in late]
    orders.write_bytes(b"".join(line for _, line in sorted(timeline, key=lambda item: item[0])))
    reports = assert_live_and_backfill_reports_equal(source, tmp_path / "run")
    symbols = {
        name: {row["symbol"] for row in orjson.loads(body)["execution_quality"]["symbols"]}
        for name, body in reports.items()
        if name.startswith("daily/") and name.endswith(".json")
    }
    assert "ZZAH" in symbols["daily/2026-03-04.json"] and "ZZAH" not in symbols["daily/2026-03-03.json"]
    assert "ZZSA" in symbols["daily/2026-03-09.json"] and "ZZSA" not in symbols["daily/2026-03-06.json"]


def test_exits_after_the_close_are_in_the_same_reports_live_and_in_a_backfill(simulated: Path, tmp_path: Path) -> None:
    """Exits the bot logs after a session's close (a position closed after hours at 16:30 New York, one on a Saturday)
    come after that day's jobs ran live: they are in the next session's report, live and in a backfill alike (the
    daily report read them under the day they were dated, so only the backfill's had them)."""
    source = tmp_path / "source"
    shutil.copytree(simulated, source)
    exits = source / "logs" / "exit.jsonl"
    late = [
        {"ts": "2026-03-04T21:30:00+00:00", "msg": "attribution_logged", "symbol": "ZZAH", "pnl_usd": 5.0,
         "pnl_pct": 0.5, "hold_min": 30.0, "reason": "support_break", "strategy_id": "equity"},
        {"ts": "2026-03-07T15:00:00+00:00", "msg": "attribution_logged", "symbol": "ZZSA", "pnl_usd": -5.0,
         "pnl_pct": -0.5, "hold_min": 30.0, "reason": "volume_exhaustion", "strategy_id": "equity"},
    ]  # fmt: skip
    timeline = lines_by_time(exits) + [(parse_event_us(row["ts"]), orjson.dumps(row) + b"\n") for row in late]
    exits.write_bytes(b"".join(line for _, line in sorted(timeline, key=lambda item: item[0])))
    reports = assert_live_and_backfill_reports_equal(source, tmp_path / "run")

    def exit_reasons(name: str) -> dict[str, int]:
        body = orjson.loads(reports[f"daily/{name}.json"])["strategies"]["equity"]["exit_reasons"]
        return {reason: row["exits"] for reason, row in body.items()}

    # The simulated bot names neither reason: each is the row added, in the report after its close.
    assert "support_break" not in exit_reasons("2026-03-04") and exit_reasons("2026-03-05")["support_break"] == 1
    assert (
        "volume_exhaustion" not in exit_reasons("2026-03-06") and exit_reasons("2026-03-09")["volume_exhaustion"] == 1
    )


def test_signal_episodes_across_a_close_are_in_the_same_reports_live_and_in_a_backfill(
    simulated: Path, tmp_path: Path
) -> None:
    """A signal episode still going at a session's close (15:50-16:40 New York, its components changing after the
    daily job ran) and one after hours (17:30) are reported in the next session's report, as they ended, live and in
    a backfill alike (the live job reported the first as it stood at 16:15 and missed the second, which a backfill
    put under the day)."""
    source = tmp_path / "source"
    shutil.copytree(simulated, source)
    signals = source / "logs" / "signals.jsonl"

    def candidate(at: datetime, ticker: str, components: dict[str, float]) -> tuple[int, bytes]:
        meta = {"score": 3.0, "components": components}
        cluster = {"ticker": ticker, "direction": "bullish", "composite_score": 3.0, "composite_meta": meta,
                   "gate_passed": True, "source": "composite_v3", "count": 1, "start_ts": 0}  # fmt: skip
        row = {"ts": at.isoformat(timespec="milliseconds"), "type": "signal", "cluster": cluster,
               "strategy_id": "equity"}  # fmt: skip
        return parse_event_us(row["ts"]), orjson.dumps(row) + b"\n"

    added = []
    at = datetime(2026, 3, 4, 20, 50, tzinfo=UTC)  # Wednesday 15:50 New York; the close 21:00Z, the job 21:15Z
    while at <= datetime(2026, 3, 4, 21, 40, tzinfo=UTC):
        after = at >= datetime(2026, 3, 4, 21, 16, tzinfo=UTC)
        added.append(candidate(at, "ZZSP", {"whale": 3.0, "insider": 2.5} if after else {"flow": 1.0, "iv_skew": 0.2}))
        at += timedelta(seconds=60)
    added.append(candidate(datetime(2026, 3, 4, 22, 30, tzinfo=UTC), "ZZAH", {"congress": 2.0}))
    signals.write_bytes(b"".join(line for _, line in sorted(lines_by_time(signals) + added, key=lambda item: item[0])))
    reports = assert_live_and_backfill_reports_equal(source, tmp_path / "run")

    def patterns(name: str) -> set[tuple[str, ...]]:
        return {tuple(row["pattern"]) for row in orjson.loads(reports[name])["signals"]["patterns"]}

    # The spanning episode as it ended (its pattern led by its last 25 candidates' components), the next day; the
    # bot's names are read as the canonical ones (flow is options_flow).
    ended, as_it_stood = ("insider", "options_flow", "whale_persistence"), ("iv_term_skew", "options_flow")
    after_hours = ("congress",)
    assert {ended, after_hours} <= patterns("daily/2026-03-05.json")
    assert not {ended, after_hours, as_it_stood} & patterns("daily/2026-03-04.json")


def assert_live_and_backfill_reports_equal(simulated: Path, tmp_path: Path) -> dict[str, bytes]:
    """Run the home's logs live (each day's lines before that day's jobs) and as one backfill; the reports of both
    must be the same bytes. Returns them."""
    names = ("attribution", "exit", "signals", "orders")
    timeline = {name: lines_by_time(simulated / "logs" / f"{name}.jsonl") for name in names}
    last_us = max(us for lines in timeline.values() for us, _ in lines)
    end = from_epoch_us(last_us) + timedelta(days=8)

    live = tmp_path / "live"
    (live / "logs").mkdir(parents=True)
    settings = settings_for(live)
    calendar = calendar_for(settings)
    clock = Clock(from_epoch_us(min(us for lines in timeline.values() for us, _ in lines)))
    engine = Engine(settings, start_at_end=False, purpose="live")
    try:
        runner = JobRunner(engine, calendar, clock=clock)
        cursor = dict.fromkeys(names, 0)
        for period_due in _due_times(calendar, settings, clock.moment, end):
            for name in names:
                lines = timeline[name]
                upto = cursor[name]
                while upto < len(lines) and from_epoch_us(lines[upto][0]) <= period_due:
                    upto += 1
                with open(live / "logs" / f"{name}.jsonl", "ab") as handle:
                    handle.write(b"".join(line for _, line in lines[cursor[name] : upto]))
                cursor[name] = upto
            drain(engine, 500)
            clock.moment = period_due
            runner.run_due(DAILY)
            runner.run_due(WEEKLY)
        assert all(cursor[name] == len(timeline[name]) for name in names)
    finally:
        engine.close()

    replayed = tmp_path / "backfill"
    (replayed / "logs").mkdir(parents=True)
    for name in names:
        (replayed / "logs" / f"{name}.jsonl").write_bytes((simulated / "logs" / f"{name}.jsonl").read_bytes())
    engine = Engine(settings_for(replayed), start_at_end=False, purpose="backfill")
    try:
        drain(engine, 20000)
        assert replay_history(engine, calendar, clock.moment).failed == 0
    finally:
        engine.close()

    live_reports, backfill_reports = report_files(live), report_files(replayed)
    assert len([name for name in live_reports if name.startswith("daily/")]) >= 10
    assert any(name.startswith("weekly/") for name in live_reports)
    assert live_reports.keys() == backfill_reports.keys()
    assert live_reports == backfill_reports
    return live_reports


def _due_times(calendar: object, settings: Settings, start: datetime, end: datetime) -> Iterator[datetime]:
    from learnd.jobs.schedule import due_periods

    seen: set[datetime] = set()
    periods = [p for job in (DAILY, WEEKLY) for p in due_periods(calendar, settings, job, start, end)]  # type: ignore[arg-type]
    for period in sorted(periods, key=lambda p: p.due):
        if period.due not in seen:
            seen.add(period.due)
            yield period.due


def test_the_catch_up_reports_its_progress_and_logs_each_period_at_debug(tmp_path: Path) -> None:
    """The progress hook hears (0, n) before the first period and (k, n) after each; each period's `job_ran` is at
    debug (JSON logs keep it, a console shows the bar), while a run at its due time stays at info."""
    home = tmp_path
    (home / "logs").mkdir()
    (home / "logs" / "attribution.jsonl").write_bytes(trade_row("2026-11-16T15:00:00+00:00", "a"))
    settings = settings_for(home)
    heard: list[tuple[int, int]] = []
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 1000)
        with capture_logs() as logs:
            jobs = replay_history(
                engine,
                calendar_for(settings),
                datetime(2026, 11, 25, 22, 0, tzinfo=UTC),
                on_progress=lambda done, total: heard.append((done, total)),
            )
            live = JobRunner(engine, calendar_for(settings), clock=Clock(datetime(2026, 11, 27, 22, 0, tzinfo=UTC)))
            assert live.run_due(DAILY) == 1
    finally:
        engine.close()
    ran = jobs.periods
    assert jobs.failed == 0
    assert ran == 9  # 2026-11-16 to 11-25: 8 sessions and the week that ended on the 20th
    assert heard == [(done, ran) for done in range(ran + 1)]
    ran_events = [entry for entry in logs if entry["event"] == "job_ran"]
    assert [entry["log_level"] for entry in ran_events] == ["debug"] * ran + ["info"]
    # Each says what the period cost in CPU (the thread's own time: a period writes a report, never nothing).
    assert all(isinstance(entry["cpu_ms"], float) and entry["cpu_ms"] > 0.0 for entry in ran_events)


async def test_a_period_waits_for_a_replay_run_in_steps_and_a_stop_meanwhile_leaves_it_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the ingest runs a late trade's replay in steps (a step per trade: REPLAY_STEP_S patched to 0), a due
    period leaves the learners alone: it waits for the replay's end, then runs. A stop while it waits leaves the
    period pending and the replay where it was."""
    home = tmp_path
    (home / "logs").mkdir()
    attribution = home / "logs" / "attribution.jsonl"
    attribution.write_bytes(
        b"".join(
            trade_row(f"2026-11-{day}T15:{minute:02d}:00+00:00", f"{day}-{minute}")
            for day in (16, 17, 18)
            for minute in range(10)
        )
    )
    monkeypatch.setattr(trades_module, "REPLAY_STEP_S", 0.0)
    settings = settings_for(home)
    clock = Clock(datetime(2026, 11, 18, 22, 0, tzinfo=UTC))
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 1000)
        runner = JobRunner(engine, calendar_for(settings), clock=clock)
        for late, stopped in (("late-a", False), ("late-b", True)):
            with open(attribution, "ab") as handle:
                handle.write(trade_row("2026-11-16T15:00:30+00:00", late))
            engine.poll(1000)
            assert engine.ingestor.replaying  # due before the next commit
            steps = engine.ingestor.replay_steps()
            next(steps)
            assert engine.ingestor.replaying  # under way
            before = job_runs(home, DAILY)
            stop = asyncio.Event()
            running = asyncio.create_task(runner.run_all_due_yielding(stop))
            await asyncio.sleep(0.1)
            assert not running.done() and job_runs(home, DAILY) == before
            if stopped:
                stop.set()
                assert await running == 0
                assert engine.ingestor.replaying and job_runs(home, DAILY) == before
            else:
                assert sum(1 for _ in steps) > 20  # the rest of the replay
                assert await running == 3  # 2026-11-16, 17 and 18
            clock.moment += timedelta(days=1)
    finally:
        engine.close()


async def test_two_passes_that_fire_together_run_each_period_once(tmp_path: Path) -> None:
    """After a week's last session the daily and the weekly triggers fire at the same moment, each starting a pass
    over what is pending: the second waits for the first and finds nothing left, so each period runs once."""
    home = tmp_path
    (home / "logs").mkdir()
    (home / "logs" / "attribution.jsonl").write_bytes(
        b"".join(trade_row(f"2026-11-{day}T15:00:00+00:00", f"t{day}") for day in (16, 17, 18, 19, 20))
    )
    settings = settings_for(home)
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 1000)
        engine.commit()
        runner = JobRunner(engine, calendar_for(settings), clock=Clock(datetime(2026, 11, 20, 22, 30, tzinfo=UTC)))
        stop = asyncio.Event()
        with capture_logs() as logs:
            ran = await asyncio.gather(runner.run_all_due_yielding(stop), runner.run_all_due_yielding(stop))
    finally:
        engine.close()
    assert sorted(ran) == [0, 6]  # 2026-11-16 to 20, and the week that ended on the 20th
    periods = [(entry["job"], entry["period"]) for entry in logs if entry["event"] == "job_ran"]
    assert len(periods) == len(set(periods)) == 6
    assert job_runs(home, WEEKLY) == [("2026-W47", "ok")]


async def test_a_period_that_falls_due_during_the_start_up_catch_up_runs_right_after_it(tmp_path: Path) -> None:
    """A start-up catch-up long enough to pass a close: the day that closed meanwhile runs once the catch-up ends,
    not at the daily job's next due time a day later. The dates are in the future, so the scheduler's own timer
    (real time) cannot be what runs it."""
    home = tmp_path
    (home / "logs").mkdir()
    (home / "logs" / "attribution.jsonl").write_bytes(
        b"".join(trade_row(f"2027-03-{day}T15:00:00+00:00", f"t{day}") for day in (15, 16, 17))
    )
    settings = settings_for(home)
    clock = Clock(datetime(2027, 3, 17, 19, 0, tzinfo=UTC))  # the 17th closes at 20:00 UTC, its run is due 20:15

    def progress(done: int, due: int) -> None:
        if done == 1:
            clock.moment = datetime(2027, 3, 17, 20, 30, tzinfo=UTC)

    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 1000)
        engine.commit()
        runner = JobRunner(engine, calendar_for(settings), clock=clock, on_progress=progress)
        stop = asyncio.Event()
        with capture_logs() as logs:
            service = asyncio.create_task(runner.service(engine, stop))
            for _ in range(200):
                if sum(1 for entry in logs if entry["event"] == "job_scheduled") == 2 or service.done():
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(service, 5)
    finally:
        engine.close()
    assert job_runs(home, DAILY) == [("2027-03-15", "ok"), ("2027-03-16", "ok"), ("2027-03-17", "ok")]
    scheduled = {entry["job"]: entry["period"] for entry in logs if entry["event"] == "job_scheduled"}
    assert scheduled == {DAILY: "2027-03-18", WEEKLY: "2027-W11"}


async def test_a_wall_clock_set_back_or_outside_the_calendar_stops_no_learning(tmp_path: Path) -> None:
    """A clock set back behind the last run finds nothing pending (it raised ValueError out of the daemon's task
    group); one outside the calendar's years (a reset to 1970, a jump past 2050) logs that no run can be named and
    keeps the service up (CalendarError ended it); with the clock right again, the day due runs, once."""
    home = tmp_path
    rows = b"".join(trade_row(f"2026-11-{day}T15:00:00+00:00", f"t{day}") for day in (23, 24, 25))
    clock = Clock(datetime(2026, 11, 24, 22, 0, tzinfo=UTC))
    engine = learned_engine(home, rows)
    try:
        runner = JobRunner(engine, engine.calendar, clock=clock)
        stop = asyncio.Event()
        assert await runner.run_all_due_yielding(stop) == 2  # the 23rd and the 24th
        clock.moment = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)  # set back four days
        assert await runner.run_all_due_yielding(stop) == 0
        clock.moment = datetime(1970, 1, 1, tzinfo=UTC)
        with capture_logs() as logs:
            service = asyncio.create_task(runner.service(engine, stop))
            await asyncio.sleep(0.5)
            assert not service.done()  # up, and learning goes on
            stop.set()
            await asyncio.wait_for(service, 5)
        assert [entry["event"] for entry in logs].count("job_not_scheduled") == 2
        clock.moment = datetime(2051, 1, 3, tzinfo=UTC)  # beyond the calendar's last year
        with capture_logs() as logs:
            assert await runner.run_all_due_yielding(asyncio.Event()) == 0
        assert [entry["event"] for entry in logs] == ["jobs_clock_outside_calendar"]
        clock.moment = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
        assert await runner.run_all_due_yielding(asyncio.Event()) == 1  # the 25th
    finally:
        engine.close()
    assert job_runs(home, DAILY) == [("2026-11-23", "ok"), ("2026-11-24", "ok"), ("2026-11-25", "ok")]


def test_a_trade_closed_after_hours_that_arrives_after_its_day_s_run_is_listed_late_the_next_day(
    tmp_path: Path,
) -> None:
    """The day's run has read the ledger when a trade of that session arrives (closed after hours, 16:30 New York):
    the next day's report lists it as late (it was filed under the day already reported, and no report showed
    it)."""
    home = tmp_path
    attribution = home / "logs" / "attribution.jsonl"
    clock = Clock(datetime(2026, 11, 24, 22, 0, tzinfo=UTC))
    engine = learned_engine(home, trade_row("2026-11-24T15:00:00+00:00", "a"))
    try:
        runner = JobRunner(engine, engine.calendar, clock=clock)
        assert runner.run_due(DAILY) == 1
        with open(attribution, "ab") as handle:
            handle.write(trade_row("2026-11-24T21:30:00+00:00", "after-hours"))
        engine.poll(1000)
        engine.commit()
        with open(attribution, "ab") as handle:
            handle.write(trade_row("2026-11-25T15:00:00+00:00", "c"))
        engine.poll(1000)
        engine.commit()
        clock.moment = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
        assert runner.run_due(DAILY) == 1
    finally:
        engine.close()
    report = orjson.loads((home / "data" / "reports" / "daily" / "2026-11-25.json").read_bytes())
    assert [row["key"] for row in report["late"]["trades"]] == ["close_AMD_after-hours"]


@pytest.mark.parametrize(
    ("first_grace", "then_grace", "runs"), [("15", "60", []), ("2880", "15", ["2026-11-24", "2026-11-25"])]
)
def test_a_new_grace_neither_runs_a_period_again_nor_skips_one(
    tmp_path: Path, first_grace: str, then_grace: str, runs: list[str]
) -> None:
    """Runs are pending after the last one that ran, by period: with a longer grace the day that ran is not run
    again (its due time moved past the one recorded), with a shorter one the days between are not skipped (their
    due times fell before the one recorded)."""
    home = tmp_path
    (home / "logs").mkdir()
    (home / "logs" / "attribution.jsonl").write_bytes(
        b"".join(trade_row(f"2026-11-{day}T15:00:00+00:00", f"t{day}") for day in (23, 24, 25))
    )
    clock = Clock(
        datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
        if first_grace == "2880"
        else datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    )
    ran: list[str] = []
    for grace_minutes in (first_grace, then_grace):
        settings = load_settings(
            home=home,
            environ={},
            overrides={"metrics_enabled": "false", "schedule.grace_minutes": grace_minutes},
        )
        engine = Engine(settings, start_at_end=False, purpose="test")
        try:
            drain(engine, 1000)
            engine.commit()
            with capture_logs() as logs:
                JobRunner(engine, calendar_for(settings), clock=clock).run_due(DAILY)
        finally:
            engine.close()
        ran.append(",".join(entry["period"] for entry in logs if entry["event"] == "job_ran"))
        if first_grace == "15":
            clock.moment = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # past the 23rd's due under either grace
    assert ran == ["2026-11-23", ",".join(runs)]


def test_a_period_that_failed_before_later_ones_succeeded_is_run_again(tmp_path: Path) -> None:
    """2026-11-17's report cannot be written (a directory stands where its file goes): that period fails, the
    others succeed. Once the cause is gone, the next pass runs 2026-11-17 again (it was skipped for good: only
    periods after the last success counted as pending), and nothing else."""
    home = tmp_path
    (home / "logs").mkdir()
    (home / "logs" / "attribution.jsonl").write_bytes(
        b"".join(trade_row(f"2026-11-{day}T15:00:00+00:00", f"t{day}") for day in (16, 17, 18, 19))
    )
    settings = settings_for(home)
    blocked = home / "data" / "reports" / "daily" / "2026-11-17.json"
    blocked.mkdir(parents=True)
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 1000)
        runner = JobRunner(engine, calendar_for(settings), clock=Clock(datetime(2026, 11, 19, 22, 30, tzinfo=UTC)))
        assert runner.run_all_due() == 4
        assert runner.failure_count == 1
        assert job_runs(home, DAILY) == [
            ("2026-11-16", "ok"),
            ("2026-11-17", "failed"),
            ("2026-11-18", "ok"),
            ("2026-11-19", "ok"),
        ]
        blocked.rmdir()
        with capture_logs() as logs:
            assert runner.run_all_due() == 1
    finally:
        engine.close()
    assert [(entry["job"], entry["period"]) for entry in logs if entry["event"] == "job_ran"] == [
        ("daily", "2026-11-17")
    ]
    assert all(status == "ok" for _, status in job_runs(home, DAILY))
    assert orjson.loads(blocked.read_bytes())["day"] == "2026-11-17"


def test_periods_run_with_the_collector_looking_less_often_and_its_thresholds_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up's periods run with the cyclic collector's first threshold raised (their reports' many short-lived
    containers form no cycles); the thresholds in force before are back after it."""
    home = tmp_path
    (home / "logs").mkdir()
    (home / "logs" / "attribution.jsonl").write_bytes(trade_row("2026-11-16T15:00:00+00:00", "a"))
    settings = settings_for(home)
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    period_of = scheduler.execute_period

    def execute_period(*args: Any, **options: Any) -> str:
        seen.append(gc.get_threshold())
        return period_of(*args, **options)

    monkeypatch.setattr(scheduler, "execute_period", execute_period)
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 1000)
        assert replay_history(engine, calendar_for(settings), datetime(2026, 11, 18, 22, 0, tzinfo=UTC)).periods == 3
    finally:
        engine.close()
    assert seen == [(100_000, *before[1:])] * 3
    assert gc.get_threshold() == before


def test_a_failing_job_is_counted_and_the_daemon_keeps_learning(tmp_path: Path) -> None:
    """A job whose report cannot be written fails, is logged with its traceback and recorded as failed; the daemon
    keeps applying lines and exits cleanly."""
    home = tmp_path
    (home / "logs").mkdir()
    now = datetime.now(UTC)
    stamp = (now - timedelta(days=3)).isoformat()
    (home / "logs" / "attribution.jsonl").write_bytes(trade_row(stamp, "first"))
    (home / "data" / "reports").mkdir(parents=True)
    (home / "data" / "reports" / "daily").write_text("a file where the daily report directory should be")
    env = daemon_env(home)
    env.pop("LEARND_SCHEDULE__DAILY_ENABLED")
    env.pop("LEARND_SCHEDULE__WEEKLY_ENABLED")
    process = subprocess.Popen(
        [sys.executable, "-m", "learnd", "run", "--backfill"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        failure = wait_for_log(process, "job_failed")
        with open(home / "logs" / "attribution.jsonl", "ab") as handle:
            handle.write(trade_row(now.isoformat(), "second"))
        deadline = time.monotonic() + 20
        applied = 0
        while time.monotonic() < deadline and applied < 2:
            store = Store.open(settings_for(home).db_path, readonly=True)
            try:
                applied = store.line_counts().get(("attribution", "applied", "close"), 0)
            finally:
                store.close()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
    assert failure["job"] == DAILY
    assert "Traceback" in str(failure["traceback"])
    assert applied == 2
    assert "failed" in {status for _, status in job_runs(home, DAILY)}
    schedule = subprocess.run(
        [sys.executable, "-m", "learnd", "--home", str(home), "schedule", "--json"],
        check=True,
        capture_output=True,
        env={key: value for key, value in os.environ.items() if not key.startswith("LEARND_")},
    )
    assert orjson.loads(schedule.stdout)["jobs"]["daily"]["failed_runs"] >= 1


def test_signal_suggestions_are_logged_once_with_the_weekly_reports(tmp_path: Path) -> None:
    """Signal-pattern suggestions that a confidence bound supports go to data/signal_suggestions.jsonl (model
    `signals`), exactly those listed in the weekly reports, and change no weight; data/weight_learning.jsonl holds
    learning updates only, each with its old and new multiplier (FORMATS.md)."""
    home = tmp_path / "home"
    simulate(home, trades=1200, seed=4)
    settings = settings_for(home)
    engine = Engine(settings, start_at_end=False, purpose="backfill")
    try:
        drain(engine, 2000)
        replay_history(engine, calendar_for(settings), datetime(2026, 11, 24, tzinfo=UTC))
    finally:
        engine.close()
    listed = [
        suggestion
        for path in sorted((home / "data" / "reports" / "weekly").glob("*.json"))
        for suggestion in orjson.loads(path.read_bytes())["signals"]["suggestions"]
    ]
    logged = [orjson.loads(line) for line in (home / "data" / "signal_suggestions.jsonl").read_bytes().splitlines()]
    updates = [orjson.loads(line) for line in (home / "data" / "weight_learning.jsonl").read_bytes().splitlines()]
    assert listed, "the simulated patterns carry edges a bound can support"
    assert len(logged) == len(listed)
    assert all(document["model"] == "signals" for document in logged)
    assert all("applies_to_weights=False" in document["reason"] for document in logged)
    assert updates
    assert all(isinstance(update["old"], float) and isinstance(update["new"], float) for update in updates)
    # One sequence over both journals: each change is in one of them, once.
    seqs = sorted(document["seq"] for document in logged + updates)
    assert len(set(seqs)) == len(seqs)


def test_a_period_committed_before_its_journal_could_be_written_is_not_run_again(tmp_path: Path) -> None:
    """The suggestions journal cannot be written (a directory stands where it goes) when the first weekly period
    with suggestions commits: the run stands (job_exports_failed, not job_failed), the journal gets its rows once
    it can be written, and a second catch-up runs nothing (the period was recorded failed and run again, its
    suggestions committed twice)."""
    home = tmp_path / "home"
    simulate(home, trades=1200, seed=4)
    settings = settings_for(home)
    journal = home / "data" / "signal_suggestions.jsonl"
    now = datetime(2026, 11, 24, tzinfo=UTC)
    with capture_logs() as logs:

        def clear_once_it_failed(done: int, due: int) -> None:
            if journal.is_dir() and any(entry["event"] == "job_exports_failed" for entry in logs):
                journal.rmdir()

        engine = Engine(settings, start_at_end=False, purpose="backfill")
        try:
            drain(engine, 2000)
            journal.mkdir(parents=True)
            first = replay_history(engine, calendar_for(settings), now, on_progress=clear_once_it_failed)
            second = replay_history(engine, calendar_for(settings), now)
        finally:
            engine.close()
    events = [entry["event"] for entry in logs]
    assert events.count("job_exports_failed") == 1
    assert "job_failed" not in events
    assert (first.failed, second.periods) == (0, 0)
    listed = [
        suggestion
        for path in sorted((home / "data" / "reports" / "weekly").glob("*.json"))
        for suggestion in orjson.loads(path.read_bytes())["signals"]["suggestions"]
    ]
    logged = [orjson.loads(line) for line in journal.read_bytes().splitlines()]
    assert listed and len(logged) == len(listed)


@pytest.fixture(scope="module")
def ending_today(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated bot home whose history of about a hundred sessions ends a few days before today."""
    template = tmp_path_factory.mktemp("ending_today")
    simulate(template, trades=2000, seed=17, start=date.today() - timedelta(days=150))
    return template


def job_events(process: subprocess.Popen[bytes], stop_after: int | None) -> list[tuple[str, str]]:
    """The daemon's job_ran events (job, period) read from its JSON log until `stop_after` of them, or (None) until
    it says the catch-up is over, or until its output ends."""
    assert process.stdout is not None
    ran: list[tuple[str, str]] = []
    while True:
        line = process.stdout.readline()
        if not line:
            return ran
        entry = orjson.loads(line)
        if entry.get("event") == "job_ran":
            # The daemon counts a period's CPU in the loop's thread and the worker's: some of each, never none.
            assert entry["cpu_ms"] > 0.0
            ran.append((str(entry["job"]), str(entry["period"])))
            if stop_after is not None and len(ran) >= stop_after:
                return ran
        elif entry.get("event") == "jobs_caught_up" and stop_after is None:
            return ran


def test_sigterm_in_the_middle_of_a_catch_up_stops_within_five_seconds_and_no_period_runs_twice(
    ending_today: Path, tmp_path: Path
) -> None:
    """SIGTERM twice in the middle of the job catch-up: each time the daemon exits 0 within 5 s, logging the catch-up
    as interrupted (not as caught up); the periods it had not finished run at the next start; over the three runs
    every period ran exactly once, and the reports are byte for byte those of one uninterrupted backfill."""
    home = tmp_path / "home"
    shutil.copytree(ending_today / "logs", home / "logs")
    env = {**daemon_env(home), "LEARND_SCHEDULE__DAILY_ENABLED": "true", "LEARND_SCHEDULE__WEEKLY_ENABLED": "true"}
    ran: list[tuple[str, str]] = []
    per_run: list[int] = []
    for stop_after in (7, 23, None):
        process = subprocess.Popen(
            [sys.executable, "-m", "learnd", "run", "--backfill"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            ran += job_events(process, stop_after)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=10)
            elapsed = time.monotonic() - started
            assert process.stdout is not None
            rest = [orjson.loads(line) for line in process.stdout.read().splitlines() if line.startswith(b"{")]
            # A period that finished while the signal arrived.
            ran += [(str(entry["job"]), str(entry["period"])) for entry in rest if entry.get("event") == "job_ran"]
            if stop_after is not None:
                # Said to be cut short, and not said to be caught up.
                events = {entry.get("event") for entry in rest}
                assert "jobs_interrupted" in events and "jobs_caught_up" not in events
        finally:
            reap(process)
        per_run.append(len(ran) - sum(per_run))
        assert status == 0
        assert elapsed < 5.0
    assert len(ran) == len(set(ran))
    reference = tmp_path / "reference"
    shutil.copytree(ending_today / "logs", reference / "logs")
    subprocess.run(
        [sys.executable, "-m", "learnd", "backfill", "--progress", "none"],
        env={**env, "LEARND_HOME": str(reference)},
        check=True,
        capture_output=True,
    )
    expected = sorted((path.parent.name, path.stem) for path in (reference / "data" / "reports").rglob("*.json"))
    assert sorted(set(ran)) == expected
    # The stops cut the catch-up short (its rest ran at the next start), rather than waiting for all of it.
    assert per_run[0] < 10
    assert per_run[1] < 30
    assert per_run[2] > 50
    for path in (reference / "data" / "reports").rglob("*"):
        if path.is_file():
            assert (home / path.relative_to(reference)).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("command", ["backfill", "status"])
def test_only_the_daemon_imports_the_scheduler_library(tmp_path: Path, command: str) -> None:
    """APScheduler schedules the daemon's next periods; a one-shot backfill (which runs its periods itself) and
    the quick commands do without its import."""
    # main(), not `python -m learnd`: as a program these commands leave at once, before the probe could look.
    probe = (
        "import sys\nfrom learnd.cli import main\nassert main(['--home', sys.argv[1], sys.argv[2]]) == 0\n"
        "sys.stderr.write('APSCHEDULER' if 'apscheduler' in sys.modules else 'CLEAN')\n"
    )
    simulate(tmp_path, trades=20, seed=3)
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path), command], capture_output=True, text=True, check=False
    )
    assert result.stderr.endswith("CLEAN"), result.stderr[-2000:]


def test_the_daemon_schedules_its_jobs_whatever_the_host_s_time_zone_setting(tmp_path: Path) -> None:
    """The schedule is in UTC: a host whose TZ is a POSIX rule (`UTC0`, which tzlocal cannot name) schedules both
    jobs and stops cleanly (the date trigger asked the host for its zone and the daemon exited 1)."""
    home = tmp_path
    (home / "logs").mkdir()
    (home / "logs" / "attribution.jsonl").write_bytes(trade_row("2026-11-24T15:00:00+00:00", "t1"))
    env = {
        **daemon_env(home),
        "LEARND_SCHEDULE__DAILY_ENABLED": "true",
        "LEARND_SCHEDULE__WEEKLY_ENABLED": "true",
        "TZ": "UTC0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "learnd", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        scheduled: set[str] = set()
        for line in process.stdout:
            entry = orjson.loads(line)
            if entry.get("event") == "job_scheduled":
                scheduled.add(str(entry["job"]))
                if scheduled == {DAILY, WEEKLY}:
                    break
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=10)
    finally:
        reap(process)
    assert scheduled == {DAILY, WEEKLY}
    assert status == 0
