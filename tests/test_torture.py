"""The torture suite: the real daemon attacked the way real hosts attack it (SIGKILL loops, every rotation mode under
load, a full disk, corrupt state, fuzzed input, a writer stuck mid-line), each scenario checked against an independent
count of what was written. `make test` runs the quick sizes; `make torture` (-m slow) the full ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from learnd.errors import StateError
from learnd.service.backfill import drain, run_backfill
from learnd.service.engine import Engine
from learnd.store.database import Store
from learnd.views.audit import collect_audit
from tests.bot_process import BotProcess, create_on_freed_inode
from tests.service.test_daemon import (
    SOURCES,
    backfill_copy,
    daemon_env,
    settings_for,
    store_fingerprint,
    wait_caught_up,
)
from tests.sources.test_tailer import BANNER
from tests.torture_support import (
    Daemon,
    LogWriter,
    Tally,
    WrittenLine,
    account,
    compress,
    epoch_reset,
    has_read_through,
    learned_state,
    make_line,
    render_table,
    rewrite_boundary,
    rewrite_in_place,
    rotate_copytruncate,
    rotate_rename_create,
    running,
    shift_numbered,
    wait_all_read,
    wait_until,
)


@dataclass(frozen=True, slots=True)
class Size:
    """How hard each scenario pushes; one scenario body serves the quick and the full run."""

    name: str
    lines_per_s: float
    crash_kills: int
    crash_max_gap_s: float
    rotation_s: float
    rotate_every_s: float
    rewrite_keep_lines: int
    max_rotations: int
    full_s: float
    full_tmpfs: str
    fuzz_examples: int
    corpus_random_lines: int
    partial_hold_s: float
    state_lines: int
    file_cycles: int  # rotations, stops or truncations each scenario below repeats
    second_writer_s: float  # how long a writer goes on through its old descriptor
    grace_ms: int  # the daemon's rotation_grace_ms in those scenarios


QUICK = Size(
    name="quick",
    lines_per_s=600,
    crash_kills=8,
    crash_max_gap_s=0.6,
    rotation_s=2.5,
    rotate_every_s=0.4,
    rewrite_keep_lines=200,
    max_rotations=12,
    full_s=1.0,
    full_tmpfs="8m",
    fuzz_examples=60,
    corpus_random_lines=50,
    partial_hold_s=3.0,
    state_lines=1000,
    file_cycles=2,
    second_writer_s=1.0,
    grace_ms=2000,
)
SLOW = Size(
    name="slow",
    lines_per_s=3000,
    crash_kills=50,
    crash_max_gap_s=3.0,
    rotation_s=60.0,
    rotate_every_s=3.0,
    rewrite_keep_lines=8000,
    max_rotations=60,
    full_s=20.0,
    full_tmpfs="96m",
    fuzz_examples=600,
    corpus_random_lines=2000,
    partial_hold_s=120.0,
    state_lines=40000,
    file_cycles=15,
    second_writer_s=1.5,
    grace_ms=5000,
)


@pytest.fixture(
    params=[
        pytest.param(QUICK, id="quick"),
        pytest.param(SLOW, id="slow", marks=[pytest.mark.slow, pytest.mark.timeout(900)]),
    ]
)
def size(request: pytest.FixtureRequest) -> Size:
    value: Size = request.param
    return value


class _SummaryTable:
    """A plugin registered at run time: pytest calls its hook after the run, so the table closes the output."""

    def __init__(self) -> None:
        self.tallies: list[Tally] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.tallies:
            return
        terminalreporter.section("torture summary (lost and duplicated must be 0)")
        for line in render_table(self.tallies):
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def summary(request: pytest.FixtureRequest) -> list[Tally]:
    """Every scenario's tally, failed scenarios included; printed as one table at the end of the run."""
    table = _SummaryTable()
    request.config.pluginmanager.register(table, "torture-summary")
    return table.tallies


def make_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    for relative in SOURCES.values():
        (home / relative).touch()
    return home


def assert_clean(tally: Tally) -> None:
    assert (tally.lost, tally.duplicated) == (0, 0), tally


# Crash loop ----------------------------------------------------------------------------------------------------


def test_crash_loop_sigkill_ends_equal_to_one_backfill(size: Size, tmp_path: Path, summary: list[Tally]) -> None:
    """SIGKILL at random moments (starting up, reading, committing, exporting) while all four logs grow, restarted
    each time with the same command line: no line lost or applied twice, and the end state equals one backfill."""
    home = make_home(tmp_path)
    rng = random.Random(11)
    writer = LogWriter(home, seed=11)
    daemon = Daemon(home, tmp_path / "daemon.log", "--backfill")
    with running(daemon, writer):
        daemon.start()
        writer.start(lines_per_s=size.lines_per_s, max_lines=10**7)
        starting_kills = 0
        for _ in range(size.crash_kills):
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.0, 0.5))  # starting up: imports, store open, history replay
                starting_kills += 1
            else:
                # Running: reading, committing or exporting, wherever the moment falls.
                daemon.wait_event("daemon_started", timeout_s=60)
                time.sleep(rng.uniform(0.0, size.crash_max_gap_s))
            daemon.kill()
            daemon.start()
        writer.stop()
        # The last start must be through (signal handlers installed) before SIGTERM: a SIGTERM during the imports
        # kills any Python process, and the store may already say caught up from the run before.
        daemon.wait_event("daemon_started", timeout_s=60)
        wait_caught_up(home, timeout_s=60)
        status = daemon.terminate()
    reference = backfill_copy(home, tmp_path)
    tally = account(f"crash loop ({size.crash_kills} x SIGKILL)", home, writer)
    tally.notes.append(f"{size.crash_kills - starting_kills} kills while running, {starting_kills} while starting")
    leftovers = [path.name for path in (home / "state").iterdir() if path.name.endswith(".tmp")]
    if leftovers:
        tally.notes.append(f"{len(leftovers)} temp export files left in state/")
    summary.append(tally)
    assert status == 0
    assert_clean(tally)
    assert store_fingerprint(home) == store_fingerprint(reference)


# Rotations -----------------------------------------------------------------------------------------------------

REWRITTEN_SOURCES = ("exit", "signals", "orders")  # attribution stays under the supervisor's 5 MB threshold


def _rename_create(writer: LogWriter, home: Path, rng: random.Random, archive: Path, size: Size) -> str:
    with writer.lock:
        for source in SOURCES:
            rotate_rename_create(writer, source)
            writer.reopen(source)
    return "all four renamed to .1, created, reopened at once"


