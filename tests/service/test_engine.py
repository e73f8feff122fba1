"""service.engine: a home opened for writing. One commit, then the exports that reflect it; recovery after a failed
commit; reloads that add, move and drop sources or change the learning parameters without losing a line; the
session closes and job runs it commits whole.

Real files and SQLite throughout. The one fake is at a seam, said where used: Store.commit made to fail, as a
full disk fails it (tests/test_torture.py fails the real writes under the daemon).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from learnd.config import Settings
from learnd.devtools.simulate import simulate
from learnd.errors import ConfigError, StateError
from learnd.exports.files import journal_mark
from learnd.jobs.periods import JobOutput
from learnd.learning.learner import NOTHING, Applied, CountingLearner, Learner
from learnd.records.parse import Record, TradeOutcome
from learnd.service.backfill import drain
from learnd.service.engine import Engine
from learnd.sessions.exchange import ExchangeCalendar
from learnd.sources.tailer import Checkpoint
from learnd.store.database import Batch, JobRun, Store
from learnd.store.lock import HomeLock
from tests.bot_rows import append, close_row, exit_row, line, order_row
from tests.conftest import build_settings

ATTRIBUTION, EXIT, ORDERS = "attribution", "exit", "orders"


def trades(first: int, count: int) -> list[dict[str, Any]]:
    return [close_row(f"2026-03-02T15:{minute:02d}:00+00:00", "AMD", 0.5) for minute in range(first, first + count)]


def orders(first: int, count: int) -> list[dict[str, Any]]:
    return [order_row(f"2026-03-02T16:{minute:02d}:00+00:00", "AMD", qty=1) for minute in range(first, first + count)]


def applied(store: Store, source: str) -> int:
    return sum(
        count for (name, outcome, _), count in store.line_counts().items() if (name, outcome) == (source, "applied")
    )


@pytest.fixture
def open_engine() -> Iterator[Callable[..., Engine]]:
    """Opens engines (default learners unless given) and closes each at the end of the test."""
    opened: list[Engine] = []

    def opener(settings: Settings, **options: Any) -> Engine:
        engine = Engine(settings, start_at_end=False, purpose="test", **options)
        opened.append(engine)
        return engine

    yield opener
    for engine in opened:
        engine.close()


def test_commit_writes_the_exports_from_what_it_committed(home: Path, open_engine: Callable[..., Engine]) -> None:
    """Lines read are not exported until committed; after the commit the processing state says the committed
    offset and counts, the bad line is in the quarantine journal, and the weights file is written."""
    log = home / "logs" / "attribution.jsonl"
    append(log, trades(0, 3))
    with open(log, "ab") as handle:
        handle.write(b"not json\n")
    settings = build_settings(home, sources=(ATTRIBUTION,))
    engine = open_engine(settings)
    processing = settings.state_dir / "learning_processing_state.json"
    weights = settings.state_dir / "signal_weights.json"
    quarantine = settings.quarantine_dir / "attribution.jsonl"

    assert engine.poll(100) == 4
    assert not processing.exists() and not weights.exists() and not quarantine.exists()
    report = engine.commit()
    assert report is not None and report.lines == 4

    document = orjson.loads(processing.read_bytes())
    source = document["sources"][ATTRIBUTION]
    assert source["offset"] == log.stat().st_size
    assert (source["lines_applied"], source["lines_quarantined"]) == (3, 1)
    assert document["learners"] == ["counting", "execution", "signals", "trades"]
    assert document["counting"]["counts"] == {ATTRIBUTION: {"TradeOutcome": 3}}
    assert document == engine.processing_state()
    (quarantined,) = quarantine.read_bytes().splitlines()
    assert orjson.loads(quarantined)["offset"] == log.stat().st_size - len(b"not json\n")
    assert weights.exists()
    assert (engine.totals.applied_count, engine.totals.quarantined_count, engine.totals.commit_count) == (3, 1, 1)


def test_commit_without_export_leaves_the_files_and_processing_state_can_be_skipped(
    home: Path, open_engine: Callable[..., Engine]
) -> None:
    """`export=False` commits and writes no export; `processing_state=False` writes the weights file only."""
    log = home / "logs" / "attribution.jsonl"
    append(log, trades(0, 2))
    settings = build_settings(home, sources=(ATTRIBUTION,))
    engine = open_engine(settings)
    processing = settings.state_dir / "learning_processing_state.json"
    weights = settings.state_dir / "signal_weights.json"
    engine.poll(100)
    engine.commit(export=False)
    assert applied(engine.store, ATTRIBUTION) == 2
    assert not processing.exists() and not weights.exists()
    append(log, trades(2, 1))
    engine.poll(100)
    engine.commit(processing_state=False)
    assert weights.exists() and not processing.exists()


class DiskFull:
    """The seam: the engine's Store.commit fails as SQLite does on a full disk, while `failing` is set."""

    def __init__(self, engine: Engine) -> None:
        self.failing = True
        real = engine.store.commit

        def commit(batch: Batch) -> None:
            if self.failing:
                raise sqlite3.OperationalError("database or disk is full")
            real(batch)

        engine.store.commit = commit  # type: ignore[method-assign]


