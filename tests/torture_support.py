"""Torture-suite helpers: a bot-like writer that knows every line it wrote, the daemon as a logged subprocess,
the rotations of FORMATS.md, and the independent accounting (lost / duplicated) the suite reports.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import orjson

from learnd.sources.files import starts_with
from learnd.sources.tailer import Checkpoint
from learnd.store.database import Store
from learnd.views.audit import collect_audit
from tests.service.test_daemon import SOURCES, daemon_env, settings_for

# Monday 2026-03-02, one minute after the NYSE open: every event time the writer uses is inside the session.
_SESSION_START = datetime(2026, 3, 2, 14, 31, tzinfo=UTC)
GARBAGE_RATE = 0.03
OUTCOMES = ("applied", "ignored", "quarantined")


def event_ts(seq: int) -> str:
    return (_SESSION_START + timedelta(milliseconds=seq)).isoformat(timespec="microseconds")


def make_line(source: str, seq: int, rng: random.Random) -> tuple[bytes, str]:
    """One unique line for `source` and the outcome it must end with (independent of learnd's parser)."""
    if rng.random() < GARBAGE_RATE:
        return b"not json at all {" + str(seq).encode(), "quarantined"
    ts = event_ts(seq)
    if source == "attribution":
        row: dict[str, object] = {
            "ts": ts,
            "type": "attribution",
            "trade_id": f"close_AMD_{ts}_{seq}",
            "symbol": "AMD",
            "pnl_usd": 1.0,
            "pnl_pct": round(rng.uniform(-2, 2), 4),
            "market_regime": rng.choice(["mixed", "RISK_ON"]),
            "context": {"components": {"flow": 1.0, "dark_pool": round(rng.uniform(0, 1), 3)}},
            "strategy_id": "equity",
        }
        return orjson.dumps(row), "applied"
    if source == "exit":
        return orjson.dumps({"ts": ts, "msg": "exit_check", "symbol": "AMD", "seq": seq}), "ignored"
    if source == "signals":
        cluster = {"ticker": "AMD", "direction": "bullish", "composite_score": 3.0, "composite_meta": {}, "count": seq}
        return orjson.dumps({"ts": ts, "type": "signal", "cluster": cluster}), "applied"
    return orjson.dumps({"ts": ts, "type": "order", "symbol": "AMD", "qty": 3, "side": "buy", "seq": seq}), "applied"


@dataclass(slots=True)
class WrittenLine:
    source: str
    raw: bytes
    outcome: str


class LogWriter:
    """Appends unique lines to the four logs through held-open O_APPEND handles, as the bot does, each batch cut
    into random pieces (flushed per piece). A rotation holds `lock`, so it always falls between complete lines."""

    def __init__(self, home: Path, seed: int, sources: tuple[str, ...] = tuple(SOURCES), first_seq: int = 0) -> None:
        self.home = home
        self.sources = sources
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.written: list[WrittenLine] = []
        self._seq = first_seq  # a line's event time and keys derive from its seq: a later writer starts after
        self._handles: dict[str, BinaryIO] = {}
        for source in sources:
            self._open(source)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None

    def path(self, source: str) -> Path:
        return self.home / SOURCES[source]

    def _open(self, source: str) -> None:
        self._handles[source] = open(self.path(source), "ab")  # noqa: SIM115 - held like the bot's log handle

    def reopen(self, source: str) -> None:
        """The bot reopens its log by name (after a rename or a deletion); `create` if it is not there."""
        with self.lock:
            self._handles[source].close()
            self._open(source)

    def let_go(self, source: str) -> None:
        """The bot closes its log (it stops, say); `reopen` opens it again."""
        with self.lock:
            self._handles[source].close()

    def take_line(self, source: str) -> bytes:
        """The next line for `source`, counted as written, for another writer (a process of its own) to write."""
        with self.lock:
            raw, outcome = make_line(source, self._seq, self.rng)
            self._seq += 1
            self.written.append(WrittenLine(source, raw, outcome))
            return raw + b"\n"

    def write_line(self, source: str, raw: bytes, outcome: str) -> None:
        """Append one given line (a start-up banner, say) through the writer's own descriptor."""
        with self.lock:
            self.written.append(WrittenLine(source, raw, outcome))
            handle = self._handles[source]
            handle.write(raw + b"\n")
            handle.flush()

    def write_batch(self, count: int) -> None:
        with self.lock:
            per_source: dict[str, list[bytes]] = {}
            for _ in range(count):
                source = self.rng.choice(self.sources)
                raw, outcome = make_line(source, self._seq, self.rng)
                self._seq += 1
                self.written.append(WrittenLine(source, raw, outcome))
                per_source.setdefault(source, []).append(raw + b"\n")
            for source, lines in per_source.items():
                data = b"".join(lines)
                handle = self._handles[source]
                position = 0
                while position < len(data):
                    step = self.rng.randint(1, 600)
                    handle.write(data[position : position + step])
                    handle.flush()
                    position += step

    def start(self, *, lines_per_s: float, max_lines: int, batch: int = 20) -> None:
        """Append in the background at about `lines_per_s` until `stop()` or `max_lines`."""

        def loop() -> None:
            try:
                while not self._stop.is_set() and len(self.written) < max_lines:
                    self.write_batch(min(batch, max_lines - len(self.written)))
                    self._stop.wait(batch / lines_per_s)
            except BaseException as error:
                self._error = error
                raise

        self._thread = threading.Thread(target=loop, name="log-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "writer thread did not stop"
            self._thread = None
        if self._error is not None:
            raise AssertionError(f"writer failed: {self._error!r}") from self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for handle in self._handles.values():
            handle.close()

    def expected_counts(self) -> Counter[tuple[str, str]]:
        return Counter((line.source, line.outcome) for line in self.written)

    def trade_ids(self) -> set[str]:
        return {
            str(orjson.loads(line.raw)["trade_id"])
            for line in self.written
            if line.source == "attribution" and line.outcome == "applied"
        }

    def write_concatenation(self, home: Path) -> None:
        """Every line ever written, per source in write order, into `home`'s logs (a home no rotation touched)."""
        (home / "logs").mkdir(parents=True)
        per_source: dict[str, list[bytes]] = {source: [] for source in SOURCES}
        for line in self.written:
            per_source[line.source].append(line.raw + b"\n")
        for source, lines in per_source.items():
            (home / SOURCES[source]).write_bytes(b"".join(lines))


# The daemon ----------------------------------------------------------------------------------------------------


class Daemon:
    """`learnd run` in a subprocess with its JSON log going to a file (a long run would fill a pipe)."""

    def __init__(self, home: Path, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.log_path = log_path
        self.args = args
        self.env = daemon_env(home) | (env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.start_count = 0
        self.log_mark = 0  # the log's size when the current process started

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        with open(self.log_path, "ab") as log:
            self.log_mark = log.tell()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "learnd", "run", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.start_count += 1

    def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM and wait; the exit status."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=timeout_s)

    def events(self, *, current: bool = False) -> list[dict[str, object]]:
        """The JSON log lines of every run, or (`current`) of the process started last."""
        entries: list[dict[str, object]] = []
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_mark if current else 0)
                data = log.read()
        except FileNotFoundError:
            return entries
        for line in data.splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a traceback or a line torn by SIGKILL
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def event_count(self, event: str, *, current: bool = False) -> int:
        return sum(1 for entry in self.events(current=current) if entry.get("event") == event)

    def wait_event(self, event: str, *, count: int = 1, timeout_s: float = 30.0) -> None:
        """Until the current process logged `count` lines of this event (it must stay up meanwhile)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.event_count(event, current=True) >= count:
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"daemon exited ({self.process.returncode}) before {event}: {self.tail()}")
            time.sleep(0.05)
        raise AssertionError(f"no {event} (x{count}) within {timeout_s}s: {self.tail()}")

    def tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-3000:].decode(errors="replace")
        except FileNotFoundError:
            return ""


@contextmanager
def running(daemon: Daemon, writer: LogWriter | None = None) -> Iterator[Daemon]:
    """Every subprocess and thread ends, whatever the test does."""
    try:
        yield daemon
    finally:
        if writer is not None:
            writer.close()
        daemon.kill()


# What learnd committed ---------------------------------------------------------------------------------------


def committed_checkpoints(home: Path) -> dict[str, Checkpoint]:
    db = settings_for(home).db_path
    if not db.exists():
        return {}
    store = Store.open(db, readonly=True)
    try:
        return store.checkpoints()
    finally:
        store.close()


def has_read_through(home: Path, source: str, boundary: int) -> bool:
    """learnd committed a position at or past `boundary` in the file the path names now (same inode and identity):
    every line before `boundary` was read and committed."""
    path = home / SOURCES[source]
    checkpoint = committed_checkpoints(home).get(source)
    if checkpoint is None:
        return boundary == 0
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    if (checkpoint.dev, checkpoint.ino) != (stat.st_dev, stat.st_ino):
        return False
    if boundary == 0:
        return True
    return starts_with(path, checkpoint.fp_hash, checkpoint.fp_len) and checkpoint.offset >= boundary


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting until {what}")


def wait_all_read(home: Path, timeout_s: float = 60.0) -> None:
    """Until `audit` finds no line pending in any file, rotated copies included (wait_caught_up looks at the current
    files only, and a daemon stopped before it reached a copy reads it at its next start, not in this run)."""
    settings = settings_for(home)

    def all_read() -> bool:
        return all(entry["pending"] == 0 for entry in collect_audit(settings)["sources"].values())

    wait_until(all_read, "learnd read every line of every file", timeout_s)


# Rotations (each called with the writer's lock held, so between complete lines) -------------------------------


def shift_numbered(path: Path) -> None:
    """logrotate's numbered scheme: name.N[.gz] -> name.N+1[.gz], oldest first."""
    numbered: list[tuple[int, str]] = []
    for sibling in path.parent.glob(path.name + ".*"):
        digits, _, suffix = sibling.name[len(path.name) + 1 :].partition(".")
        if digits.isdigit():
            numbered.append((int(digits), f".{suffix}" if suffix else ""))
    for number, suffix in sorted(numbered, reverse=True):
        os.rename(path.with_name(f"{path.name}.{number}{suffix}"), path.with_name(f"{path.name}.{number + 1}{suffix}"))


def compress(path: Path) -> Path:
    """logrotate's `compress`: name.N -> name.N.gz (the plain copy removed)."""
    packed = path.with_name(path.name + ".gz")
    with open(path, "rb") as plain, gzip.open(packed, "wb", compresslevel=6) as handle:  # gzip's own default
        shutil.copyfileobj(plain, handle)
    path.unlink()
    return packed


def rotate_rename_create(writer: LogWriter, source: str) -> None:
    """logrotate `create`: rename to name.1 (older copies shifted, all kept), create an empty file at once.
    The writer keeps appending to the renamed file until it reopens (the caller decides when)."""
    path = writer.path(source)
    shift_numbered(path)
    os.rename(path, path.with_name(path.name + ".1"))
    path.touch()


def rotate_copytruncate(writer: LogWriter, source: str) -> None:
    """logrotate `copytruncate`: copy to name.1, truncate the original; the writer's O_APPEND goes on at 0.
    The writer is held between copy and truncate, so logrotate's own window of loss is closed."""
    path = writer.path(source)
    shift_numbered(path)
    shutil.copyfile(path, path.with_name(path.name + ".1"))
    os.truncate(path, 0)


def rewrite_boundary(path: Path, keep_lines: int) -> tuple[int, bytes] | None:
    """Where the last `keep_lines` lines start, and those bytes; None when the file holds no more than that."""
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    if len(lines) <= keep_lines:
        return None
    tail = b"".join(lines[-keep_lines:])
    return len(data) - len(tail), tail


def rewrite_in_place(path: Path, tail: bytes) -> None:
    """The supervisor: the same inode, truncated, then its last lines written back (as `write_text` does)."""
    with open(path, "r+b") as handle:
        handle.truncate(0)
        handle.write(tail)
        handle.flush()


def epoch_reset(home: Path, archive: Path) -> None:
    """Tar every log away, then truncate each to zero (attribution included)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w") as tar:
        for relative in SOURCES.values():
            tar.add(home / relative, arcname=relative)
    for relative in SOURCES.values():
        os.truncate(home / relative, 0)


# Accounting ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """One scenario's row in the summary table."""

    scenario: str
    written: int = 0
    applied: int = 0
    ignored: int = 0
    quarantined: int = 0
    reread: int = 0  # lines a rewrite put back, recognised as already read (not an error)
    lost: int = 0
    duplicated: int = 0
    notes: list[str] = field(default_factory=list)


def account(scenario: str, home: Path, writer: LogWriter) -> Tally:
    """Compare what the store counted and holds with what the writer wrote, line by line where the ledger allows.

    lost: lines written whose outcome the store is short of, or closed trades missing from the ledger.
    duplicated: outcomes beyond what was written, trades in the ledger never written (a split or merged line),
    or a line read twice and caught only by the ledger (`repeated_*`).
    """
    store = Store.open(settings_for(home).db_path, readonly=True)
    try:
        counts = store.line_counts()
        ledger_ids = [row.key for row in store.ledger("trade")]
    finally:
        store.close()
    got: Counter[tuple[str, str]] = Counter()
    tally = Tally(scenario, written=len(writer.written))
    for (source, outcome, kind), count in counts.items():
        if outcome == "duplicate":
            if kind == "line_reread_after_rewrite":
                tally.reread += count
            else:
                tally.duplicated += count
            continue
        got[(source, outcome)] += count
    expected = writer.expected_counts()
    for key in set(got) | set(expected):
        difference = got[key] - expected[key]
        if difference > 0:
            tally.duplicated += difference
        else:
            tally.lost -= difference
    written_ids = writer.trade_ids()
    in_ledger = set(ledger_ids)
    missing = len(written_ids - in_ledger)
    foreign = len(in_ledger - written_ids)
    if missing or foreign:
        tally.notes.append(f"ledger: {missing} written trades missing, {foreign} never written")
    tally.lost = max(tally.lost, missing)
    tally.duplicated = max(tally.duplicated, foreign)
    tally.applied = sum(count for (_, outcome), count in got.items() if outcome == "applied")
    tally.ignored = sum(count for (_, outcome), count in got.items() if outcome == "ignored")
    tally.quarantined = sum(count for (_, outcome), count in got.items() if outcome == "quarantined")
    return tally


def learned_state(home: Path, *, replay_count: bool = True) -> dict[str, object]:
    """The store's fingerprint without offsets and counts: what was learned, comparable across different files.

    Without `replay_count`, the trade learner's count of batches it relearned in event order is left out: when two
    writers interleave event times across two files, trades come out of event order in any reading of them, and how
    many batches that touches depends on where batches end (the model relearned is the same)."""
    store = Store.open(settings_for(home).db_path, readonly=True)
    try:
        document = store.fingerprint()
    finally:
        store.close()
    learned = {key: value for key, value in document.items() if key not in ("checkpoints", "counts")}
    if not replay_count:
        learners = []
        for name, state in learned["learners"]:  # type: ignore[attr-defined]
            figures = orjson.loads(state)
            if name == "trades":
                figures["counts"].pop("replays")
            learners.append((name, orjson.dumps(figures)))
        learned["learners"] = learners
    return learned


def render_table(tallies: list[Tally]) -> list[str]:
    header = ("scenario", "written", "applied", "ignored", "quarantined", "reread", "lost", "duplicated")
    rows = [
        (t.scenario, t.written, t.applied, t.ignored, t.quarantined, t.reread, t.lost, t.duplicated) for t in tallies
    ]
    widths = [max(len(str(row[index])) for row in [header, *rows]) for index in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for row, tally in zip(rows, tallies, strict=True):
        line = "  ".join(
            (str(cell).ljust(width) if index == 0 else str(cell).rjust(width))
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        lines.append(line + ("   " + "; ".join(tally.notes) if tally.notes else ""))
    return lines