def _rename_create_late_reopen(writer: LogWriter, home: Path, rng: random.Random, archive: Path, size: Size) -> str:
    with writer.lock:
        for source in SOURCES:
            rotate_rename_create(writer, source)
    # logrotate `create` then a postrotate HUP: the bot appends to the renamed file until it reopens, here within
    # 0.3 s, far inside rotation_grace_ms (5 s). Those lines are in name.1 for learnd to read.
    time.sleep(rng.uniform(0.0, 0.3))
    for source in SOURCES:
        writer.reopen(source)
    return "all four renamed to .1, created, reopened up to 0.3 s later"


def _copytruncate(writer: LogWriter, home: Path, rng: random.Random, archive: Path, size: Size) -> str:
    with writer.lock:
        for source in SOURCES:
            rotate_copytruncate(writer, source)
    return "all four copied to .1 and truncated"


def _rewrite(writer: LogWriter, home: Path, rng: random.Random, archive: Path, size: Size) -> str:
    done = []
    with writer.lock:
        for source in REWRITTEN_SOURCES:
            path = writer.path(source)
            # A kept tail longer than what is written between two rewrites reaches back into the tail the previous
            # rewrite kept: that run is then in learnd's window twice (read, then re-read as duplicates).
            found = rewrite_boundary(path, size.rewrite_keep_lines)
            if found is None:
                continue
            boundary, tail = found
            # The supervisor's loss would be a dropped line learnd never had the chance to read: rewrite only once
            # learnd committed past every line the rewrite drops (the kept lines may still be unread).
            wait_until(partial(has_read_through, home, source, boundary), f"learnd read {source}'s head")
            rewrite_in_place(path, tail)
            done.append(source)
    return f"rewrote {','.join(done) or 'nothing'}"


def _delete_recreate(writer: LogWriter, home: Path, rng: random.Random, archive: Path, size: Size) -> str:
    with writer.lock:
        for source in SOURCES:
            # A file deleted before learnd ever opened it is the deleter's loss: delete only once learnd's
            # checkpoint names it (learnd then holds it open and must drain it through its descriptor).
            wait_until(partial(has_read_through, home, source, 0), f"learnd opened {source}")
            os.unlink(writer.path(source))
            writer.reopen(source)
    return "all four deleted and re-created"


def _epoch_reset(writer: LogWriter, home: Path, rng: random.Random, archive: Path, size: Size) -> str:
    with writer.lock:
        # Truncation destroys unread bytes even for an open descriptor: they would be the reset's loss, so the
        # reset waits until learnd committed every byte written so far, then writing resumes at once.
        for source in SOURCES:
            end = writer.path(source).stat().st_size  # the writer is held: the size stays
            wait_until(partial(has_read_through, home, source, end), f"learnd read all of {source}")
        epoch_reset(home, archive / f"epoch-{time.monotonic_ns()}.tar")
    return "all four tarred and truncated to zero"


Rotation = Callable[[LogWriter, Path, random.Random, Path, Size], str]
ROTATIONS: dict[str, Rotation] = {
    "rename+create": _rename_create,
    "rename+create, late reopen": _rename_create_late_reopen,
    "copytruncate": _copytruncate,
    "in-place rewrite": _rewrite,
    "delete+recreate": _delete_recreate,
    "epoch reset": _epoch_reset,
}


@pytest.mark.parametrize("mode", ROTATIONS)
def test_rotation_under_load_loses_nothing(mode: str, size: Size, tmp_path: Path, summary: list[Tally]) -> None:
    """Each rotation mode of FORMATS.md, repeated while all four logs grow and the daemon runs: every line written
    is applied, ignored or quarantined exactly once (lines a rewrite puts back count as re-read, not again), and
    what was learned equals a backfill of every line written, in order, into files no rotation touched.

    Lost, per mode: rename and copytruncate keep every line (in name.1, name.2, ...); the in-place rewrite drops
    only lines learnd had committed; delete waits until learnd holds the file; the epoch reset until learnd read
    every byte. So any line missing is learnd's loss, and the scenario asserts there is none."""
    home = make_home(tmp_path)
    rng = random.Random(hash(mode) & 0xFFFF)
    writer = LogWriter(home, seed=23)
    # Small batches for the rewrite: a kept tail then reaches learnd over several reads, as a long one does anyway.
    env = {"LEARND_COMMIT_BATCH_LINES": "40"} if mode == "in-place rewrite" else None
    daemon = Daemon(home, tmp_path / "daemon.log", "--backfill", env=env)
    rotations = 0
    with running(daemon, writer):
        daemon.start()
        daemon.wait_event("daemon_started")
        writer.start(lines_per_s=size.lines_per_s, max_lines=10**7)
        deadline = time.monotonic() + size.rotation_s
        while time.monotonic() < deadline and rotations < size.max_rotations:
            time.sleep(size.rotate_every_s * rng.uniform(0.5, 1.5))
            ROTATIONS[mode](writer, home, rng, tmp_path / "archive", size)
            rotations += 1
        time.sleep(size.rotate_every_s)
        writer.stop()
        wait_caught_up(home, timeout_s=60)
        alive = daemon.process is not None and daemon.process.poll() is None
        status = daemon.terminate()
    reference = tmp_path / "reference"
    writer.write_concatenation(reference)
    run_backfill(settings_for(reference))
    tally = account(f"{mode} x{rotations}", home, writer)
    summary.append(tally)
    assert alive and status == 0
    assert_clean(tally)
    assert learned_state(home) == learned_state(reference)


# Old descriptors, rename-over, reused inodes, stops ---------------------------------------------------------------


@contextmanager
def plain_run(tmp_path: Path, seed: int, *, grace_ms: int | None = None) -> Iterator[tuple[Path, LogWriter, Daemon]]:
    """A home with empty logs, a plain `learnd run` on it (the unit's ExecStart) and the bot-like writer (not started);
    every process and thread ends, whatever the test does."""
    home = make_home(tmp_path)
    writer = LogWriter(home, seed=seed)
    env = {"LEARND_ROTATION_GRACE_MS": str(grace_ms)} if grace_ms is not None else None
    daemon = Daemon(home, tmp_path / "daemon.log", env=env)
    with running(daemon, writer):
        daemon.start()
        daemon.wait_event("daemon_started")  # it starts at the end of the files: empty ones here
        yield home, writer, daemon