def test_recover_after_a_failed_commit_rereads_and_applies_nothing_twice(
    home: Path, tmp_path: Path, open_engine: Callable[..., Engine]
) -> None:
    """A commit fails after its lines were applied in memory; recover() drops what was not committed and reads
    those lines again from the last committed offset: the store ends equal to one clean pass over the files."""
    attribution, order_log = home / "logs" / "attribution.jsonl", home / "logs" / "orders.jsonl"
    append(attribution, trades(0, 2))
    settings = build_settings(home, sources=(ATTRIBUTION, ORDERS))
    engine = open_engine(settings)
    drain(engine, 100)
    append(attribution, trades(2, 3))
    append(order_log, orders(0, 4))
    disk = DiskFull(engine)
    assert engine.poll(100) == 7
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        engine.commit()
    disk.failing = False
    engine.recover()
    assert engine.ingestor.pending_lines == 0
    assert engine.poll(100) == 7  # the uncommitted lines again, not the committed ones
    engine.commit()
    append(attribution, trades(5, 2))
    drain(engine, 100)
    assert (applied(engine.store, ATTRIBUTION), applied(engine.store, ORDERS)) == (7, 4)
    assert engine.store.ledger_count("trade") == 7

    reference = tmp_path / "reference"
    shutil.copytree(home / "logs", reference / "logs")
    clean = open_engine(build_settings(reference, sources=(ATTRIBUTION, ORDERS)))
    drain(clean, 100)
    assert engine.store.fingerprint() == clean.store.fingerprint()


def test_reload_adds_moves_and_drops_sources_without_losing_a_line(
    home: Path, open_engine: Callable[..., Engine]
) -> None:
    """A reload commits what was read, reads an added source from its start, follows a moved file from where it
    was, and keeps a dropped source's checkpoint: adding it back reads only what came meanwhile."""
    logs = home / "logs"
    append(logs / "attribution.jsonl", trades(0, 2))
    append(logs / "orders.jsonl", orders(0, 2))
    engine = open_engine(build_settings(home, sources=(ATTRIBUTION, ORDERS)))
    engine.poll(100)  # read, not committed
    append(logs / "orders.jsonl", orders(2, 1))  # not even read
    os.rename(logs / "orders.jsonl", logs / "orders-moved.jsonl")
    append(logs / "exit.jsonl", [exit_row("2026-03-02T15:10:00+00:00", "AMD", 0.9)])
    moved = {"sources.orders.path": "logs/orders-moved.jsonl"}

    changed = engine.reload(build_settings(home, sources=(EXIT, ORDERS), overrides=moved))
    assert changed == {"added": [EXIT], "removed": [ATTRIBUTION], "moved": [ORDERS], "retrained": []}
    assert (applied(engine.store, ATTRIBUTION), applied(engine.store, ORDERS)) == (2, 2)

    append(logs / "attribution.jsonl", trades(2, 1))  # while attribution is not followed
    append(logs / "orders-moved.jsonl", orders(3, 1))
    drain(engine, 100)
    assert (applied(engine.store, ATTRIBUTION), applied(engine.store, ORDERS), applied(engine.store, EXIT)) == (2, 4, 1)

    changed = engine.reload(build_settings(home, sources=(ATTRIBUTION, EXIT, ORDERS), overrides=moved))
    assert changed == {"added": [ATTRIBUTION], "removed": [], "moved": [], "retrained": []}
    drain(engine, 100)
    assert (applied(engine.store, ATTRIBUTION), applied(engine.store, ORDERS), applied(engine.store, EXIT)) == (3, 4, 1)
    assert engine.store.ledger_count("trade") == 3


