"""Learning through the real pipeline: simulated homes, run_backfill (or the daemon), then the store and exports."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson
import pytest

from learnd.config import Settings, load_settings
from learnd.devtools.simulate import SimulationTruth, simulate
from learnd.devtools.verify import daemon_environment
from learnd.errors import StateError
from learnd.learning.multipliers import GLOBAL_SCOPE
from learnd.learning.stats import spearman
from learnd.learning.trades import TradeLearner
from learnd.records.components import ENTRY_COMPONENTS
from learnd.service.backfill import drain, run_backfill
from learnd.service.engine import Engine
from learnd.sessions.tables import calendar_for
from learnd.store.database import Store
from learnd.views.evaluation import run_evaluation
from learnd.views.weights import load_model, weights_view
from tests.conftest import build_settings

# What the simulator plants (truth.json, seeds 1-7): signal std 0.8 % of P&L against noise std 1.21-1.27 %
# (idiosyncratic 1.2 plus a 0.3 day shock), so the true signal's IC, the best achievable, is 0.48-0.53 and the
# static score's 0.42-0.46. The learned weights can gain at most ~0.06 of IC, and at 3000 trades (half-life 60
# sessions: ~1400 effective) most components' own evidence stays below z = 2; see EntryModel for the joint test.
RECOVERY_TRADES: Final = 3000
NULL_TRADES: Final = 2000
UPLIFT_TRADES: Final = 6000
REPLAY_TRADES: Final = 800
MOVE_TOLERANCE: Final = 0.1
# Sums of float steps capped at 0.1 can overshoot it by rounding only.
ROUNDING: Final = 1e-9


def settings_for(home: Path) -> Settings:
    """Settings of `home` alone; the daily and weekly report jobs (replayed by backfill for every simulated day)
    are off: they are not what these tests check, and the live daemon below runs without them too."""
    overrides = {"metrics_enabled": "false", "schedule.daily_enabled": "false", "schedule.weekly_enabled": "false"}
    return load_settings(home=home, environ={}, overrides=overrides)


def learned_home(home: Path, trades: int, seed: int, *, shuffle_outcomes: bool = False) -> SimulationTruth:
    """Simulate `trades` into `home` and learn it with one backfill."""
    truth = simulate(home, trades, seed, shuffle_outcomes=shuffle_outcomes)
    run_backfill(settings_for(home))
    return truth


def weights(home: Path) -> dict[str, Any]:
    return weights_view(load_model(settings_for(home)))


def regime_multipliers(document: dict[str, Any]) -> list[float]:
    """Every component x regime multiplier of every strategy."""
    return [
        view["multiplier"]
        for strategy in document["strategies"].values()
        for component in strategy["entry"].values()
        for view in component["by_regime"].values()
    ]


@pytest.fixture(scope="module")
def recovery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationTruth]:
    """3000 simulated trades (noise larger than signal), learned by one backfill."""
    home = tmp_path_factory.mktemp("recovery")
    return home, learned_home(home, RECOVERY_TRADES, seed=7)


@pytest.fixture(scope="module")
def recovery_weights(recovery: tuple[Path, SimulationTruth]) -> dict[str, Any]:
    return weights(recovery[0])


@pytest.fixture(scope="module")
def null_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2000 trades with outcomes shuffled across trades: nothing to learn."""
    home = tmp_path_factory.mktemp("null")
    learned_home(home, NULL_TRADES, seed=11, shuffle_outcomes=True)
    return home


def test_recovery_ranks_planted_multipliers_through_the_pipeline(recovery: tuple[Path, SimulationTruth]) -> None:
    """At 3000 noisy trades the exported strategy-wide multipliers rank the planted ones (Spearman >= 0.75)."""
    home, truth = recovery
    assert truth.noise_std_pct > truth.signal_std_pct
    exported = orjson.loads((home / "state" / "signal_weights.json").read_bytes())
    bands = exported["strategies"]["equity"]["entry_weights"]["weight_bands"]
    # Outside the regime edge the planted multipliers are the same in every regime.
    planted = truth.multipliers["equity"]["mixed"]
    learned = np.array([bands[name]["current"] for name in ENTRY_COMPONENTS])
    assert spearman(learned, np.array([planted[name] for name in ENTRY_COMPONENTS])) >= 0.75


