"""service.rebuild: `backfill --from-scratch` builds a new store generation beside the live one and swaps it in
atomically; killed half-way it leaves the old state, and a daemon holding the home defers the swap."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
from structlog.testing import capture_logs

from learnd.config import Settings
from learnd.service.backfill import drain, run_backfill
from learnd.service.engine import Engine
from learnd.service.rebuild import rebuild_from_scratch
from learnd.store.generations import READY_NAME, install_ready_generation
from learnd.store.lock import HomeLock
from tests.conftest import settings_for
from tests.service.test_backfill import SOURCES, fingerprint, lines_of, template

__all__ = ["template"]  # the module-scoped fixture, shared with test_backfill


_STALLING_REBUILD = """
import sys, time
from pathlib import Path
from learnd.config import load_settings
from learnd.service.engine import default_learners
from learnd.learning.learner import LEARNABLE_TYPES, NOTHING, Learner
from learnd.service.rebuild import rebuild_from_scratch

home, marker = Path(sys.argv[1]), Path(sys.argv[2])

class Stall(Learner):
    name = "stall"
    record_types = LEARNABLE_TYPES
    seen = 0
    def apply(self, source, record):
        self.seen += 1
        if self.seen == 400:
            marker.write_text("stalled")
            time.sleep(60)
        return NOTHING
    def dump(self):
        return None

settings = load_settings(
    home=home,
    environ={},
    overrides={
        "metrics_enabled": "false",
        "backfill_batch_lines": "50",
        "schedule.daily_enabled": "false",
        "schedule.weekly_enabled": "false",
    },
)
def learners(settings, store, calendar):
    return [*default_learners(settings, store, calendar), Stall()]