def test_reload_with_new_learning_parameters_relearns_as_a_fresh_backfill_would(
    home: Path, tmp_path: Path, open_engine: Callable[..., Engine]
) -> None:
    """New learning parameters retrain the trade learner from the ledger: its model and session rows are then
    those of a store that read the same lines with the new parameters from the start."""
    simulate(home, trades=300, seed=11, garbage=False)
    reference = tmp_path / "reference"
    shutil.copytree(home / "logs", reference / "logs")
    eager = {"learning.min_effective_samples": 50, "learning.max_step_per_trade": 0.05}
    engine = open_engine(build_settings(home))
    drain(engine, 2000)
    before = engine.learners[0].model()

    changed = engine.reload(build_settings(home, overrides=eager))
    assert changed["retrained"] == ["trades"]
    fresh = open_engine(build_settings(reference, overrides=eager))
    drain(fresh, 2000)
    retrained, expected = engine.learners[0].model(), fresh.learners[0].model()
    assert retrained is not None and expected is not None and before is not None
    assert retrained.entry != before.entry  # the new parameters do move something
    assert (retrained.entry, retrained.exits) == (expected.entry, expected.exits)
    assert engine.store.fingerprint()["learner_rows"] == fresh.store.fingerprint()["learner_rows"]
    # The multipliers the retrain moved are logged as what they are, not as a replay of a late trade.
    reasons = {orjson.loads(body)["reason"] for _, body in engine.store.changes()}
    assert "retrained_new_parameters" in reasons and "replay_out_of_order" not in reasons


class Recording(Learner):
    """A learner whose session close and batch end return a known row and change (for what commits them)."""

    name = "recording"
    record_types = (TradeOutcome,)

    def __init__(self) -> None:
        self.closed: list[int] = []

    def apply(self, source: str, record: Record) -> Applied:
        return NOTHING

    def dump(self) -> bytes | None:
        return None

    def close_sessions(self, through_session: int) -> Applied:
        self.closed.append(through_session)
        change = {"event_us": 1_000 + through_session, "model": "recording", "session": through_session}
        return Applied(learned=True, changes=(change,), rows=((f"closed|{through_session}", 7, b"{}"),))


def recording_learners(settings: Settings, store: Store, calendar: ExchangeCalendar) -> list[Learner]:
    return [Recording(), CountingLearner.load(store.learner_state("counting"))]


def journal(settings: Settings, name: str = "weight_learning.jsonl") -> list[dict[str, Any]]:
    path = settings.data_dir / name
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_close_sessions_commits_what_the_learners_return(home: Path, open_engine: Callable[..., Engine]) -> None:
    """Each learner is told the session to close through; its rows and changes are committed at once, and the
    changes reach data/weight_learning.jsonl."""
    settings = build_settings(home, sources=(ATTRIBUTION,))
    engine = open_engine(settings, learner_factory=recording_learners)
    engine.close_sessions(6500)
    recording = engine.learners[0]
    assert isinstance(recording, Recording) and recording.closed == [6500]
    assert list(engine.store.learner_rows("recording")) == [("closed|6500", 7, b"{}")]
    assert [orjson.loads(body) for _, body in engine.store.changes()] == [
        {"event_us": 7500, "model": "recording", "session": 6500}
    ]
    assert journal(settings) == [{"event_us": 7500, "model": "recording", "session": 6500, "seq": 1}]


RUN = JobRun("daily", "2026-03-02", "ok", 1_772_486_100_000_000, "data/reports/daily/2026-03-02.json")
CHANGE_US = 1_772_485_200_000_000
CHANGE = {"event_us": CHANGE_US, "model": "entry", "component": "options_flow", "old": 1.0, "new": 1.02}
SUGGESTION = {"event_us": CHANGE_US, "model": "signals", "component": "options_flow", "old": None}


