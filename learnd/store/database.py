"""The store: state/learnd.db (SQLite, WAL), the one source of truth for offsets, line window, ledger and learned state.

Everything a batch changed is committed in ONE transaction; exports are derived from what is committed here.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from learnd.errors import StateError
from learnd.sources.files import Identity, KnownFiles
from learnd.sources.tailer import Checkpoint

APPLICATION: Final = "learnd"
SCHEMA_VERSION: Final = 2

_SCHEMA_V1: Final = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE checkpoints (
    source TEXT PRIMARY KEY, path TEXT NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    fp_hash BLOB NOT NULL, fp_len INTEGER NOT NULL, offset INTEGER NOT NULL, size INTEGER NOT NULL,
    window_seq INTEGER NOT NULL
);
CREATE TABLE line_window (source TEXT NOT NULL, seq INTEGER NOT NULL, hash INTEGER NOT NULL,
    PRIMARY KEY (source, seq)) WITHOUT ROWID;
CREATE TABLE files (source TEXT NOT NULL, fp_hash BLOB NOT NULL, fp_len INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (source, fp_hash)) WITHOUT ROWID;
CREATE TABLE line_counts (source TEXT NOT NULL, outcome TEXT NOT NULL, kind TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (source, outcome, kind)) WITHOUT ROWID;
CREATE TABLE ledger (kind TEXT NOT NULL, key TEXT NOT NULL, strategy TEXT NOT NULL, symbol TEXT NOT NULL,
    event_us INTEGER NOT NULL, source TEXT NOT NULL, file_offset INTEGER NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE INDEX ledger_by_time ON ledger (kind, event_us, source, file_offset);
CREATE TABLE learner_state (name TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE quarantine (seq INTEGER PRIMARY KEY, source TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE changes (seq INTEGER PRIMARY KEY, event_us INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE learner_rows (learner TEXT NOT NULL, key TEXT NOT NULL, event_us INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (learner, key)) WITHOUT ROWID;
CREATE INDEX learner_rows_by_time ON learner_rows (learner, event_us, key);
CREATE TABLE job_runs (job TEXT NOT NULL, period TEXT NOT NULL, status TEXT NOT NULL, due_us INTEGER NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (job, period)) WITHOUT ROWID;
"""