rebuild_from_scratch(settings, learner_factory=learners, progress="none")
"""


def old_state_home(home: Path, template: Path) -> Settings:
    """A home whose state was built before its older history (rotated copies) was put back beside the logs."""
    settings = settings_for(home)
    (home / "logs").mkdir(parents=True)
    for name in SOURCES:
        lines = lines_of(template, name)
        (home / "logs" / f"{name}.jsonl").write_bytes(b"".join(lines[len(lines) // 2 :]))
    run_backfill(settings, progress="none")
    for name in SOURCES:
        lines = lines_of(template, name)
        with gzip.open(home / "logs" / f"{name}.jsonl.1.gz", "wb") as handle:
            handle.write(b"".join(lines[: len(lines) // 2]))
    return settings


def test_from_scratch_killed_leaves_the_old_state_and_a_completed_one_equals_a_fresh_backfill(
    tmp_path: Path, template: Path
) -> None:
    settings = old_state_home(tmp_path / "home", template)
    old = fingerprint(settings)
    marker = tmp_path / "stalled"
    child = subprocess.Popen(
        [sys.executable, "-c", _STALLING_REBUILD, str(settings.home), str(marker)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert child.poll() is None, "the rebuild ended before it stalled"
            assert time.monotonic() < deadline, "the rebuild never reached its stall"
            time.sleep(0.02)
        building = settings.state_dir / "rebuild-1" / "state" / "learnd.db"
        assert building.exists()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert fingerprint(settings) == old
    assert not (settings.state_dir / READY_NAME).exists()
    assert HomeLock(settings.lock_path).holder() is None

    result = rebuild_from_scratch(settings, progress="none")
    assert result.swapped
    assert not (settings.state_dir / "rebuild-1").exists()  # the killed build's remains are cleared
    fresh = settings_for(tmp_path / "fresh")
    shutil.copytree(settings.home / "logs", fresh.home / "logs")
    run_backfill(fresh, progress="none")
    rebuilt = fingerprint(settings)
    assert rebuilt == fingerprint(fresh)
    assert rebuilt != old
    weights = "signal_weights.json"
    assert (settings.state_dir / weights).read_bytes() == (fresh.state_dir / weights).read_bytes()
    assert run_backfill(settings, progress="none").lines_count == 0  # the swapped-in store is live and complete


def test_from_scratch_while_the_daemon_holds_the_lock_waits_for_the_next_start(tmp_path: Path, template: Path) -> None:
    settings = old_state_home(tmp_path, template)
    old = fingerprint(settings)
    weights = settings.signal_weights_path.read_bytes()
    lock = HomeLock(settings.lock_path).acquire("daemon")
    try:
        result = rebuild_from_scratch(settings, progress="none")
        assert not result.swapped
        assert (result.ready / "state" / "learnd.db").exists()
        assert fingerprint(settings) == old  # the running daemon's store is untouched
        # and so is the bot's weights file: the generation's is in its own directory until the swap
        assert settings.signal_weights_path.read_bytes() == weights
        assert (result.ready / "state" / settings.signal_weights_path.name).read_bytes() != weights
        assert install_ready_generation(settings)  # what the next start does, holding the lock
    finally:
        lock.release()
    assert not result.ready.exists()
    assert (settings.state_dir / "learnd.previous" / "state" / "learnd.db").exists()
    assert fingerprint(settings) != old
    assert not install_ready_generation(settings)


def test_a_second_rebuild_while_one_runs_is_refused_and_touches_nothing(tmp_path: Path, template: Path) -> None:
    """Two `backfill --from-scratch` at once: the second is refused (exit 4, naming the one under way) before it
    changes anything (it published its generation over the one the first was swapping in, and the live reports and
    journals went with it). Once the first ends, a rebuild runs."""
    settings = old_state_home(tmp_path, template)
    old = fingerprint(settings)
    first = HomeLock(settings.state_dir / "learnd.rebuild.lock").acquire("backfill --from-scratch")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "learnd", "--home", str(settings.home), "--set", "metrics_enabled=false",
             "backfill", "--from-scratch", "--progress", "none"],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 4, result.stderr
        assert b"another `learnd backfill --from-scratch` is rebuilding" in result.stderr
        assert f"pid {os.getpid()}".encode() in result.stderr
        assert fingerprint(settings) == old
        assert not list(settings.state_dir.glob("rebuild-*")) and not (settings.state_dir / READY_NAME).exists()
    finally:
        first.release()
    assert rebuild_from_scratch(settings, progress="none").swapped


def rebuilt_while_a_daemon_learned_on(tmp_path: Path, template: Path) -> tuple[Settings, list[tuple[Path, bytes]]]:
    """A home whose rebuild waits for the swap (a daemon holds the lock) while the live store learns the last
    quarter of every log, appended after the rebuild read them; returns the settings and what was appended."""
    settings = settings_for(tmp_path / "home")
    logs = settings.home / "logs"
    logs.mkdir(parents=True)
    appended: list[tuple[Path, bytes]] = []
    for name in SOURCES:
        lines = lines_of(template, name)
        cut = 3 * len(lines) // 4
        (logs / f"{name}.jsonl").write_bytes(b"".join(lines[:cut]))
        appended.append((logs / f"{name}.jsonl", b"".join(lines[cut:])))
    run_backfill(settings, progress="none")
    lock = HomeLock(settings.lock_path).acquire("daemon")
    try:
        assert not rebuild_from_scratch(settings, progress="none").swapped
        for path, data in appended:
            with open(path, "ab") as handle:
                handle.write(data)
        live = Engine(settings, start_at_end=False, purpose="test", lock=False)  # the daemon, holding the lock
        try:
            drain(live, 1000)
            live.commit()
        finally:
            live.close()
    finally:
        lock.release()
    return settings, appended


def test_a_swap_after_the_daemon_learned_on_reads_what_it_learned_again(tmp_path: Path, template: Path) -> None:
    """The lines the daemon learned after the rebuild are still in the files: the swap goes ahead, and the new
    generation reads them at its start: it ends as a fresh backfill of the whole logs."""
    settings, _ = rebuilt_while_a_daemon_learned_on(tmp_path, template)
    assert install_ready_generation(settings)
    run_backfill(settings, progress="none")
    fresh = settings_for(tmp_path / "fresh")
    shutil.copytree(settings.home / "logs", fresh.home / "logs")
    run_backfill(fresh, progress="none")
    assert fingerprint(settings, checkpoints=False) == fingerprint(fresh, checkpoints=False)


def test_a_swap_that_would_lose_what_the_daemon_learned_on_is_refused(tmp_path: Path, template: Path) -> None:
    """The logs were truncated (the bot's epoch reset) after the daemon learned their last lines: swapped in, the
    rebuilt generation could never read them (the swap lost 119 trades in a review). The rebuild is discarded with
    the reason, and the live store stays as it is."""
    settings, appended = rebuilt_while_a_daemon_learned_on(tmp_path, template)
    for path, _ in appended:
        path.write_bytes(b"")
    before = fingerprint(settings)
    with capture_logs() as logs:
        assert not install_ready_generation(settings)
    assert not (settings.state_dir / READY_NAME).exists()
    assert fingerprint(settings) == before
    (discarded,) = [entry for entry in logs if entry["event"] == "rebuild_discarded"]
    assert len(discarded["reasons"]) == len(SOURCES)
    assert all("no longer begins as it did" in reason for reason in discarded["reasons"])


def test_a_deferred_swap_never_takes_the_bot_s_weights_back_in_event_time(tmp_path: Path, template: Path) -> None:
    """The daemon's export had learned what it read after the rebuild; the start that swaps the rebuild in leaves
    that file as it is until the new store has read those lines again, then writes its own (equal to a fresh
    backfill's). Before, the swap put the rebuild's older export in place at once, for a bot that loads it once."""
    settings, _ = rebuilt_while_a_daemon_learned_on(tmp_path, template)
    before = settings.signal_weights_path.read_bytes()
    with capture_logs() as logs:
        engine = Engine(settings, start_at_end=False, purpose="test")
        try:
            assert engine.swapped
            assert settings.signal_weights_path.read_bytes() == before
            drain(engine, 1000)
            engine.commit()
        finally:
            engine.close()
    (installed,) = [entry for entry in logs if entry["event"] == "store_generation_installed"]
    assert installed["weights_written_once_read_again"] == sorted(SOURCES)
    assert [entry["event"] for entry in logs if entry["event"] == "store_generation_caught_up"] == [
        "store_generation_caught_up"
    ]
    fresh = settings_for(tmp_path / "fresh")
    shutil.copytree(settings.home / "logs", fresh.home / "logs")
    run_backfill(fresh, progress="none")
    weights = settings.signal_weights_path.name
    assert settings.signal_weights_path.read_bytes() == (fresh.state_dir / weights).read_bytes()
    assert (settings.state_dir / "learnd.previous" / "state" / weights).read_bytes() == before


def test_the_guard_keeps_the_live_file_s_record_across_a_swap(tmp_path: Path, template: Path) -> None:
    """A rebuild swapped in leaves the weights file's guard record naming the live file, with the foreign writes
    it had counted; a later change by another writer is found and counted (the swap installed the rebuild's
    record, which names the rebuild's own file: the guard was off and the count back to 0)."""
    settings = old_state_home(tmp_path, template)
    path = settings.signal_weights_path
    path.write_bytes(b'{"entry_weights": {}}\n')  # the bot's optimizer saved over learnd's file
    run_backfill(settings, progress="none")
    record = settings.state_dir / "signal_weights.guard.json"
    assert orjson.loads(record.read_bytes())["foreign_writes_count"] == 1
    assert rebuild_from_scratch(settings, progress="none").swapped
    saved = orjson.loads(record.read_bytes())
    assert (saved["path"], saved["foreign_writes_count"]) == (str(path), 1)
    path.write_bytes(b'{"entry_weights": {"again": 1}}\n')
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        assert engine.keep_export() is not None
    finally:
        engine.close()
    assert orjson.loads(record.read_bytes())["foreign_writes_count"] == 2


def test_a_stop_before_the_swapped_store_caught_up_does_not_take_the_weights_back(
    tmp_path: Path, template: Path
) -> None:
    """The start that swaps reads part of what the daemon had learned after the rebuild, commits and stops; the next
    start, no swap, still waits until the store has read it all before its model replaces the bot's file (the wait
    was held in memory only: that start's first commit wrote an older export)."""
    settings, _ = rebuilt_while_a_daemon_learned_on(tmp_path, template)

    def last_trade() -> str:
        return str(orjson.loads(settings.signal_weights_path.read_bytes())["learnd"]["last_trade_event_ts"])

    before = last_trade()
    for step in range(2):
        engine = Engine(settings, start_at_end=False, purpose="daemon")
        try:
            assert engine.swapped == (step == 0)
            engine.poll(50)
            engine.commit()
        finally:
            engine.close()
        assert last_trade() == before
    engine = Engine(settings, start_at_end=False, purpose="daemon")
    try:
        drain(engine, 1000)
        engine.commit()
    finally:
        engine.close()
    assert last_trade() >= before
    assert not (settings.state_dir / "exports-wait-for-previous").exists()