def job_output(settings: Settings) -> JobOutput:
    """A period's output: two documents, one change, and kept state and value samples (the long-run figures')."""
    target = settings.data_dir / "reports" / "daily"
    return JobOutput(
        report=target / "2026-03-02.json",
        documents=((target / "2026-03-02.json", b'{"day": "2026-03-02"}'), (target / "2026-03-02.md", b"# Daily\n")),
        changes=(CHANGE,),
        state={"longrun|meta": b'{"through": 8470}'},
        values=(("cell|equity", 0, b"[1.5, -0.25]"),),
    )


def test_commit_job_writes_its_documents_then_commits_everything_else_in_one_transaction(
    home: Path, open_engine: Callable[..., Engine]
) -> None:
    """The documents are on disk before the commit; the run record, its changes and the state it kept go in one
    batch, and the changes reach data/weight_learning.jsonl."""
    settings = build_settings(home, sources=(ATTRIBUTION,))
    engine = open_engine(settings)
    output = job_output(settings)
    batches: list[tuple[Batch, bool]] = []
    real = engine.store.commit

    def watching(batch: Batch) -> None:
        batches.append((batch, all(path.exists() for path, _ in output.documents)))
        real(batch)

    engine.store.commit = watching  # type: ignore[method-assign]
    engine.commit_job(RUN, output)
    ((batch, documents_written),) = batches
    assert documents_written
    assert batch.job_runs == [RUN]
    assert [orjson.loads(body) for _, body in batch.changes] == [CHANGE]
    assert (batch.job_state, batch.job_values) == (output.state, list(output.values))
    assert [path.read_bytes() for path, _ in output.documents] == [data for _, data in output.documents]
    assert engine.store.job_runs("daily") == [(RUN.period, RUN.status, RUN.due_us, RUN.detail)]
    assert engine.store.job_state("longrun|meta") == b'{"through": 8470}'
    assert list(engine.store.job_values()) == [("cell|equity", 0, b"[1.5, -0.25]")]
    assert journal(settings) == [{**CHANGE, "seq": 1}]


def test_suggestions_are_journaled_apart_and_journaled_changes_leave_the_store(home: Path) -> None:
    """A weekly signal suggestion (model `signals`, no old or new multiplier) goes to data/signal_suggestions.jsonl,
    a learning update to data/weight_learning.jsonl, each once, in one sequence; once a daily report has read
    them, the store drops both, whichever journal holds the later one, and a restart appends nothing again."""
    settings = build_settings(home, sources=(ATTRIBUTION,))
    read_through = CHANGE_US + 1
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        weekly = replace(job_output(settings), changes=(SUGGESTION,), state={}, values=())
        engine.commit_job(replace(RUN, job="weekly", period="2026-W10"), weekly)
        engine.commit_job(RUN, replace(job_output(settings), reported_until_us=read_through))
        assert journal(settings, "signal_suggestions.jsonl") == [{**SUGGESTION, "seq": 1}]
        assert journal(settings) == [{**CHANGE, "seq": 2}]
        later = replace(job_output(settings), changes=(), reported_until_us=read_through)
        engine.commit_job(replace(RUN, period="2026-03-03"), later)
        assert engine.store.changes() == []
    finally:
        engine.close()
    again = Engine(settings, start_at_end=False, purpose="test")
    try:
        again.commit()
    finally:
        again.close()
    assert journal(settings, "signal_suggestions.jsonl") == [{**SUGGESTION, "seq": 1}]
    assert journal(settings) == [{**CHANGE, "seq": 2}]