def assert_learned_once(
    tally: Tally, summary: list[Tally], home: Path, reference: Path, status: int, *, replay_count: bool = True
) -> None:
    """The daemon stopped cleanly, every line written is counted once, `audit` accounts for every line (nothing
    unaccounted or negative, nothing left for a backfill), and the state equals the reference backfill's (see
    learned_state for `replay_count`)."""
    summary.append(tally)
    assert status == 0
    assert_clean(tally)
    report = collect_audit(settings_for(home))
    for name, entry in report["sources"].items():
        counts = {key: entry[key] for key in ("lines_total", "pending", "needs_backfill", "not_visible")}
        if entry["unaccounted"] or entry["needs_backfill"] or min(counts.values()) < 0:
            tally.notes.append(f"audit {name}: unaccounted {entry['unaccounted']}, {counts}")
    assert report["healthy"], tally.notes
    assert all(entry["needs_backfill"] == 0 for entry in report["sources"].values()), tally.notes
    assert learned_state(home, replay_count=replay_count) == learned_state(reference, replay_count=replay_count)


def test_a_second_writer_on_the_renamed_file_loses_nothing(size: Size, tmp_path: Path, summary: list[Tally]) -> None:
    """`mv name name.1` and a new `name`, over and over, for all four logs: the bot writes the new file at once while
    another process goes on appending to name.1 through its old descriptor (second_writer_s, within the grace). The
    daemon reads every line once, and ends equal to a backfill of the same files."""
    rng = random.Random(71)
    with plain_run(tmp_path, 71, grace_ms=size.grace_ms) as (home, writer, daemon):
        writer.start(lines_per_s=size.lines_per_s, max_lines=10**7)
        for _ in range(size.file_cycles):
            time.sleep(rng.uniform(0.2, 0.6))
            with writer.lock:
                others = {source: BotProcess(writer.path(source)) for source in SOURCES}
                for source in SOURCES:
                    rotate_rename_create(writer, source)
                    writer.reopen(source)
            try:
                until = time.monotonic() + size.second_writer_s
                while time.monotonic() < until:
                    for source, other in others.items():
                        other.write(writer.take_line(source))
                    time.sleep(0.01)
            finally:
                for other in others.values():
                    other.close()
        writer.stop()
        wait_caught_up(home, timeout_s=60)
        status = daemon.terminate()
    tally = account(f"second writer on name.1 x{size.file_cycles}", home, writer)
    # The two writers interleave event times across name.1 and name: trades come out of event order whatever reads
    # them, and are relearned in order batch by batch (the model is the same, the count of such batches is not).
    assert_learned_once(tally, summary, home, backfill_copy(home, tmp_path), status, replay_count=False)


def test_a_trimmed_copy_renamed_over_the_path_loses_nothing(size: Size, tmp_path: Path, summary: list[Tally]) -> None:
    """`sed -i` or a logrotate script: the last lines of exit, signals and orders written to a temp file renamed over
    the path, while the bot goes on writing through its old descriptor (to a file no name points at) before it
    reopens. Every line is read once, the kept ones count as re-read, and the state equals a backfill of every line
    written, in order."""
    rng = random.Random(73)
    with plain_run(tmp_path, 73, grace_ms=size.grace_ms) as (home, writer, daemon):
        writer.start(lines_per_s=size.lines_per_s, max_lines=10**7)
        for _ in range(size.file_cycles):
            time.sleep(rng.uniform(0.5, 1.5))
            with writer.lock:
                for source in REWRITTEN_SOURCES:
                    path = writer.path(source)
                    # Bytes on no path are learnd's to read only if it holds the file: wait until it does.
                    wait_until(partial(has_read_through, home, source, 0), f"learnd opened {source}")
                    found = rewrite_boundary(path, size.rewrite_keep_lines)
                    if found is None:
                        continue
                    trimmed = path.with_name(path.name + ".tmp")
                    trimmed.write_bytes(found[1])
                    os.replace(trimmed, path)
            time.sleep(size.second_writer_s)  # the bot still writes to the old files
            for source in REWRITTEN_SOURCES:
                writer.reopen(source)
        writer.stop()
        wait_caught_up(home, timeout_s=60)
        status = daemon.terminate()
    reference = tmp_path / "reference"
    writer.write_concatenation(reference)
    run_backfill(settings_for(reference))
    tally = account(f"rename-over of a trimmed copy x{size.file_cycles}", home, writer)
    assert_learned_once(tally, summary, home, reference, status)


def test_a_new_file_on_the_old_inode_with_the_same_first_line(size: Size, tmp_path: Path, summary: list[Tally]) -> None:
    """Every file starts with the bot's banner. While the daemon is stopped, each log is compressed away and the bot
    starts a new one, which takes the freed inode and begins with the same banner. The daemon reads each new file
    from its start (its banner quarantined, not taken for a line already read); `audit` balances with nothing
    negative, before and after a backfill, which then applies nothing."""
    rng = random.Random(79)
    reused = 0
    with plain_run(tmp_path, 79) as (home, writer, daemon):
        for source in SOURCES:
            writer.write_line(source, BANNER, "quarantined")
        writer.start(lines_per_s=size.lines_per_s, max_lines=10**7)
        for _ in range(size.file_cycles):
            time.sleep(rng.uniform(0.3, 1.0))
            # The writer paused between two batches (3,000 lines a second, a batch every 7 ms, each written in
            # pieces): every file then ends with a whole line and the daemon can be seen with nothing left to read.
            with writer.lock:
                wait_caught_up(home, timeout_s=60)
                assert daemon.terminate() == 0
            with writer.lock:
                for source in SOURCES:
                    path = writer.path(source)
                    inode = path.stat().st_ino
                    writer.let_go(source)
                    shift_numbered(path)
                    os.rename(path, path.with_name(path.name + ".1"))
                    compress(path.with_name(path.name + ".1"))
                    reused += create_on_freed_inode(path, inode)
                    writer.reopen(source)
                    writer.write_line(source, BANNER, "quarantined")
            daemon.start()
            daemon.wait_event("daemon_started")
        writer.stop()
        wait_caught_up(home, timeout_s=60)
        status = daemon.terminate()
    reference = backfill_copy(home, tmp_path)
    tally = account(f"reused inode, same first line x{size.file_cycles}", home, writer)
    tally.notes.append(f"{reused} of {size.file_cycles * len(SOURCES)} new files on the freed inode")
    assert_learned_once(tally, summary, home, reference, status)
    assert run_backfill(settings_for(home)).lines_count == 0
    assert_learned_once(tally, [], home, reference, status)


