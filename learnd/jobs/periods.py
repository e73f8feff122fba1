"""What a job period produces: its report documents (JSON and Markdown), weekly the signal-pattern suggestions to
log, and the long-run figures it brought up to date. Built from what the store committed (ledger, weight changes,
end-of-session snapshots, the kept long-run figures), so a backfill and a live daemon that saw the same lines
produce the same bytes. A period reads its own sessions through indexes; all history comes from the long-run
figures (jobs.longrun), never from a scan. Jobs only read the store; the engine writes the documents and commits
the rest (see service.scheduler).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import partial
from hashlib import sha256
from itertools import chain
from pathlib import Path
from typing import Any, Final

import orjson

from learnd.config import Settings
from learnd.errors import StopRequested
from learnd.exports.bot import BotRules, bot_application
from learnd.exports.files import json_bytes
from learnd.jobs.longrun import RECENT_SESSIONS, LongRun, SessionOutcomes, session_runs
from learnd.jobs.reports import (
    daily_report,
    longrun_of,
    render_bot_markdown,
    render_daily_markdown,
    render_weekly_markdown,
    weekly_report,
)
from learnd.jobs.schedule import DAILY, Period, last_session
from learnd.jobs.signalwindow import window_signals
from learnd.learning.execution import (
    AFTER_CLOSE,
    ExecutionParams,
    GroupRow,
    SymbolOutcomes,
    aggregates_of,
    execution_summary,
    render_execution,
    symbol_outcomes,
)
from learnd.learning.execution import NAME as EXECUTION_LEARNER
from learnd.learning.signals import SignalParams, render_signals
from learnd.records.parse import ExitOutcome, TradeOutcome
from learnd.sessions.exchange import ExchangeCalendar, from_epoch_us
from learnd.store.database import LedgerRow, Store
from learnd.store.ledger import RecordCache, ledger_records, record_of

# Long steps look at the stop request this often (ledger rows taken in between two looks).
_STOP_CHECK_ROWS: Final = 512
# Signal patterns need history: the weekly report looks at the last four weeks of episodes and orders.
_WEEKLY_SIGNAL_WINDOW_DAYS: Final = 28
# The furthest back in event time from its end that a period reads ledger records through a RecordCache: periods
# run in event order, so a catch-up's cache may forget records older than this behind the newest it read.
RECORD_SPAN_US: Final = _WEEKLY_SIGNAL_WINDOW_DAYS * 86_400_000_000
# A day's execution groups, kept decoded for the weekly reports that read the day again (four weeks of days, and
# some over: a window spans 28 or 29 of them).
_EXECUTION_DAY: Final = "execution-day"
_BUCKET: Final = 5  # a group key's time-of-day bucket
_KEPT_EXECUTION_DAYS: Final = 40


@dataclass(frozen=True, slots=True)
class JobOutput:
    """What one period produced: files to write (path, bytes) and change documents to commit; `report` is the
    JSON report's path (what the run record names)."""

    report: Path
    documents: tuple[tuple[Path, bytes], ...]
    changes: tuple[dict[str, Any], ...] = ()
    state: dict[str, bytes] = field(default_factory=dict)
    values: tuple[tuple[str, int, bytes], ...] = ()
    # Weight changes before this event time are reported (a daily report read them) or never will be.
    reported_until_us: int | None = None