def test_a_job_whose_commit_fails_is_not_recorded_and_runs_again_once(
    home: Path, open_engine: Callable[..., Engine]
) -> None:
    """A failed commit records neither the run nor what it changed and kept (the job is still due); after
    recover() the rerun records them exactly once."""
    settings = build_settings(home, sources=(ATTRIBUTION,))
    engine = open_engine(settings)
    disk = DiskFull(engine)
    with pytest.raises(sqlite3.OperationalError):
        engine.commit_job(RUN, job_output(settings))
    assert engine.store.job_runs("daily") == []
    assert engine.store.changes() == []
    assert engine.store.job_state("longrun|meta") is None
    disk.failing = False
    engine.recover()
    engine.commit_job(RUN, job_output(settings))
    assert len(engine.store.job_runs("daily")) == 1
    assert [orjson.loads(body) for _, body in engine.store.changes()] == [CHANGE]
    assert list(engine.store.job_values()) == [("cell|equity", 0, b"[1.5, -0.25]")]


def orders_home(home: Path) -> tuple[Settings, Path]:
    """Settings that follow the orders log only, and that log's path (its directory made, the file not)."""
    settings = build_settings(home, sources=(ORDERS,))
    path = settings.source(ORDERS).path
    path.parent.mkdir(parents=True, exist_ok=True)
    return settings, path


def orders_after_a_daemon_start(settings: Settings) -> tuple[int, Checkpoint | None]:
    """A daemon's start (at the end of files it never read) reading all there is: the order lines applied, and the
    orders log's committed position."""
    engine = Engine(settings, start_at_end=True, purpose="daemon")
    try:
        drain(engine, 100)
        return applied(engine.store, ORDERS), engine.store.checkpoint(ORDERS)
    finally:
        engine.close()


def test_a_copy_of_a_file_never_seen_is_committed_and_the_file_read_whole_after_a_restart(home: Path) -> None:
    """A daemon waits for a source's file (it never existed); a rotated copy of it turns up and is read (its lines
    applied and committed: the commit once failed, the batch holding line hashes but no position); learnd
    restarts; the file then appears and is read whole, as new content, and the copy is not read again."""
    settings, path = orders_home(home)
    engine = Engine(settings, start_at_end=True, purpose="daemon")
    try:
        assert engine.poll(100) == 0
        engine.commit()
        append(
            path.with_name("orders.jsonl.1"),
            [order_row(f"2026-03-02T15:0{index}:00+00:00", "AMD") for index in range(2)],
        )
        assert engine.poll(100) == 2
        engine.commit()
        assert applied(engine.store, ORDERS) == 2
    finally:
        engine.close()
    append(path, [order_row(f"2026-03-02T16:0{index}:00+00:00", "AMD") for index in range(3)])
    count, checkpoint = orders_after_a_daemon_start(settings)
    assert count == 5
    assert checkpoint is not None and checkpoint.offset == path.stat().st_size


def test_a_file_that_appears_while_learnd_is_stopped_is_read_whole_when_it_waited_for_it(home: Path) -> None:
    """A daemon follows a source whose file does not exist yet (installed before the bot first ran); it stops; the
    bot writes its first lines; at the next start those lines are new content, read whole, not skipped as if they
    predated learnd (the position "waiting for the file" was committed although no line had been read)."""
    settings, path = orders_home(home)
    engine = Engine(settings, start_at_end=True, purpose="daemon")
    try:
        assert engine.poll(100) == 0
        engine.commit()
    finally:
        engine.close()
    append(path, [order_row(f"2026-03-02T16:0{index}:00+00:00", "AMD") for index in range(5)])
    assert orders_after_a_daemon_start(settings)[0] == 5


def test_the_engine_holds_the_home_lock_from_open_to_close(home: Path) -> None:
    """While an engine is open the home is owned (a second engine is refused); close() frees it."""
    settings = build_settings(home, sources=(ATTRIBUTION,))
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        assert HomeLock(settings.lock_path).holder() == f"pid {os.getpid()} (test)"
        with pytest.raises(StateError, match="in use by another learnd"):
            Engine(settings, start_at_end=False, purpose="second")
    finally:
        engine.close()
    assert HomeLock(settings.lock_path).holder() is None


def test_an_engine_that_cannot_open_its_store_releases_the_lock(home: Path) -> None:
    """A damaged store stops the open with StateError, and the home is not left locked behind it."""
    settings = build_settings(home, sources=(ATTRIBUTION,))
    settings.state_dir.mkdir(parents=True)
    settings.db_path.write_bytes(b"not a database" * 300)
    with pytest.raises(StateError, match="not a usable learnd store"):
        Engine(settings, start_at_end=False, purpose="test")
    assert HomeLock(settings.lock_path).holder() is None


