"""jobs.periods: what a daily or weekly period produces on a hand-made trading day (tests/bot_rows.py): its JSON
report (the report document's bytes), the Markdown rendering, where they go, and for a week the signal-pattern
suggestions as change documents; all of it read from the committed store only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from learnd.devtools.simulate import simulate
from learnd.errors import ConfigError
from learnd.exports.files import json_bytes
from learnd.jobs.periods import JobOutput, daily_report_document, load_longrun, run_period
from learnd.jobs.periods import _execution_section as execution_section
from learnd.jobs.reports import render_daily_markdown, render_weekly_markdown
from learnd.jobs.schedule import DAILY, WEEKLY, Period, last_session, next_periods
from learnd.learning.execution import NAME as EXECUTION_LEARNER
from learnd.learning.execution import render_execution, symbol_outcomes
from learnd.learning.signals import render_signals
from learnd.records.parse import TradeOutcome
from learnd.service.backfill import drain
from learnd.service.engine import Engine
from learnd.service.scheduler import JobRunner, replay_history
from learnd.sessions.exchange import from_epoch_us, to_epoch_us
from learnd.store.database import Batch, Store
from learnd.store.ledger import RecordCache, ledger_records
from learnd.views.weights import weights_document
from tests.bot_rows import TRADING_DAY, append, close_row, line, write_trading_day
from tests.conftest import build_settings

MONDAY = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.fixture
def engine(home: Path) -> Iterator[Engine]:
    """The trading day learned, and the sessions of its whole week closed and committed (what the job runner
    does before a period runs). Ten episodes are enough for a suggestion here."""
    write_trading_day(home)
    opened = Engine(build_settings(home, overrides={"signals.min_episodes": 10}), start_at_end=False, purpose="test")
    try:
        drain(opened, 1000)
        (week,) = next_periods(opened.calendar, opened.settings, WEEKLY, MONDAY, 1)
        opened.close_sessions(last_session(opened.calendar, opened.settings, week))
        yield opened
    finally:
        opened.close()


def period(engine: Engine, job: str) -> Period:
    (found,) = next_periods(engine.calendar, engine.settings, job, MONDAY, 1)
    return found


def produce(engine: Engine, job: str, store: Store | None = None) -> JobOutput:
    """The period's output from a store (the engine's unless given), with the long-run figures it committed."""
    reading = store or engine.store
    longrun = load_longrun(reading, engine.calendar)
    return run_period(reading, engine.settings, engine.calendar, period(engine, job), longrun)


def test_daily_documents_are_the_report_as_json_and_markdown(engine: Engine) -> None:
    """The day's JSON document is the bytes of the report built from the ledger (every closed trade up to the day
    for its execution section); the Markdown is its rendering with the signal and execution sections; both go
    to data/reports/daily/<day>, and the run names the JSON one."""
    output = produce(engine, DAILY)
    target = engine.settings.data_dir / "reports" / "daily"
    assert [path for path, _ in output.documents] == [target / f"{TRADING_DAY}.json", target / f"{TRADING_DAY}.md"]
    assert output.report == target / f"{TRADING_DAY}.json"
    assert output.changes == ()
    _, day_end_us = engine.calendar.session_bounds_us(
        last_session(engine.calendar, engine.settings, period(engine, DAILY))
    )
    closed = symbol_outcomes(
        record
        for record in ledger_records(engine.store, "trade", until_us=day_end_us)
        if isinstance(record, TradeOutcome)
    )
    report = daily_report_document(
        engine.store, engine.settings, engine.calendar, TRADING_DAY, closed, records=RecordCache()
    )
    (_, json_document), (_, markdown) = output.documents
    assert json_document == json_bytes(report)
    text = markdown.decode()
    assert text.startswith(render_daily_markdown(report))
    assert f"## Signal episodes\n\n```\n{render_signals(report['signals'])}```\n" in text
    assert f"## Execution quality\n\n```\n{render_execution(report['execution_quality'])}```\n" in text


def test_the_daily_report_holds_the_day_s_trades_signals_and_orders(engine: Engine) -> None:
    """Its figures are the hand-made day's: 20 episodes (10 became trades, 3 closed; none left open as of the
    report), and the two symbols' orders."""
    report = orjson.loads(produce(engine, DAILY).documents[0][1])
    assert report["day"] == TRADING_DAY
    signals = report["signals"]
    assert (signals["episodes"], signals["open_episodes"], signals["converted"], signals["with_outcome"]) == (
        20,
        0,
        10,
        3,
    )
    groups = {row["symbol"]: row for row in report["execution_quality"]["groups"]}
    assert (groups["S00"]["slippage_bps"], groups["S01"]["slippage_bps"]) == (5.0, 20.0)
    assert groups["S01"]["market_fallback"] == 1