def test_rotated_and_compressed_while_stopped_then_a_plain_run(
    size: Size, tmp_path: Path, summary: list[Tally]
) -> None:
    """The unit's ExecStart is a plain `learnd run`. While it is stopped the bot writes on, then each log is rotated
    and compressed at once and the bot reopens: at start the daemon reads the unread rest of the compressed file
    before the new one. No backfill is ever run; the state equals a backfill of the same files."""
    rng = random.Random(83)
    with plain_run(tmp_path, 83) as (home, writer, daemon):
        writer.start(lines_per_s=size.lines_per_s, max_lines=10**7)
        for _ in range(size.file_cycles):
            time.sleep(rng.uniform(0.3, 1.0))
            assert daemon.terminate() == 0
            time.sleep(rng.uniform(0.2, 0.6))  # the bot writes on while learnd is stopped
            with writer.lock:
                for source in SOURCES:
                    path = writer.path(source)
                    rotate_rename_create(writer, source)
                    compress(path.with_name(path.name + ".1"))
                    writer.reopen(source)
            time.sleep(rng.uniform(0.1, 0.4))
            daemon.start()
            daemon.wait_event("daemon_started")
        writer.stop()
        wait_caught_up(home, timeout_s=60)
        status = daemon.terminate()
    tally = account(f"rotate+gzip while stopped, plain run x{size.file_cycles}", home, writer)
    tally.notes.append(f"{daemon.event_count('history_file_read')} compressed copies read at start")
    assert_learned_once(tally, summary, home, backfill_copy(home, tmp_path), status)


def test_a_plain_run_learns_the_rest_of_a_file_rotated_and_compressed_while_it_was_stopped(
    tmp_path: Path, summary: list[Tally]
) -> None:
    """As reported: learnd runs as a plain `run` (the unit's ExecStart) and is stopped; the bot, a process of its own,
    writes 100 attribution, 50 exit, 200 signal and 20 order lines; logrotate renames each log and compresses it at
    once; the bot reopens and writes on. At start the daemon applies that unread rest from the .gz copies before the
    new files: every trade is learned, the state equals a backfill of the same files, audit leaves nothing."""
    unread = {"attribution": 100, "exit": 50, "signals": 200, "orders": 20}
    with plain_run(tmp_path, 97) as (home, writer, daemon):  # the writer makes and counts the lines; bots write them
        bots = {source: BotProcess(writer.path(source)) for source in SOURCES}
        try:

            def write(counts: dict[str, int]) -> None:
                for source, count in counts.items():
                    bots[source].write(b"".join(writer.take_line(source) for _ in range(count)))

            write({source: 30 for source in SOURCES})
            wait_caught_up(home)
            assert daemon.terminate() == 0
            write(unread)
            for source in SOURCES:
                path = writer.path(source)
                rotate_rename_create(writer, source)
                compress(path.with_name(path.name + ".1"))
                bots[source].reopen()
            write({source: 10 for source in SOURCES})
            daemon.start()
            wait_caught_up(home)
            status = daemon.terminate()
        finally:
            for bot in bots.values():
                bot.close()
    tally = account("plain run after rotate+gzip while stopped", home, writer)
    assert_learned_once(tally, summary, home, backfill_copy(home, tmp_path), status)


def test_sigterm_while_a_big_compressed_copy_is_read_at_start_stops_at_once(
    tmp_path: Path, summary: list[Tally]
) -> None:
    """The unread rest of a big file rotated and compressed while learnd was stopped is read at start in a worker
    thread: a SIGTERM meanwhile stops the daemon at once (exit 0, what was read committed), and the next start reads
    the rest, each line once."""
    with plain_run(tmp_path, 101) as (home, writer, daemon):
        path = writer.path("signals")
        with open(path, "ab") as bot:
            bot.write(b"".join(writer.take_line("signals") for _ in range(100)))
        wait_caught_up(home)
        assert daemon.terminate() == 0
        with open(path, "ab") as bot:
            bot.write(b"".join(writer.take_line("signals") for _ in range(120_000)))
        rotate_rename_create(writer, "signals")
        compress(path.with_name(path.name + ".1"))
        daemon.start()
        daemon.wait_event("history_file_reading")
        time.sleep(0.3)
        stopped_at = time.monotonic()
        first_status = daemon.terminate(timeout_s=10)
        stop_s = time.monotonic() - stopped_at
        read_before = _total_lines(home)
        daemon.start()
        daemon.wait_event("caught_up", timeout_s=120)
        status = daemon.terminate()
    tally = account("SIGTERM while a .gz copy is read at start", home, writer)
    tally.notes.append(f"stopped {stop_s:.2f}s after SIGTERM with {read_before} of {len(writer.written)} lines")
    summary.append(tally)
    assert (first_status, status) == (0, 0)
    assert 100 < read_before < len(writer.written)
    assert_clean(tally)


def test_a_file_written_and_copytruncated_within_one_poll(size: Size, tmp_path: Path, summary: list[Tally]) -> None:
    """A burst written by the bot (its own process) to an empty log and copytruncated at once, before learnd read a
    line of it: the copy (plain, or compressed at once) is one learnd never saw, so the running daemon reads it
    whole. Some bursts get lines appended after the truncation. The state equals a backfill of the same files."""
    rng = random.Random(89)
    burst = max(50, int(size.lines_per_s / 4))
    with plain_run(tmp_path, 89) as (home, writer, daemon):
        for cycle in range(size.file_cycles * 2):
            for source in SOURCES:
                path = writer.path(source)
                with BotProcess(path) as bot:
                    bot.write(b"".join(writer.take_line(source) for _ in range(burst)))
                    rotate_copytruncate(writer, source)
                    if cycle % 2:
                        compress(path.with_name(path.name + ".1"))
                    if rng.random() < 0.5:
                        bot.write(b"".join(writer.take_line(source) for _ in range(rng.randint(1, 20))))
            time.sleep(rng.uniform(0.3, 1.2))
            wait_caught_up(home, timeout_s=60)
            for source in SOURCES:
                if writer.path(source).stat().st_size:
                    rotate_copytruncate(writer, source)  # the next burst goes to an empty file again
        wait_all_read(home)
        status = daemon.terminate()
    tally = account(f"copytruncate before a line was read x{size.file_cycles * 2}", home, writer)
    assert_learned_once(tally, summary, home, backfill_copy(home, tmp_path), status)


# Disk full -----------------------------------------------------------------------------------------------------

_ENOSPC_SITECUSTOMIZE = '''
"""Test seam (torture suite): while the flag file exists, SQLite writes and fsync fail with "disk full"."""
import errno, os, sqlite3

_FLAG = os.environ["TORTURE_FULL_FLAG"]
_connect = sqlite3.connect
_fsync = os.fsync


class _FullConnection(sqlite3.Connection):
    def execute(self, sql, *args):
        if os.path.exists(_FLAG) and sql.split(None, 1)[0].upper() in ("INSERT", "COMMIT", "DELETE", "UPDATE"):
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)

    def executemany(self, sql, *args):
        if os.path.exists(_FLAG):
            raise sqlite3.OperationalError("database or disk is full")
        return super().executemany(sql, *args)


def _full_connect(*args, **kwargs):
    kwargs.setdefault("factory", _FullConnection)
    return _connect(*args, **kwargs)


def _full_fsync(fd):
    if os.path.exists(_FLAG):
        raise OSError(errno.ENOSPC, "No space left on device")
    return _fsync(fd)


sqlite3.connect = _full_connect
os.fsync = _full_fsync
'''


