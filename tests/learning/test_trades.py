"""Learning through the real pipeline: simulated homes, run_backfill (or the daemon), then the store and exports."""

from __future__ import annotations

import itertools
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson
import pytest

from learnd.config import LearningParams, Settings, load_settings
from learnd.devtools.simulate import REGIMES, Drift, RegimeEdge, SimulationTruth, simulate
from learnd.devtools.verify import daemon_environment
from learnd.errors import StateError
from learnd.jobs.periods import weekly_report_document
from learnd.jobs.reports import render_weekly_markdown
from learnd.learning import trades as trades_module
from learnd.learning.entry_model import EntryModel
from learnd.learning.multipliers import GLOBAL_SCOPE
from learnd.learning.stats import spearman
from learnd.learning.trades import TradeLearner
from learnd.records.components import ENTRY_COMPONENTS
from learnd.records.decode import BadLine, decode_line
from learnd.records.parse import ExitOutcome, Record, TradeOutcome, parse_record
from learnd.service.backfill import drain, run_backfill
from learnd.service.engine import Engine
from learnd.service.ingest import Ingestor
from learnd.sessions.tables import calendar_for
from learnd.store.database import Batch, Store, reading
from learnd.views.audit import collect_audit
from learnd.views.evaluation import attribution_outcomes, run_evaluation
from learnd.views.weights import load_model, render_weights, weights_document, weights_view
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
    """dark_pool's edge planted in one regime (2.0 in high_vol_neg_gamma, 15 % of the trades, 1.0 elsewhere) never
    lifts another regime: each other regime stays within 0.1 of its truth, 1, and the edge regime stands highest."""
    edge = recovery[1].regime_edge
    assert edge is not None
    view = recovery_weights["strategies"][edge.strategy]["entry"][edge.component]
    by_regime = view["by_regime"]
    others = {regime: entry["multiplier"] for regime, entry in by_regime.items() if regime != edge.regime.casefold()}
    assert others
    for regime, multiplier in others.items():
        assert abs(multiplier - edge.elsewhere) <= MOVE_TOLERANCE, (regime, multiplier)
    assert by_regime[edge.regime.casefold()]["multiplier"] >= max(others.values())


def test_shuffled_outcomes_move_almost_no_multiplier(null_home: Path) -> None:
    """Null data: at most 3 % of component x regime multipliers move by more than 0.1 after 2000 trades."""
    multipliers = regime_multipliers(weights(null_home))
    assert multipliers
    moved = sum(abs(value - 1.0) > MOVE_TOLERANCE for value in multipliers)
    assert moved <= 0.03 * len(multipliers)


def test_no_multiplier_moves_more_than_the_session_cap(recovery: tuple[Path, SimulationTruth]) -> None:
    """data/weight_learning.jsonl: no multiplier's summed moves within one trading session exceed 0.1, or
    change_step_per_session (0.3) in a session its change detector boosted (reason `change_boost`), or
    change_confirmed_step_per_session (1.0) while the trades since the alarm confirm it (`change_confirmed`)."""
    home, _ = recovery
    settings = settings_for(home)
    calendar = calendar_for(settings)
    learning = settings.learning
    session_caps = {
        "change_confirmed": learning.change_confirmed_step_per_session,
        "change_boost": learning.change_step_per_session,
    }
    moves: dict[tuple[str, str, str, str, int], float] = defaultdict(float)
    caps: dict[tuple[str, str, str, str, int], float] = defaultdict(lambda: learning.max_step_per_session)
    lines = (home / "data" / "weight_learning.jsonl").read_bytes().splitlines()
    assert lines
    for line in lines:
        change = orjson.loads(line)
        moment = datetime.fromisoformat(change["event_ts"])
        session = calendar.session_index(round(moment.timestamp() * 1_000_000))
        key = (change["strategy"], change["model"], change["component"], change["regime"], session)
        moves[key] += abs(change["new"] - change["old"])
        cap = next((cap for word, cap in session_caps.items() if word in change["reason"]), caps[key])
        caps[key] = max(caps[key], cap)
    for key, moved in moves.items():
        assert moved <= caps[key] + ROUNDING, key


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
    """Learned strategy-wide multipliers differ by component: some up, some down, the moved ones nearly all
    distinct (a component whose evidence does not reject 1 stays at 1)."""
    entry = recovery_weights["strategies"]["equity"]["entry"]
    values = [view["multiplier"] for view in entry.values()]
    assert any(value > 1.1 for value in values)
    assert any(value < 0.9 for value in values)
    moved = [value for value in values if value != 1.0]
    assert len(moved) >= len(values) // 2
    assert len({round(value, 3) for value in moved}) >= len(moved) - 2


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
    model, counts, _ = learn_counting_relearns(home, lines, batch_lines)
    return model, counts


def learn_counting_relearns(home: Path, lines: list[bytes], batch_lines: int) -> tuple[bytes, dict[str, int], int]:
    """The weights view learned from attribution `lines` through the engine, the learner's counts, and how many
    times the trade ledger was read (a relearn)."""
    learner, reads = learned_counting_reads(home, "attribution", lines, batch_lines)
    return orjson.dumps(weights_view(learner.model()), option=orjson.OPT_SORT_KEYS), dict(learner.counts), reads


def learned_counting_reads(home: Path, source: str, lines: list[bytes], batch_lines: int) -> tuple[TradeLearner, int]:
    """The trade learner after learning `lines` of `source` through the engine, and how many times it read the
    ledger of that source's kind (trade for attribution, exit for exit): each a relearn."""
    (home / "logs").mkdir(parents=True)
    (home / "logs" / f"{source}.jsonl").write_bytes(b"".join(lines))
    engine = Engine(build_settings(home, sources=(source,)), start_at_end=False, purpose="test")
    wanted = "trade" if source == "attribution" else "exit"
    try:
        (learner,) = [learner for learner in engine.learners if isinstance(learner, TradeLearner)]
        reads = 0
        ledger = engine.ingestor.ledger_records

        def counted(kind: str, after_us: int | None = None) -> Iterator[Record]:
            nonlocal reads
            reads += kind == wanted
            return iter(ledger(kind, after_us))

        learner.bind_history(counted)
        drain(engine, batch_lines)
        return learner, reads
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
    """Thirty old trades arriving together are relearned once for their batch, not once each (the relearns are
    counted: the ledger's trades read). The learner counts one replay per old trade whatever the batches, as it
    does exits (it counted one per batch that had any: a daemon's commits and a backfill's gave different
    counts, and a daemon test comparing the two failed one run in five)."""
    closes = [index for index, line in enumerate(attribution_lines) if b'"trade_id":"close_' in line]
    moved = set(closes[5:35])
    shuffled = [line for index, line in enumerate(attribution_lines) if index not in moved]
    shuffled += [attribution_lines[index] for index in sorted(moved)]
    whole, counts, relearns = learn_counting_relearns(tmp_path / "burst", shuffled, 20000)
    assert relearns == 1
    assert counts["replays"] == 30
    small, small_counts, small_relearns = learn_counting_relearns(tmp_path / "small", shuffled, 7)
    assert small_relearns > 1
    assert small_counts == counts and small == whole


@pytest.fixture(scope="module")
def exit_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    home = tmp_path_factory.mktemp("sim-exits")
    simulate(home, trades=400, seed=21, start=date(2026, 4, 6), garbage=False)
    return (home / "logs" / "exit.jsonl").read_bytes().splitlines(keepends=True)


def learn_exits(home: Path, lines: list[bytes], batch_lines: int) -> tuple[bytes, dict[str, int], int]:
    """The exit side learned from `lines` through the engine: its snapshot, the learner's counts, and how many
    times the whole exit ledger was read (a relearn)."""
    learner, reads = learned_counting_reads(home, "exit", lines, batch_lines)
    return orjson.dumps(learner.model().exits, option=orjson.OPT_SORT_KEYS), dict(learner.counts), reads


def test_a_burst_of_old_exits_costs_one_replay_per_batch_and_ends_in_event_order(
    exit_lines: list[bytes], tmp_path: Path
) -> None:
    """Thirty exits arriving late together: the exit side is relearned once for their batch, not once for each (the
    relearns are counted: the ledger's exits read), and ends as learning the same lines in event order does, in
    one batch or in batches of 20 lines. The learner counts one replay per late exit, whatever the batches."""
    moved = set(range(40, 70))
    shuffled = [line for index, line in enumerate(exit_lines) if index not in moved]
    shuffled += [exit_lines[index] for index in sorted(moved)]
    in_order, ordered_counts, _ = learn_exits(tmp_path / "ordered", exit_lines, 20000)
    late, counts, relearns = learn_exits(tmp_path / "late", shuffled, 20000)
    assert ordered_counts["replays"] == 0 and ordered_counts["exits"] == counts["exits"] > 100
    assert relearns == 1
    assert late == in_order
    small, small_counts, small_relearns = learn_exits(tmp_path / "small", shuffled, 20)
    assert 1 < small_relearns <= 2
    assert small == in_order
    assert small_counts["replays"] == counts["replays"] > 0