def run_period(
    store: Store,
    settings: Settings,
    calendar: ExchangeCalendar,
    period: Period,
    longrun: LongRun,
    *,
    records: RecordCache | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> JobOutput:
    """The report of one period (its sessions already closed in the learners and committed), for a week the
    suggestion documents its signal section supports, and the long-run figures brought up to its last session
    (`longrun`, updated in place; its rows are in the output, to commit with the run).

    Raises StopRequested as soon as `should_stop()` says so between steps; `longrun` may then hold part of the
    period and must be read again from the store. `records` keeps decoded ledger records from period to period.
    """
    records = records if records is not None else RecordCache()
    session = last_session(calendar, settings, period)
    in_order = session >= longrun.through
    # The session's trades as the figures took them in, when they took in all of them now (in order, the day
    # after the last period): the daily report reads those instead of the ledger.
    day: tuple[list[TradeOutcome], SessionOutcomes] | None = None
    if in_order:
        taken = advance(longrun, store, calendar, session, should_stop)
        if taken is not None:
            day = (taken, longrun.recent.get(session) or SessionOutcomes())
    _check(should_stop)
    if period.job == DAILY:
        outcomes = _closed_outcomes(store, calendar, session, longrun if in_order else None)
        report = daily_report_document(store, settings, calendar, period.label, outcomes, records=records, day=day)
        state, values = longrun.rows()
        output = _output(settings, "daily", period.label, report, state=state, values=values)
        return replace(output, reported_until_us=calendar.session_bounds_us(session)[1])
    report = weekly_report_document(
        store, settings, calendar, period.label, session, longrun=longrun if in_order else None, records=records
    )
    # Logged at the week's close in event time, to their own journal (data/signal_suggestions.jsonl); applied to
    # nothing (signals.suggestions_enabled only marks them `applies_to_weights`, for whoever reviews them).
    close_us = calendar.closes_us[session]
    changes = tuple(_suggestion_document(item, close_us, period.label) for item in report["signals"]["suggestions"])
    state, values = longrun.rows()
    return _output(settings, "weekly", period.label, report, changes, state=state, values=values)


def load_longrun(store: Store, calendar: ExchangeCalendar) -> LongRun:
    """The long-run figures as committed, with their recent window taken in again from the ledger (the rows they
    had taken in: sessions above the earlier samples' end, inserted up to the figures' ledger number)."""
    longrun = LongRun.from_rows(store.job_states("longrun"), store.job_values())
    if longrun.through > longrun.earlier_through:
        since_us = calendar.session_bounds_us(longrun.earlier_through)[1] if longrun.earlier_through >= 0 else None
        until_us = calendar.session_bounds_us(longrun.through)[1]
        trades = (
            record
            for row in store.ledger_up_to("trade", since_us, until_us, longrun.seq)
            if isinstance(record := record_of(row), TradeOutcome)
        )
        for session, run in session_runs(trades, calendar.session_index):
            longrun.restore_recent(run, session)
    return longrun


def advance(
    longrun: LongRun,
    store: Store,
    calendar: ExchangeCalendar,
    through: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[TradeOutcome] | None:
    """Take in every committed trade up to session `through`: those that arrived since the figures last looked for
    sessions they had already passed (late ones), then the sessions after; move the sessions that left the recent
    window into the earlier samples. The ledger number is read first, so a row committed meanwhile is taken in
    next time, never twice. Returns session `through`'s trades (ledger order) when this call took in all of them
    (the figures had not reached it), else None. Each trade is decoded and attributed once."""
    seq = store.ledger_seq
    boundary_us: int | None = None
    rows: list[Iterable[LedgerRow]] = []
    if longrun.through >= 0:
        boundary_us = calendar.session_bounds_us(longrun.through)[1]
        rows.append(store.ledger_since("trade", longrun.seq, boundary_us))
    whole = through > longrun.through
    if whole:
        rows.append(store.ledger("trade", since_us=boundary_us, until_us=calendar.session_bounds_us(through)[1]))
    run: list[TradeOutcome] = []
    session = -1
    start_us = end_us = 0
    for count, row in enumerate(chain.from_iterable(rows)):
        if count % _STOP_CHECK_ROWS == 0:
            _check(should_stop)
        record = record_of(row)
        if not isinstance(record, TradeOutcome):
            continue
        if not start_us <= record.event_us < end_us:
            if run:
                longrun.absorb(run, session)
                run = []
            session = calendar.session_index(record.event_us)
            start_us, end_us = calendar.session_bounds_us(session)
        run.append(record)
    if run:
        longrun.absorb(run, session)
    longrun.through = max(longrun.through, through)
    longrun.seq = seq
    longrun.settle_earlier(longrun.through - RECENT_SESSIONS)
    if not whole:
        return None
    return run if session == through else []


def _check(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise StopRequested("the job was stopped before it finished; it runs again at the next start")


def _closed_outcomes(
    store: Store, calendar: ExchangeCalendar, session: int, longrun: LongRun | None
) -> Mapping[tuple[str, str], SymbolOutcomes]:
    """Per (strategy, symbol), the closed trades of every session up to `session`: from the long-run figures, or
    for a period older than them (a job turned on later) from the ledger."""
    if longrun is None:
        _, end_us = calendar.session_bounds_us(session)
        return symbol_outcomes(
            record
            for record in ledger_records(store, "trade", since_us=None, until_us=end_us)
            if isinstance(record, TradeOutcome)
        )
    return longrun.closed_outcomes()


def _output(
    settings: Settings,
    kind: str,
    label: str,
    report: dict[str, Any],
    changes: tuple[dict[str, Any], ...] = (),
    *,
    state: dict[str, bytes],
    values: list[tuple[str, int, bytes]],
) -> JobOutput:
    target = settings.data_dir / "reports" / kind / f"{label}.json"
    render = render_daily_markdown if kind == "daily" else render_weekly_markdown
    markdown = render(report) + _sections_markdown(report)
    documents = ((target, json_bytes(report)), (target.with_suffix(".md"), markdown.encode()))
    return JobOutput(report=target, documents=documents, changes=changes, state=state, values=tuple(values))


# The model a weekly signal-pattern suggestion is logged under (it changes no multiplier: old and new are None).
SUGGESTION_MODEL: Final = "signals"


def is_suggestion(body: bytes) -> bool:
    """Whether a committed change (its JSON body) is a signal-pattern suggestion, not a learning update."""
    return bool(orjson.loads(body).get("model") == SUGGESTION_MODEL)


def _suggestion_document(suggestion: dict[str, Any], event_us: int, week: str) -> dict[str, Any]:
    return {
        "event_us": event_us,
        "event_ts": from_epoch_us(event_us).isoformat(),
        "model": SUGGESTION_MODEL,
        "strategy": suggestion["strategy"],
        "component": "+".join(suggestion["pattern"])
        if isinstance(suggestion["pattern"], list)
        else suggestion["pattern"],
        "regime": suggestion["regime"],
        "old": None,
        "new": None,
        "reason": (
            f"signal_pattern_suggestion week={week} metric={suggestion['metric']} "
            f"direction={suggestion['direction']} value={suggestion['value']} bound={suggestion['bound']} "
            f"strategy_average={suggestion['strategy_average']} applies_to_weights={suggestion['applies_to_weights']}"
        ),
        "samples": suggestion["samples"],
    }


def daily_report_document(
    store: Store,
    settings: Settings,
    calendar: ExchangeCalendar,
    label: str,
    outcomes: Mapping[tuple[str, str], SymbolOutcomes],
    *,
    records: RecordCache,
    day: tuple[list[TradeOutcome], SessionOutcomes] | None = None,
) -> dict[str, Any]:
    """data/reports/daily/D.json's content, from the committed ledger, changes and end-of-session snapshot;
    `outcomes` are every closed trade up to the day, per (strategy, symbol), for the execution section. `day` is
    the day's trades in ledger order with their outcomes by cell, when the caller has them (else read here)."""
    session_day = date.fromisoformat(label)
    index = calendar.session_of_day(session_day)
    start_us, end_us = calendar.session_bounds_us(index)
    if day is None:
        trades = [
            record
            for record in ledger_records(store, "trade", since_us=start_us, until_us=end_us)
            if isinstance(record, TradeOutcome)
        ]
        day = (trades, SessionOutcomes.of(trades))
    trades, day_outcomes = day
    close_us = calendar.closes_us[index]
    previous_close_us = calendar.closes_us[index - 1] if index > 0 else start_us
    # The exits since the last session's close, up to this one's (an exit after hours is the next session's, as an
    # order is): the job that runs after the close has seen them all, live or in a backfill.
    exits = [
        record
        for record in ledger_records(
            store, "exit", since_us=previous_close_us + 1 if index > 0 else start_us, until_us=close_us + 1
        )
        if isinstance(record, ExitOutcome)
    ]
    # Multiplier moves only: a weekly signal suggestion logged at this close (old/new None) is no move, and a daily
    # report run again after its week's job must read as it did before it.
    changes = [
        change for body in store.changes_between(start_us, end_us) if (change := orjson.loads(body))["old"] is not None
    ]
    late = _late_trades(store, close_us)
    snapshot = _snapshot(store, close_us)
    report = daily_report(
        session_day, trades, exits, changes, late_trades=late, model_snapshot=snapshot, outcomes=day_outcomes
    )
    # The episodes that ended since the last session's close, up to this one's: those that go on past the close are
    # the next session's, as they end (the job that runs after the close cannot have seen the rest of them).
    report["signals"] = window_signals(
        store, SignalParams.from_settings(settings.signals), previous_close_us, close_us, records
    )
    # The orders since the last session's close, up to this one's: all of them known when the job runs after the
    # close, live or in a backfill (the orders after the close are the next session's report's).
    since = (calendar.sessions[index - 1], True) if index > 0 else (session_day, False)
    report["execution_quality"] = _execution_section(
        store, settings, calendar, (since[0], session_day), outcomes, records=records, after_close_first=since[1]
    )
    # What the unchanged bot applies of the model as of the close (its pins, caps and regime blindness).
    report["bot"] = bot_application(snapshot or {}, BotRules.from_settings(settings.bot))
    return report


def _execution_section(
    store: Store,
    settings: Settings,
    calendar: ExchangeCalendar,
    days: tuple[date, date],
    outcomes: Mapping[tuple[str, str], SymbolOutcomes],
    *,
    records: RecordCache,
    after_close_first: bool = False,
) -> dict[str, Any]:
    """Execution quality of the orders dated (exchange time) from days[0] to days[1], the last day's up to its
    close (its `post` bucket is the next session's report's, written after orders the job cannot have seen), the
    first day's only from its close with `after_close_first`. Their rows' keys start with the day, so the range is
    read through the primary key."""
    # A day's groups are read again by the weekly reports of four weeks: each day's rows are read (each row decoded,
    # and a group one row holds viewed) once while the learner's state stays as it was. Every row the learner
    # writes comes with a new state, so the same state means the same rows; a day read in key order, day after
    # day, is the range read in key order (each key starts with its day).
    stamp = sha256(store.learner_state(EXECUTION_LEARNER) or b"").digest()  # a third of blake2b's CPU here
    day, rows = days[0], []
    while day <= days[1]:
        label = day.isoformat()
        kept = records.kept(
            _EXECUTION_DAY,
            b"%s|%s" % (label.encode(), stamp),
            partial(_execution_day, store, records, label, (day + timedelta(days=1)).isoformat()),
            _KEPT_EXECUTION_DAYS,
        )
        if day == days[0] and after_close_first:
            kept = [row for row in kept if row.group[_BUCKET] == AFTER_CLOSE]
        elif day == days[1]:
            kept = [row for row in kept if row.group[_BUCKET] != AFTER_CLOSE]
        rows.extend(kept)
        day += timedelta(days=1)
    aggregates, views = aggregates_of(rows)
    return execution_summary(
        aggregates, outcomes, ExecutionParams.from_settings(settings.execution, calendar.tz), views=views
    )


def _execution_day(store: Store, records: RecordCache, day: str, next_day: str) -> list[GroupRow]:
    """The execution groups of exchange day `day` (rows keyed from `day` up to `next_day`), decoded through
    `records`."""
    return [
        records.decoded(EXECUTION_LEARNER, body, GroupRow)
        for _, _, body in store.learner_rows_in_keys(EXECUTION_LEARNER, day, next_day)
    ]


def _sections_markdown(report: dict[str, Any]) -> str:
    parts = []
    if "signals" in report:
        parts.append(f"\n## Signal episodes\n\n```\n{render_signals(report['signals'])}```\n")
    if "execution_quality" in report:
        parts.append(f"\n## Execution quality\n\n```\n{render_execution(report['execution_quality'])}```\n")
    if "bot" in report:
        parts.append(render_bot_markdown(report["bot"]))
    return "".join(parts)


def weekly_report_document(
    store: Store,
    settings: Settings,
    calendar: ExchangeCalendar,
    week: str,
    index: int,
    *,
    longrun: LongRun | None,
    records: RecordCache | None = None,
) -> dict[str, Any]:
    """data/reports/weekly/YYYY-Www.json's content, over the ledger up to the week's last session `index`: all of
    it from the long-run figures (kept through `index`), or the last schedule.weekly_window_sessions sessions (or
    a week older than the figures) read from the ledger."""
    _, end_us = calendar.session_bounds_us(index)
    records = records if records is not None else RecordCache()
    window = settings.schedule.weekly_window_sessions
    if longrun is None or window:
        since_us = calendar.session_bounds_us(max(0, index - window + 1))[0] if window else None
        trades = (
            record
            for record in ledger_records(store, "trade", since_us=since_us, until_us=end_us)
            if isinstance(record, TradeOutcome)
        )
        longrun = longrun_of(trades, calendar.session_index, index, RECENT_SESSIONS)
    closed = _session_close(store, calendar.closes_us[index])
    report = weekly_report(
        week,
        longrun,
        current_session=index,
        model_snapshot=None if closed is None else closed["entry"],
        # The decay the week's close applied (none in a row of another session, or one kept before it was listed).
        stale_decays=closed.get("stale_decay", []) if closed is not None and closed["session"] == index else [],
        half_life_sessions=settings.learning.half_life_sessions,
    )
    window_start_us = end_us - RECORD_SPAN_US
    close_us = calendar.closes_us[index]
    report["signals"] = window_signals(
        store, SignalParams.from_settings(settings.signals), close_us - RECORD_SPAN_US, close_us, records
    )
    first_day = from_epoch_us(window_start_us).date()
    report["execution_quality"] = _execution_section(
        store,
        settings,
        calendar,
        (first_day, calendar.sessions[index]),
        _closed_outcomes(store, calendar, index, longrun),
        records=records,
    )
    return report


def _snapshot(store: Store, until_us: int) -> dict[str, Any] | None:
    """The entry model as of the latest session close at or before `until_us`."""
    closed = _session_close(store, until_us)
    return None if closed is None else closed["entry"]


def _session_close(store: Store, until_us: int) -> dict[str, Any] | None:
    """The trade learner's row of the latest session close at or before `until_us`."""
    latest = store.latest_learner_row("trades", "session|", until_us)
    if latest is None:
        return None
    row: dict[str, Any] = orjson.loads(latest)
    return row


def _late_trades(store: Store, arrival_close_us: int) -> list[TradeOutcome]:
    late: list[TradeOutcome] = []
    for key, _, _ in store.learner_rows("trades", since_us=arrival_close_us, until_us=arrival_close_us + 1):
        if key.startswith("late|"):
            row = store.ledger_row("trade", key.removeprefix("late|"))
            if row is not None:
                record = record_of(row)
                if isinstance(record, TradeOutcome):
                    late.append(record)
    return late