def test_a_start_that_fails_on_the_stored_state_closes_what_it_opened_and_leaves_the_store_suspect(
    home: Path,
) -> None:
    """A store that opens but whose learner state cannot be read stops the start; what it had opened is closed (the
    lock is free, the connection too: the store can be moved aside at once) and no clean stop is recorded, so the
    next open checks every page again."""
    settings = build_settings(home, sources=(ATTRIBUTION,))
    append(settings.source(ATTRIBUTION).path, trades(0, 5))
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 100)
    finally:
        engine.close()
    with sqlite3.connect(settings.db_path) as db:
        db.execute("UPDATE learner_state SET state = ? WHERE name = 'trades'", (b"{not json",))
    db.close()
    with pytest.raises(StateError):
        Engine(settings, start_at_end=False, purpose="test")
    assert HomeLock(settings.lock_path).holder() is None
    with sqlite3.connect(settings.db_path) as db:
        (clean,) = db.execute("SELECT value FROM meta WHERE key = 'clean_shutdown'").fetchone()
        # No connection of the failed start is left: this one is the only one, so it may take the write lock.
        db.execute("BEGIN EXCLUSIVE")
        db.rollback()
    db.close()
    assert clean == "0"


def test_a_store_closes_its_connection_even_when_its_clean_stop_cannot_be_recorded(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clean stop's record is a write a full disk refuses (the seam: Store._set_meta made to fail as it would
    then): close() raises that error, and the connection is closed all the same."""
    store = Store.open(home / "learnd.db")

    def full(key: str, value: str) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_set_meta", full)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        store.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        store.line_counts()


def test_default_learners_put_the_trade_learner_first(home: Path, open_engine: Callable[..., Engine]) -> None:
    """The learner that may reject a record runs before any that would already have changed something."""
    engine = open_engine(build_settings(home, sources=(ATTRIBUTION,)))
    assert [learner.name for learner in engine.learners] == ["trades", "execution", "signals", "counting"]


def test_a_reload_that_moves_the_export_leaves_the_old_file_alone(home: Path) -> None:
    """A reload that moves paths.signal_weights makes the new path learnd's; the old one is never written or
    restored again (learnd does not fight a file it no longer owns)."""
    append(home / "logs" / "attribution.jsonl", trades(0, 1))
    before = build_settings(home, sources=("attribution",))
    after = build_settings(home, sources=("attribution",), overrides={"paths.signal_weights": "state/learnd.json"})
    engine = Engine(before, start_at_end=False, purpose="test")
    try:
        engine.poll(100)
        engine.commit()
        old = before.signal_weights_path
        assert old.exists()
        changed = engine.reload(after)
        assert changed["export_moved"] == [str(after.signal_weights_path)]
        engine.commit()
        assert after.signal_weights_path.read_bytes() == old.read_bytes()
        old.write_bytes(b'{"now": "the bot\'s"}')
        assert engine.keep_export() is None
        assert old.read_bytes() == b'{"now": "the bot\'s"}'
        after.signal_weights_path.write_bytes(b"{}")
        assert engine.keep_export() is not None
        assert after.signal_weights_path.read_bytes() != b"{}"
    finally:
        engine.close()


def test_a_start_gives_each_quarantine_journal_the_rows_it_lacks_once(
    home: Path, open_engine: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journals left at different rows (one lost its last append to a crash): the next engine's first sync, which
    reads each source's rows after its own journal's last, appends exactly what each lacks, and the syncs after it
    read only rows committed since (not every row after the lowest journal's last)."""
    attribution, exits = home / "logs" / "attribution.jsonl", home / "logs" / "exit.jsonl"
    append(attribution, trades(0, 1))
    for log, bad in ((attribution, b"not json 1\n"), (exits, b"not json 2\n"), (attribution, b"not json 3\n")):
        with open(log, "ab") as handle:
            handle.write(bad)
    settings = build_settings(home, sources=(ATTRIBUTION, EXIT))
    first = Engine(settings, start_at_end=False, purpose="test")
    try:
        first.poll(100)
        first.commit()
    finally:
        first.close()

    def seqs(source: str) -> list[int]:
        return [
            orjson.loads(line)["seq"]
            for line in (settings.quarantine_dir / f"{source}.jsonl").read_bytes().splitlines()
        ]

    synced = {source: seqs(source) for source in (ATTRIBUTION, EXIT)}
    assert sorted(synced[ATTRIBUTION] + synced[EXIT]) == [1, 2, 3]
    # The journal that holds the first row loses its last append; the other one's last row is then the highest.
    (behind,) = [source for source, rows in synced.items() if 1 in rows]
    journal = settings.quarantine_dir / f"{behind}.jsonl"
    kept = journal.read_bytes().splitlines(keepends=True)[:-1]
    journal.write_bytes(b"".join(kept))
    # The crash came before the append was flushed, so before the journal's mark said it was written.
    journal_mark(journal).write_bytes(b"%d\n" % (orjson.loads(kept[-1])["seq"] if kept else 0))
    engine = open_engine(settings)  # its first sync
    assert {source: seqs(source) for source in (ATTRIBUTION, EXIT)} == synced
    # Synced up to the highest journal's row: the next sync reads no row again (not every row past the lowest one).
    read = engine.store.quarantine_rows
    returned: list[int] = []

    def quarantine_rows(
        after_seq: int, *, after_by_source: Mapping[str, int] | None = None
    ) -> list[tuple[int, str, bytes]]:
        rows = read(after_seq, after_by_source=after_by_source)
        returned.append(len(rows))
        return rows

    monkeypatch.setattr(engine.store, "quarantine_rows", quarantine_rows)
    engine.sync_journals()
    assert returned == [0]