def test_regime_only_edge_shows_in_its_regime_only(
    recovery: tuple[Path, SimulationTruth], recovery_weights: dict[str, Any]
) -> None:
    """dark_pool's edge planted in one regime lifts that regime's multiplier only."""
    edge = recovery[1].regime_edge
    assert edge is not None
    view = recovery_weights["strategies"][edge.strategy]["entry"][edge.component]
    by_regime = view["by_regime"]
    assert by_regime[edge.regime.casefold()]["multiplier"] > 1.1
    others = {regime: entry["multiplier"] for regime, entry in by_regime.items() if regime != edge.regime.casefold()}
    assert others
    for regime, multiplier in others.items():
        near = min(abs(multiplier - view["multiplier"]), abs(multiplier - 1.0))
        assert near <= MOVE_TOLERANCE, (regime, multiplier, view["multiplier"])


def test_shuffled_outcomes_move_almost_no_multiplier(null_home: Path) -> None:
    """Null data: at most 3 % of component x regime multipliers move by more than 0.1 after 2000 trades."""
    multipliers = regime_multipliers(weights(null_home))
    assert multipliers
    moved = sum(abs(value - 1.0) > MOVE_TOLERANCE for value in multipliers)
    assert moved <= 0.03 * len(multipliers)


def test_no_multiplier_moves_more_than_the_session_cap(recovery: tuple[Path, SimulationTruth]) -> None:
    """data/weight_learning.jsonl: no multiplier's summed moves within one trading session exceed 0.1."""
    home, _ = recovery
    settings = settings_for(home)
    calendar = calendar_for(settings)
    moves: dict[tuple[str, str, str, str, int], float] = defaultdict(float)
    lines = (home / "data" / "weight_learning.jsonl").read_bytes().splitlines()
    assert lines
    for line in lines:
        change = orjson.loads(line)
        moment = datetime.fromisoformat(change["event_ts"])
        session = calendar.session_index(round(moment.timestamp() * 1_000_000))
        key = (change["strategy"], change["model"], change["component"], change["regime"], session)
        moves[key] += abs(change["new"] - change["old"])
    worst = max(moves.values())
    assert worst <= 0.1 + ROUNDING


