"""The store: state/learnd.db (SQLite, WAL), the one source of truth for offsets, line window, ledger and learned state.

Everything a batch changed is committed in ONE transaction; exports are derived from what is committed here.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson

from learnd.config import SourceKind
from learnd.errors import RecordError, StateError
from learnd.records.decode import BadLine, decode_line
from learnd.records.encoding import encode_record
from learnd.records.parse import ExitOutcome, TradeEntry, TradeOutcome, parse_record
from learnd.sources.files import Identity, KnownFiles
from learnd.sources.tailer import Checkpoint
from learnd.store.lock import HomeLock

APPLICATION: Final = "learnd"
SCHEMA_VERSION: Final = 6

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

# Version 2: the jobs' long-run figures (ledger rows numbered in insertion order, so a job finds the rows that
# arrived after it last looked, late ones included; weight changes found by event time; the jobs' own kept state),
# ledger records kept compactly (records.encoding) instead of as the lines they came from, the line window kept as
# one packed chunk of hashes per source and commit (not a row per line), and weight changes
# numbered for good (AUTOINCREMENT): the journal follows their numbers, and reported ones are deleted, so a number
# must never come back.
_SCHEMA_V2: Final = """
ALTER TABLE ledger ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX ledger_by_seq ON ledger (kind, seq);
CREATE TABLE changes_numbered (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_us INTEGER NOT NULL, body BLOB NOT NULL);
INSERT INTO changes_numbered SELECT seq, event_us, body FROM changes;
DROP TABLE changes;
ALTER TABLE changes_numbered RENAME TO changes;
CREATE INDEX changes_by_time ON changes (event_us);
CREATE TABLE line_window_chunks (source TEXT NOT NULL, last_seq INTEGER NOT NULL, hashes BLOB NOT NULL,
    PRIMARY KEY (source, last_seq)) WITHOUT ROWID;