def exit_outcomes(lines: list[bytes]) -> list[ExitOutcome]:
    """The exit outcomes of exit log lines, oldest first."""
    exits = (
        record
        for line in lines
        if not isinstance(decoded := decode_line(line.rstrip(b"\n")), BadLine)
        and isinstance(record := parse_record("exit", decoded), ExitOutcome)
    )
    return sorted(exits, key=lambda record: record.event_us)


class _Ledger:
    """The seam for a replay's reads: what the ingest's ledger holds of one kind, in its order (event time, then
    file order), counting the records each replay of that kind reads."""

    def __init__(self, kind: str = "trade") -> None:
        self.kind = kind
        self.records: list[tuple[int, int, TradeOutcome | ExitOutcome]] = []
        self.reads: list[int] = []  # per replay of this kind, the records it read

    def add(self, record: TradeOutcome | ExitOutcome) -> None:
        self.records.append((record.event_us, len(self.records), record))

    def __call__(self, kind: str, after_us: int | None = None) -> Iterator[TradeOutcome | ExitOutcome]:
        if kind != self.kind:
            return
        self.reads.append(0)
        for event_us, _, record in sorted(self.records, key=lambda entry: entry[:2]):
            if after_us is None or event_us > after_us:
                self.reads[-1] += 1
                yield record


def _one_late(
    learner: TradeLearner, records: list[TradeOutcome] | list[ExitOutcome], late: TradeOutcome | ExitOutcome
) -> list[int]:
    """`late` given to `learner` in a batch of its own, its ledger `records` and then `late`: the records each
    replay read."""
    ledger = _Ledger("trade" if isinstance(late, TradeOutcome) else "exit")
    for record in [*records, late]:
        ledger.add(record)
    learner.bind_history(ledger)
    learner.apply("attribution" if isinstance(late, TradeOutcome) else "exit", late)
    learner.finish_batch()
    return ledger.reads


def _feed(
    trades: list[TradeOutcome], calendar_home: Path, order: list[int], closes: dict[int, int]
) -> tuple[TradeLearner, _Ledger, list[tuple[str, int, bytes]]]:
    """A trade learner fed `trades` in `order` (indexes), a batch ending after each trade, the daily job closing
    session `closes[i]` after the i-th trade fed; its ledger, and every session row it handed out."""
    settings = settings_for(calendar_home)
    learner = TradeLearner(settings.learning, calendar_for(settings))
    ledger = _Ledger()
    learner.bind_history(ledger)
    rows: list[tuple[str, int, bytes]] = []
    for position, index in enumerate(order):
        ledger.add(trades[index])
        rows += learner.apply("attribution", trades[index]).rows
        rows += learner.finish_batch().rows
        if position in closes:
            rows += learner.close_sessions(closes[position]).rows
    return learner, ledger, rows


def test_a_late_trade_is_replayed_from_the_newest_checkpoint_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Late trades 2, 30, 60 and 160 trades deep: the learner replays each from the newest checkpoint older than
    it, reading the trades after it and at most two checkpoints' span more, or for the deepest, older than the
    newest four checkpoints, at most its own depth more (a thinned older checkpoint, not from nothing); it ends
    with the same entry state and session rows as replays from nothing, and as learning in event order.
    Checkpoints every 25 trades here (patched: the default's 2,000 would need a longer home)."""
    simulate(tmp_path, trades=400, seed=21, start=date(2026, 4, 6), garbage=False)
    trades = attribution_outcomes(settings_for(tmp_path))
    late = {60: 58, 200: 170, 300: 240, 390: 230}  # fed after the trade at the key's position: depth 2 to 160
    order = [index for index in range(len(trades)) if index not in late.values()]
    for after, index in late.items():
        order.insert(order.index(after) + 1, index)
    monkeypatch.setattr(trades_module, "KEPT_CHECKPOINTS", 4)
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 25)
    kept, kept_ledger, kept_rows = _feed(trades, tmp_path, order, {})
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 10**9)
    scratch, scratch_ledger, scratch_rows = _feed(trades, tmp_path, order, {})
    assert kept.counts["replays"] == scratch.counts["replays"] == len(late)
    assert scratch_ledger.reads == [61, 201, 300, 391]  # every trade fed so far
    depths = [2, 30, 60, 160]
    assert all(
        depth < reads <= depth + max(depth, 2 * 25) for depth, reads in zip(depths, kept_ledger.reads, strict=True)
    )
    assert orjson.loads(kept.dump() or b"")["entry"] == orjson.loads(scratch.dump() or b"")["entry"]
    assert dict((key, body) for key, _, body in kept_rows) == dict((key, body) for key, _, body in scratch_rows)
    in_order, _, _ = _feed(trades, tmp_path, sorted(order), {})
    assert kept.model().entry == in_order.model().entry