class DiskFull:
    """A small tmpfs on HOME/state filled to the last byte, or (where mounting is refused) the injected seam above."""

    def __init__(self, home: Path, tmp_path: Path, tmpfs_size: str) -> None:
        self.state = home / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.filler = self.state / "filler"
        self.flag = tmp_path / "disk-full.flag"
        self.env: dict[str, str] = {}
        command = ["mount", "-t", "tmpfs", "-o", f"size={tmpfs_size}", "tmpfs", str(self.state)]
        if os.environ.get("TORTURE_INJECT_ENOSPC"):
            command = ["false"]
        mounted = subprocess.run(command, check=False, capture_output=True)
        # TORTURE_INJECT_ENOSPC=1 exercises the fallback seam on a host that could mount.
        self.mounted = mounted.returncode == 0
        if not self.mounted:
            seam = tmp_path / "seam"
            seam.mkdir()
            (seam / "sitecustomize.py").write_text(_ENOSPC_SITECUSTOMIZE)
            self.env = {"PYTHONPATH": os.pathsep.join([str(seam), os.environ.get("PYTHONPATH", "")])}
            self.env["TORTURE_FULL_FLAG"] = str(self.flag)

    @property
    def how(self) -> str:
        return "tmpfs filled" if self.mounted else "injected ENOSPC (sitecustomize seam)"

    def fill(self) -> None:
        if not self.mounted:
            self.flag.touch()
            return
        block = b"\0" * 65536
        with open(self.filler, "wb", buffering=0) as handle:  # unbuffered: close() has nothing left to flush
            for _ in range(1 << 16):  # bounded: at most 4 GiB, far above any tmpfs used here
                try:
                    if not handle.write(block):
                        break
                except OSError:
                    break

    def free(self) -> None:
        self.flag.unlink(missing_ok=True)
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.state)], check=False, capture_output=True)
            if os.path.ismount(self.state):
                subprocess.run(["umount", "-l", str(self.state)], check=False, capture_output=True)


def test_disk_full_keeps_last_good_state_and_recovers(size: Size, tmp_path: Path, summary: list[Tally]) -> None:
    """The state directory fills up while lines keep coming: the daemon stays up, logs write_failed, its store and
    signal_weights.json stay readable (last good state), it logs write_recovered once space returns, and the end
    state equals a backfill of the same bytes."""
    home = make_home(tmp_path)
    disk = DiskFull(home, tmp_path, size.full_tmpfs)
    writer = LogWriter(home, seed=31)
    daemon = Daemon(home, tmp_path / "daemon.log", "--backfill", env=disk.env)
    try:
        with running(daemon, writer):
            daemon.start()
            daemon.wait_event("daemon_started")
            writer.start(lines_per_s=size.lines_per_s / 3, max_lines=10**7)
            wait_until((home / "state" / "signal_weights.json").exists, "a first export")
            disk.fill()
            daemon.wait_event("write_failed", timeout_s=30)
            full_until = time.monotonic() + size.full_s
            while time.monotonic() < full_until:
                with open(home / "state" / "signal_weights.json", "rb") as handle:
                    json.load(handle)  # the bot's reader: never a half-written file
                Store.open(settings_for(home).db_path, readonly=True).close()  # integrity checked on open
                time.sleep(0.2)
            failures = daemon.event_count("write_failed")
            disk.free()
            daemon.wait_event("write_recovered", timeout_s=45)
            time.sleep(0.5)
            writer.stop()
            wait_caught_up(home, timeout_s=60)
            alive = daemon.process is not None and daemon.process.poll() is None
            status = daemon.terminate()
        errors = sorted({str(e.get("error_type")) for e in daemon.events() if e.get("event") == "write_failed"})
        leftovers = sorted(p.name for p in (home / "state").iterdir() if p.name.endswith(".tmp"))
        reference = backfill_copy(home, tmp_path)
        tally = account("disk full on state/", home, writer)
        tally.notes.append(f"{disk.how}; {failures} write_failed ({', '.join(errors)}) then recovered")
        if leftovers:
            tally.notes.append(f"temp files left: {leftovers}")
        summary.append(tally)
        assert alive and status == 0
        assert_clean(tally)
        assert store_fingerprint(home) == store_fingerprint(reference)
        assert (home / "state" / "signal_weights.json").read_bytes() == (
            reference / "state" / "signal_weights.json"
        ).read_bytes()
    finally:
        daemon.kill()
        disk.unmount()


# Corrupt state -------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fill_logs(home: Path, lines: int, seed: int) -> LogWriter:
    writer = LogWriter(home, seed=seed)
    for _ in range(0, lines, 500):
        writer.write_batch(500)
    writer.close()
    return writer