CREATE TABLE job_state (name TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE job_values (cell TEXT NOT NULL, chunk INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (cell, chunk)) WITHOUT ROWID;
"""
# Which source kind's parser read each ledger kind from its line (schema version 1 kept the lines).
_LEDGER_SOURCE_KINDS: Final[dict[str, SourceKind]] = {"trade": "attribution", "entry": "attribution", "exit": "exit"}


def _to_version_2(db: sqlite3.Connection) -> None:
    _execute_script(db, _SCHEMA_V2)
    for (source,) in db.execute("SELECT DISTINCT source FROM line_window").fetchall():
        rows = db.execute("SELECT seq, hash FROM line_window WHERE source = ? ORDER BY seq", (source,)).fetchall()
        db.execute(
            "INSERT INTO line_window_chunks VALUES (?, ?, ?)",
            (source, rows[-1][0], array("q", [value for _, value in rows]).tobytes()),
        )
    db.execute("DROP TABLE line_window")
    for kind, key, line in db.execute("SELECT kind, key, record FROM ledger").fetchall():
        decoded = decode_line(bytes(line))
        try:
            if isinstance(decoded, BadLine):
                raise RecordError(decoded.reason, decoded.detail)
            record = parse_record(_LEDGER_SOURCE_KINDS[kind], decoded)
        except RecordError as error:
            raise StateError(f"ledger row {kind}/{key} no longer parses ({error}): the store is damaged") from None
        if not isinstance(record, TradeOutcome | TradeEntry | ExitOutcome):
            raise StateError(f"ledger row {kind}/{key} holds a {type(record).__name__}: the store is damaged")
        db.execute("UPDATE ledger SET record = ? WHERE kind = ? AND key = ?", (encode_record(record), kind, key))


# Version 3: when learnd began to follow each source (and at which path), and the rotated copies that were there
# then: history only a backfill reads; any other copy never read holds lines never applied, and the daemon reads it.
# A checkpoint naming a file that was replaced at the path says when (Checkpoint.replaced_at_seq).
_SCHEMA_V3: Final = """
CREATE TABLE following (source TEXT PRIMARY KEY, path TEXT NOT NULL, since_us INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE history_files (source TEXT NOT NULL, fp_hash BLOB NOT NULL, fp_len INTEGER NOT NULL,
    PRIMARY KEY (source, fp_hash)) WITHOUT ROWID;
ALTER TABLE checkpoints ADD COLUMN replaced_at_seq INTEGER NOT NULL DEFAULT -1;
"""


def _to_version_3(db: sqlite3.Connection) -> None:
    _execute_script(db, _SCHEMA_V3)


# Version 4: a learner's replay points (see ReplayPoints), so that a replay after a restart starts from one too. A
# cache, not learned state: each is what a replay from nothing would rebuild, so a store without them (an older one,
# or one whose points were taken under other parameters) learns the same, only slower. Not in `fingerprint`.
_SCHEMA_V4: Final = """
CREATE TABLE replay_points (learner TEXT NOT NULL, number INTEGER NOT NULL, through_us INTEGER NOT NULL,
    ordinal INTEGER NOT NULL, tag TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (learner, number));
"""


def _to_version_4(db: sqlite3.Connection) -> None:
    _execute_script(db, _SCHEMA_V4)


def _to_version_5(db: sqlite3.Connection) -> None:
    """No table changes: from version 5 the ledger keeps entries with their entry time (records/encoding.py, tag
    "e2"), which a learnd of version 4 cannot read; the version makes it refuse the store instead of failing on
    the first such entry."""


# Version 6: the ledger read in event order with ties in the order they arrived (Store.ledger) through an index in
# that order; the one by byte offset goes (ordered by offset and then sorted by arrival, a whole ledger read took 1.7
# times as long).
_SCHEMA_V6: Final = """
CREATE INDEX ledger_by_arrival ON ledger (kind, event_us, source, seq);
DROP INDEX ledger_by_time;
"""


def _to_version_6(db: sqlite3.Connection) -> None:
    _execute_script(db, _SCHEMA_V6)


# Migrations from version N to N+1, applied in order inside one transaction (a new store is V1 plus all of them).
_MIGRATIONS: Final[dict[int, Callable[[sqlite3.Connection], None]]] = {
    1: _to_version_2,
    2: _to_version_3,
    3: _to_version_4,
    4: _to_version_5,
    5: _to_version_6,
}


class LedgerRow(NamedTuple):
    """One outcome or entry record kept for dedupe, replay in event order and the batch jobs. A named tuple: the
    jobs read the ledger a row at a time, and a tuple is made from a fetched row at a fraction of a frozen
    dataclass's cost."""

    kind: str
    key: str
    strategy: str
    symbol: str
    event_us: int
    source: str
    file_offset: int
    record: bytes


class ReplayPoint(NamedTuple):
    """One state a learner can replay from (its body, the learner's state, read on its own: replay_point_body):
    `number` in the order the learner took them, `through_us` the newest event time it holds, `ordinal` how many
    records it holds, `tag` what it was learned under (versions and parameters)."""

    number: int
    through_us: int
    ordinal: int
    tag: str


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
    job_state: dict[str, bytes] = field(default_factory=dict)
    job_values: list[tuple[str, int, bytes]] = field(default_factory=list)
    # Per learner: the numbers of the replay points it keeps (every other is deleted) and the points taken since
    # its last commit, as ReplayPoint's fields and the body; only kept ones are written.
    replay_points: dict[str, tuple[tuple[int, ...], tuple[tuple[int, int, int, str, bytes], ...]]] = field(
        default_factory=dict
    )
    # Weight changes no report will read again: event time before this, already in the journal (seq up to this).
    changes_done: tuple[int, int] | None = None
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
            or self.job_state
            or self.job_values
            or self.replay_points
            or self.changes_done is not None
        )


class Store:
    """An open learnd.db. Single writer (the process holding the home's lock); readers may open it alongside."""

    def __init__(self, connection: sqlite3.Connection, path: Path, window_lines: int, readonly: bool = False) -> None:
        self._db = connection
        self.path = path
        self._window_lines = window_lines
        self._readonly = readonly
        self._version = SCHEMA_VERSION  # of the file: a reader leaves an older store as it is (see _check)
        self._ledger_seq = 0  # the insertion number of the newest ledger row (set once the schema is known)

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        window_lines: int = 20000,
        readonly: bool = False,
        full_check: bool = False,
        writer_running: bool = False,
    ) -> Store:
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
                store._check(full=full_check, writer_running=writer_running)
            if not readonly:
                store._set_meta("clean_shutdown", "0")
                store._ledger_seq = store._max_ledger_seq()
        except sqlite3.DatabaseError as error:
            connection.close()
            if ((getattr(error, "sqlite_errorcode", None) or 0) & 0xFF) in _NOT_DAMAGE:
                # A full disk, a read-only or unreadable file: nothing says the store is damaged.
                raise StateError(
                    f"{path}: the store cannot be used now ({error}); it was left as it is. Free space, or make it "
                    "readable and writable, and start again."
                ) from None
            raise StateError(
                f"{path}: not a usable learnd store ({error}); refusing to start. "
                "Move it aside to start over, or restore a backup."
            ) from None
        except StateError:
            connection.close()
            raise
        return store

    def shrink_memory(self) -> None:
        """Hand SQLite's page cache back to the heap (PRAGMA shrink_memory): after a burst of reads, such as a job
        catch-up, the pages it cached would otherwise stay resident while the daemon idles."""
        self._db.execute("PRAGMA shrink_memory")

    def close(self, *, clean: bool = True) -> None:
        """Close; a writer records a clean shutdown (unless not `clean`: a start that failed, maybe on damage it
        found), so the next open can skip the full check. The connection is closed even when that record cannot be
        written (a full disk); that error is then raised."""
        try:
            if clean and not self._readonly:
                self._set_meta("clean_shutdown", "1")
        finally:
            self._db.close()

    def _set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _create(self) -> None:
        with self._transaction():
            _execute_script(self._db, _SCHEMA_V1)
            for version in range(1, SCHEMA_VERSION):
                _MIGRATIONS[version](self._db)
            self._db.execute("INSERT INTO meta VALUES ('application', ?)", (APPLICATION,))
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _check(self, *, full: bool, writer_running: bool = False) -> None:
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
        # A writer holding the home marks the store unclean until it stops: that is no sign of damage.
        if full or (meta.get("clean_shutdown") != "1" and not writer_running):
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
                migration = _MIGRATIONS.get(version)
                if migration is None:
                    raise StateError(f"{self.path}: no migration from schema version {version}")
                migration(self._db)
                version += 1
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

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
        # A reader leaves an older store as it is: its checkpoints have no replaced_at_seq yet.
        replaced = "replaced_at_seq" if self._version >= 3 else "-1"
        return f"path, dev, ino, fp_hash, fp_len, offset, size, window_seq, {replaced}"

    def window(self, source: str) -> array[int]:
        """The hashes of the source's most recently read lines (window_lines of them at most), oldest first."""
        hashes = array("q")
        for (chunk,) in self._db.execute(
            "SELECT hashes FROM line_window_chunks WHERE source = ? ORDER BY last_seq", (source,)
        ):
            hashes.frombytes(chunk)
        return hashes[-self._window_lines :]

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
        if self._version < 3:
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

    def ledger_keys_in(self, kind: str, keys: Sequence[str]) -> set[str]:
        """Which of `keys` the ledger holds under `kind`, in one query: the ingestor asks once for all the records of
        the lines it is about to apply (a lookup a record cost several times as much)."""
        if not keys:
            return set()
        rows = self._db.execute(
            "SELECT key FROM ledger WHERE kind = ? AND key IN (SELECT value FROM json_each(?))",
            (kind, orjson.dumps(keys)),
        )
        return {row[0] for row in rows}

    def ledger(self, kind: str, *, since_us: int | None = None, until_us: int | None = None) -> Iterator[LedgerRow]:
        """Ledger rows of one kind in event order; equal times keep the order they arrived in (per source, the
        insertion number: file order, across rotations too, as a live run and a backfill read them and as in-order
        learning took them; a byte offset starts again in each file); rows of a store older than the numbers (all 0)
        fall back to the key."""
        where, params = _time_window("kind = ?", [kind], since_us, until_us)
        order = _EVENT_ORDER
        rows = self._db.execute(f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE {where} {order}", params)
        yield from map(_ledger_row, rows)

    def ledger_since(self, kind: str, after_seq: int, until_us: int) -> Iterator[LedgerRow]:
        """Ledger rows of one kind inserted after `after_seq` with event time before `until_us`, in insertion order:
        what arrived since a job last looked, for a span of event time it has already covered."""
        rows = self._db.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE kind = ? AND seq > ? AND event_us < ? ORDER BY seq",
            (kind, after_seq, until_us),
        )
        yield from map(_ledger_row, rows)

    @property
    def ledger_seq(self) -> int:
        """The insertion number of the newest committed ledger row (0 before any)."""
        return self._max_ledger_seq() if self._readonly else self._ledger_seq

    @contextmanager
    def snapshot(self) -> Iterator[Store]:
        """A reader's consistent view: every query inside sees the store as of the first one, whatever commits
        meanwhile (WAL keeps the pages that view needs). Inside one already, that one goes on."""
        if self._db.in_transaction:
            yield self
            return
        self._db.execute("BEGIN")
        try:
            yield self
        finally:
            self._db.execute("ROLLBACK")

    def _max_ledger_seq(self) -> int:
        return max(
            (
                self._db.execute("SELECT max(seq) FROM ledger WHERE kind = ?", (kind,)).fetchone()[0] or 0
                for kind in self._ledger_kinds()
            ),
            default=0,
        )

    def _ledger_kinds(self) -> list[str]:
        """The kinds the ledger holds, each found by one seek of its key index past the one before (a DISTINCT would
        read every row: 10 ms at each open of a five-year store)."""
        kinds: list[str] = []
        row = self._db.execute("SELECT min(kind) FROM ledger").fetchone()
        while row is not None and row[0] is not None:
            kinds.append(row[0])
            row = self._db.execute("SELECT kind FROM ledger WHERE kind > ? ORDER BY kind LIMIT 1", (row[0],)).fetchone()
        return kinds

    def ledger_count(self, kind: str) -> int:
        row = self._db.execute("SELECT count(*) FROM ledger WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

    def quarantine_rows(
        self, after_seq: int, *, after_by_source: Mapping[str, int] | None = None
    ) -> list[tuple[int, str, bytes]]:
        """Quarantined lines (seq, source, body) after `after_seq`, in order; with `after_by_source`, a listed
        source's only after its own number there (each journal's last row: a source whose journal stood still would
        otherwise have every other source's rows since read again)."""
        where = "seq > ?"
        params: list[object] = [after_seq]
        if after_by_source:
            cases = " ".join("WHEN ? THEN ?" for _ in after_by_source)
            where += f" AND seq > CASE source {cases} ELSE ? END"
            params += [*chain.from_iterable(after_by_source.items()), after_seq]
        rows = self._db.execute(
            f"SELECT seq, source, body FROM quarantine WHERE {where} ORDER BY seq", params
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

    def replay_points(self, learner: str) -> list[ReplayPoint]:
        """A learner's kept replay points, in the order it took them (none on a store older than schema 4)."""
        if self._version < 4:
            return []
        rows = self._db.execute(
            "SELECT number, through_us, ordinal, tag FROM replay_points WHERE learner = ? ORDER BY number", (learner,)
        )
        return [ReplayPoint(*row) for row in rows]

    def replay_point_body(self, learner: str, number: int) -> bytes | None:
        """The body of one of a learner's kept replay points, None when there is none of that number."""
        if self._version < 4:
            return None
        row = self._db.execute(
            "SELECT body FROM replay_points WHERE learner = ? AND number = ?", (learner, number)
        ).fetchone()
        return bytes(row[0]) if row else None

    def _replay_numbers(self, learner: str) -> list[int]:
        rows = self._db.execute("SELECT number FROM replay_points WHERE learner = ?", (learner,))
        return [row[0] for row in rows]

    def changes_between(self, since_us: int, until_us: int) -> list[bytes]:
        """Weight-change documents with event time in [since, until), in commit order."""
        rows = self._db.execute(
            "SELECT body FROM changes WHERE event_us >= ? AND event_us < ? ORDER BY seq", (since_us, until_us)
        ).fetchall()
        return [bytes(row[0]) for row in rows]

    def job_state(self, name: str) -> bytes | None:
        """A job's kept state (see jobs.longrun), None before the job first kept any."""
        row = self._db.execute("SELECT body FROM job_state WHERE name = ?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def job_states(self, prefix: str) -> dict[str, bytes]:
        """Every kept job state row whose name starts with `prefix`."""
        rows = self._db.execute(
            "SELECT name, body FROM job_state WHERE name >= ? AND name < ?", (prefix, prefix + "\uffff")
        ).fetchall()
        return {row[0]: bytes(row[1]) for row in rows}

    def ledger_up_to(self, kind: str, since_us: int | None, until_us: int, last_seq: int) -> Iterator[LedgerRow]:
        """Ledger rows of one kind with event time in [since, until) inserted up to `last_seq`, in event order:
        what a job had taken in of that span when it last looked."""
        where, params = _time_window("kind = ?", [kind], since_us, until_us)
        rows = self._db.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE {where} AND seq <= ? {_EVENT_ORDER}", [*params, last_seq]
        )
        yield from map(_ledger_row, rows)

    def learner_rows_in_keys(self, learner: str, low_key: str, high_key: str) -> Iterator[tuple[str, int, bytes]]:
        """A learner's rows (key, event_us, body) whose key lies in [low_key, high_key), in key order."""
        for row in self._db.execute(
            "SELECT key, event_us, body FROM learner_rows WHERE learner = ? AND key >= ? AND key < ? ORDER BY key",
            (learner, low_key, high_key),
        ):
            yield row[0], row[1], bytes(row[2])

    def job_values(self) -> Iterator[tuple[str, int, bytes]]:
        """Every kept chunk of the jobs' value samples (cell, chunk number, body), in order per cell."""
        for row in self._db.execute("SELECT cell, chunk, body FROM job_values ORDER BY cell, chunk"):
            yield row[0], row[1], bytes(row[2])

    def ledger_row(self, kind: str, key: str) -> LedgerRow | None:
        row = self._db.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return _ledger_row(row) if row else None

    def job_runs(self, job: str) -> list[tuple[str, str, int, str]]:
        """`job`'s runs (period, status, due_us, detail), in due order."""
        rows: list[tuple[str, str, int, str]] = self._db.execute(
            f"SELECT {_JOB_RUN_COLUMNS} FROM job_runs WHERE job = ? ORDER BY due_us", (job,)
        ).fetchall()
        return rows

    # A job's runs are one row a period, years of them: every start and `learnd schedule` ask these of them in SQL
    # instead of reading them all.

    def last_success(self, job: str) -> tuple[str, int] | None:
        """`job`'s latest successful run (period, due_us), None before its first."""
        row: tuple[str, int] | None = self._db.execute(
            # Labels (ISO dates, ISO weeks) sort as their periods do, whatever grace each due time had.
            "SELECT period, due_us FROM job_runs WHERE job = ? AND status = 'ok' ORDER BY period DESC LIMIT 1",
            (job,),
        ).fetchone()
        return row

    def last_job_run(self, job: str) -> tuple[str, str, int, str] | None:
        """`job`'s run due last (period, status, due_us, detail), None when it never ran: job_runs(job)[-1]."""
        row: tuple[str, str, int, str] | None = self._db.execute(
            f"SELECT {_JOB_RUN_COLUMNS} FROM job_runs WHERE job = ? ORDER BY due_us DESC, period DESC LIMIT 1", (job,)
        ).fetchone()
        return row

    def job_run_succeeded(self, job: str, period: str) -> bool:
        """Whether `job`'s run of `period` is recorded, and recorded a success."""
        row = self._db.execute("SELECT status FROM job_runs WHERE job = ? AND period = ?", (job, period)).fetchone()
        return row is not None and row[0] == "ok"

    def failed_periods(self, job: str, before_us: int) -> list[tuple[str, int]]:
        """`job`'s periods due before `before_us` whose last run failed (period, due_us), in due order."""
        rows: list[tuple[str, int]] = self._db.execute(
            "SELECT period, due_us FROM job_runs WHERE job = ? AND status != 'ok' AND due_us < ? ORDER BY due_us",
            (job, before_us),
        ).fetchall()
        return rows

    def failed_job_runs(self, job: str) -> int:
        """How many of `job`'s periods last ran and failed."""
        count: int = self._db.execute(
            "SELECT count(*) FROM job_runs WHERE job = ? AND status != 'ok'", (job,)
        ).fetchone()[0]
        return count

    def fingerprint(self) -> dict[str, object]:
        """Everything learned and every offset, for comparing two stores (replay equivalence). Not the learners'
        replay points: a cache, whose spacing depends on restarts and on how the lines arrived."""
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
                if not hashes:
                    continue
                checkpoint = batch.checkpoints[source]
                # One packed chunk per commit, ending at the source's line number; chunks wholly older than the
                # window go.
                tail = array("q", hashes[-self._window_lines :]).tobytes()
                db.execute(
                    "INSERT OR REPLACE INTO line_window_chunks VALUES (?, ?, ?)", (source, checkpoint.window_seq, tail)
                )
                db.execute(
                    "DELETE FROM line_window_chunks WHERE source = ? AND last_seq <= ?",
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
            first_seq = self._ledger_seq + 1
            # A record bound as a bytearray is the same BLOB as its bytes, without the adapter lookup sqlite3 makes
            # for each bytes parameter (it looks for __adapt__ and __conform__): a tenth of the ledger's insert.
            db.executemany(
                f"INSERT INTO ledger ({_LEDGER_COLUMNS}, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.kind,
                        r.key,
                        r.strategy,
                        r.symbol,
                        r.event_us,
                        r.source,
                        r.file_offset,
                        bytearray(r.record),
                        first_seq + i,
                    )
                    for i, r in enumerate(batch.ledger)
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
            db.executemany("INSERT OR REPLACE INTO job_state VALUES (?, ?)", list(batch.job_state.items()))
            db.executemany("INSERT OR REPLACE INTO job_values VALUES (?, ?, ?)", batch.job_values)
            if batch.changes_done is not None:
                db.execute("DELETE FROM changes WHERE event_us < ? AND seq <= ?", batch.changes_done)
            for learner, (kept_numbers, new_points) in batch.replay_points.items():
                kept = set(kept_numbers)
                db.executemany(
                    "DELETE FROM replay_points WHERE learner = ? AND number = ?",
                    [(learner, number) for number in self._replay_numbers(learner) if number not in kept],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO replay_points VALUES (?, ?, ?, ?, ?, ?)",
                    [(learner, *point) for point in new_points if point[0] in kept],
                )
        self._ledger_seq += len(batch.ledger)

    def record_job_run(self, run: JobRun) -> None:
        """Record a run on its own (a failed one: what it changed was dropped, nothing else commits with it)."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO job_runs VALUES (?, ?, ?, ?, ?)",
                (run.job, run.period, run.status, run.due_us, run.detail),
            )


@contextmanager
def reading(path: Path, lock_path: Path | None = None) -> Iterator[Store | None]:
    """The store opened read-only for a view, closed on exit; None when learnd has not created one there yet.

    The one way views open the store: they never write, never take the home lock and never need the engine, and all
    they read is one committed state (a read transaction held while the view is open). While
    a daemon holds the home (`lock_path`), the store is not checked page by page: a running writer marks it
    unclean for its whole life, and it checked every page itself at its start.
    """
    if not path.exists():
        yield None
        return
    writer_running = lock_path is not None and HomeLock(lock_path).holder() is not None
    store = Store.open(path, readonly=True, writer_running=writer_running)
    try:
        # Every figure of a view from one committed state (a daemon may commit between two of its queries).
        with store.snapshot():
            yield store
    finally:
        store.close()


def require(store: Store | None, path: Path) -> Store:
    """The store a view cannot do without: StateError when there is none yet."""
    if store is None:
        raise StateError(f"{path}: no store yet (has learnd run on this home?)")
    return store


# SQLite's primary result codes that say the store could not be written or read at the moment, not that it is
# damaged (a full disk, an I/O error, a read-only or unopenable file, a lock held too long).
_NOT_DAMAGE: Final = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_BUSY}
)
_LEDGER_COLUMNS: Final = "kind, key, strategy, symbol, event_us, source, file_offset, record"
# The ledger's event order (see Store.ledger): the order of its index ledger_by_arrival (whose entries end with the
# key, the table's own), so no sort is needed.
_EVENT_ORDER: Final = "ORDER BY event_us, source, seq, key"
# A job run as Store.job_runs and Store.last_job_run give it (sqlite3's rows are these tuples).
_JOB_RUN_COLUMNS: Final = "period, status, due_us, detail"


# A fetched row of _LEDGER_COLUMNS as a LedgerRow: the columns are its fields in order, and sqlite3 returns the
# `record` BLOB as bytes.
_ledger_row: Final[Callable[[Iterable[Any]], LedgerRow]] = LedgerRow._make


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


def _execute_script(db: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT the open transaction first; statements go one by one instead.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (which then propagates)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except BaseException:
                # A COMMIT that fails without ending the transaction (SQLITE_BUSY leaves it open) would leave this
                # connection reading its own uncommitted batch as the store: it is undone, and the error goes on.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        elif self._db.in_transaction:
            # SQLite may have rolled back already (a full disk, an I/O error): then there is nothing to undo, and
            # a ROLLBACK would raise over the real error.
            self._db.execute("ROLLBACK")