def test_weekly_documents_go_under_the_iso_week(engine: Engine) -> None:
    """The week's report is data/reports/weekly/<YYYY-Www>.json and .md, the Markdown its rendering."""
    output = produce(engine, WEEKLY)
    target = engine.settings.data_dir / "reports" / "weekly"
    assert [path for path, _ in output.documents] == [target / "2026-W10.json", target / "2026-W10.md"]
    report = orjson.loads(output.documents[0][1])
    assert output.documents[0][1] == json_bytes(report)
    assert output.documents[1][1].decode().startswith(render_weekly_markdown(report))


def test_weekly_suggestions_become_change_documents_at_the_week_s_close(engine: Engine) -> None:
    """Each suggestion the weekly report lists becomes one change document (model `signals`) at the close of the
    week's last session, saying what it suggests and that it applies to no weight."""
    output = produce(engine, WEEKLY)
    suggestions = orjson.loads(output.documents[0][1])["signals"]["suggestions"]
    assert [(item["pattern"], item["regime"], item["direction"]) for item in suggestions] == [
        (["dark_pool"], "all", "lower"),
        (["dark_pool"], "mixed", "lower"),
        (["options_flow"], "all", "raise"),
        (["options_flow"], "mixed", "raise"),
    ]
    friday_close = datetime(2026, 3, 6, 21, tzinfo=UTC)
    assert len(output.changes) == len(suggestions)
    for change, suggestion in zip(output.changes, suggestions, strict=True):
        assert change["event_us"] == to_epoch_us(friday_close)
        assert change["event_ts"] == "2026-03-06T21:00:00+00:00"
        assert (change["model"], change["strategy"], change["old"], change["new"]) == ("signals", "equity", None, None)
        assert (change["component"], change["regime"]) == ("+".join(suggestion["pattern"]), suggestion["regime"])
        assert change["samples"] == suggestion["samples"] == 10
    assert output.changes[2]["reason"] == (
        "signal_pattern_suggestion week=2026-W10 metric=conversion direction=raise value=1.0 "
        "bound=[0.722467, 1.0] strategy_average=0.5 applies_to_weights=False"
    )


def test_a_pattern_of_several_components_is_named_by_joining_them(home: Path) -> None:
    """When the converted episodes carry two components, their suggestion is logged under `a+b`."""
    write_trading_day(home)
    signals = home / "logs" / "signals.jsonl"
    rows = [orjson.loads(line) for line in signals.read_bytes().splitlines()]
    for row in rows:
        components = row["cluster"]["composite_meta"]["components"]
        if "flow" in components:
            components["dark_pool"] = 0.5
    signals.write_bytes(b"".join(line(row) for row in rows))
    engine = Engine(build_settings(home, overrides={"signals.min_episodes": 10}), start_at_end=False, purpose="test")
    try:
        drain(engine, 1000)
        engine.close_sessions(last_session(engine.calendar, engine.settings, period(engine, WEEKLY)))
        changes = produce(engine, WEEKLY).changes
    finally:
        engine.close()
    assert {(change["component"], change["regime"]) for change in changes} == {
        ("dark_pool+options_flow", "all"),
        ("dark_pool+options_flow", "mixed"),
        ("dark_pool", "all"),
        ("dark_pool", "mixed"),
    }