def test_learned_weights_beat_static_weights_out_of_sample(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Prequential IC of the learned weights exceeds the static one; the day-block bootstrap interval excludes 0."""
    home = tmp_path_factory.mktemp("uplift")
    simulate(home, UPLIFT_TRADES, seed=7)
    evaluation = run_evaluation(settings_for(home), bootstrap_samples=400, seed=1)
    overall = evaluation.overall
    assert overall.ic_learned > overall.ic_static
    assert overall.interval is not None
    assert overall.interval[0] > 0.0


def test_open_rows_alone_teach_nothing(tmp_path: Path) -> None:
    """Entries (open_ rows) are not outcomes: a home of only open rows learns no trade and moves no multiplier."""
    source = tmp_path / "source"
    simulate(source, 600, seed=3)
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    opens = [
        line
        for line in (source / "logs" / "attribution.jsonl").read_bytes().splitlines(keepends=True)
        if b'"trade_id":"open_' in line
    ]
    assert len(opens) >= 500
    (home / "logs" / "attribution.jsonl").write_bytes(b"".join(opens))
    run_backfill(settings_for(home))
    document = weights(home)
    assert document["trades_learned"] == 0
    assert document["partials_learned"] == 0
    assert all(
        view["multiplier"] == 1.0 for strategy in document["strategies"].values() for view in strategy["entry"].values()
    )
    changes = home / "data" / "weight_learning.jsonl"
    assert not changes.exists() or changes.read_bytes() == b""


def test_components_do_not_move_in_lock_step(recovery_weights: dict[str, Any]) -> None:
    """Learned strategy-wide multipliers differ by component: some up, some down, nearly all distinct."""
    entry = recovery_weights["strategies"]["equity"]["entry"]
    values = [view["multiplier"] for view in entry.values()]
    assert any(value > 1.1 for value in values)
    assert any(value < 0.9 for value in values)
    assert len({round(value, 3) for value in values}) >= len(values) - 3


def test_regimes_do_not_collapse(recovery: tuple[Path, SimulationTruth], recovery_weights: dict[str, Any]) -> None:
    """Each regime keeps its own entry (labels case-folded, never merged); the edge regime's values differ."""
    edge = recovery[1].regime_edge
    assert edge is not None
    entry = recovery_weights["strategies"][edge.strategy]["entry"]
    regimes = set(entry[edge.component]["by_regime"])
    assert {"low_vol_uptrend", "high_vol_neg_gamma", "mixed", "downtrend_flow_heavy", "risk_on"} <= regimes
    profiles = {
        regime: tuple(entry[name]["by_regime"][regime]["multiplier"] for name in ENTRY_COMPONENTS) for regime in regimes
    }
    assert len(set(profiles.values())) >= 3
    edge_profile = profiles.pop(edge.regime.casefold())
    assert all(profile != edge_profile for profile in profiles.values())


def test_exit_learning_follows_the_planted_exit_effects(
    recovery: tuple[Path, SimulationTruth], recovery_weights: dict[str, Any]
) -> None:
    """signal_decay exits pay +0.4 %, drawdown exits -0.4 %: entry_decay's weight rises, drawdown_velocity's falls."""
    effects = recovery[1].exit_effects_pct
    assert effects["signal_decay"] > 0.0 > effects["drawdown"]
    exits = recovery_weights["strategies"]["equity"]["exit"]
    assert exits["entry_decay"]["multiplier"] > 1.05
    assert exits["drawdown_velocity"]["multiplier"] < 0.95
    exported = orjson.loads((recovery[0] / "state" / "signal_weights.json").read_bytes())
    bands = exported["exit_model"]["weight_bands"]
    assert bands["entry_decay"]["current"] == exits["entry_decay"]["multiplier"]


def test_toxicity_penalty_turns_harsher_when_toxic_trades_do_worse(
    recovery: tuple[Path, SimulationTruth], recovery_weights: dict[str, Any]
) -> None:
    """Planted 2.0 on toxicity_penalty (toxic trades do worse than -0.9 implies): its multiplier rises above 1."""
    truth = recovery[1]
    assert truth.multipliers["equity"]["mixed"]["toxicity_penalty"] > 1.0
    view = recovery_weights["strategies"]["equity"]["entry"]["toxicity_penalty"]
    assert view["multiplier"] > 1.2
    effective = orjson.loads((recovery[0] / "state" / "signal_weights.json").read_bytes())["effective_weights"]
    # Harsher: the effective (negative) weight is further from zero than the base -0.9.
    assert effective["equity"][GLOBAL_SCOPE]["toxicity_penalty"] < -0.9 * 1.2


def _ledger_count(home: Path) -> int:
    store = Store.open(settings_for(home).db_path, readonly=True)
    try:
        return store.ledger_count("trade")
    finally:
        store.close()


def test_a_close_row_seen_again_counts_once(tmp_path: Path) -> None:
    """The same close row appended twice, then again from a rotated copy, is learned and ledgered once."""
    simulate(tmp_path, 300, seed=5, garbage=False)
    attribution = tmp_path / "logs" / "attribution.jsonl"
    run_backfill(settings_for(tmp_path))
    before = weights(tmp_path)
    ledgered = _ledger_count(tmp_path)
    close = next(line for line in attribution.read_bytes().splitlines(keepends=True) if b'"trade_id":"close_' in line)
    with attribution.open("ab") as handle:
        handle.write(close + close)
    run_backfill(settings_for(tmp_path))
    attribution.rename(attribution.with_name("attribution.jsonl.1"))
    attribution.write_bytes(close)
    run_backfill(settings_for(tmp_path))
    after = weights(tmp_path)
    assert after["trades_learned"] == before["trades_learned"]
    assert _ledger_count(tmp_path) == ledgered
    assert after["strategies"] == before["strategies"]


# The live daemon against one backfill.

_REPLAY_SOURCES: Final = ("attribution", "exit")


def _daemon_env(home: Path) -> dict[str, str]:
    # Report jobs would catch up every simulated day first; they are not what this compares (they stay off).
    return daemon_environment(home, poll_interval_ms=50)


def _start_daemon(home: Path, log: Path) -> subprocess.Popen[bytes]:
    """`learnd run --backfill` on `home`, its JSON log lines going to `log`."""
    with log.open("wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "learnd", "run", "--backfill"],
            env=_daemon_env(home),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def _wait_started(log: Path, timeout_s: float = 15.0) -> None:
    """Until the daemon logging to `log` says it started (its signal handlers are in place)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if b'"daemon_started"' in log.read_bytes():
            return
        time.sleep(0.02)
    raise AssertionError(f"daemon did not start: {log.read_bytes()[-2000:]!r}")


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def _committed_offsets(home: Path) -> dict[str, int]:
    """The daemon's committed offset per source; empty while it has not created its store yet."""
    db_path = settings_for(home).db_path
    if not db_path.exists():
        return {}
    try:
        store = Store.open(db_path, readonly=True)
    except StateError:
        return {}  # created but not yet initialised by the daemon
    try:
        return {name: checkpoint.offset for name, checkpoint in store.checkpoints().items()}
    finally:
        store.close()


def _wait_caught_up(home: Path, timeout_s: float = 15.0) -> None:
    """Until the committed offsets of the fed sources equal their sizes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        checkpoints = _committed_offsets(home)
        if checkpoints:
            sizes = {name: (home / "logs" / f"{name}.jsonl").stat().st_size for name in _REPLAY_SOURCES}
            if all(checkpoints.get(name) == size for name, size in sizes.items()):
                return
        time.sleep(0.05)
    raise AssertionError("daemon did not catch up")


def _wait_committed(home: Path, source: str, start: int, timeout_s: float = 15.0) -> None:
    """Until the daemon has committed a checkpoint of `source` other than `start`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _committed_offsets(home).get(source, -1) != start:
            return
        time.sleep(0.02)
    raise AssertionError(f"daemon committed nothing of {source}")


def _pieces(data: bytes, rng: random.Random, count: int) -> Iterator[bytes]:
    """`data` cut at `count - 1` random byte positions (lines split anywhere)."""
    cuts = sorted(rng.sample(range(1, len(data)), count - 1))
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        yield data[start:end]


def _weights_json(*homes: Path) -> list[bytes]:
    """`learnd weights --json` of each home, the CLIs run side by side."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "learnd", "--home", str(home), "weights", "--json"],
            env=_daemon_env(home),
            stdout=subprocess.PIPE,
        )
        for home in homes
    ]
    outputs = [process.communicate(timeout=30)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * len(processes)
    return outputs


def test_daemon_with_kills_and_restarts_learns_what_one_backfill_learns(tmp_path: Path) -> None:
    """`weights --json` is byte-identical between a live run (random chunks, SIGKILLs, restarts) and one backfill."""
    source = tmp_path / "source"
    simulate(source, REPLAY_TRADES, seed=13)
    reference = tmp_path / "reference"
    (reference / "logs").mkdir(parents=True)
    live = tmp_path / "live"
    (live / "logs").mkdir(parents=True)
    rng = random.Random(13)
    chunks: dict[str, list[bytes]] = {}
    for name in _REPLAY_SOURCES:
        data = (source / "logs" / f"{name}.jsonl").read_bytes()
        (reference / "logs" / f"{name}.jsonl").write_bytes(data)
        (live / "logs" / f"{name}.jsonl").touch()
        chunks[name] = list(_pieces(data, rng, 6))
    run_backfill(settings_for(reference))

    logs = iter(tmp_path / f"daemon-{number}.log" for number in range(10))
    log = next(logs)
    process = _start_daemon(live, log)
    try:
        for number in range(6):
            before = _committed_offsets(live).get("attribution", -1)
            for name in _REPLAY_SOURCES:
                with (live / "logs" / f"{name}.jsonl").open("ab") as handle:
                    handle.write(chunks[name][number])
            if number in (1, 3):
                # Killed mid-run: after it committed some of this chunk, at a random moment.
                _wait_committed(live, "attribution", before)
                time.sleep(rng.uniform(0.0, 0.3))
                _kill(process)
                # Restarted as systemd would: the same command line.
                log = next(logs)
                process = _start_daemon(live, log)
        _wait_caught_up(live)
        # The earlier daemon may have caught up already; SIGTERM before this one is up would find no handler.
        _wait_started(log)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        _kill(process)
    shutil.rmtree(source)
    document, live_document = _weights_json(reference, live)
    assert orjson.loads(document)["trades_learned"] > 0
    assert live_document == document


@pytest.fixture(scope="module")
def attribution_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    home = tmp_path_factory.mktemp("sim")
    simulate(home, trades=400, seed=21, start=date(2026, 4, 6), garbage=False)
    return (home / "logs" / "attribution.jsonl").read_bytes().splitlines(keepends=True)


def learn(home: Path, lines: list[bytes], batch_lines: int) -> tuple[bytes, dict[str, int]]:
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "attribution.jsonl").write_bytes(b"".join(lines))
    engine = Engine(build_settings(home, sources=("attribution",)), start_at_end=False, purpose="test")
    try:
        drain(engine, batch_lines)
        (learner,) = [learner for learner in engine.learners if isinstance(learner, TradeLearner)]
        return orjson.dumps(weights_view(learner.model()), option=orjson.OPT_SORT_KEYS), dict(learner.counts)
    finally:
        engine.close()


def test_out_of_order_trades_end_where_event_order_ends(attribution_lines: list[bytes], tmp_path: Path) -> None:
    """Close rows moved to the end of the file (arriving days late) leave the model, session closes, daily
    settles and weekly decays included, exactly as learning the same lines in event order does."""
    closes = [index for index, line in enumerate(attribution_lines) if b'"trade_id":"close_' in line]
    moved = {closes[10], closes[40], closes[41]}
    shuffled = [line for index, line in enumerate(attribution_lines) if index not in moved]
    shuffled += [attribution_lines[index] for index in sorted(moved)]
    in_order, _ = learn(tmp_path / "ordered", attribution_lines, 20000)
    late, counts = learn(tmp_path / "late", shuffled, 20000)
    assert counts["replays"] >= 1
    assert late == in_order


def test_a_burst_of_old_trades_costs_one_replay_per_batch(attribution_lines: list[bytes], tmp_path: Path) -> None:
    """Thirty old trades arriving together are relearned once for their batch, not once each."""
    closes = [index for index, line in enumerate(attribution_lines) if b'"trade_id":"close_' in line]
    moved = set(closes[5:35])
    shuffled = [line for index, line in enumerate(attribution_lines) if index not in moved]
    shuffled += [attribution_lines[index] for index in sorted(moved)]
    _, counts = learn(tmp_path / "burst", shuffled, 20000)
    assert counts["replays"] == 1
