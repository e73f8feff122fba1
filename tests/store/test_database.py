"""The store: WAL mode, one transaction per batch, and refusal (never a silent reset) of untrusted databases."""

from __future__ import annotations

import resource
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from learnd.errors import StateError
from learnd.records.decode import decode_line
from learnd.records.parse import parse_record
from learnd.sources.files import Identity
from learnd.sources.tailer import Checkpoint
from learnd.store import database
from learnd.store.database import SCHEMA_VERSION, Batch, JobRun, LedgerRow, Store, reading
from learnd.store.ledger import record_of
from learnd.store.lock import HomeLock


def checkpoint(offset: int, seq: int) -> Checkpoint:
    return Checkpoint(path="/x", dev=1, ino=2, fp_hash=b"f", fp_len=1, offset=offset, size=offset, window_seq=seq)


def test_new_store_uses_wal_and_records_its_schema(tmp_path: Path) -> None:
    """A new store is in WAL mode and carries the application name and schema version."""
    store = Store.open(tmp_path / "learnd.db")
    store.close()
    db = sqlite3.connect(tmp_path / "learnd.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    db.close()
    assert meta == {"application": "learnd", "schema_version": str(SCHEMA_VERSION), "clean_shutdown": "1"}


def test_batch_commits_offsets_window_and_state_together(tmp_path: Path) -> None:
    """Offsets, line window, counts, ledger and learner state land in one commit, and the window stays bounded."""
    store = Store.open(tmp_path / "learnd.db", window_lines=3)
    batch = Batch(checkpoints={"a": checkpoint(100, 5)}, window={"a": [1, 2, 3, 4, 5]})
    batch.counts[("a", "applied", "close")] += 5
    batch.ledger.append(LedgerRow("trade", "close_X", "equity", "X", 10, "a", 0, b"{}"))
    batch.learner_states["counting"] = b"{}"
    store.commit(batch)
    assert store.checkpoint("a") == checkpoint(100, 5)
    assert store.window("a").tolist() == [3, 4, 5]
    assert store.line_counts() == {("a", "applied", "close"): 5}
    assert store.ledger_keys_in("trade", ["close_X"]) == {"close_X"}
    assert store.learner_state("counting") == b"{}"
    store.close()


def test_a_job_s_last_success_last_run_and_failures_are_what_its_runs_say(tmp_path: Path) -> None:
    """What a start and `learnd schedule` ask of a job's runs, asked in SQL, agree with reading every run: the
    latest success (its period and due time), the run due last, the periods that failed (and nothing for a job
    that never ran)."""
    store = Store.open(tmp_path / "learnd.db")
    never = (store.last_success("daily"), store.last_job_run("daily"), store.failed_job_runs("daily"))
    assert never == (None, None, 0)
    runs = [
        JobRun("daily", "2026-11-30", "ok", 300, "a"),
        JobRun("daily", "2026-12-02", "failed", 500, "b"),
        JobRun("daily", "2026-12-01", "ok", 400, "c"),
        JobRun("daily", "2026-12-03", "failed", 600, "d"),
        JobRun("weekly", "2026-W49", "ok", 700, "e"),
    ]
    store.commit(Batch(job_runs=runs))
    succeeded = [due for _, status, due, _ in store.job_runs("daily") if status == "ok"]
    assert store.last_success("daily") == ("2026-12-01", 400) and max(succeeded) == 400
    assert store.last_job_run("daily") == ("2026-12-03", "failed", 600, "d") == store.job_runs("daily")[-1]
    assert store.failed_job_runs("daily") == 2
    assert (store.last_success("weekly"), store.failed_job_runs("weekly")) == (("2026-W49", 700), 0)
    store.close()


def test_quarantined_rows_are_read_after_each_source_s_own_number(tmp_path: Path) -> None:
    """What a first journal sync reads: a listed source's rows after its own number, any other source's after the
    lowest, all in order."""
    store = Store.open(tmp_path / "learnd.db")
    sources = ["signals", "exit", "signals", "orders", "exit", "signals", "orders"]
    store.commit(Batch(quarantine=[(source, b'{"n": %d}' % seq) for seq, source in enumerate(sources, start=1)]))
    every = store.quarantine_rows(0)
    assert [(seq, source) for seq, source, _ in every] == list(enumerate(sources, start=1))
    read = store.quarantine_rows(2, after_by_source={"signals": 6, "exit": 2})
    assert read == [row for row in every if row[0] > {"signals": 6, "exit": 2}.get(row[1], 2)]
    assert [seq for seq, _, _ in read] == [4, 5, 7]
    assert store.quarantine_rows(2, after_by_source={}) == store.quarantine_rows(2) == every[2:]
    store.close()


def test_failed_commit_leaves_nothing_behind(tmp_path: Path) -> None:
    """A batch that fails midway (a repeated ledger key) rolls back whole: offsets do not move without state."""
    store = Store.open(tmp_path / "learnd.db")
    row = LedgerRow("trade", "close_X", "equity", "X", 10, "a", 0, b"{}")
    store.commit(Batch(checkpoints={"a": checkpoint(10, 1)}, window={"a": [1]}, ledger=[row]))
    bad = Batch(checkpoints={"a": checkpoint(20, 2)}, window={"a": [2]}, ledger=[row])
    bad.learner_states["counting"] = b"changed"
    with pytest.raises(sqlite3.IntegrityError):
        store.commit(bad)
    assert store.checkpoint("a") == checkpoint(10, 1)
    assert store.learner_state("counting") is None
    store.close()


def test_garbage_file_is_refused_not_reset(tmp_path: Path) -> None:
    """A corrupt (non-SQLite) learnd.db stops start-up with a clear error and is left as it was."""
    path = tmp_path / "learnd.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match="not a usable learnd store"):
        Store.open(path)
    assert path.read_bytes() == b"this is not a database" * 100


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    """Another program's SQLite file is not taken over."""
    path = tmp_path / "learnd.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE things (x)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="not learnd's"):
        Store.open(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A store written by a newer learnd is refused with an upgrade hint."""
    path = tmp_path / "learnd.db"
    Store.open(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StateError, match="newer"):
        Store.open(path)


def _store_with_damaged_pages(path: Path, *, clean: bool) -> None:
    store = Store.open(path)
    store.commit(Batch(checkpoints={"a": checkpoint(1, 1)}, window={"a": list(range(2000))}))
    if clean:
        store.close()
    else:
        store._db.close()  # as a killed process leaves it: no clean-shutdown mark
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(path.read_bytes())
    for position in range(4096 * 2, min(len(data), 4096 * 4)):
        data[position] = 0xA5
    path.write_bytes(bytes(data))


def test_corrupted_pages_fail_the_full_check_the_daemon_runs(tmp_path: Path) -> None:
    """Damage inside a cleanly closed store is found by the full check the daemon runs at start."""
    path = tmp_path / "learnd.db"
    _store_with_damaged_pages(path, clean=True)
    with pytest.raises(StateError, match=r"integrity check failed|not a usable"):
        Store.open(path, full_check=True)


def test_after_an_unclean_stop_every_open_checks_every_page(tmp_path: Path) -> None:
    """A store whose writer was killed gets the full check even from a one-shot command."""
    path = tmp_path / "learnd.db"
    _store_with_damaged_pages(path, clean=False)
    with pytest.raises(StateError, match=r"integrity check failed|not a usable"):
        Store.open(path)


def test_truncated_store_is_refused_without_the_full_check(tmp_path: Path) -> None:
    """A cleanly closed store cut short is refused by the constant-time size check."""
    path = tmp_path / "learnd.db"
    store = Store.open(path)
    store.commit(Batch(checkpoints={"a": checkpoint(1, 1)}, window={"a": list(range(5000))}))
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StateError, match=r"truncated|not a usable"):
        Store.open(path)


def test_store_whose_creation_was_killed_is_created_not_refused(tmp_path: Path) -> None:
    """A learnd.db left with no tables (the first start was killed before its schema committed) is new, not
    foreign: the next start creates the schema."""
    path = tmp_path / "learnd.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    assert path.stat().st_size > 0
    store = Store.open(path)
    assert store.checkpoints() == {}
    store.close()


_CLOSE_LINE = (
    b'{"ts":"2026-03-02T15:10:04.118221+00:00","type":"attribution","trade_id":"close_AMD_2026-03-02T15:10:04.117950+00:00",'
    b'"symbol":"AMD","entry_score":3.41,"pnl_usd":12.6,"pnl_pct":0.9312,"hold_minutes":37.5,"market_regime":"mixed",'
    b'"context":{"close_reason":"trail_stop","position_side":"long","components":{"flow":1.8,"dark_pool":0.31}},'
    b'"strategy_id":"equity"}'
)


def older_store(path: Path, version: int) -> sqlite3.Connection:
    """A store file as a learnd of schema `version` left it (closed cleanly), open for the test to add rows."""
    db = sqlite3.connect(path, isolation_level=None)
    for statement in database._SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)
    for older in range(1, version):
        database._MIGRATIONS[older](db)
    db.execute(
        "INSERT INTO meta VALUES ('application', 'learnd'), ('schema_version', ?), ('clean_shutdown', '1')",
        (str(version),),
    )
    return db


def test_a_version_1_store_migrates_its_ledger_lines_to_kept_records(tmp_path: Path) -> None:
    """A store written by the first schema (the ledger held each row's line, the window a row per line) opens as the
    current one: the line is now its compact record, equal to what parsing the line gives, the row is numbered, and
    the window's hashes read back in order."""
    path = tmp_path / "learnd.db"
    db = older_store(path, 1)
    db.execute(
        "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            "trade",
            "close_AMD_2026-03-02T15:10:04.117950+00:00",
            "equity",
            "AMD",
            1772464204118221,
            "attribution",
            0,
            _CLOSE_LINE,
        ),
    )
    db.executemany("INSERT INTO line_window VALUES (?, ?, ?)", [("signals", seq, seq * 7 - 3) for seq in range(5, 12)])
    db.close()
    store = Store.open(path, window_lines=5)
    try:
        assert store.window("signals").tolist() == [seq * 7 - 3 for seq in range(7, 12)]
        (row,) = list(store.ledger("trade"))
        decoded = decode_line(_CLOSE_LINE)
        assert isinstance(decoded, dict)
        assert record_of(row) == parse_record("attribution", decoded)
        assert len(row.record) < len(_CLOSE_LINE)
        assert store.ledger_seq == 0
        version = store._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION
    finally:
        store.close()


def test_a_reopened_store_numbers_on_from_the_newest_row_of_any_kind(tmp_path: Path) -> None:
    """The numbering is one across kinds: reopened, a store goes on from the highest number any kind holds (each
    kind found by a seek, the newest of the last kind included)."""
    path = tmp_path / "learnd.db"
    store = Store.open(path)
    rows = [
        LedgerRow(kind, f"{kind}-{n}", "equity", "AMD", n, "attribution", 0, b"[]")
        for n, kind in enumerate(["exit", "trade", "entry", "trade", "exit", "entry", "exit"])
    ]
    store.commit(Batch(ledger=rows))
    store.close()
    store = Store.open(path)
    try:
        assert store.ledger_seq == 7
        store.commit(Batch(ledger=[LedgerRow("entry", "late", "equity", "AMD", 9, "attribution", 0, b"[]")]))
        assert store.ledger_seq == 8
    finally:
        store.close()
    store = Store.open(path)
    try:
        assert store.ledger_seq == 8
    finally:
        store.close()


def test_ledger_rows_are_numbered_in_insertion_order_and_found_when_late(tmp_path: Path) -> None:
    """Each committed ledger row gets the next number, across reopenings; ledger_since finds the rows inserted after
    a number for a span of event time already covered (the jobs' late trades)."""
    path = tmp_path / "learnd.db"

    def row(key: str, event_us: int) -> LedgerRow:
        return LedgerRow("trade", key, "equity", "AMD", event_us, "attribution", 0, b"[]")

    store = Store.open(path)
    store.commit(Batch(ledger=[row("a", 100), row("b", 300)]))
    assert store.ledger_seq == 2
    store.close()
    store = Store.open(path)
    try:
        assert store.ledger_seq == 2
        store.commit(Batch(ledger=[row("late", 200), row("new", 400)]))
        assert store.ledger_seq == 4
        assert [found.key for found in store.ledger_since("trade", 2, 350)] == ["late"]
        assert [found.key for found in store.ledger_up_to("trade", None, 1000, 2)] == ["a", "b"]
    finally:
        store.close()


def test_a_ledger_record_is_kept_as_the_blob_of_its_bytes(tmp_path: Path) -> None:
    """The record of a ledger row is stored as a BLOB of exactly its bytes (however it is bound) and read back as
    bytes."""
    record = b'["t1",1,null,"\xc3\xa9",0.1]'
    store = Store.open(tmp_path / "learnd.db")
    try:
        store.commit(Batch(ledger=[LedgerRow("trade", "close_X", "equity", "X", 10, "a", 0, record)]))
        [row] = store.ledger("trade")
        assert type(row.record) is bytes
        assert row.record == record
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / "learnd.db")
    assert db.execute("SELECT typeof(record), record FROM ledger").fetchone() == ("blob", record)
    db.close()


def test_a_read_only_store_numbers_the_ledger_as_the_writer_does(tmp_path: Path) -> None:
    """A reader's ledger_seq is the newest committed row's number, including rows committed after it opened (a job
    built from a read-only connection must take in what the writer's would)."""
    path = tmp_path / "learnd.db"

    def row(key: str) -> LedgerRow:
        return LedgerRow("trade", key, "equity", "AMD", 100, "attribution", 0, b"[]")

    writer = Store.open(path)
    reader: Store | None = None
    try:
        writer.commit(Batch(ledger=[row("a"), row("b")]))
        reader = Store.open(path, readonly=True)
        assert reader.ledger_seq == writer.ledger_seq == 2
        writer.commit(Batch(ledger=[row("c")]))
        assert reader.ledger_seq == writer.ledger_seq == 3
    finally:
        if reader is not None:
            reader.close()
        writer.close()


def test_weight_change_numbers_never_come_back_after_reported_ones_are_dropped(tmp_path: Path) -> None:
    """The journal follows the changes' numbers: dropping every reported change must not let the next change take
    a number the journal already has."""
    store = Store.open(tmp_path / "learnd.db")
    try:
        store.commit(Batch(changes=[(100, b"{}"), (200, b"{}")]))
        assert [seq for seq, _ in store.changes()] == [1, 2]
        store.commit(Batch(changes_done=(1000, 2)))
        assert store.changes() == []
        store.commit(Batch(changes=[(300, b"{}")]))
        assert [seq for seq, _ in store.changes()] == [3]
    finally:
        store.close()


def test_only_reported_changes_already_journaled_are_dropped(tmp_path: Path) -> None:
    """A change after the reported time, or one the journal does not hold yet, stays."""
    store = Store.open(tmp_path / "learnd.db")
    try:
        store.commit(Batch(changes=[(100, b"{}"), (200, b"{}"), (150, b"{}")]))
        store.commit(Batch(changes_done=(180, 2)))
        assert [seq for seq, _ in store.changes()] == [2, 3]
    finally:
        store.close()


def test_a_version_2_store_learns_which_sources_it_follows_and_when_a_file_was_replaced(tmp_path: Path) -> None:
    """Schema 3 adds when learnd began to follow each source (with the rotated copies there then) and, to each
    checkpoint, when its file was replaced. A store of schema 2 opens as the current one with its checkpoints kept
    (replaced_at_seq -1: nothing replaced) and no source followed yet; read-only, it is read as it is."""
    path = tmp_path / "learnd.db"
    db = older_store(path, 2)
    db.execute("INSERT INTO checkpoints VALUES ('orders', '/x', 1, 2, x'66', 1, 100, 100, 5)")
    db.execute("INSERT INTO files VALUES ('orders', x'66', 1, 100)")
    db.close()
    reader = Store.open(path, readonly=True)
    try:
        assert reader.checkpoint("orders") == checkpoint(100, 5)
        assert reader.following("orders") is None
        assert not reader.known_files("orders").following
    finally:
        reader.close()
    store = Store.open(path)
    try:
        migrated = store.checkpoint("orders")
        assert migrated == checkpoint(100, 5)
        assert migrated is not None and migrated.replaced_at_seq == -1
        assert store.following("orders") is None
        store.begin_following("orders", "/x", 1_000, [Identity(b"h", 3)])
        known = store.known_files("orders")
        assert known.following and known.history == {Identity(b"h", 3)}
        assert known.read == {Identity(b"f", 1): 100}
        version = store._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION
    finally:
        store.close()


def stored_points(store: Store, learner: str) -> list[tuple[int, int, int, str, bytes | None]]:
    """A learner's replay points as the store keeps them, each with its body."""
    return [(*point, store.replay_point_body(learner, point.number)) for point in store.replay_points(learner)]


def test_replay_points_commit_with_the_batch_keep_what_the_learner_keeps_and_survive_a_reopen(tmp_path: Path) -> None:
    """A commit writes the learner's new points and deletes every point it no longer keeps; a point taken again
    under a number replaces it; what was read back is in the order the learner took them, per learner."""
    path = tmp_path / "learnd.db"
    store = Store.open(path)
    try:
        store.commit(Batch(replay_points={"trades": ((0, 1), ((0, 10, 100, "t", b"a"), (1, 20, 200, "t", b"b")))}))
        store.commit(Batch(replay_points={"other": ((0,), ((0, 5, 50, "t", b"x"),))}))
        # 1 dropped (a late trade), 2 taken and dropped before the commit, 3 kept; 0 stays as it was.
        store.commit(Batch(replay_points={"trades": ((0, 3), ((2, 30, 300, "t", b"c"), (3, 15, 150, "t", b"d")))}))
    finally:
        store.close()
    reopened = Store.open(path, readonly=True)
    try:
        assert stored_points(reopened, "trades") == [(0, 10, 100, "t", b"a"), (3, 15, 150, "t", b"d")]
        assert stored_points(reopened, "other") == [(0, 5, 50, "t", b"x")]
        assert reopened.replay_point_body("trades", 1) is None
    finally:
        reopened.close()
    store = Store.open(path)
    try:
        store.commit(Batch(replay_points={"trades": ((3,), ((3, 16, 160, "t", b"e"),))}))
        assert stored_points(store, "trades") == [(3, 16, 160, "t", b"e")]
        store.commit(Batch(replay_points={"trades": ((), ())}))
        assert stored_points(store, "trades") == []
        assert stored_points(store, "other") == [(0, 5, 50, "t", b"x")]
        assert "replay_points" not in store.fingerprint()  # a cache: a store without them learns the same
    finally:
        store.close()


def test_a_version_3_store_gains_an_empty_table_of_replay_points(tmp_path: Path) -> None:
    """Schema 4 adds the learners' replay points: a store of schema 3 opens as the current one with none kept,
    and read-only it is read as it is (none)."""
    path = tmp_path / "learnd.db"
    db = older_store(path, 3)
    db.execute("INSERT INTO learner_state VALUES ('trades', x'7b7d')")
    db.close()
    reader = Store.open(path, readonly=True)
    try:
        assert reader.replay_points("trades") == []
        assert reader.replay_point_body("trades", 0) is None
        assert reader.learner_state("trades") == b"{}"
    finally:
        reader.close()
    store = Store.open(path)
    try:
        assert store.replay_points("trades") == []
        store.commit(Batch(replay_points={"trades": ((4,), ((4, 1, 10, "t", b"a"),))}))
        assert stored_points(store, "trades") == [(4, 1, 10, "t", b"a")]
        version = store._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION == 6
    finally:
        store.close()


def test_shrinking_the_page_cache_keeps_every_row_readable_and_the_store_writable(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "learnd.db")
    try:
        rows = [LedgerRow("trade", f"t{index:04d}", "equity", "X", index, "a", index, b"{}") for index in range(501)]
        store.commit(Batch(ledger=rows[:500]))
        assert len(list(store.ledger("trade"))) == 500
        store.shrink_memory()
        assert [row.key for row in store.ledger("trade")] == [f"t{index:04d}" for index in range(500)]
        store.commit(Batch(ledger=rows[500:]))
        assert store.ledger_keys_in("trade", ["t0499", "t0500", "t0501"]) == {"t0499", "t0500"}
    finally:
        store.close()


def test_ledger_keys_in_finds_the_keys_held_under_their_kind_and_holds_back_no_commit(tmp_path: Path) -> None:
    """One query finds which keys the ledger holds under a kind (not under another kind, not uncommitted ones,
    quotes and non-ASCII keys as they are); the next commit is visible to another connection at once."""
    path = tmp_path / "learnd.db"
    odd = 'close_"É"|x'
    store = Store.open(path)
    try:
        assert store.ledger_keys_in("trade", []) == set()
        assert store.ledger_keys_in("trade", ["close_X"]) == set()
        store.commit(Batch(ledger=[LedgerRow("trade", "close_X", "equity", "X", 10, "a", 0, b"{}")]))
        store.commit(Batch(ledger=[LedgerRow("exit", odd, "equity", "Y", 20, "a", 9, b"{}")]))
        other = sqlite3.connect(path)
        try:
            assert other.execute("SELECT key FROM ledger ORDER BY seq").fetchall() == [("close_X",), (odd,)]
        finally:
            other.close()
        assert store.ledger_keys_in("trade", ["close_Y", "close_X", "close_X", odd]) == {"close_X"}
        assert store.ledger_keys_in("exit", ["close_X", odd]) == {odd}
    finally:
        store.close()
    reopened = Store.open(path)
    try:
        assert reopened.ledger_keys_in("exit", [odd]) == {odd}
    finally:
        reopened.close()


def test_a_commit_that_fails_and_leaves_its_transaction_open_is_rolled_back(tmp_path: Path) -> None:
    """SQLite can refuse a COMMIT and keep the transaction open (a deferred constraint; SQLITE_BUSY): the batch is
    undone, not left for the connection to read as if it were the store, and the error is raised."""
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    try:
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
        with pytest.raises(sqlite3.IntegrityError), database._Transaction(db):
            db.execute("INSERT INTO child VALUES (7)")
        assert not db.in_transaction
        assert db.execute("SELECT count(*) FROM child").fetchone() == (0,)
    finally:
        db.close()


def test_a_view_beside_a_running_daemon_does_not_check_every_page(tmp_path: Path) -> None:
    """A running daemon leaves its store marked unclean for its whole life (it checked every page at its start): a
    view opened while it holds the home gets the constant-time check, so `status` costs the same however long the
    history; with nobody holding the home the same store gets the full check, and its damage is found."""
    path = tmp_path / "learnd.db"
    _store_with_damaged_pages(path, clean=False)
    lock_path = tmp_path / "learnd.lock"
    with pytest.raises(StateError, match=r"integrity check failed|not a usable"), reading(path, lock_path):
        pass
    lock = HomeLock(lock_path).acquire("daemon")
    try:
        with reading(path, lock_path) as store:
            assert store is not None
    finally:
        lock.release()


def test_a_view_reads_one_committed_state_whatever_commits_meanwhile(tmp_path: Path) -> None:
    """What a view reads inside `reading` is one committed state: a commit between two of its queries (the daemon's)
    shows in neither, so a source's lines are never counted applied and still pending at once."""
    path = tmp_path / "learnd.db"
    writer = Store.open(path)
    writer.commit(Batch(checkpoints={"a": checkpoint(10, 1)}, counts=Counter({("a", "applied", "order"): 1})))
    try:
        with reading(path) as view:
            assert view is not None
            offsets = {name: position.offset for name, position in view.checkpoints().items()}
            writer.commit(Batch(checkpoints={"a": checkpoint(20, 2)}, counts=Counter({("a", "applied", "order"): 1})))
            assert (offsets, view.line_counts()) == ({"a": 10}, {("a", "applied", "order"): 1})
        with reading(path) as view:
            assert view is not None
            assert view.checkpoint("a") == checkpoint(20, 2)
            assert view.line_counts() == {("a", "applied", "order"): 2}
    finally:
        writer.close()


def test_a_store_that_cannot_be_written_now_is_not_called_damaged(tmp_path: Path) -> None:
    """A full disk (here: a file size limit, so every write past a few bytes fails as on a full disk) when a command
    opens the store: exit 4 saying the store cannot be used now and was left as it is, not that it is no usable
    store to move aside (which would throw a good store away). With room again it opens as it was."""
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "attribution.jsonl").write_bytes(b"")
    command = [sys.executable, "-m", "learnd", "--home", str(home), "--set", "metrics_enabled=false"]
    subprocess.run([*command, "backfill", "--progress", "none"], check=True, capture_output=True, timeout=120)

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000, 1_000))

    refused = subprocess.run(
        [*command, "backfill", "--progress", "none"],
        check=False,
        preexec_fn=small_files,
        capture_output=True,
        timeout=120,
    )
    assert refused.returncode == 4, refused.stderr
    assert b"the store cannot be used now" in refused.stderr and b"Move it aside" not in refused.stderr
    again = subprocess.run([*command, "backfill", "--progress", "none"], check=False, capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr


def test_a_version_5_store_gets_the_ledger_index_in_arrival_order(tmp_path: Path) -> None:
    """The ledger is read in event order with ties in the order they arrived; a version 5 store, whose index was by
    byte offset (the read sorted every tie group again: 1.7 times as long on a five-year home), opens as version 6
    with an index in that very order, which the read walks without a sort."""
    path = tmp_path / "learnd.db"
    older_store(path, 5).close()
    store = Store.open(path)
    try:
        indexes = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "ledger_by_arrival" in indexes and "ledger_by_time" not in indexes
        plan = store._db.execute(
            f"EXPLAIN QUERY PLAN SELECT key FROM ledger WHERE kind = ? AND event_us >= ? {database._EVENT_ORDER}",
            ("trade", 0),
        ).fetchall()
        assert any("ledger_by_arrival" in row[-1] for row in plan)
        assert not any("TEMP B-TREE" in row[-1] for row in plan)
        version = store._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION == 6
    finally:
        store.close()