def test_documents_are_built_from_the_committed_store_only(engine: Engine) -> None:
    """A read-only connection to the store gives the same bytes; lines read but not committed change nothing;
    once committed, the late trade is in the day's report."""
    before = {job: produce(engine, job) for job in (DAILY, WEEKLY)}
    reader = Store.open(engine.settings.db_path, readonly=True)
    try:
        assert {job: produce(engine, job, reader) for job in (DAILY, WEEKLY)} == before
    finally:
        reader.close()

    append(
        engine.settings.home / "logs" / "attribution.jsonl",
        [close_row(f"{TRADING_DAY}T18:00:00+00:00", "S03", 2.0, entry_ts=f"{TRADING_DAY}T15:03:45+00:00")],
    )
    assert engine.poll(100) == 1
    assert produce(engine, DAILY) == before[DAILY]
    engine.commit()
    after = orjson.loads(produce(engine, DAILY).documents[0][1])
    assert after != orjson.loads(before[DAILY].documents[0][1])
    assert after["signals"]["with_outcome"] == 4


def test_a_day_s_execution_groups_are_kept_while_the_learner_state_is_unchanged(engine: Engine) -> None:
    """The execution section reads each day's groups once through the record cache and serves them again while
    the execution learner's state is the one they were read under; a row that changes comes with a new state, and
    the next section reads the day again: with a kept cache, the section is always a fresh cache's."""
    store = engine.store
    day = date.fromisoformat(TRADING_DAY)
    days = (day - timedelta(days=3), day + timedelta(days=2))
    records = RecordCache()

    def section(cache: RecordCache) -> bytes:
        return json_bytes(execution_section(store, engine.settings, engine.calendar, days, {}, records=cache))

    first = section(records)
    assert section(records) == first == section(RecordCache())
    assert orjson.loads(first)["groups"]
    # One group's row counts one more submission, committed with the learner state it came with.
    key, event_us, body = next(store.learner_rows_in_keys(EXECUTION_LEARNER, TRADING_DAY, "9999"))
    document = orjson.loads(body)
    document["counters"]["submissions"] += 1
    store.commit(
        Batch(
            learner_rows=[(EXECUTION_LEARNER, key, event_us, orjson.dumps(document, option=orjson.OPT_SORT_KEYS))],
            learner_states={EXECUTION_LEARNER: (store.learner_state(EXECUTION_LEARNER) or b"") + b" "},
        )
    )
    changed = section(records)
    assert changed != first
    assert changed == section(RecordCache())


def test_the_daily_report_says_what_the_bot_applies_as_learnd_weights_does(tmp_path: Path) -> None:
    """After the last day's job, the daily report's `bot` section is what `learnd weights` says (the model has not
    changed since that close; `weights` adds the exits the bot never reads, which an end-of-session snapshot does
    not hold), and its Markdown has the section's table with the pins and caps."""
    truth = simulate(tmp_path, 1200, seed=2, garbage=False)
    settings = build_settings(
        tmp_path, sources=("attribution",), overrides={"schedule.daily_enabled": True, "schedule.weekly_enabled": True}
    )
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 2000)
        last_close = from_epoch_us(engine.calendar.closes_us[engine.calendar.session_of_day(truth.last_session)])
        runner = JobRunner(engine, engine.calendar, clock=lambda: last_close + timedelta(hours=1))
        assert runner.run_all_due() > 0
    finally:
        engine.close()
    reports = tmp_path / "data" / "reports" / "daily"
    report = orjson.loads((reports / f"{truth.last_session.isoformat()}.json").read_bytes())
    markdown = (reports / f"{truth.last_session.isoformat()}.md").read_text()
    section = report["bot"]
    from_weights = weights_document(settings, None, None)["bot"]
    assert "exits_not_read" in from_weights
    assert section == {key: value for key, value in from_weights.items() if key != "exits_not_read"}
    assert any(row["learned"] != 1.0 for row in section["components"].values())
    assert "## What the bot applies" in markdown
    assert "| `options_flow` |" in markdown and "pinned at its static weight" in markdown
    assert "component x regime pairs" in markdown