def test_the_checkpoints_a_replay_takes_hold_the_trades_up_to_their_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trade 150 deep is replayed with a checkpoint every 7 trades (patched: several in one session); the
    checkpoints the replay takes on its way, like those taken as the trades came, hold the entry side of a learner
    that learned the trades up to their time in event order, and nothing else (a checkpoint holding the entry side
    as it was at an earlier one would make a later replay start from the wrong place)."""
    simulate(tmp_path, trades=300, seed=22, start=date(2026, 4, 6), garbage=False)
    trades = attribution_outcomes(settings_for(tmp_path))
    monkeypatch.setattr(trades_module, "KEPT_CHECKPOINTS", 60)
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 7)
    order = [index for index in range(len(trades)) if index != 140]
    order.insert(order.index(289) + 1, 140)
    learner, _, _ = _feed(trades, tmp_path, order, {})
    assert learner.counts["replays"] == 1
    taken_in_replay = [point for point in learner._checkpoints if point.through_us >= trades[140].event_us]
    assert len(taken_in_replay) >= 15
    by_time = sorted(range(len(trades)), key=lambda index: (trades[index].event_us, index))
    for point in learner._checkpoints:
        assert point.state is not None
        upto = [index for index in by_time if trades[index].event_us <= point.through_us]
        reference, _, _ = _feed(trades, tmp_path, upto, {})
        assert orjson.loads(point.state)["entry"] == orjson.loads(reference.dump() or b"")["entry"], point


def test_the_entry_side_is_made_again_only_when_it_changed(
    attribution_lines: list[bytes], exit_lines: list[bytes], tmp_path: Path
) -> None:
    """An exit leaves the entry side's view (the model the exports read) and its encoded state as they were; a
    trade makes its own strategy's view again (and the state), a session close all of them. The state committed is
    the whole encoded in one go."""
    settings = settings_for(tmp_path)
    learner = TradeLearner(settings.learning, calendar_for(settings))
    trades = [
        record
        for line in attribution_lines
        if not isinstance(decoded := decode_line(line.rstrip(b"\n")), BadLine)
        and isinstance(record := parse_record("attribution", decoded), TradeOutcome)
    ][:60]
    exits = exit_outcomes(exit_lines)[:20]
    for trade in trades:
        learner.apply("attribution", trade)

    def whole() -> bytes:
        document = {**learner._document(), "entry": learner.entry.to_state()}
        return orjson.dumps(document, option=trades_module._STATE_OPTIONS)

    view = learner.model().entry
    assert learner.dump() == whole()
    for record in exits:
        learner.apply("exit", record)
        assert learner.model().entry is view
        assert learner.dump() == whole()
    assert learner.model().exits == learner.exit.snapshot()
    # A trade makes its own strategy's view again; the other strategy's stays the object it was.
    traded = trades[-1].strategy
    others = [name for name in view if name != traded]
    assert others
    learner.apply("attribution", trades[-1])
    assert learner.model().entry is not view
    assert learner.model().entry == learner.entry.snapshot()
    assert list(learner.model().entry) == list(learner.entry.snapshot())
    assert learner.model().entry[traded] is not view[traded]
    assert all(learner.model().entry[name] is view[name] for name in others)
    assert learner.dump() == whole()
    view = learner.model().entry
    learner.close_sessions(learner.current_session)
    assert all(learner.model().entry[name] is not view[name] for name in view)
    assert learner.model().entry == learner.entry.snapshot()
    assert learner.dump() == whole()


def test_a_replay_run_in_steps_leaves_the_model_as_it_was_until_it_ends_as_one_run_in_one_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """replay_steps runs a late trade's replay a step at a time (a step per trade here: REPLAY_STEP_S patched to 0,
    the seam). Between two steps the learner says it is replaying and its model is the one before the late trade;
    finish_batch returns the rows and changes of the replay run in one go and leaves the same state. A trade
    applied, or a session closed, between two steps first runs the rest of the replay: each ends as the replay run
    in one go followed by that trade or close, and as learning the trades in event order."""
    simulate(tmp_path, trades=300, seed=24, start=date(2026, 4, 6), garbage=False)
    trades = attribution_outcomes(settings_for(tmp_path))
    calendar = calendar_for(settings_for(tmp_path))
    late, last = 150, len(trades) - 1
    order = [index for index in range(last) if index != late]
    monkeypatch.setattr(trades_module, "REPLAY_STEP_S", 0.0)
    last_session = calendar.session_index(trades[last].event_us)

    def with_late_trade() -> tuple[TradeLearner, _Ledger]:
        learner, ledger, _ = _feed(trades, tmp_path, order, {})
        ledger.add(trades[late])
        learner.apply("attribution", trades[late])
        return learner, ledger

    def state(learner: TradeLearner) -> Any:
        """The entry state it commits (once: a second dump has nothing new)."""
        return orjson.loads(learner.dump() or b"")["entry"]

    whole, _ = with_late_trade()
    applied = whole.finish_batch()
    assert whole.counts["replays"] == 1 and applied.rows

    stepped, ledger = with_late_trade()
    before = stepped.model()
    assert before is not None
    steps = stepped.replay_steps()
    for _ in range(50):
        next(steps)
        assert stepped.replaying
        assert stepped.model() is before
    assert sum(1 for _ in steps) > 200  # the rest, a step per trade (from its checkpoint: none here, from nothing)
    assert not stepped.replaying
    assert stepped.finish_batch() == applied
    assert state(stepped) == state(whole)

    in_order, _, _ = _feed(trades, tmp_path, list(range(len(trades))), {})
    for between in ("apply", "close"):
        cut, ledger = with_late_trade()
        steps = cut.replay_steps()
        for _ in range(50):
            next(steps)
        reference, reference_ledger = with_late_trade()
        if between == "apply":
            ledger.add(trades[last])
            cut.apply("attribution", trades[last])
            assert not cut.replaying
            reference.finish_batch()
            reference_ledger.add(trades[last])
            reference.apply("attribution", trades[last])
            assert state(cut) == state(reference)
            assert cut.model().entry == in_order.model().entry
        else:
            rows = cut.close_sessions(last_session).rows
            assert not cut.replaying
            expected = reference.finish_batch().rows
            assert rows == reference.close_sessions(last_session).rows
            assert cut.finish_batch().rows == expected
            assert state(cut) == state(reference)
        assert cut.counts == reference.counts


def test_a_replay_that_fails_leaves_the_learner_as_it_was_and_the_replay_due(tmp_path: Path) -> None:
    """The ledger cannot be read in the middle of a replay (the history seam raises, as a store that cannot be read
    would): the error comes out, the model is the one from before, and the replay is still due; once the ledger
    reads again, finish_batch ends as if nothing had failed."""
    simulate(tmp_path, trades=200, seed=25, start=date(2026, 4, 6), garbage=False)
    trades = attribution_outcomes(settings_for(tmp_path))
    late = 100
    order = [index for index in range(len(trades)) if index != late]

    def with_late_trade() -> tuple[TradeLearner, _Ledger]:
        learner, ledger, _ = _feed(trades, tmp_path, order, {})
        ledger.add(trades[late])
        learner.apply("attribution", trades[late])
        return learner, ledger

    reference, _ = with_late_trade()
    expected = reference.finish_batch()
    failing, ledger = with_late_trade()
    before = failing.model()

    def unreadable(kind: str, after_us: int | None = None) -> Iterator[Record]:
        yield from itertools.islice(ledger(kind, after_us), 50)
        raise sqlite3.OperationalError("disk I/O error")

    failing.bind_history(unreadable)
    with pytest.raises(sqlite3.OperationalError):
        failing.finish_batch()
    assert failing.replaying and failing.model() is before
    failing.bind_history(ledger)
    assert failing.finish_batch() == expected
    assert not failing.replaying and failing.model().entry == reference.model().entry
    assert failing.counts == reference.counts


def test_no_checkpoint_is_taken_while_the_daily_job_has_closed_the_newest_trades_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job closes the session of the newest trade; a later trade of that session arrives after thirty more. A
    replay learns it before that session's close, as event order has it, so no state taken between the close and
    the next trade may serve, though it holds no later trade: the replay ends where one from nothing ends, session
    rows included. (A checkpoint before every trade, all kept.) The session's other trades after the close are
    each relearned the same way (the session is settled again after them)."""
    simulate(tmp_path, trades=300, seed=23, start=date(2026, 4, 6), garbage=False)
    trades = attribution_outcomes(settings_for(tmp_path))
    calendar = calendar_for(settings_for(tmp_path))
    newest = next(
        index
        for index in range(150, 250)
        if calendar.session_index(trades[index].event_us) == calendar.session_index(trades[index + 1].event_us)
        and trades[index].event_us < trades[index + 1].event_us
    )
    order = [index for index in range(len(trades)) if index != newest + 1]
    order.insert(order.index(newest + 31) + 1, newest + 1)
    closes = {order.index(newest): calendar.session_index(trades[newest].event_us)}
    monkeypatch.setattr(trades_module, "KEPT_CHECKPOINTS", 10**9)
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 1)
    kept, kept_ledger, kept_rows = _feed(trades, tmp_path, order, closes)
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 10**9)
    scratch, _, scratch_rows = _feed(trades, tmp_path, order, closes)
    closed = calendar.session_index(trades[newest].event_us)
    after_close = [
        index for index in order[order.index(newest) + 1 :] if calendar.session_index(trades[index].event_us) == closed
    ]
    assert newest + 1 in after_close
    # One replay counted (the trade out of event order); the others are counted as late (their sessions settled).
    assert kept.counts["replays"] == 1 and kept.counts["late"] == len(after_close)
    assert len(kept_ledger.reads) == len(after_close)
    assert max(kept_ledger.reads) < 200  # from a checkpoint before the closed session, not from nothing
    assert orjson.loads(kept.dump() or b"")["entry"] == orjson.loads(scratch.dump() or b"")["entry"]
    assert dict((key, body) for key, _, body in kept_rows) == dict((key, body) for key, _, body in scratch_rows)


def test_trades_of_a_session_the_daily_job_closed_before_they_arrived_end_as_a_backfill_ends(tmp_path: Path) -> None:
    """Live, the daily job closes a session (settles it) at its close; trades of that session can still arrive
    after it (closed after hours, or a line written late), in event order. A backfill learns them before the
    session's close. Each such trade is relearned in event order with the session settled again after it, so the
    live learner ends with the backfill's entry state and session rows; the trades count as late (not as replays,
    a count of trades out of event order that a backfill keeps too). The job's close keeps the state before it, so
    each such relearning reads the trades since the close only."""
    simulate(tmp_path, trades=300, seed=24, start=date(2026, 4, 6), garbage=False)
    trades = attribution_outcomes(settings_for(tmp_path))
    calendar = calendar_for(settings_for(tmp_path))
    sessions = [calendar.session_index(trade.event_us) for trade in trades]
    # The job closes every third session after its first trade (when the next is later in event time: a tie cannot
    # be placed after a state that holds its twin); the session's other trades all come after the close.
    closes: dict[int, int] = {}
    after_close: list[int] = []
    for session in sorted(set(sessions)):
        members = [index for index, found in enumerate(sessions) if found == session]
        if session % 3 == 0 and len(members) > 1 and trades[members[0]].event_us < trades[members[1]].event_us:
            closes[members[0]] = session
            after_close.append(len(members) - 1)
    assert len(closes) >= 5
    live, ledger, live_rows = _feed(trades, tmp_path, list(range(len(trades))), closes)
    backfill, _, backfill_rows = _feed(trades, tmp_path, list(range(len(trades))), {})
    # Counted as late, not as replays (none came out of event order): the replay count is a backfill's.
    assert live.counts["late"] == sum(after_close) and live.counts["replays"] == backfill.counts["replays"] == 0
    # Each from the state the job's close kept: the trades since the close, not those since the last checkpoint.
    assert ledger.reads == [depth for count in after_close for depth in range(1, count + 1)]
    assert orjson.loads(live.dump() or b"")["entry"] == orjson.loads(backfill.dump() or b"")["entry"]
    assert _session_rows(live_rows) == _session_rows(backfill_rows)