# Migrations from version N to N+1, applied in order inside one transaction (a new store runs them too).
_MIGRATIONS: Final[dict[int, str]] = {
    # When learnd began to follow each source (and at which path), and the rotated copies that were there then:
    # history only a backfill reads. Any other copy never read holds lines never applied, and the daemon reads it.
    # A checkpoint naming a file that was replaced at the path says when (Checkpoint.replaced_at_seq).
    1: """
CREATE TABLE following (source TEXT PRIMARY KEY, path TEXT NOT NULL, since_us INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE history_files (source TEXT NOT NULL, fp_hash BLOB NOT NULL, fp_len INTEGER NOT NULL,
    PRIMARY KEY (source, fp_hash)) WITHOUT ROWID;
ALTER TABLE checkpoints ADD COLUMN replaced_at_seq INTEGER NOT NULL DEFAULT -1;
""",
}


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One outcome or entry record kept for dedupe, replay in event order and the batch jobs."""

    kind: str
    key: str
    strategy: str
    symbol: str
    event_us: int
    source: str
    file_offset: int
    record: bytes


@dataclass(frozen=True, slots=True)
class JobRun:
    """One run of a scheduled job as recorded: `status` ok or failed, `due_us` when it was due, `detail` what it
    wrote or why it failed."""

    job: str
    period: str
    status: str
    due_us: int
    detail: str


@dataclass(slots=True)
class Batch:
    """Everything one commit writes; built by the ingest pipeline, written by Store.commit in one transaction."""

    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    window: dict[str, list[int]] = field(default_factory=dict)
    files: dict[tuple[str, bytes], tuple[int, int]] = field(default_factory=dict)
    # Identities forgotten because reading further gave their file a longer one (see KnownFiles.record).
    files_dropped: set[tuple[str, bytes]] = field(default_factory=set)
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    ledger: list[LedgerRow] = field(default_factory=list)
    learner_states: dict[str, bytes] = field(default_factory=dict)
    quarantine: list[tuple[str, bytes]] = field(default_factory=list)
    changes: list[tuple[int, bytes]] = field(default_factory=list)
    learner_rows: list[tuple[str, str, int, bytes]] = field(default_factory=list)
    job_runs: list[JobRun] = field(default_factory=list)
    line_count: int = 0

    def is_empty(self) -> bool:
        return not (
            self.checkpoints
            or self.files
            or self.files_dropped
            or self.counts
            or self.learner_states
            or self.quarantine
            or self.changes
            or self.learner_rows
            or self.job_runs
        )


class Store:
    """An open learnd.db. Single writer (the process holding the home's lock); readers may open it alongside."""

    def __init__(self, connection: sqlite3.Connection, path: Path, window_lines: int, readonly: bool = False) -> None:
        self._db = connection
        self.path = path
        self._window_lines = window_lines
        self._readonly = readonly
        self._version = SCHEMA_VERSION  # of the file: a reader leaves an older store as it is (see _check)

    @classmethod
    def open(cls, path: Path, *, window_lines: int = 20000, readonly: bool = False, full_check: bool = False) -> Store:
        """Open (creating if absent and not readonly) and check the store; StateError when it cannot be trusted.

        The full page-by-page check (PRAGMA quick_check, linear in the store's size) runs when asked (the daemon
        starts with it) and whenever the last writer did not close cleanly (a kill, a crash, a power cut). A
        clean store gets a constant-time check (header, schema, meta, size against page count), so one-shot
        commands cost the same on a small and a large history; SQLite still refuses damaged pages it reads.
        """
        if readonly and not path.exists():
            raise StateError(f"{path}: no store yet (has learnd run on this home?)")
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            if not readonly:
                connection.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a committed transaction survives kill -9; after a power loss the last few may
                # roll back, offsets and learned state together, never one without the other.
                connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=5000")
            store = cls(connection, path, window_lines, readonly)
            # No table at all: a new file, or one whose creating process died before its schema committed
            # (the schema goes in as one transaction, so there is nothing half-made to fear).
            is_empty = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
            if is_empty and readonly:
                raise StateError(f"{path}: no store yet (has learnd run on this home?)")
            if is_empty:
                store._create()
            else:
                store._check(full=full_check)
            if not readonly:
                store._set_meta("clean_shutdown", "0")
        except sqlite3.DatabaseError as error:
            connection.close()
            raise StateError(
                f"{path}: not a usable learnd store ({error}); refusing to start. "
                "Move it aside to start over, or restore a backup."
            ) from None
        except StateError:
            connection.close()
            raise
        return store

    def close(self) -> None:
        """Close; a writer records a clean shutdown, so the next open can skip the full check."""
        if not self._readonly:
            self._set_meta("clean_shutdown", "1")
        self._db.close()

    def _set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _create(self) -> None:
        with self._transaction():
            self._execute_script(_SCHEMA_V1)
            for version in range(1, SCHEMA_VERSION):
                self._execute_script(_MIGRATIONS[version])
            self._db.execute("INSERT INTO meta VALUES ('application', ?)", (APPLICATION,))
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _check(self, *, full: bool) -> None:
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            raise StateError(
                f"{self.path}: a SQLite database, but not learnd's (no meta table); refusing to use it."
            ) from None
        if meta.get("application") != APPLICATION:
            raise StateError(f"{self.path}: belongs to {meta.get('application')!r}, not learnd; refusing to use it.")
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path}: schema version {version} is newer than this learnd understands ({SCHEMA_VERSION}); "
                "upgrade learnd."
            )
        if full or meta.get("clean_shutdown") != "1":
            verdict = self._db.execute("PRAGMA quick_check").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise StateError(
                    f"{self.path}: integrity check failed ({verdict}); refusing to start, nothing was reset."
                )
        else:
            self._check_size()
        self._version = version
        if version < SCHEMA_VERSION and not self._readonly:
            self._migrate(version)
            self._version = SCHEMA_VERSION

    def _check_size(self) -> None:
        """A store cut short (truncated by a copy or a full disk) is smaller than its pages say."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        wal = self.path.with_name(self.path.name + "-wal")
        # Pages may still live in the WAL (committed, not yet checkpointed): only the main file plus WAL bounds it.
        available = self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        if pages * page_size > available:
            raise StateError(
                f"{self.path}: {pages} pages of {page_size} bytes but only {available} bytes on disk (truncated); "
                "refusing to start, nothing was reset."
            )

    def _migrate(self, version: int) -> None:
        with self._transaction():
            while version < SCHEMA_VERSION:
                script = _MIGRATIONS.get(version)
                if script is None:
                    raise StateError(f"{self.path}: no migration from schema version {version}")
                self._execute_script(script)
                version += 1
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

    def _execute_script(self, script: str) -> None:
        # executescript() would COMMIT the open transaction first; statements go one by one instead.
        for statement in script.split(";"):
            if statement.strip():
                self._db.execute(statement)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # Reading -----------------------------------------------------------------------------------------------

    def checkpoint(self, source: str) -> Checkpoint | None:
        row = self._db.execute(f"SELECT {self._checkpoint_columns()} FROM checkpoints WHERE source = ?", (source,))
        found = row.fetchone()
        return Checkpoint(*found) if found else None

    def checkpoints(self) -> dict[str, Checkpoint]:
        rows = self._db.execute(f"SELECT source, {self._checkpoint_columns()} FROM checkpoints").fetchall()
        return {row[0]: Checkpoint(*row[1:]) for row in rows}

    def _checkpoint_columns(self) -> str:
        # A reader leaves a store of schema 1 as it is: its checkpoints have no replaced_at_seq yet.
        replaced = "replaced_at_seq" if self._version >= 2 else "-1"
        return f"path, dev, ino, fp_hash, fp_len, offset, size, window_seq, {replaced}"

    def window(self, source: str) -> list[int]:
        """The hashes of the source's most recently read lines, oldest first."""
        rows = self._db.execute("SELECT hash FROM line_window WHERE source = ? ORDER BY seq", (source,)).fetchall()
        return [row[0] for row in rows]

    def file_offsets(self, source: str) -> dict[bytes, tuple[int, int]]:
        """Every file identity (first-line fingerprint) read from a source, with fingerprint length and offset."""
        rows = self._db.execute("SELECT fp_hash, fp_len, offset FROM files WHERE source = ?", (source,)).fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    def known_files(self, source: str) -> KnownFiles:
        """What the store knows of a source's files: every identity read (the checkpoint's included) with its offset,
        and the rotated copies that were there when learnd began to follow the source."""
        read = {Identity(fp_hash, fp_len): offset for fp_hash, (fp_len, offset) in self.file_offsets(source).items()}
        checkpoint = self.checkpoint(source)
        if checkpoint is not None and checkpoint.fp_len:
            identity = Identity(checkpoint.fp_hash, checkpoint.fp_len)
            read[identity] = max(read.get(identity, 0), checkpoint.offset)
        following = self.following(source)
        history: list[Identity] = []
        if following is not None:
            rows = self._db.execute("SELECT fp_hash, fp_len FROM history_files WHERE source = ?", (source,))
            history = [Identity(fp_hash, fp_len) for fp_hash, fp_len in rows]
        return KnownFiles(read, history, following=following is not None)

    def following(self, source: str) -> tuple[str, int] | None:
        """The path learnd follows the source at and since when (µs since the epoch); None before it began."""
        if self._version < 2:
            return None
        row = self._db.execute("SELECT path, since_us FROM following WHERE source = ?", (source,)).fetchone()
        return (row[0], row[1]) if row else None

    def begin_following(self, source: str, path: str, since_us: int, history: Iterable[Identity]) -> None:
        """Record that learnd follows `source` at `path` from now on, and the rotated copies already there."""
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO following VALUES (?, ?, ?)", (source, path, since_us))
            self._db.execute("DELETE FROM history_files WHERE source = ?", (source,))
            self._db.executemany(
                "INSERT OR REPLACE INTO history_files VALUES (?, ?, ?)",
                [(source, identity.fp_hash, identity.fp_len) for identity in history],
            )

    def line_counts(self) -> dict[tuple[str, str, str], int]:
        rows = self._db.execute("SELECT source, outcome, kind, count FROM line_counts").fetchall()
        return {(row[0], row[1], row[2]): row[3] for row in rows}

    def learner_state(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT state FROM learner_state WHERE name = ?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def has_ledger_key(self, kind: str, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM ledger WHERE kind = ? AND key = ?", (kind, key)).fetchone() is not None

    def ledger(self, kind: str, *, since_us: int | None = None, until_us: int | None = None) -> Iterator[LedgerRow]:
        """Ledger rows of one kind in event order; equal times keep file order (source, byte offset), as a live
        run and a backfill read them; the key breaks what is left of a tie."""
        where, params = _time_window("kind = ?", [kind], since_us, until_us)
        order = "ORDER BY event_us, source, file_offset, key"
        for row in self._db.execute(f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE {where} {order}", params):
            yield _ledger_row(row)

    def ledger_count(self, kind: str) -> int:
        row = self._db.execute("SELECT count(*) FROM ledger WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

    def quarantine_rows(self, after_seq: int) -> list[tuple[int, str, bytes]]:
        rows = self._db.execute(
            "SELECT seq, source, body FROM quarantine WHERE seq > ? ORDER BY seq", (after_seq,)
        ).fetchall()
        return [(row[0], row[1], bytes(row[2])) for row in rows]

    def changes(self, after_seq: int = 0) -> list[tuple[int, bytes]]:
        rows = self._db.execute("SELECT seq, body FROM changes WHERE seq > ? ORDER BY seq", (after_seq,)).fetchall()
        return [(row[0], bytes(row[1])) for row in rows]

    def learner_rows(
        self, learner: str, *, since_us: int | None = None, until_us: int | None = None
    ) -> Iterator[tuple[str, int, bytes]]:
        """A learner's persisted rows (key, event_us, body) in event order, optionally within [since, until)."""
        where, params = _time_window("learner = ?", [learner], since_us, until_us)
        for row in self._db.execute(
            f"SELECT key, event_us, body FROM learner_rows WHERE {where} ORDER BY event_us, key", params
        ):
            yield row[0], row[1], bytes(row[2])

    def latest_learner_row(self, learner: str, key_prefix: str, until_us: int) -> bytes | None:
        """The body of a learner's newest row whose key starts with `key_prefix`, at or before `until_us`."""
        row = self._db.execute(
            "SELECT body FROM learner_rows WHERE learner = ? AND key >= ? AND key < ? AND event_us <= ? "
            "ORDER BY event_us DESC LIMIT 1",
            (learner, key_prefix, key_prefix + "\uffff", until_us),
        ).fetchone()
        return bytes(row[0]) if row else None

    def changes_between(self, since_us: int, until_us: int) -> list[bytes]:
        """Weight-change documents with event time in [since, until), in commit order."""
        rows = self._db.execute(
            "SELECT body FROM changes WHERE event_us >= ? AND event_us < ? ORDER BY seq", (since_us, until_us)
        ).fetchall()
        return [bytes(row[0]) for row in rows]

    def ledger_row(self, kind: str, key: str) -> LedgerRow | None:
        row = self._db.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return _ledger_row(row) if row else None

    def job_runs(self, job: str) -> list[tuple[str, str, int, str]]:
        rows = self._db.execute(
            "SELECT period, status, due_us, detail FROM job_runs WHERE job = ? ORDER BY due_us", (job,)
        ).fetchall()
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    def fingerprint(self) -> dict[str, object]:
        """Everything learned and every offset, for comparing two stores (replay equivalence)."""
        return {
            "checkpoints": {name: (cp.offset, cp.fp_hash.hex()) for name, cp in sorted(self.checkpoints().items())},
            "counts": sorted(self.line_counts().items()),
            "ledger": self._db.execute("SELECT kind, key, record FROM ledger ORDER BY kind, key").fetchall(),
            "learners": self._db.execute("SELECT name, state FROM learner_state ORDER BY name").fetchall(),
            "learner_rows": self._db.execute(
                "SELECT learner, key, body FROM learner_rows ORDER BY learner, key"
            ).fetchall(),
        }

    # Writing -----------------------------------------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        """Write one batch atomically: offsets, window, counts, ledger, learner state, quarantine, changes."""
        db = self._db
        with self._transaction():
            for source, hashes in batch.window.items():
                checkpoint = batch.checkpoints[source]
                tail = hashes[-self._window_lines :]
                first_seq = checkpoint.window_seq - len(tail) + 1
                db.executemany(
                    "INSERT OR REPLACE INTO line_window VALUES (?, ?, ?)",
                    [(source, first_seq + index, value) for index, value in enumerate(tail)],
                )
                db.execute(
                    "DELETE FROM line_window WHERE source = ? AND seq <= ?",
                    (source, checkpoint.window_seq - self._window_lines),
                )
            db.executemany(
                "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        name,
                        cp.path,
                        cp.dev,
                        cp.ino,
                        cp.fp_hash,
                        cp.fp_len,
                        cp.offset,
                        cp.size,
                        cp.window_seq,
                        cp.replaced_at_seq,
                    )
                    for name, cp in batch.checkpoints.items()
                ],
            )
            db.executemany(
                "DELETE FROM files WHERE source = ? AND fp_hash = ?", sorted(batch.files_dropped - batch.files.keys())
            )
            db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                [(source, fp, fp_len, offset) for (source, fp), (fp_len, offset) in batch.files.items()],
            )
            db.executemany(
                "INSERT INTO line_counts VALUES (?, ?, ?, ?) "
                "ON CONFLICT (source, outcome, kind) DO UPDATE SET count = count + excluded.count",
                [(source, outcome, kind, count) for (source, outcome, kind), count in batch.counts.items()],
            )
            db.executemany(
                "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.kind, r.key, r.strategy, r.symbol, r.event_us, r.source, r.file_offset, r.record)
                    for r in batch.ledger
                ],
            )
            db.executemany("INSERT OR REPLACE INTO learner_state VALUES (?, ?)", list(batch.learner_states.items()))
            db.executemany("INSERT INTO quarantine (source, body) VALUES (?, ?)", batch.quarantine)
            db.executemany("INSERT INTO changes (event_us, body) VALUES (?, ?)", batch.changes)
            db.executemany("INSERT OR REPLACE INTO learner_rows VALUES (?, ?, ?, ?)", batch.learner_rows)
            db.executemany(
                "INSERT OR REPLACE INTO job_runs VALUES (?, ?, ?, ?, ?)",
                [(run.job, run.period, run.status, run.due_us, run.detail) for run in batch.job_runs],
            )

    def record_job_run(self, run: JobRun) -> None:
        """Record a run on its own (a failed one: what it changed was dropped, nothing else commits with it)."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO job_runs VALUES (?, ?, ?, ?, ?)",
                (run.job, run.period, run.status, run.due_us, run.detail),
            )


@contextmanager
def reading(path: Path) -> Iterator[Store | None]:
    """The store opened read-only for a view, closed on exit; None when learnd has not created one there yet.

    The one way views open the store: they never write, never take the home lock and never need the engine.
    """
    if not path.exists():
        yield None
        return
    store = Store.open(path, readonly=True)
    try:
        yield store
    finally:
        store.close()


def require(store: Store | None, path: Path) -> Store:
    """The store a view cannot do without: StateError when there is none yet."""
    if store is None:
        raise StateError(f"{path}: no store yet (has learnd run on this home?)")
    return store


_LEDGER_COLUMNS: Final = "kind, key, strategy, symbol, event_us, source, file_offset, record"


def _ledger_row(row: Sequence[Any]) -> LedgerRow:
    return LedgerRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bytes(row[7]))


def _time_window(
    where: str, params: list[object], since_us: int | None, until_us: int | None
) -> tuple[str, list[object]]:
    """A WHERE clause narrowed to event times in [since, until) when given (the columns are constants here)."""
    if since_us is not None:
        where += " AND event_us >= ?"
        params = [*params, since_us]
    if until_us is not None:
        where += " AND event_us < ?"
        params = [*params, until_us]
    return where, params


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (which then propagates)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        elif self._db.in_transaction:
            # SQLite may have rolled back already (a full disk, an I/O error): then there is nothing to undo, and
            # a ROLLBACK would raise over the real error.
            self._db.execute("ROLLBACK")
