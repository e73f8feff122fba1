"""`learnd verify`: an end-to-end self check in a temporary home. It simulates a bot, runs the real daemon in a
subprocess while appending, kills and restarts it, compares with a one-shot backfill, and checks that the
planted edges moved the right way. Prints a pass/fail list; the exit status says the result.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from learnd.devtools.simulate import LOG_FILES, simulate
from learnd.errors import StateError
from learnd.learning.stats import spearman
from learnd.sources.tailer import Checkpoint
from learnd.store.database import Store

_SOURCES = LOG_FILES
_DAEMON_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the verdict."""

    name: str
    passed: bool
    detail: str


def run_verify(*, trades: int, seed: int, keep: Path | None = None, say: Callable[[str], None] = print) -> list[Check]:
    """Run every check in a fresh temporary home (kept at `keep` when given); returns the verdict."""
    root = keep or Path(tempfile.mkdtemp(prefix="learnd-verify-"))
    try:
        return _verify(root, trades, seed, say)
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def render_checks(checks: list[Check]) -> str:
    """The readable verdict: one line per check, then the total."""
    width = max(len(check.name) for check in checks)
    lines = [f"{'PASS' if check.passed else 'FAIL'}  {check.name:<{width}}  {check.detail}" for check in checks]
    failed = sum(not check.passed for check in checks)
    lines.append(f"\n{len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines) + "\n"


def _verify(root: Path, trades: int, seed: int, say: Callable[[str], None]) -> list[Check]:
    checks: list[Check] = []
    source = root / "simulated"
    say(f"simulating {trades} trades (seed {seed}) in {source}")
    simulate(source, trades=trades, seed=seed)
    truth = orjson.loads((source / "truth.json").read_bytes())

    live = root / "live"
    (live / "logs").mkdir(parents=True)
    contents = {name: (source / "logs" / f"{name}.jsonl").read_bytes() for name in _SOURCES}
    rng = random.Random(seed)
    cuts = {name: _cut_points(data, 6, rng) for name, data in contents.items()}
    say("running the daemon while appending in 6 chunks, with 2 SIGKILLs and restarts")
    process = _start(live)
    clean_exit = False
    stop_seconds = float("nan")
    try:
        for chunk in range(6):
            for name, data in contents.items():
                start, end = cuts[name][chunk], cuts[name][chunk + 1]
                with open(live / "logs" / f"{name}.jsonl", "ab") as handle:
                    handle.write(data[start:end])
            if chunk in (1, 3):
                time.sleep(rng.uniform(0.1, 0.6))
                _reap(process)
                process = _start(live)
        _wait_caught_up(live, contents)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        clean_exit = process.wait(timeout=_DAEMON_TIMEOUT_S) == 0
        stop_seconds = time.monotonic() - started
    finally:
        _reap(process)
    checks.append(Check("sigterm_exits_cleanly", clean_exit and stop_seconds < 5.0, f"exit 0 in {stop_seconds:.2f} s"))

    reference = root / "backfill"
    (reference / "logs").mkdir(parents=True)
    for name, data in contents.items():
        (reference / "logs" / f"{name}.jsonl").write_bytes(data)
    say("one-shot backfill of the same bytes")
    _learnd(reference, "backfill")

    live_weights = _learnd(live, "weights", "--json").stdout
    reference_weights = _learnd(reference, "weights", "--json").stdout
    checks.append(
        Check("live_equals_backfill", live_weights == reference_weights, "weights --json byte-identical after kills")
    )
    same_store = _fingerprint(live) == _fingerprint(reference)
    checks.append(Check("store_equals_backfill", same_store, "offsets, counts, ledger and learned state identical"))

    document = orjson.loads(live_weights)
    counts = truth["line_counts"]["attribution"]
    checks.append(
        Check(
            "every_trade_learned_once",
            document["trades_learned"] == counts["close"] and document["partials_learned"] == counts["scale"],
            f"{document['trades_learned']} closes (truth {counts['close']}), {document['partials_learned']} "
            f"partials (truth {counts['scale']}); repeated rows not counted",
        )
    )
    quarantined = _quarantined(live)
    garbage = sum(truth["garbage_lines"].values())
    checks.append(
        Check("garbage_quarantined", quarantined == garbage, f"{quarantined} lines quarantined, {garbage} planted")
    )
    checks.append(_edges_check(document, truth))
    checks.append(_exit_check(document, truth))
    return checks


def _edges_check(document: dict[str, Any], truth: dict[str, Any]) -> Check:
    entry = document["strategies"]["equity"]["entry"]
    planted_by_regime = truth["multipliers"]["equity"]
    planted = next(iter(planted_by_regime.values()))
    names = sorted(planted)
    moved = [name for name in names if abs(entry[name]["multiplier"] - 1.0) > 0.05]
    agree = [name for name in moved if (entry[name]["multiplier"] > 1.0) == (planted[name] > 1.0)]
    rho = spearman([entry[name]["multiplier"] for name in names], [planted[name] for name in names])
    passed = bool(moved) and len(agree) >= 0.7 * len(moved) and rho > 0.3
    return Check(
        "planted_edges_move_the_right_way",
        passed,
        f"{len(agree)} of {len(moved)} moved multipliers on the planted side; Spearman {rho:.2f} vs planted",
    )


def _exit_check(document: dict[str, Any], truth: dict[str, Any]) -> Check:
    exits = document["strategies"]["equity"]["exit"]
    effects = truth["exit_effects"]
    details = []
    right = 0
    for effect in effects.values():
        component = effect["exit_component"]
        view = exits.get(component)
        if view is None:
            continue
        mean = view["mean_pnl_pct"]
        details.append(f"{component} mean {mean:+.2f}% (planted {effect['pnl_pct']:+.1f})")
        right += (mean > 0) == (effect["pnl_pct"] > 0)
    return Check("planted_exit_effect_seen", right == len(effects) and right > 0, "; ".join(details))


def _cut_points(data: bytes, chunks: int, rng: random.Random) -> list[int]:
    """Chunk boundaries anywhere in the bytes (lines get split), ending at the end."""
    points = sorted(rng.randrange(0, len(data) + 1) for _ in range(chunks - 1)) if data else [0] * (chunks - 1)
    return [0, *points, len(data)]


def daemon_environment(home: Path, *, poll_interval_ms: int = 100) -> dict[str, str]:
    """The environment for a learnd subprocess on a scratch home: this process's own minus any LEARND_* (so the
    caller's settings never leak in), JSON logs, no metrics port, a short poll, and the wall-clock jobs off (they
    would close sessions through today on simulated history)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARND_")}
    env.update(
        LEARND_HOME=str(home),
        LEARND_METRICS_ENABLED="false",
        LEARND_POLL_INTERVAL_MS=str(poll_interval_ms),
        LEARND_LOG_FORMAT="json",
        LEARND_SCHEDULE__DAILY_ENABLED="false",
        LEARND_SCHEDULE__WEEKLY_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def _start(home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "learnd", "run", "--backfill"],
        env=daemon_environment(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=_DAEMON_TIMEOUT_S)


def _learnd(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = daemon_environment(home)
    return subprocess.run(
        [sys.executable, "-m", "learnd", *args], env=env, check=True, capture_output=True, timeout=300
    )


def _wait_caught_up(home: Path, contents: dict[str, bytes]) -> None:
    deadline = time.monotonic() + _DAEMON_TIMEOUT_S
    while time.monotonic() < deadline:
        database = home / "state" / "learnd.db"
        checkpoints = _checkpoints(database) or {}
        if all(name in checkpoints and checkpoints[name].offset == len(data) for name, data in contents.items()):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the daemon did not catch up within {_DAEMON_TIMEOUT_S} s")


def _checkpoints(database: Path) -> dict[str, Checkpoint] | None:
    """The committed checkpoints, or None while the daemon has not created its store yet."""
    try:
        store = Store.open(database, readonly=True)
    except StateError:
        return None
    try:
        return store.checkpoints()
    finally:
        store.close()


def _fingerprint(home: Path) -> dict[str, object]:
    store = Store.open(home / "state" / "learnd.db", readonly=True)
    try:
        return store.fingerprint()
    finally:
        store.close()


def _quarantined(home: Path) -> int:
    store = Store.open(home / "state" / "learnd.db", readonly=True)
    try:
        return sum(count for (_, outcome, _), count in store.line_counts().items() if outcome == "quarantined")
    finally:
        store.close()
