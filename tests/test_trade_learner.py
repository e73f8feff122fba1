"""The trade learner's shell duties: event order, replays of out-of-order trades, session closes."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import orjson
import pytest

from learnd.devtools.simulate import simulate
from learnd.learning.trades import TradeLearner
from learnd.service.backfill import drain
from learnd.service.engine import Engine
from learnd.views.weights import weights_view
from tests.conftest import build_settings


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