def _corrupt(db: Path, how: str, rng: random.Random) -> None:
    data = bytearray(db.read_bytes())
    if how == "garbage":
        db.write_bytes(rng.randbytes(len(data)))
    elif how == "truncated":
        db.write_bytes(bytes(data[: len(data) // 2 + 123]))
    else:  # pages overwritten: the header page is intact, the b-tree pages behind it are garbage
        page = 4096
        for start in range(page, len(data) - page, page * 2):
            data[start : start + page] = rng.randbytes(page)
        db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["garbage", "truncated", "pages overwritten"])
def test_corrupt_database_is_refused_with_exit_4_and_left_untouched(
    how: str, size: Size, tmp_path: Path, summary: list[Tally]
) -> None:
    """A store damaged on disk: `run` and `backfill` refuse it with a clear state error and exit status 4, and the
    file is left byte for byte as found (no silent reset, nothing rebuilt over it)."""
    home = make_home(tmp_path)
    writer = _fill_logs(home, size.state_lines, seed=41)
    settings = settings_for(home)
    run_backfill(settings)
    db = settings.db_path
    for suffix in ("-wal", "-shm"):
        assert not db.with_name(db.name + suffix).exists(), "the last close should have checkpointed the WAL"
    _corrupt(db, how, random.Random(41))
    before = _sha256(db)
    results = []
    for command in (["run", "--backfill"], ["backfill"]):
        try:
            results.append(
                subprocess.run(
                    [sys.executable, "-m", "learnd", *command],
                    env=daemon_env(home),
                    capture_output=True,
                    timeout=60,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"learnd {' '.join(command)} accepted a {how} store and kept running")
    tally = Tally(f"corrupt db: {how}", written=len(writer.written))
    tally.notes.append("refused: " + ", ".join(f"exit {r.returncode}" for r in results))
    summary.append(tally)
    for result in results:
        assert result.returncode == 4, result.stderr
        assert b"state error" in result.stderr and str(db).encode() in result.stderr
    assert _sha256(db) == before


def test_corrupt_export_is_regenerated_from_the_store(size: Size, tmp_path: Path, summary: list[Tally]) -> None:
    """state/signal_weights.json overwritten with garbage: the daemon rewrites it from the store at start and again
    after the next commit; each time it parses and equals the export of a fresh backfill of the same bytes."""
    home = make_home(tmp_path)
    writer = _fill_logs(home, size.state_lines, seed=43)
    weights = home / "state" / "signal_weights.json"
    processing = home / "state" / "learning_processing_state.json"
    run_backfill(settings_for(home))
    fresh = backfill_copy(home, tmp_path / "first")
    garbage = b"\x00{garbage \xff" * 100
    weights.write_bytes(garbage)
    processing.write_bytes(garbage)
    daemon = Daemon(home, tmp_path / "daemon.log")
    with running(daemon):
        daemon.start()
        daemon.wait_event("daemon_started")
        wait_until(lambda: weights.read_bytes() != garbage, "signal_weights.json is rewritten at start", 20)
        at_start = weights.read_bytes()
        weights.write_bytes(garbage)
        processing.write_bytes(garbage)
        # Later lines (event time and keys after the first batch's), as a bot running on would write them.
        writer = LogWriter(home, seed=44, first_seq=len(writer.written))
        writer.write_batch(200)
        writer.close()
        wait_caught_up(home, timeout_s=60)
        wait_until(lambda: garbage not in (weights.read_bytes(), processing.read_bytes()), "exports rewritten", 20)
        status = daemon.terminate()
    after_commit = weights.read_bytes()
    reference = backfill_copy(home, tmp_path / "second")
    tally = Tally("corrupt export file", written=size.state_lines + 200)
    tally.notes.append("regenerated at start and after the next commit")
    summary.append(tally)
    assert status == 0
    assert orjson.loads(at_start) == orjson.loads((fresh / "state" / "signal_weights.json").read_bytes())
    assert orjson.loads(after_commit) == orjson.loads((reference / "state" / "signal_weights.json").read_bytes())
    assert isinstance(orjson.loads(processing.read_bytes()), dict)


# Fuzzed input --------------------------------------------------------------------------------------------------

_PLACEHOLDER = "\x00torture-token\x00"
_NASTY_TOKENS = [
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"1" + b"0" * 400,
    b"-" + b"9" * 400,
    b"0.0000000000000000000000000000000001e-400",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'""',
    b'"\\ud800"',
    b'"2026-13-45T99:99:99+99:00"',
    b"[" * 300 + b"]" * 300,
    b'{"a":' * 300 + b"1" + b"}" * 300,
    b'"' + b"x" * 5000 + b'"',
    b"-0",
    b"1.7976931348623157e308",
]


def _templates(seq: int) -> dict[str, dict[str, Any]]:
    ts = f"2026-03-02T15:{(seq // 60000) % 60:02d}:{(seq // 1000) % 60:02d}.{seq % 1000:03d}000+00:00"
    return {
        "attribution": {
            "ts": ts,
            "type": "attribution",
            "trade_id": f"close_AMD_{seq}",
            "symbol": "AMD",
            "pnl_usd": 1.0,
            "pnl_pct": 0.5,
            "hold_minutes": 12.0,
            "market_regime": "mixed",
            "context": {"components": {"flow": 1.0, "dark_pool": 0.2}, "position_side": "long", "fraction": 0.5},
            "strategy_id": "equity",
        },
        "exit": {
            "ts": ts,
            "msg": "attribution_logged",
            "symbol": "AMD",
            "pnl_usd": 1.0,
            "pnl_pct": 0.5,
            "hold_min": 3.0,
            "reason": f"trail_stop+signal_decay(0.{seq % 100})",
            "strategy_id": "equity",
        },
        "signals": {
            "ts": ts,
            "type": "signal",
            "cluster": {"ticker": "AMD", "composite_score": 3.0, "composite_meta": {"components": {"flow": 1}}},
        },
        "orders": {"ts": ts, "type": "order", "symbol": "AMD", "qty": 3, "side": "buy", "price": 10.0},
    }


def _with_token(row: dict[str, Any], path: list[str], token: bytes) -> bytes:
    """`row` as JSON with the value at `path` replaced by a raw JSON token (which orjson would never write)."""
    target = row
    for key in path[:-1]:
        value = target.get(key)
        if not isinstance(value, dict):
            break
        target = value
    target[path[-1]] = _PLACEHOLDER
    return orjson.dumps(row).replace(orjson.dumps(_PLACEHOLDER), token)


def _field_paths(row: dict[str, Any], prefix: list[str] | None = None) -> list[list[str]]:
    paths: list[list[str]] = []
    for key, value in row.items():
        path = [*(prefix or []), key]
        paths.append(path)
        if isinstance(value, dict):
            paths.extend(_field_paths(value, path))
    return paths


_SEQ = iter(range(10**9))


@st.composite
def fuzz_line(draw: st.DrawFn) -> tuple[str, bytes]:
    """One line for one source: random bytes, or a real row with one field (at any depth) made wrong, wrapped
    in a BOM and/or CRLF at random."""
    source = draw(st.sampled_from(list(SOURCES)))
    kind = draw(st.sampled_from(["bytes", "field", "field", "valid"]))
    if kind == "bytes":
        raw = draw(st.binary(max_size=400)).replace(b"\n", b"")
    else:
        row = _templates(next(_SEQ))[source]
        if kind == "valid":
            raw = orjson.dumps(row)
        else:
            path = draw(st.sampled_from(_field_paths(row)))
            token = draw(
                st.one_of(
                    st.sampled_from(_NASTY_TOKENS),
                    st.integers().map(lambda n: str(n).encode()),
                    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
                    st.text(max_size=30).map(orjson.dumps),
                    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3).map(orjson.dumps),
                )
            )
            raw = _with_token(row, path, token)
    if draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw
    if draw(st.booleans()):
        raw += b"\r"
    return source, raw


def _total_lines(home: Path) -> int:
    store = Store.open(settings_for(home).db_path, readonly=True)
    try:
        return sum(store.line_counts().values())
    finally:
        store.close()


def test_fuzzed_lines_all_end_applied_ignored_or_quarantined(
    size: Size, tmp_path: Path, summary: list[Tally], request: pytest.FixtureRequest
) -> None:
    """Hypothesis-generated lines through the real pipeline (engine, store, learners, in process): none raises,
    and every line is counted once as applied, ignored, quarantined or (a repeated key) duplicate."""
    home = make_home(tmp_path)
    settings = settings_for(home)
    engine = Engine(settings, start_at_end=False, purpose="fuzz")
    written = 0
    crashes: list[tuple[list[tuple[str, bytes]], Exception]] = []
    try:

        @hypothesis_settings(
            max_examples=size.fuzz_examples,
            deadline=None,
            derandomize=size is QUICK,  # `make test` stays reproducible; `make torture` explores
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.lists(fuzz_line(), min_size=1, max_size=30))
        def feed(lines: list[tuple[str, bytes]]) -> None:
            nonlocal written
            if crashes:
                return  # the engine's state is unknown after a crash: later examples would only echo it
            for source, raw in lines:
                with open(home / SOURCES[source], "ab") as handle:
                    handle.write(raw + b"\n")
            written += len(lines)
            try:
                drain(engine, 20000)
                engine.write_exports()
            except Exception as error:  # noqa: BLE001 - re-raised below with the lines that caused it
                crashes.append((lines, error))
                return
            assert sum(engine.store.line_counts().values()) == written

        feed()
    finally:
        engine.close()
    store = Store.open(settings.db_path, readonly=True)
    try:
        counts = store.line_counts()
    finally:
        store.close()
    tally = Tally("fuzz: hypothesis, in process", written=written)
    for (_, outcome, _), count in counts.items():
        if outcome in ("applied", "ignored", "quarantined"):
            setattr(tally, outcome, getattr(tally, outcome) + count)
    tally.notes.append(f"{sum(c for (_, o, _), c in counts.items() if o == 'duplicate')} repeated keys")
    tally.lost = max(0, written - sum(counts.values()))
    tally.duplicated = max(0, sum(counts.values()) - written)
    if crashes:
        tally.notes.append(f"CRASHED: {crashes[0][1]!r}")
    summary.append(tally)
    if crashes:
        lines, error = crashes[0]
        raise AssertionError(f"the pipeline raised {error!r} on {lines!r}") from error
    assert_clean(tally)


def _corpus(source: str, random_lines: int, rng: random.Random) -> tuple[list[bytes], int]:
    """Nasty lines for one source, and how many of them are valid rows wrapped in a BOM or CRLF (must apply)."""
    valid = [orjson.dumps(_templates(900000 + index)[source]) for index in range(3)]
    wrapped = [b"\xef\xbb\xbf" + valid[0], valid[1] + b"\r", b"\xef\xbb\xbf" + valid[2] + b"\r"]
    row = _templates(910000)[source]
    nasty = [
        b"[" * 100000,
        b'{"a":' * 100000,
        b"{" + b'"k":1,' * 10 + b'"deep":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"x" * (10 << 20),  # 10 MB of garbage, over max_line_bytes
        b'{"ts":"2026-03-02T15:00:00+00:00","type":"order","blob":"' + b"y" * (10 << 20) + b'"}',
        b"",
        b"   \t ",
        b"\r",
        b"\x00\x00\x00",
        b"\xef\xbb\xbf",
        b'{"ts":"\xff\xfe"}',
        b"1e400",
        b"1" + b"0" * 400,
        b"NaN",
        b"[1,2,3]",
        b'"a string"',
    ]
    for index, path in enumerate(_field_paths(row)):
        for token in (b"NaN", b"Infinity", b"1e400", b"1" + b"0" * 400, b"[]", b"null", b'"str"', b"true"):
            nasty.append(_with_token(_templates(920000 + index * 10)[source], path, token))
    nasty += [rng.randbytes(rng.randint(0, 300)).replace(b"\n", b"") for _ in range(random_lines)]
    return [*wrapped, *nasty], len(wrapped)


def test_fuzzed_corpus_through_the_daemon(size: Size, tmp_path: Path, summary: list[Tally]) -> None:
    """A corpus of the worst lines (100k '[' deep, 10 MB lines, 1e400, 10**400, NaN, Infinity, wrong types in every
    field, BOM, CRLF, random bytes) in all four logs, read by the real daemon: it stays up, exits 0 on SIGTERM, counts
    every line once, applies the BOM/CRLF-wrapped valid rows, and ends equal to a one-shot backfill."""
    home = make_home(tmp_path)
    rng = random.Random(53)
    written = 0
    wrapped_valid = 0
    for source, relative in SOURCES.items():
        lines, valid = _corpus(source, size.corpus_random_lines, rng)
        (home / relative).write_bytes(b"".join(line + b"\n" for line in lines))
        written += len(lines)
        wrapped_valid += valid
    daemon = Daemon(home, tmp_path / "daemon.log", "--backfill")
    with running(daemon):
        daemon.start()
        daemon.wait_event("daemon_started")  # the store exists: a reader cannot catch it half created
        wait_caught_up(home, timeout_s=90)
        alive = daemon.process is not None and daemon.process.poll() is None
        status = daemon.terminate()
    reference = backfill_copy(home, tmp_path)
    store = Store.open(settings_for(home).db_path, readonly=True)
    try:
        counts = store.line_counts()
    finally:
        store.close()
    tally = Tally("fuzz: corpus, daemon", written=written)
    for (_, outcome, _), count in counts.items():
        if outcome in ("applied", "ignored", "quarantined"):
            setattr(tally, outcome, getattr(tally, outcome) + count)
    tally.lost = max(0, written - sum(counts.values()))
    tally.duplicated = max(0, sum(counts.values()) - written)
    summary.append(tally)
    assert alive and status == 0
    assert_clean(tally)
    assert tally.applied >= wrapped_valid
    assert store_fingerprint(home) == store_fingerprint(reference)


def test_numeric_timestamps_out_of_range_are_quarantined_not_fatal(tmp_path: Path) -> None:
    """A row of any kind whose numeric `ts` is finite but out of range is quarantined (bad_timestamp); the pipeline
    goes on (a poison line must not stop learnd for good)."""
    home = make_home(tmp_path)
    written = 0
    for source, relative in SOURCES.items():
        lines = []
        for index, value in enumerate([1e300, -1e300, 10**13, 1.7976931348623157e308]):
            row = _templates(930000 + index)[source]
            row["ts"] = value
            lines.append(orjson.dumps(row) + b"\n")
        if source == "attribution":
            row = _templates(940000)[source]
            row.update(ts=1e300, trade_id="open_AMD_940000")
            lines.append(orjson.dumps(row) + b"\n")
        (home / relative).write_bytes(b"".join(lines))
        written += len(lines)
    report = run_backfill(settings_for(home))
    assert report.lines_count == written
    assert report.quarantined_count == written


def test_dates_outside_the_calendar_s_years_are_quarantined_for_every_kind(tmp_path: Path) -> None:
    """A row of any kind dated in 2099 or 1985 (valid dates, outside the calendar's covered years) is quarantined
    as timestamp_out_of_range with its source and offset; only trades and exits were (a signal dated 2099 cut every
    later episode short, an order dated 2099 stopped the execution learner forgetting old days)."""
    home = make_home(tmp_path)
    expected: list[tuple[str, int]] = []
    for source, relative in SOURCES.items():
        lines = [orjson.dumps(_templates(960000)[source]) + b"\n"]
        for index, ts in enumerate(("2099-01-02T15:00:00+00:00", "1985-06-03T15:00:00+00:00")):
            row = _templates(961000 + index * 1000)[source]
            row["ts"] = ts
            if source == "attribution" and index == 1:
                row["trade_id"] = f"open_AMD_{ts}"  # an entry, which no learner checked
                row["context"]["entry_ts"] = ts
            expected.append((source, sum(len(line) for line in lines)))
            lines.append(orjson.dumps(row) + b"\n")
        (home / relative).write_bytes(b"".join(lines))
    report = run_backfill(settings_for(home))
    assert report.quarantined_count == len(expected)
    store = Store.open(settings_for(home).db_path, readonly=True)
    try:
        rows = [orjson.loads(body) for _, _, body in store.quarantine_rows(0)]
    finally:
        store.close()
    assert sorted((row["source"], row["offset"]) for row in rows) == sorted(expected)
    assert {row["reason"] for row in rows} == {"timestamp_out_of_range"}


def test_absurd_component_values_do_not_poison_the_model(tmp_path: Path) -> None:
    """A closed trade whose component is 1.7976931348623157e308 is quarantined (or learned harmlessly): the trade
    learner's state stays finite (no NaN/inf, which JSON would write as null)."""
    home = make_home(tmp_path)
    lines = []
    for index in range(40):
        row = _templates(950000 + index * 1000)["attribution"]
        row["pnl_pct"] = 0.8 if index % 2 else -0.8
        if index == 5:
            row["context"]["components"]["dark_pool"] = 1.7976931348623157e308
        lines.append(orjson.dumps(row) + b"\n")
    (home / SOURCES["attribution"]).write_bytes(b"".join(lines))
    run_backfill(settings_for(home))
    store = Store.open(settings_for(home).db_path, readonly=True)
    try:
        state = store.learner_state("trades")
    finally:
        store.close()
    assert state is not None and b"null" not in state


# A writer stuck mid-line ---------------------------------------------------------------------------------------


def test_partial_line_held_then_finished_applies_once(size: Size, tmp_path: Path, summary: list[Tally]) -> None:
    """A closed trade's line written up to its middle and held there (3 s quick, 2 minutes full) while the other
    logs grow and the daemon is SIGKILLed and restarted once: learnd never commits past the line's start nor
    quarantines its head; once the writer finishes it, it is applied exactly once, whole."""
    home = make_home(tmp_path)
    writer = LogWriter(home, seed=61, sources=("exit", "signals", "orders"))
    attribution = home / SOURCES["attribution"]
    before = [make_line("attribution", 4_000_000 + index, random.Random(index))[0] for index in range(5)]
    held, _ = make_line("attribution", 5_000_000, random.Random(1))  # seed 1 draws no garbage
    attribution.write_bytes(b"".join(line + b"\n" for line in before))
    start = attribution.stat().st_size
    writer.written += [WrittenLine("attribution", line, "applied") for line in [*before, held]]
    cut = held.index(b'"pnl_pct"') + 5  # inside a key: neither half parses alone
    daemon = Daemon(home, tmp_path / "daemon.log", "--backfill")
    offsets: set[int] = set()
    with running(daemon, writer):
        daemon.start()
        daemon.wait_event("daemon_started")
        writer.start(lines_per_s=size.lines_per_s / 2, max_lines=10**7)
        with open(attribution, "ab") as handle:
            handle.write(held[:cut])
            handle.flush()
            hold_until = time.monotonic() + size.partial_hold_s
            restarted = False
            while time.monotonic() < hold_until:
                checkpoint = committed_attribution(home)
                if checkpoint is not None:
                    offsets.add(checkpoint)
                if not restarted and time.monotonic() > hold_until - size.partial_hold_s / 2:
                    daemon.kill()
                    daemon.start()
                    restarted = True
                time.sleep(0.1)
            handle.write(held[cut:] + b"\n")
            handle.flush()
        time.sleep(0.3)
        writer.stop()
        wait_caught_up(home, timeout_s=60)
        status = daemon.terminate()
    reference = backfill_copy(home, tmp_path)
    tally = account(f"partial line held {size.partial_hold_s:g}s", home, writer)
    summary.append(tally)
    assert status == 0
    assert offsets <= {0, start}, f"committed inside the held line: {sorted(offsets)}"
    assert_clean(tally)
    assert store_fingerprint(home) == store_fingerprint(reference)


def committed_attribution(home: Path) -> int | None:
    db = settings_for(home).db_path
    if not db.exists():
        return None
    try:
        store = Store.open(db, readonly=True)
    except StateError:  # the daemon may be creating the store right now: try again next round
        return None
    try:
        checkpoint = store.checkpoints().get("attribution")
    finally:
        store.close()
    return checkpoint.offset if checkpoint else None


_ATHERIS_TARGET = """
import sys
import atheris

with atheris.instrument_imports():
    from learnd.errors import RecordError
    from learnd.records.decode import BadLine, decode_line
    from learnd.records.parse import parse_record

KINDS = ("attribution", "exit", "signals", "orders")


def one_input(data: bytes) -> None:
    for raw in data.split(b"\\n"):
        decoded = decode_line(raw)
        if isinstance(decoded, BadLine):
            continue
        for kind in KINDS:
            try:
                parse_record(kind, decoded)
            except RecordError:
                pass


atheris.Setup([sys.argv[0], "-runs=" + sys.argv[1], "-max_len=4096", "-seed=1"], one_input)
atheris.Fuzz()
"""


def test_atheris_fuzzes_framing_and_parsing_when_installed(size: Size, tmp_path: Path) -> None:
    """Coverage-guided fuzzing (atheris, when installed) of line framing and record parsing: any exception other
    than the parser's RecordError is a crash, and libFuzzer exits non-zero on it."""
    probe = subprocess.run([sys.executable, "-c", "import atheris"], check=False, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("atheris is not installed (the test extra installs it: pip install -e '.[test]')")
    script = tmp_path / "fuzz_target.py"
    script.write_text(_ATHERIS_TARGET)
    runs = 20000 if size is QUICK else 500000
    result = subprocess.run(
        [sys.executable, str(script), str(runs)],
        check=False,
        capture_output=True,
        timeout=600,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
