"""Tests for bench.loop: the real daemon in process on a simulated home, real appends and a real store."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench import loop
from bench.processes import bench_settings
from learnd.devtools.simulate import simulate
from learnd.records.parse import parse_event_us
from learnd.service.backfill import run_backfill
from learnd.store.database import Store


def test_each_appended_trade_is_learned_and_timed_once_the_daemon_is_idle(tmp_path: Path) -> None:
    """An in-order and a late trade appended in turn: one hold each (the longest gap the probe saw, at least one
    turn's), and the store then holds both lines, the late one relearned."""
    simulate(tmp_path, trades=200, seed=5, garbage=False)
    logs = {name: tmp_path / "logs" / f"{name}.jsonl" for name in ("attribution", "exit", "signals", "orders")}
    settings = bench_settings(tmp_path, logs, metrics_enabled="false")
    run_backfill(settings)
    closes = loop.closes_in_event_order(logs["attribution"])
    times = [parse_event_us(orjson.loads(line)["ts"]) for line in closes]
    assert times == sorted(times) and len(closes) > 100
    lines = [loop.renamed(closes[-1], "now"), loop.renamed(closes[-100], "late")]
    assert orjson.loads(lines[1])["trade_id"] == orjson.loads(closes[-100])["trade_id"] + "_late"
    holds = loop.hold_times(settings, logs["attribution"], lines)
    assert len(holds) == 2 and all(0.0 < hold < 60.0 for hold in holds)
    store = Store.open(settings.db_path, readonly=True)
    try:
        assert store.checkpoints()["attribution"].offset == logs["attribution"].stat().st_size
        state = orjson.loads(store.learner_state("trades") or b"")
    finally:
        store.close()
    assert state["counts"]["replays"] == 1