def test_a_trade_late_live_and_in_a_backfill_leaves_the_same_session_rows(tmp_path: Path) -> None:
    """A close of one session written during a later one: live the daily jobs closed its session, in a backfill
    the stream did; both relearn it, and the session rows end the same, whichever closed them (a replay's rows
    said no trade was late, the rows a live job closed after it said one was)."""
    simulate(tmp_path, trades=200, seed=24, start=date(2026, 4, 6), garbage=False)
    trades = attribution_outcomes(settings_for(tmp_path))
    calendar = calendar_for(settings_for(tmp_path))
    sessions = [calendar.session_index(trade.event_us) for trade in trades]
    first = sessions[0]
    moved = next(index for index, session in enumerate(sessions) if session == first + 2)
    later = next(index for index, session in enumerate(sessions) if session == first + 6)
    order = [index for index in range(len(trades)) if index != moved]
    order.insert(order.index(later) + 1, moved)
    # Live: the daily job closes each session after the last trade of it that came in order.
    closes = {
        position: sessions[index]
        for position, index in enumerate(order[:-1])
        if index != moved and sessions[order[position + 1]] > sessions[index]
    }
    live, _, live_rows = _feed(trades, tmp_path, order, closes)
    # The backfill reads them in one batch: the late trade's replay, at the batch's end, closes the sessions after it.
    settings = settings_for(tmp_path)
    backfill = TradeLearner(settings.learning, calendar_for(settings))
    ledger = _Ledger()
    backfill.bind_history(ledger)
    backfill_rows: list[tuple[str, int, bytes]] = []
    for index in order:
        ledger.add(trades[index])
        backfill_rows += backfill.apply("attribution", trades[index]).rows
    backfill_rows += backfill.finish_batch().rows
    # Late live (its daily job ran); in the backfill the stream closed its session (relearned the same way), but
    # no report was written without it.
    assert (live.counts["late"], backfill.counts["late"]) == (1, 0)
    assert live.counts["replays"] == backfill.counts["replays"] == 1
    last = max(sessions[index] for index in order[:-1])
    live_rows += live.close_sessions(last).rows
    backfill_rows += backfill.close_sessions(last).rows
    assert _session_rows(live_rows) == _session_rows(backfill_rows)
    assert not any("late" in row["counts"] for row in _session_rows(live_rows).values())


def _session_rows(rows: list[tuple[str, int, bytes]]) -> dict[str, Any]:
    """The session rows by key, the last of each (they hold no late count: the learner's differs, the one
    documented difference, and a row says it or not by when its session was closed)."""
    return {key: orjson.loads(body) for key, _, body in rows if key.startswith("session|")}


def test_a_trade_at_a_checkpoints_own_time_is_placed_by_a_replay_from_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trade with the same event time as the last one a checkpoint holds arrives later: that checkpoint cannot
    place it (ties keep file order), so the replay starts from an older one and ends where event order ends."""
    simulate(tmp_path, trades=200, seed=22, start=date(2026, 4, 6), garbage=False)
    trades = attribution_outcomes(settings_for(tmp_path))
    assert trades[119].event_us < trades[120].event_us < trades[121].event_us
    monkeypatch.setattr(trades_module, "KEPT_CHECKPOINTS", 10**9)
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 1)  # one at 120's time, before 121
    twin = replace(trades[120], key=trades[120].key + "-twin")
    learner, ledger, _ = _feed([*trades, twin], tmp_path, [*range(len(trades)), len(trades)], {})
    assert learner.counts["replays"] == 1
    assert ledger.reads[0] > len(trades) - 120
    reference, _, _ = _feed([*trades, twin], tmp_path, [*range(121), len(trades), *range(121, len(trades))], {})
    assert reference.counts["replays"] == 0
    assert orjson.loads(learner.dump() or b"")["entry"] == orjson.loads(reference.dump() or b"")["entry"]


def test_thinned_checkpoints_keep_every_late_trade_within_twice_its_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints taken every 10 trades up to 4,000 (at the default spacing, 800,000 trades): after each, the
    ones kept are few (the newest four and at most a dozen older) and, for a late trade at any depth d, the newest
    kept checkpoint older than it leaves a replay of at most 2d + 10 trades (from nothing when it is older than
    every checkpoint kept)."""
    monkeypatch.setattr(trades_module, "KEPT_CHECKPOINTS", 4)
    checkpoints: list[Any] = []
    for number in range(1, 401):
        ordinal = 10 * number
        checkpoints = trades_module._thinned([*checkpoints, trades_module._Checkpoint(ordinal, ordinal, b"", number)])
        assert len(checkpoints) <= 4 + trades_module.THINNED_CHECKPOINTS
        ordinals = [kept.ordinal for kept in checkpoints]
        assert ordinals == sorted(ordinals) and ordinals[-1] == ordinal
        if number % 37 == 0 or number == 400:
            for position in range(ordinal):
                start = max((kept for kept in ordinals if kept <= position), default=0)
                assert ordinal - start <= 2 * (ordinal - position) + 10
    assert len(checkpoints) < 4 + trades_module.THINNED_CHECKPOINTS