def test_quarantine_journals_read_only_the_rows_committed_since_the_last_sync(
    home: Path, open_engine: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source with no quarantined line keeps its journal at seq 0, yet a commit after the first reads the store's
    quarantine from the last row synced, not from the start; each bad line reaches its journal once."""
    log = home / "logs" / "attribution.jsonl"
    append(log, trades(0, 2))
    with open(log, "ab") as handle:
        handle.write(b"not json\n")
    settings = build_settings(home, sources=(ATTRIBUTION, EXIT))
    engine = open_engine(settings)
    engine.poll(100)
    engine.commit()
    asked: list[int] = []
    read = engine.store.quarantine_rows

    def quarantine_rows(
        after_seq: int, *, after_by_source: Mapping[str, int] | None = None
    ) -> list[tuple[int, str, bytes]]:
        assert after_by_source is None  # only the first sync reads per source
        asked.append(after_seq)
        return read(after_seq)

    monkeypatch.setattr(engine.store, "quarantine_rows", quarantine_rows)
    with open(log, "ab") as handle:
        handle.write(b"still not json\n")
    engine.poll(100)
    engine.commit()
    append(log, trades(2, 1))
    engine.poll(100)
    engine.commit()

    quarantine = settings.quarantine_dir / "attribution.jsonl"
    assert [orjson.loads(line)["seq"] for line in quarantine.read_bytes().splitlines()] == [1, 2]
    assert asked == [1, 2]
    assert not (settings.quarantine_dir / "exit.jsonl").exists()


@pytest.mark.parametrize("file_at_start", [False, True], ids=["file-appears-later", "file-there-at-start"])
def test_a_failed_first_commit_reads_again_from_where_a_source_began(home: Path, file_at_start: bool) -> None:
    """A daemon started at the end of its files has no committed position for a source until its first commit; when
    that commit fails (a full disk), recover() starts the source again where it began: the lines read since are
    read again and applied once, neither skipped (the end the file has reached by now) nor the lines before the
    start taken in (history a plain run leaves to a backfill)."""
    settings, path = orders_home(home)
    if file_at_start:
        append(path, [order_row(f"2026-03-02T14:0{index}:00+00:00", "AMD") for index in range(2)])
    engine = Engine(settings, start_at_end=True, purpose="daemon")
    try:
        append(path, [order_row(f"2026-03-02T15:0{index}:00+00:00", "AMD") for index in range(4)])
        assert engine.poll(100) == 4
        disk = DiskFull(engine)
        with pytest.raises(sqlite3.OperationalError):
            engine.commit()
        disk.failing = False
        engine.recover()
        drain(engine, 100)
        assert applied(engine.store, ORDERS) == 4
    finally:
        engine.close()


def test_a_bad_line_the_daemon_reads_from_a_rotated_copy_names_that_copy(home: Path) -> None:
    """A copytruncate takes a garbage line among the lines not read yet (drained from `orders.jsonl.1`), and a
    dated copy never seen holds another: each quarantine entry names the copy it was read from, at its offset there
    (both named the source's current file, where those offsets hold other lines or nothing)."""
    settings, path = orders_home(home)
    good = [line(order_row(f"2026-03-02T15:0{index}:00+00:00", "AMD")) for index in range(4)]
    path.write_bytes(good[0])
    engine = Engine(settings, start_at_end=False, purpose="daemon")
    try:
        drain(engine, 100)
        with path.open("ab") as handle:
            handle.write(b"GARBAGE-IN-THE-COPY\n" + good[1])
        copied = path.with_name("orders.jsonl.1")
        shutil.copyfile(path, copied)
        os.truncate(path, 0)
        path.write_bytes(good[2])
        drain(engine, 100)
        dated = path.with_name("orders.jsonl-20260301")
        dated.write_bytes(good[3] + b"GARBAGE-IN-A-NEW-COPY\n")
        drain(engine, 100)
        engine.commit()
        rows = [orjson.loads(body) for _, _, body in engine.store.quarantine_rows(0)]
    finally:
        engine.close()
    found = {row["raw_text"].strip(): (row["path"], row["offset"]) for row in rows}
    assert found["GARBAGE-IN-THE-COPY"] == (str(copied), len(good[0]))
    assert found["GARBAGE-IN-A-NEW-COPY"] == (str(dated), len(good[3]))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"paths.data_dir": "data2"}, "paths.data_dir"),
        ({"metrics_port": 19999}, "metrics_port"),
        ({"schedule.exchange": "XLON"}, "schedule.exchange"),
        ({"log_format": "console"}, "log_format"),
    ],
)
def test_a_reload_of_a_setting_only_a_restart_applies_is_refused_before_anything_changes(
    home: Path, override: dict[str, object], key: str
) -> None:
    """A reload that changes what the start built (the data directory its journals are in, the metrics server, the
    calendar, the log format) is refused naming the key, and nothing of it is applied: it was logged as applied
    while quarantine rows went on to the old directory and the next report to the new one."""
    settings = build_settings(home, sources=(ORDERS,))
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        with pytest.raises(ConfigError, match=f"{key}: .* takes a restart, not a reload"):
            engine.reload(build_settings(home, sources=(ORDERS, EXIT), overrides=override))
        assert engine.settings is settings
        assert sorted(engine.ingestor.tailers) == [ORDERS]
    finally:
        engine.close()


def test_a_bad_line_drained_from_the_file_renamed_away_names_its_new_name(home: Path) -> None:
    """The file is renamed to `orders.jsonl.1` (logrotate's rename + create) with a garbage line not read yet: the
    tailer drains it through its open descriptor, and the quarantine entry names `orders.jsonl.1`, where that
    offset is (it named the new file at the path)."""
    settings, path = orders_home(home)
    good = line(order_row("2026-03-02T15:00:00+00:00", "AMD"))
    path.write_bytes(good)
    engine = Engine(settings, start_at_end=False, purpose="daemon")
    try:
        drain(engine, 100)
        with path.open("ab") as handle:
            handle.write(b"GARBAGE-BEFORE-THE-RENAME\n")
        renamed = path.with_name("orders.jsonl.1")
        path.rename(renamed)
        path.write_bytes(line(order_row("2026-03-02T15:05:00+00:00", "AMD")))
        drain(engine, 100)
        engine.commit()
        (row,) = [orjson.loads(body) for _, _, body in engine.store.quarantine_rows(0)]
    finally:
        engine.close()
    assert (row["path"], row["offset"]) == (str(renamed), len(good))