def test_the_weekly_report_lists_the_stale_decay_its_week_s_close_applied(home: Path) -> None:
    """Components left without evidence while trades go on decay at each week's close once idle 20 sessions: the
    weekly report lists those moves as the trade learner made them (the old and new values of its change log), not a
    further decay of its own."""
    simulate(home, 1500, seed=3, edges={"dark_pool": 2.5}, garbage=False, start=date(2026, 1, 5))  # to 2026-04-23
    settings = build_settings(
        home,
        sources=("attribution", "exit"),
        overrides={"schedule.daily_enabled": True, "schedule.weekly_enabled": True},
    )
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        # Then six weeks of one trade a session carrying insider only: every other component idles.
        later = [day for day in engine.calendar.sessions if date(2026, 4, 27) <= day <= date(2026, 6, 5)]
        append(
            home / "logs" / "attribution.jsonl",
            (close_row(f"{day}T15:00:00+00:00", "ZZZ", 0.1, components={"insider": 0.2}) for day in later),
        )
        drain(engine, 10_000)
        replay_history(engine, engine.calendar, datetime(2026, 6, 8, tzinfo=UTC))
    finally:
        engine.close()
    data = settings.data_dir
    decays: dict[int, list[tuple[str, str, str, float, float]]] = {}
    for raw in (data / "weight_learning.jsonl").read_bytes().splitlines():
        change = orjson.loads(raw)
        if change["reason"].startswith("stale_decay "):
            row = (change["strategy"], change["component"], change["regime"], change["old"], change["new"])
            decays.setdefault(change["event_us"], []).append(row)
    assert len(decays) >= 2  # decays at two weeks' closes at least
    listed = 0
    for path in sorted((data / "reports" / "weekly").glob("*.json")):
        report = orjson.loads(path.read_bytes())
        applied = [
            (row["strategy"], row["component"], row["regime"], row["multiplier"], row["decayed"])
            for row in report["stale_multipliers"]["applied"]
        ]
        expected = decays.get(engine.calendar.closes_us[report["current_session"]], [])
        assert applied == [(*cell, round(old, 6), round(new, 6)) for *cell, old, new in expected]
        assert all(row["sessions_idle"] >= 20 for row in report["stale_multipliers"]["applied"])
        listed += len(applied)
    assert listed == sum(len(rows) for rows in decays.values())


def test_a_weekly_window_of_n_sessions_reads_n_sessions(tmp_path: Path) -> None:
    """`schedule.weekly_window_sessions = N` makes each weekly report look at the last N sessions (it read N + 1);
    a window the drift test's 20 recent sessions fill (nothing earlier to compare them with) is refused."""
    simulate(tmp_path, trades=700, seed=3, start=date(2026, 1, 5), garbage=False)
    overrides = {"schedule.weekly_enabled": True, "schedule.weekly_window_sessions": 25}
    settings = build_settings(tmp_path, sources=("attribution",), overrides=overrides)
    engine = Engine(settings, start_at_end=False, purpose="backfill")
    try:
        drain(engine, 100_000)
        replay_history(engine, engine.calendar, datetime(2026, 3, 14, tzinfo=UTC))
    finally:
        engine.close()
    reports = [orjson.loads(path.read_bytes()) for path in sorted((tmp_path / "data/reports/weekly").glob("*.json"))]
    firsts = [
        (report["current_session"], body["summary"]["first_session"])
        for report in reports
        for body in report["strategies"].values()
    ]
    assert len(firsts) >= 5
    assert all(first >= current - 24 for current, first in firsts)
    assert any(first == current - 24 for current, first in firsts)
    for window in (20, 5, -1):
        with pytest.raises(ConfigError, match="weekly_window_sessions"):
            build_settings(tmp_path, overrides={"schedule.weekly_window_sessions": window})