def test_a_late_exit_is_replayed_from_the_exit_sides_checkpoint_before_it(
    exit_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exits arrive late at several depths: the exit side is relearned from its own newest checkpoint older than
    each (reading at most two spans, or the depth, more than the exits after it; the deepest, older than the newest
    four checkpoints, not from nothing), and ends as relearning from nothing and as learning in event order do.
    Checkpoints every 25 exits (patched). Committed to a real store and read back, they serve a restarted learner
    as they serve the one that never stopped."""
    exits = exit_outcomes(exit_lines)
    assert len(exits) > 300
    late = {60: 58, 200: 170, 300: 240, 290: 130}  # fed after the exit at the key's position
    order = [index for index in range(len(exits)) if index not in late.values()]
    for after, index in late.items():
        order.insert(order.index(after) + 1, index)
    settings = settings_for(tmp_path)
    calendar = calendar_for(settings)

    def fed(spacing: int, sequence: list[int]) -> tuple[TradeLearner, _Ledger]:
        monkeypatch.setattr(trades_module, "CHECKPOINT_EXITS", spacing)
        return fed_exits(exits, sequence, settings)

    def depth(late_exit: ExitOutcome, before: list[ExitOutcome]) -> int:
        return sum(late_exit.event_us < other.event_us for other in before)

    kept, kept_ledger = fed(25, order)
    scratch, scratch_ledger = fed(10**9, order)
    in_order, _ = fed(10**9, sorted(order))
    fed_late = [index for index in order if index in late.values()]  # 58, 170, 130, 240
    depths = [depth(exits[index], [exits[other] for other in order[: order.index(index)]]) for index in fed_late]
    assert len(kept_ledger.reads) == len(scratch_ledger.reads) == len(late)
    assert min(depths) >= 2 and max(depths) > 4 * 25
    for late_depth, read in zip(depths, kept_ledger.reads, strict=True):
        assert late_depth < read <= late_depth + max(late_depth, 2 * 25)
    deepest = depths.index(max(depths))
    assert kept_ledger.reads[deepest] < scratch_ledger.reads[deepest]  # not from nothing
    assert kept.exit.to_state() == scratch.exit.to_state() == in_order.exit.to_state()
    assert kept.last_exit == scratch.last_exit
    points = kept.replay_points()
    assert points is not None and points.kept
    again = replace(exits[250], key=exits[250].key + "-again", event_us=exits[250].event_us - 1)
    store = Store.open(tmp_path / "learnd.db")
    try:
        state = kept.dump() or b""
        store.commit(Batch(learner_states={"trades": state}, replay_points={"trades": (points.kept, points.new)}))
        restarted = TradeLearner(settings.learning, calendar, store.learner_state("trades"))
        restarted.restore_replay_points(store.replay_points("trades"))
        restarted.bind_replay_points(partial(store.replay_point_body, "trades"))
        reads = [_one_late(learner, [exits[index] for index in order], again) for learner in (kept, restarted)]
    finally:
        store.close()
    again_depth = depth(again, exits)
    assert reads[0] == reads[1] and again_depth < reads[0][0] <= again_depth + max(again_depth, 2 * 25)
    assert restarted.exit.to_state() == kept.exit.to_state()


def test_a_late_exits_replay_in_steps_leaves_the_exit_side_as_it_was_until_it_ends_as_one_in_one_go(
    exit_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exit side's replay runs in steps too (a step per exit: REPLAY_STEP_S patched to 0): between two the
    learner says it is replaying and its exit model is the one before the late exit; it ends with the changes and
    state of the replay run in one go, and as learning the exits in event order."""
    exits = exit_outcomes(exit_lines)
    settings = settings_for(tmp_path)
    late = 100
    monkeypatch.setattr(trades_module, "REPLAY_STEP_S", 0.0)

    def fed(sequence: list[int]) -> TradeLearner:
        return fed_exits(exits, sequence, settings, unfinished=late)[0]

    order = [index for index in range(len(exits)) if index != late] + [late]
    whole = fed(order)
    applied = whole.finish_batch()
    stepped = fed(order)
    before = stepped.exit.to_state()
    steps = stepped.replay_steps()
    for _ in range(20):
        next(steps)
        assert stepped.replaying and stepped.exit.to_state() == before
    assert sum(1 for _ in steps) > len(exits) - late - 20
    assert stepped.finish_batch() == applied and applied.learned
    assert stepped.exit.to_state() == whole.exit.to_state() == fed(sorted(order)).exit.to_state()
    assert stepped.last_exit == whole.last_exit


def fed_exits(
    exits: list[ExitOutcome], sequence: list[int], settings: Settings, *, unfinished: int | None = None
) -> tuple[TradeLearner, _Ledger]:
    """A trade learner fed `exits` in `sequence` (indexes), a batch ending after each but `unfinished` (its replay
    left to the caller), and its ledger."""
    learner = TradeLearner(settings.learning, calendar_for(settings))
    ledger = _Ledger("exit")
    learner.bind_history(ledger)
    for index in sequence:
        ledger.add(exits[index])
        learner.apply("exit", exits[index])
        if index != unfinished:
            learner.finish_batch()
    return learner, ledger


def _restarted(
    home: Path, first: list[bytes], then: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> tuple[bytes, dict[str, int], list[int]]:
    """Learn `first` with the engine (real files, real store), close it, append `then` and learn that with a new
    engine on the same home: the model's weights, the learner's counts, and the trades each replay of the second
    run read from the ledger (the ingest's ledger_records, counted at that seam)."""
    (home / "logs").mkdir(parents=True)
    log = home / "logs" / "attribution.jsonl"
    log.write_bytes(b"".join(first))
    settings = build_settings(home, sources=("attribution",))
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 20000)
    finally:
        engine.close()
    with log.open("ab") as handle:
        handle.write(b"".join(then))
    reads: list[int] = []
    original = Ingestor.ledger_records

    def counted(self: Ingestor, kind: str, after_us: int | None = None) -> Iterator[Record]:
        reads.append(0)
        for record in original(self, kind, after_us):
            reads[-1] += kind == "trade"
            yield record

    monkeypatch.setattr(Ingestor, "ledger_records", counted)
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        drain(engine, 20000)
        (learner,) = [learner for learner in engine.learners if isinstance(learner, TradeLearner)]
        model = orjson.dumps(weights_view(learner.model()), option=orjson.OPT_SORT_KEYS)
        return model, dict(learner.counts), reads
    finally:
        monkeypatch.setattr(Ingestor, "ledger_records", original)
        engine.close()


def test_after_a_restart_a_late_trade_is_replayed_from_a_checkpoint_the_store_kept(
    attribution_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoints commit with the learner's state and are read back at start: a trade 30 closes deep arriving
    after a restart is replayed from the newest checkpoint before it (the trades after it and at most two
    checkpoints' span), not from nothing, and the model ends where a replay from nothing ends. Checkpoints every
    25 trades here (patched at the module constant, as above)."""
    closes = [index for index, line in enumerate(attribution_lines) if b'"trade_id":"close_' in line]
    late = closes[-31]
    first = [line for index, line in enumerate(attribution_lines) if index != late]
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 25)
    kept, kept_counts, kept_reads = _restarted(tmp_path / "kept", first, [attribution_lines[late]], monkeypatch)
    with reading(build_settings(tmp_path / "kept", sources=("attribution",)).db_path) as store:
        assert store is not None
        points = store.replay_points("trades")
    assert (
        trades_module.KEPT_CHECKPOINTS
        < len(points)
        <= trades_module.KEPT_CHECKPOINTS + trades_module.THINNED_CHECKPOINTS
    )
    assert [point.through_us for point in points] == sorted(point.through_us for point in points)
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 10**9)
    scratch, scratch_counts, scratch_reads = _restarted(
        tmp_path / "scratch", first, [attribution_lines[late]], monkeypatch
    )
    outcomes = attribution_outcomes(settings_for(tmp_path / "kept"))
    late_us = next(o.event_us for o in outcomes if o.key == orjson.loads(attribution_lines[late])["trade_id"])
    depth = sum(outcome.event_us > late_us for outcome in outcomes)
    assert depth >= 30
    assert kept_counts["replays"] == scratch_counts["replays"] == 1
    assert scratch_reads == [len(outcomes)]  # every trade: from nothing
    (kept_read,) = kept_reads
    assert depth < kept_read <= depth + 2 * 25
    assert kept == scratch


def test_a_restart_restores_the_checkpoints_as_the_learner_held_them_and_none_of_other_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A late trade older than every checkpoint is replayed from nothing, which takes new ones; the learner's
    state and checkpoints committed to a real store and read back make a learner that replays the next late trade
    as the one that never stopped does (same reads, same entry state). Read back under other learning parameters,
    no checkpoint is used and the next commit deletes them."""
    simulate(tmp_path, trades=300, seed=24, start=date(2026, 4, 6), garbage=False)
    settings = settings_for(tmp_path)
    trades = attribution_outcomes(settings)
    monkeypatch.setattr(trades_module, "KEPT_CHECKPOINTS", 4)
    monkeypatch.setattr(trades_module, "CHECKPOINT_TRADES", 25)
    order = [index for index in range(len(trades)) if index != 10] + [10]
    running, ledger, _ = _feed(trades, tmp_path, order, {})
    assert ledger.reads == [len(trades)]  # older than every checkpoint: from nothing
    points = running.replay_points()
    assert points is not None and len(points.kept) > 4 and running.replay_points() is None
    late = replace(trades[250], key=trades[250].key + "-late", event_us=trades[250].event_us - 1)
    store = Store.open(tmp_path / "learnd.db")
    try:
        store.commit(
            Batch(learner_states={"trades": running.dump() or b""}, replay_points={"trades": (points.kept, points.new)})
        )
        state, stored = store.learner_state("trades"), store.replay_points("trades")
        other = replace(settings.learning, half_life_sessions=settings.learning.half_life_sessions + 1)
        learners = [
            TradeLearner(settings.learning, running.calendar, state),
            TradeLearner(other, running.calendar, state),
        ]
        bodies_read: list[int] = []

        def body(number: int) -> bytes | None:
            bodies_read.append(number)
            return store.replay_point_body("trades", number)

        for learner in learners:
            learner.restore_replay_points(stored)
            learner.bind_replay_points(body)
        reads = [_one_late(learner, [trades[index] for index in order], late) for learner in [running, *learners]]
        assert len(bodies_read) == 1  # the one checkpoint the restarted learner replayed from, read from the store
        stale = learners[1].replay_points()
        # None of those taken under the other parameters: only what its own replay (from nothing) took.
        assert stale is not None and stale.kept and set(stale.kept).isdisjoint(points.kept)
        store.commit(Batch(replay_points={"trades": (stale.kept, stale.new)}))
        assert [point.number for point in store.replay_points("trades")] == list(stale.kept)
    finally:
        store.close()
    depth = sum(trade.event_us > late.event_us for trade in trades)
    assert reads[0] == reads[1] and depth < reads[0][0] <= depth + 2 * 25
    assert reads[2] == [len(trades) + 1]
    assert learners[0].entry.to_state() == running.entry.to_state()


# Issue 15's goals, each on simulate's output. Seven planted edges, the other fourteen components average; seeds
# fixed. The flip, isolation and scale homes go through the pipeline (simulate, backfill, the store's views); the
# many-seed checks feed the trade learner the attribution rows directly, as the ingest does.

EDGES: Final[dict[str, float]] = {
    "options_flow": 0.5,
    "dark_pool": 1.9,
    "toxicity_penalty": 2.0,
    "insider": 1.8,
    "whale_persistence": 0.5,
    "congress": 1.6,
    "iv_term_skew": 0.5,
}
DRIFT_TRADES: Final = 4000
FLIP: Final = Drift(component="dark_pool", at_trade=2000, multiplier=-1.9)


@pytest.fixture(scope="module")
def flipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, SimulationTruth]:
    """dark_pool's strong edge flips sign half-way (1.9 -> -1.9 at trade 2000 of 4000, session ~100 of ~200), and
    beside it the same home (same trades, same noise) where nothing flips; both learned by one backfill."""
    flip = tmp_path_factory.mktemp("flip")
    stay = tmp_path_factory.mktemp("stay")
    truth = simulate(flip, DRIFT_TRADES, 1, edges=EDGES, drift=FLIP, regime_edge=None)
    simulate(stay, DRIFT_TRADES, 1, edges=EDGES, regime_edge=None)
    run_backfill(settings_for(flip))
    run_backfill(settings_for(stay))
    return flip, stay, truth


def flip_session(home: Path, truth: SimulationTruth) -> int:
    """The calendar session index of the first trade with the flipped edge."""
    assert truth.drift is not None
    return calendar_for(settings_for(home)).session_of_day(date.fromisoformat(truth.drift["at_day"]))


def test_after_a_sign_flip_the_multiplier_crosses_one_within_12_sessions(
    flipped: tuple[Path, Path, SimulationTruth],
) -> None:
    """dark_pool's strategy-wide multiplier, above 1 before the flip, is below 1 within 12 sessions of it
    (data/weight_learning.jsonl, in event time); the change detector raised the alarm that let it move."""
    home, _, truth = flipped
    calendar = calendar_for(settings_for(home))
    flipped_at = flip_session(home, truth)
    before: float | None = None
    crossed: int | None = None
    for line in (home / "data" / "weight_learning.jsonl").read_bytes().splitlines():
        change = orjson.loads(line)
        if change["component"] != "dark_pool" or change["regime"] != GLOBAL_SCOPE or change["model"] != "entry":
            continue
        session = calendar.session_index(change["event_us"])
        if session < flipped_at:
            before = change["new"]
        elif change["new"] < 1.0:
            crossed = session
            break
    assert before is not None and before > 1.2
    assert crossed is not None and crossed - flipped_at <= 12
    view = weights(home)["strategies"]["equity"]["entry"]["dark_pool"]
    assert view["change_alarms"] >= 1 and view["multiplier"] < 1.0


TURN: Final = Drift(component="dark_pool", at_trade=2000, multiplier=0.1)


def turn_crossing(home: Path, seed: int) -> tuple[float | None, int | None, int | None]:
    """dark_pool's edge turns from 1.9 to 0.1 times the average component's at trade 2000 of 4000 (the issue's +0.9
    -> -0.9 about the average) on a home simulated with `seed`, its trades fed to the trade learner in file order:
    dark_pool's strategy-wide multiplier on the last trade before the turn, the sessions from the turn until it is
    below 1 (None: never), and the session of the last change alarm before that, counted from the turn."""
    truth = simulate(home, DRIFT_TRADES, seed, edges=EDGES, drift=TURN, regime_edge=None, garbage=False)
    settings = settings_for(home)
    calendar = calendar_for(settings)
    turned_at = flip_session(home, truth)
    learner = TradeLearner(settings.learning, calendar)
    before: float | None = None
    for trade in attribution_outcomes(settings):
        learner.apply("attribution", trade)
        session = calendar.session_index(trade.event_us)
        value = learner.entry.multiplier("equity", "dark_pool")
        if session < turned_at:
            before = value
        elif value < 1.0:
            alarm = learner.entry.snapshot()["equity"]["dark_pool"]["last_change_session"]
            return before, session - turned_at, None if alarm is None else alarm - turned_at
    return before, None, None


def test_an_edge_that_turns_below_average_crosses_one_within_12_sessions_on_six_seeds(tmp_path: Path) -> None:
    """dark_pool's edge turns below average (turn_crossing), seeds 1-5 and 14: its strategy-wide multiplier, above
    1.2 before, is below 1 within 12 sessions of the turn. The change detector's alarm comes 2-11 sessions after it;
    the alarm forgets only the evidence from before the run that raised it, so the trades since the turn move the
    multiplier at once (with every old trade forgotten, seed 2 took 19 sessions), and once the trades after the
    alarm confirm it, by up to change_confirmed_step_per_session a session (seed 14, alarmed 11 sessions after the
    turn, took 14 at change_step_per_session's 0.3)."""
    for seed in (1, 2, 3, 4, 5, 14):
        home = tmp_path / f"seed{seed}"
        before, crossed, _ = turn_crossing(home, seed)
        assert before is not None and before > 1.2, (seed, before)
        assert crossed is not None and crossed <= 12, (seed, crossed)
        shutil.rmtree(home)


def test_the_late_seeds_of_the_turn_wait_for_the_alarm_not_for_the_steps(tmp_path: Path) -> None:
    """The turn's known misses of 12 sessions, on seeds 31-50 (not tuned on): seeds 32, 42 and 49 cross 15, 13 and
    14 sessions after it (the figures this pins; every other seed of 1-50 within 12). What is late is the change
    detector's alarm (14, 13 and 13 sessions after the turn), not the moves after it: each crosses at most a session
    after its alarm. The statistics of 32 and 49 came within 3 and 1 of the threshold 8 sessions after the turn and
    fell back in sessions whose trades scored near 0; 42's stood near 13 from session 3 to 11, its trades scoring
    -0.1 a trade where the turn's mean is -0.2. By session 11 the trades since the turn lie 2.6, 3.4 and 2.9
    standard deviations the new way (the change score's sd is 0.90 on the stable runs). Measured on the recorded
    scores of seeds 1-50 and of the stable runs of seeds 1-15 (18 false alarms today): a CUSUM of any allowance
    (0.05-0.2) that alarms on all three by session 11 and on no seed later than today raises at least 88 (allowance
    0.1, threshold 23); a second, slower CUSUM beside today's (0.075, 30) raises 46 and leaves 32 and 42 at 12; a
    test of the z since every start 3-20 sessions back raises 80 and leaves 32 at 12. A Huber residual, a residual
    net of its session's mean, an allowance in proportion to each trade's squared contribution (the likelihood
    ratio's), or residuals against the effect as it stood where the run began, bring none of the three earlier
    without more false alarms or later alarms on other seeds."""
    for seed, latest in ((32, 15), (42, 13), (49, 14)):
        home = tmp_path / f"seed{seed}"
        before, crossed, alarm = turn_crossing(home, seed)
        assert before is not None and before > 1.2, (seed, before)
        assert crossed is not None and crossed <= latest, (seed, crossed)
        assert alarm is not None and 0 <= alarm <= crossed <= alarm + 1, (seed, alarm, crossed)
        shutil.rmtree(home)


def prequential_window(home: Path, first: int) -> tuple[float, float]:
    """Spearman IC of the learned score (the model before each trade, sessions closed as the trade learner closes
    them) and of the static one (the bot's entry_score) on the closed trades of sessions `first` and later."""
    settings = settings_for(home)
    calendar = calendar_for(settings)
    model = EntryModel(settings.learning)
    learned: list[float] = []
    static: list[float] = []
    pnl: list[float] = []
    open_session: int | None = None
    for trade in attribution_outcomes(settings):
        session = calendar.session_index(trade.event_us)
        if open_session is not None and session > open_session:
            model.settle_session(open_session, trade.event_us)
        open_session = session
        if not trade.is_partial and session >= first and trade.entry_score is not None:
            learned.append(model.score(trade))
            static.append(trade.entry_score)
            pnl.append(trade.pnl_pct)
        model.learn(trade, session)
    return spearman(learned, pnl), spearman(static, pnl)


def test_after_a_sign_flip_the_learned_ic_is_back_above_the_static_within_20_sessions(
    flipped: tuple[Path, Path, SimulationTruth],
) -> None:
    """Scored prequentially, the learned weights rank the trades from 20 sessions after the flip on at least as
    well as the bot's static score does."""
    home, _, truth = flipped
    learned, static = prequential_window(home, flip_session(home, truth) + 20)
    assert learned >= static


def test_one_drifting_component_moves_no_other(flipped: tuple[Path, Path, SimulationTruth]) -> None:
    """With dark_pool flipped, every other strategy-wide multiplier ends within 0.1 of where it ends on the same
    trades without the flip: the average component is the median of the components, clear edges left out, so one
    component turning does not move the yardstick of the others."""
    flip, stay, _ = flipped
    turned = weights(flip)["strategies"]["equity"]["entry"]
    steady = weights(stay)["strategies"]["equity"]["entry"]
    for name in ENTRY_COMPONENTS:
        if name != "dark_pool":
            assert abs(turned[name]["multiplier"] - steady[name]["multiplier"]) <= MOVE_TOLERANCE, name


def test_stable_edges_raise_almost_no_change_alarm(flipped: tuple[Path, Path, SimulationTruth]) -> None:
    """On the home where nothing changes, the 21 components' change detectors raise at most two alarms over 4000
    trades (false alarms forget one component's evidence; the interval rule keeps it from moving on what follows)."""
    _, stay, _ = flipped
    entry = weights(stay)["strategies"]["equity"]["entry"]
    assert sum(view["change_alarms"] for view in entry.values()) <= 2


def learned_outcomes(home: Path, params: LearningParams | None = None) -> TradeLearner:
    """The trade learner fed a home's attribution rows in file order, as the ingest feeds it."""
    settings = settings_for(home)
    learner = TradeLearner(params or settings.learning, calendar_for(settings))
    for trade in attribution_outcomes(settings):
        learner.apply("attribution", trade)
    return learner


def test_a_regime_only_edge_shows_in_its_regime_and_nowhere_else(tmp_path: Path) -> None:
    """greeks_gamma pays in high_vol_neg_gamma only, from trade 2000 of 4000 (ten times the average component's
    effect there; the old learner's strategy-wide figure rose 0.3-0.7 and took every regime with it): on at least
    4 of 5 seeds its multiplier there ends at least 0.3 above 1 and every other regime's within 0.1 of 1."""
    edge = RegimeEdge("equity", "greeks_gamma", "high_vol_neg_gamma", multiplier=10.0, elsewhere=1.0, from_trade=2000)
    shown = 0
    for seed in range(1, 6):
        home = tmp_path / f"seed{seed}"
        simulate(home, DRIFT_TRADES, seed, edges=EDGES, regime_edge=edge, garbage=False)
        entry = learned_outcomes(home).entry
        # Regime labels are learned case-folded.
        inside = entry.multiplier("equity", edge.component, edge.regime.casefold())
        others = [
            entry.multiplier("equity", edge.component, regime.casefold()) for regime in REGIMES if regime != edge.regime
        ]
        shown += inside >= 1.3 and all(abs(value - 1.0) <= MOVE_TOLERANCE for value in others)
        shutil.rmtree(home)
    assert shown >= 4


def test_average_components_stay_average_while_planted_edges_move(tmp_path: Path) -> None:
    """At 500 trades, on eight seeds: at most 3 of the 14 average components move by more than 0.1, no planted edge
    moves the wrong way, and planted edges do move."""
    counts = []
    right = 0
    for seed in range(1, 9):
        home = tmp_path / f"seed{seed}"
        simulate(home, 500, seed, edges=EDGES, regime_edge=None, garbage=False)
        entry = learned_outcomes(home).entry
        values = {name: entry.multiplier("equity", name) for name in ENTRY_COMPONENTS}
        counts.append(sum(abs(values[name] - 1.0) > MOVE_TOLERANCE for name in ENTRY_COMPONENTS if name not in EDGES))
        assert all((values[name] - 1.0) * (planted - 1.0) >= 0.0 for name, planted in EDGES.items()), seed
        right += sum((values[name] - 1.0) * (planted - 1.0) > 0.0 for name, planted in EDGES.items())
        shutil.rmtree(home)
    assert max(counts) <= 3, counts
    assert right >= 4 * 8, right


def test_at_200_trades_clear_edges_already_move(tmp_path: Path) -> None:
    """min_effective_samples no longer holds everything still at 200 trades when the score shows its edge: the
    clearest planted edges move their way, and no average component moves by more than 0.1."""
    moved = 0
    for seed in (1, 2, 3):
        home = tmp_path / f"seed{seed}"
        simulate(home, 200, seed, edges=EDGES, regime_edge=None, garbage=False)
        entry = learned_outcomes(home).entry
        values = {name: entry.multiplier("equity", name) for name in ENTRY_COMPONENTS}
        moved += sum((values[name] - 1.0) * (planted - 1.0) > 0.0 for name, planted in EDGES.items())
        assert all(abs(values[name] - 1.0) <= MOVE_TOLERANCE for name in ENTRY_COMPONENTS if name not in EDGES)
        shutil.rmtree(home)
    assert moved >= 3


@pytest.fixture(scope="module")
def raw_tide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationTruth]:
    """3000 trades whose market_tide the bot logs raw (its signal times 15, mean about 11, as in the bot's real
    rows), not as its weighted contribution; entry_score still sums the true contributions."""
    home = tmp_path_factory.mktemp("raw")
    truth = simulate(home, RECOVERY_TRADES, 7, raw_scale={"market_tide": 15.0})
    run_backfill(settings_for(home))
    return home, truth


def test_an_off_scale_component_is_learned_standardized_and_said_so(raw_tide: tuple[Path, SimulationTruth]) -> None:
    """market_tide alone is found off the contribution scale and learned standardized, by a factor near 0.4 / 15
    (its base weight over the raw scale); `weights` (JSON and text), the weekly report and `audit` say so."""
    home, _ = raw_tide
    settings = settings_for(home)
    entry = weights(home)["strategies"]["equity"]["entry"]
    assert [name for name, view in entry.items() if view["standardized"]] == ["market_tide"]
    assert 0.5 * 0.4 / 15.0 <= entry["market_tide"]["scale_factor"] <= 2.0 * 0.4 / 15.0
    assert "market_tide*" in render_weights(weights_document(settings, None, None))
    audited = collect_audit(settings)["standardized_components"]
    assert set(audited) == {"equity", "momentum"}
    assert audited["equity"] == {"market_tide": entry["market_tide"]["scale_factor"]}
    calendar = calendar_for(settings)
    with reading(settings.db_path) as store:
        assert store is not None
        # The weekly report of the week of the last session the trade learner closed.
        last_row = store.latest_learner_row("trades", "session|", calendar.closes_us[-1])
        assert last_row is not None
        last = int(orjson.loads(last_row)["session"])
        week = calendar.week_label(calendar.sessions[last])
        report = weekly_report_document(store, settings, calendar, week, last, longrun=None)
    factor = entry["market_tide"]["scale_factor"]
    assert report["strategies"]["equity"]["standardized"] == {"market_tide": pytest.approx(factor)}
    assert "`market_tide` x" in render_weekly_markdown(report)


def test_an_off_scale_component_never_dominates_the_score(raw_tide: tuple[Path, SimulationTruth]) -> None:
    """On the raw-tide home the sum of the logged components barely ranks trades, the bot's entry_score does, and
    the learned score (market_tide standardized) ranks them at least as well as entry_score; market_tide carries
    a small share of the learned score's variance."""
    home, _ = raw_tide
    settings = settings_for(home)
    overall = run_evaluation(settings, bootstrap_samples=50, seed=1).overall
    assert overall.ic_sum < overall.ic_static - 0.1
    assert overall.ic_learned >= overall.ic_static - 0.005
    learner = learned_outcomes(home)
    factor = learner.entry.scale_factors("equity")["market_tide"]
    trades = [trade for trade in attribution_outcomes(settings) if trade.strategy == "equity"]
    tide = np.array([factor * dict(trade.components).get("market_tide", 0.0) for trade in trades])
    scores = np.array([learner.entry.score(trade) for trade in trades])
    assert float(np.var(tide * learner.entry.multiplier("equity", "market_tide"))) <= 0.2 * float(np.var(scores))


def test_an_older_entry_state_is_relearned_from_the_ledger(tmp_path: Path) -> None:
    """A store whose entry model an older learnd wrote (entry state version 1): `weights` refuses it with a clear
    StateError, and the next commit (a backfill here, the daemon's first) relearns it from the ledger into exactly
    what the backfill had learned."""
    simulate(tmp_path, 300, seed=5, garbage=False)
    settings = settings_for(tmp_path)
    run_backfill(settings)
    learned = weights(tmp_path)
    store = Store.open(settings.db_path)
    try:
        state = orjson.loads(store.learner_state("trades") or b"{}")
        state["entry"] = {"model": "entry", "version": 1, "strategies": {}}
        store.commit(Batch(learner_states={"trades": orjson.dumps(state)}))
    finally:
        store.close()
    with pytest.raises(StateError, match="older learnd"):
        load_model(settings)
    run_backfill(settings)
    assert weights(tmp_path) == learned
    store = Store.open(settings.db_path, readonly=True)
    try:
        relearned = orjson.loads(store.learner_state("trades") or b"{}")
    finally:
        store.close()
    assert relearned["counts"]["replays"] == state["counts"]["replays"] + 1  # the relearn, once


def test_a_retrain_counts_a_replay_for_each_side(tmp_path: Path) -> None:
    """New learning parameters relearn both sides from the ledger: two replays, the entry side's and the exit
    side's, counted when the retrain asks for them."""
    learner = TradeLearner(LearningParams(), calendar_for(build_settings(tmp_path)))
    learner.bind_history(lambda kind, after_us=None: iter(()))
    learner.retrain(LearningParams(half_life_sessions=10.0))
    assert learner.counts["replays"] == 2
    learner.finish_batch()
    assert learner.counts["replays"] == 2


def _trade_state(home: Path) -> dict[str, Any]:
    store = Store.open(home / "state" / "learnd.db", readonly=True)
    try:
        return orjson.loads(store.learner_state("trades") or b"{}")  # type: ignore[no-any-return]
    finally:
        store.close()


def test_learning_parameters_changed_while_stopped_are_relearned_at_the_next_start(tmp_path: Path) -> None:
    """Parameters changed in the config between two runs (not by a reload): the next start relearns both sides
    under them, as a reload does, into what a backfill under them learns (the state went on under the new ones, and
    a late trade later relearned the entry side alone)."""
    simulate(tmp_path / "home", 300, seed=5, garbage=False)
    shutil.copytree(tmp_path / "home" / "logs", tmp_path / "fresh" / "logs")
    new = {"learning.half_life_sessions": "15", "learning.max_step_per_session": "0.3"}

    def settings(home: Path, overrides: dict[str, str]) -> Settings:
        jobs_off = {"metrics_enabled": "false", "schedule.daily_enabled": "false", "schedule.weekly_enabled": "false"}
        return load_settings(home=home, environ={}, overrides=jobs_off | overrides)

    run_backfill(settings_for(tmp_path / "home"), progress="none")
    before = _trade_state(tmp_path / "home")
    report = run_backfill(settings(tmp_path / "home", new), progress="none")
    assert report.lines_count == 0
    run_backfill(settings(tmp_path / "fresh", new), progress="none")
    relearned, fresh = _trade_state(tmp_path / "home"), _trade_state(tmp_path / "fresh")
    assert relearned["entry"] == fresh["entry"] != before["entry"]
    assert relearned["exit"] == fresh["exit"] != before["exit"]
    assert relearned["params"] == fresh["params"]
    assert relearned["counts"]["replays"] == before["counts"]["replays"] + 2  # both sides, once
    store = Store.open(tmp_path / "home" / "state" / "learnd.db", readonly=True)
    try:
        reasons = {orjson.loads(body)["reason"] for body in store.changes_between(0, 2**62)}
    finally:
        store.close()
    assert "retrained_new_parameters" in reasons


def test_one_trade_dated_far_ahead_is_quarantined_and_two_in_a_row_move_the_clock(tmp_path: Path) -> None:
    """A close row dated years ahead (a garbled date, a host clock set ahead) learned would make every later trade
    late, relearned with its evidence decayed to that date: alone it is quarantined with its source and offset, and
    so is a repeat of the same row right behind it (the bot repeats rows; the repeat passed as the clock moving), and
    the rest is learned as without it. Two different trades in a row more than a year ahead (a bot back after a
    year away) are the clock moving: the first is kept in quarantine, the second learned."""
    simulate(tmp_path / "clean", 300, seed=5, garbage=False)
    lines = (tmp_path / "clean" / "logs" / "attribution.jsonl").read_bytes().splitlines(keepends=True)
    closes = [index for index, line in enumerate(lines) if b'"trade_id":"close_' in line]
    middle = closes[len(closes) // 2]
    far = orjson.loads(lines[middle])
    far["ts"], far["trade_id"] = "2049-06-01T15:00:00+00:00", far["trade_id"] + "_far"
    shutil.copytree(tmp_path / "clean", tmp_path / "far")
    far_line = orjson.dumps(far) + b"\n"
    far_lines = [*lines[: middle + 1], far_line, far_line, *lines[middle + 1 :]]
    (tmp_path / "far" / "logs" / "attribution.jsonl").write_bytes(b"".join(far_lines))
    run_backfill(settings_for(tmp_path / "clean"), progress="none")
    run_backfill(settings_for(tmp_path / "far"), progress="none")
    clean, with_far = _trade_state(tmp_path / "clean"), _trade_state(tmp_path / "far")
    assert with_far["counts"] == clean["counts"] and with_far["counts"]["late"] == 0
    assert with_far["entry"] == clean["entry"] and with_far["last_trade"] == clean["last_trade"]
    store = Store.open(tmp_path / "far" / "state" / "learnd.db", readonly=True)
    try:
        far_ahead = [orjson.loads(body) for _, _, body in store.quarantine_rows(0) if b'"far_ahead"' in body]
    finally:
        store.close()
    offset = sum(len(line) for line in far_lines[: middle + 1])
    assert [(row["reason"], row["source"], row["offset"]) for row in far_ahead] == [
        ("far_ahead", "attribution", offset),
        ("far_ahead", "attribution", offset + len(far_line)),
    ]

    # Two closes more than a year after the last one, one after the other: the clock moved.
    last = orjson.loads(lines[closes[-1]])
    after = []
    for number, day in enumerate(("2027-06-01", "2027-06-02")):
        row = dict(last, ts=f"{day}T15:00:00+00:00", trade_id=f"{last['trade_id']}_back{number}")
        after.append(orjson.dumps(row) + b"\n")
    with open(tmp_path / "far" / "logs" / "attribution.jsonl", "ab") as handle:
        handle.write(b"".join(after))
    run_backfill(settings_for(tmp_path / "far"), progress="none")
    moved = _trade_state(tmp_path / "far")
    assert moved["counts"]["trades"] == clean["counts"]["trades"] + 1
    assert moved["last_trade"][1] == f"{last['trade_id']}_back1"


def test_a_bot_that_trades_once_a_month_loses_no_trade_and_each_file_is_judged_by_its_own(tmp_path: Path) -> None:
    """Closes 40 days apart (a slow strategy, a bot paused for weeks) are all learned (at a 14-day bound every other
    one was quarantined); and a file whose records begin long after another's (two exit files, one begun a year
    later) is judged by its own records, so how a backfill interleaves the files decides nothing."""
    settings = settings_for(tmp_path)
    learner = TradeLearner(settings.learning, calendar_for(settings))
    learner.bind_history(lambda kind, after_us=None: iter(()))
    start = datetime(2026, 1, 6, 15, tzinfo=UTC)
    for number in range(12):
        stamp = (start + timedelta(days=40 * number)).isoformat()
        row = {"ts": stamp, "type": "attribution", "trade_id": f"close_AMD_{stamp}", "symbol": "AMD", "pnl_usd": 1.0,
               "pnl_pct": 0.5, "context": {"components": {"flow": 1.0}}}  # fmt: skip
        record = parse_record("attribution", row)
        assert isinstance(record, TradeOutcome)
        learner.apply("attribution", record)
    assert learner.counts["trades"] == 12

    def exit_row(at: datetime, symbol: str) -> ExitOutcome:
        row = {"ts": at.isoformat(), "msg": "attribution_logged", "symbol": symbol, "pnl_usd": 1.0, "pnl_pct": 0.5,
               "hold_min": 30.0, "reason": "trail_stop", "strategy_id": "equity"}  # fmt: skip
        record = parse_record("exit", row)
        assert isinstance(record, ExitOutcome)
        return record

    later = start + timedelta(days=400)
    for order in (("exit_a", "exit_b"), ("exit_b", "exit_a")):
        exits = TradeLearner(settings.learning, calendar_for(settings))
        exits.bind_history(lambda kind, after_us=None: iter(()))
        for source in order:
            at = start if source == "exit_a" else later
            exits.apply(source, exit_row(at, "AMD"))
            exits.apply(source, exit_row(at + timedelta(hours=1), "MSFT"))
        exits.finish_batch()
        assert exits.counts["exits"] == 4


def test_trades_of_one_time_are_replayed_in_the_order_they_arrived_across_a_rotation(tmp_path: Path) -> None:
    """Closes sharing one timestamp (the bot's end-of-day closes), a rotation between them, and a late close after
    them (a replay): the replay takes the tied trades in the order they arrived, as in-order learning did and as a
    backfill of the one unrotated file does (by byte offset, which starts again in the new file, the new file's
    came first, and the learned figures differed in their last bits)."""
    simulate(tmp_path / "sim", 600, seed=1, garbage=False)
    lines = (tmp_path / "sim" / "logs" / "attribution.jsonl").read_bytes().splitlines(keepends=True)
    stamps: list[str] = [orjson.loads(line)["ts"] if b'"trade_id":"close_' in line else "" for line in lines]
    group = next(
        index for index in range(len(lines)) if stamps[index] and stamps[index : index + 4].count(stamps[index]) == 4
    )
    late = max(index for index in range(group) if stamps[index] and stamps[index] < stamps[group])
    moved = [*lines[:late], *lines[late + 1 : group + 4], lines[late], *lines[group + 4 :]]
    homes = {name: tmp_path / name for name in ("one", "rotated")}
    for home in homes.values():
        shutil.copytree(tmp_path / "sim" / "logs", home / "logs")
    (homes["one"] / "logs" / "attribution.jsonl").write_bytes(b"".join(moved))
    cut = group - 1 + 2  # two of the tied closes before the rotation (the late row left the group's place)
    (homes["rotated"] / "logs" / "attribution.jsonl.1").write_bytes(b"".join(moved[:cut]))
    (homes["rotated"] / "logs" / "attribution.jsonl").write_bytes(b"".join(moved[cut:]))
    for home in homes.values():
        run_backfill(settings_for(home), progress="none")
    one, rotated = _trade_state(homes["one"]), _trade_state(homes["rotated"])
    assert one["counts"]["replays"] == rotated["counts"]["replays"] >= 1
    assert one["entry"] == rotated["entry"]


def test_a_trade_a_later_session_s_trade_overtook_is_late_only_once_its_day_s_report_is_written(
    tmp_path: Path,
) -> None:
    """Closes written after a trade of a later session (the bot's writers interleave) are relearned in event order
    either way; they are late (counted, listed in the next report) only when their session's daily job ran before
    they arrived, not when a later trade closed the session in the stream, which depends on how the lines were
    batched: a backfill in batches of 10 lines listed 40 such trades, one of 2,000 none, and the reports differed."""
    simulate(tmp_path / "sim", 400, seed=3, start=date(2026, 10, 5), garbage=False)
    lines = (tmp_path / "sim" / "logs" / "attribution.jsonl").read_bytes().splitlines(keepends=True)
    calendar = calendar_for(settings_for(tmp_path / "sim"))
    sessions = [
        calendar.session_index(parse_record("attribution", orjson.loads(line)).event_us)  # type: ignore[union-attr]
        if b'"trade_id":"close_' in line
        else -1
        for line in lines
    ]
    moved = [index for index in range(40, len(lines) - 80, 37) if sessions[index] >= 0][:6]
    reordered = list(lines)
    for index in reversed(moved):
        later = next(at for at in range(index, len(lines)) if sessions[at] > sessions[index])
        reordered.insert(later + 1, reordered.pop(index))
    reports = {}
    for batch in (10, 2000):
        home = tmp_path / f"batch{batch}"
        shutil.copytree(tmp_path / "sim" / "logs", home / "logs")
        (home / "logs" / "attribution.jsonl").write_bytes(b"".join(reordered))
        overrides = {"metrics_enabled": "false", "backfill_batch_lines": str(batch)}
        run_backfill(load_settings(home=home, environ={}, overrides=overrides), progress="none")
        state = _trade_state(home)
        assert state["counts"]["late"] == 0 and state["counts"]["replays"] >= len(moved)
        root = home / "data" / "reports"
        reports[batch] = {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*.json")}
    assert len(reports[10]) > 20
    assert reports[10] == reports[2000]
