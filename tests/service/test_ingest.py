"""Tests for learnd.ingest end to end: real files tailed through Ingestor into a real Store, counted exactly once."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.config import Settings
from learnd.errors import RecordError
from learnd.learning.learner import Applied, CountingLearner
from learnd.records.parse import Record, SignalRecord
from learnd.service.backfill import drain, run_backfill
from learnd.service.engine import Engine
from learnd.service.ingest import Ingestor
from learnd.store.database import Store
from tests.conftest import build_settings

ORDERS = "orders"


def order(index: int) -> bytes:
    """One order row (an applied record of the orders source), newline-terminated."""
    return b'{"ts":"2026-03-02T15:10:04.090+00:00","type":"order","symbol":"AMD","qty":%d}\n' % index


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


class Pipeline:
    """An Ingestor over a Store for one settings object, reopened at will as a restart would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store.open(settings.db_path, window_lines=settings.dedupe_window_lines)
        self.ingestor = self._ingestor()

    def _ingestor(self) -> Ingestor:
        learners = [CountingLearner.load(self.store.learner_state("counting"))]
        return Ingestor(self.settings, self.store, learners, start_at_end=False)

    def run(self, budget: int = 1000) -> None:
        """Poll and commit until nothing more is read."""
        while True:
            read = self.ingestor.poll(budget)
            self.ingestor.commit()
            if read == 0:
                return

    def restart(self) -> None:
        self.ingestor.close()
        self.ingestor = self._ingestor()

    def close(self) -> None:
        self.ingestor.close()
        self.store.close()

    def counts(self, outcome: str) -> dict[str, int]:
        return {kind: n for (source, out, kind), n in self.store.line_counts().items() if out == outcome}


@pytest.fixture
def pipeline(home: Path) -> Iterator[Pipeline]:
    opened = Pipeline(build_settings(home, sources=(ORDERS,)))
    yield opened
    opened.close()


def test_bad_lines_are_quarantined_with_reason_and_the_pipeline_goes_on(home: Path, pipeline: Pipeline) -> None:
    """Each kind of bad line is quarantined (source, file, offset, raw bytes kept); BOM and CRLF lines decode."""
    path = home / "logs" / "orders.jsonl"
    lines = [
        order(1),
        b"x" * (2 << 20) + b"\n",
        b'{"ts":"2026-03-02T15:10:04+00:00","symbol":"\xff\xfe"}\n',
        b'{"ts": "2026-03-02T15:10:04+00:00", "symbol": \n',
        b"[1, 2, 3]\n",
        b"\n",
        b"\xef\xbb\xbf" + order(2),
        order(3).replace(b"\n", b"\r\n"),
        order(4),
    ]
    append(path, b"".join(lines))
    pipeline.run()
    assert pipeline.counts("quarantined") == {
        "line_too_long": 1,
        "invalid_utf8": 1,
        "invalid_json": 1,
        "not_an_object": 1,
        "blank_line": 1,
    }
    assert pipeline.counts("applied") == {"order": 4}
    offsets = [sum(len(line) for line in lines[:index]) for index in range(len(lines))]
    bodies = [orjson.loads(body) for _, _, body in pipeline.store.quarantine_rows(0)]
    assert [body["reason"] for body in bodies] == [
        "line_too_long",
        "invalid_utf8",
        "invalid_json",
        "not_an_object",
        "blank_line",
    ]
    assert [body["offset"] for body in bodies] == offsets[1:6]
    for body, raw in zip(bodies, lines[1:6], strict=True):
        assert body["source"] == ORDERS
        assert body["file"]
        kept = raw.rstrip(b"\n")[: pipeline.settings.quarantine_keep_bytes]
        assert base64.b64decode(body["raw_b64"]) == kept
    assert bodies[0]["length"] == 2 << 20
    assert bodies[0]["truncated"] is True


def test_a_ledger_record_read_again_is_a_duplicate_in_its_poll_its_batch_and_after_its_commit(home: Path) -> None:
    """The same exit outcome read again is counted a duplicate and kept once, whether the repeat comes in the same
    poll, in a later poll of the same batch, or after the batch committed (found in the store, one query a poll);
    a bad line between them is still quarantined in its place."""
    pipeline = Pipeline(build_settings(home, sources=("exit",)))
    try:
        path = home / "logs" / "exit.jsonl"
        append(path, exit_row(1, "AMD") + exit_row(2, "NVDA") + exit_row(1, "AMD") + b"{oops\n")
        assert pipeline.ingestor.poll(1000) == 4
        append(path, exit_row(2, "NVDA") + exit_row(3, "TSLA"))
        assert pipeline.ingestor.poll(1000) == 2
        pipeline.ingestor.commit()
        append(path, exit_row(3, "TSLA") + exit_row(1, "AMD") + exit_row(4, "AMD"))
        pipeline.run()
        assert pipeline.counts("duplicate") == {"repeated_exit": 4}
        assert pipeline.counts("applied") == {"exit_outcome": 4}
        assert pipeline.counts("quarantined") == {"invalid_json": 1}
        keys = [row.key for row in pipeline.store.ledger("exit")]
        assert keys == [
            f"attribution_logged|{symbol}|2026-03-02T15:00:0{second}.000001+00:00"
            for symbol, second in [("AMD", 1), ("NVDA", 2), ("TSLA", 3), ("AMD", 4)]
        ]
    finally:
        pipeline.close()


def test_ten_megabyte_line_arriving_in_pieces_is_quarantined_once(home: Path, pipeline: Pipeline) -> None:
    """A 10 MB line written in pieces (with polls and commits between) is one quarantined line; the next applies."""
    path = home / "logs" / "orders.jsonl"
    append(path, order(1))
    piece = b"z" * (1 << 20)
    for _ in range(10):
        append(path, piece)
        pipeline.run()
    pipeline.restart()  # the over-long line's scan resumes from its start after a restart
    append(path, b"\n" + order(2))
    pipeline.run()
    assert pipeline.counts("quarantined") == {"line_too_long": 1}
    assert pipeline.counts("applied") == {"order": 2}
    (body,) = [orjson.loads(body) for _, _, body in pipeline.store.quarantine_rows(0)]
    assert body["offset"] == len(order(1))
    assert body["length"] == 10 << 20


def test_in_place_rewrite_counts_kept_lines_as_duplicates(home: Path, pipeline: Pipeline) -> None:
    """A supervisor rewrite keeping the last lines applies nothing twice, even across a restart before it."""
    path = home / "logs" / "orders.jsonl"
    append(path, b"".join(order(index) for index in range(1, 11)))
    pipeline.run(budget=4)
    pipeline.restart()
    kept = path.read_bytes().splitlines(keepends=True)[-3:]
    with open(path, "wb") as handle:
        handle.writelines(kept)
    append(path, order(11))
    pipeline.run(budget=2)
    assert pipeline.counts("applied") == {"order": 11}
    assert pipeline.counts("duplicate") == {"line_reread_after_rewrite": 3}


def test_rewrite_found_at_restart_and_interrupted_again_applies_nothing_twice(home: Path, pipeline: Pipeline) -> None:
    """A rewrite done while stopped, then a kill between commits inside its kept tail: each line counts once."""
    path = home / "logs" / "orders.jsonl"
    append(path, b"".join(order(index) for index in range(1, 11)))
    pipeline.ingestor.poll(6)
    pipeline.ingestor.commit()
    pipeline.restart()
    kept = path.read_bytes().splitlines(keepends=True)[-6:]
    with open(path, "wb") as handle:
        handle.writelines(kept)
    append(path, order(11))
    pipeline.ingestor.poll(1)
    pipeline.ingestor.commit()
    pipeline.restart()
    pipeline.run(budget=2)
    assert pipeline.counts("applied") == {"order": 11}
    assert pipeline.counts("duplicate") == {"line_reread_after_rewrite": 2}


def test_restart_between_commits_applies_every_line_once(home: Path, pipeline: Pipeline) -> None:
    """Lines polled but not committed before a restart are read again; committed ones never are."""
    path = home / "logs" / "orders.jsonl"
    append(path, b"".join(order(index) for index in range(1, 6)))
    pipeline.ingestor.poll(3)
    pipeline.ingestor.commit()
    pipeline.ingestor.poll(100)  # applied in memory, then "killed" before the commit
    pipeline.restart()
    append(path, order(6))
    pipeline.run()
    assert pipeline.counts("applied") == {"order": 6}
    assert sum(CountingLearner.load(pipeline.store.learner_state("counting")).counts[ORDERS].values()) == 6


# Replay equivalence ----------------------------------------------------------------------------------------


def exit_row(index: int, symbol: str) -> bytes:
    return (
        b'{"ts":"2026-03-02T15:%02d:%02d.000001+00:00","msg":"attribution_logged","symbol":"%s",'
        b'"pnl_usd":1.5,"pnl_pct":0.42,"hold_min":3.0,"reason":"trail_stop+signal_decay(0.4)"}\n'
        % (index // 60 % 60, index % 60, symbol.encode())
    )


LINE_MAKERS = st.one_of(
    st.builds(exit_row, st.integers(min_value=0, max_value=30), st.sampled_from(["AMD", "NVDA"])),  # repeats: dupes
    st.just(b'{"ts":"2026-03-02T15:10:04+00:00","msg":"heartbeat"}\n'),
    st.just(b"garbage {\n"),
    st.just(b"\n"),
    st.just(b"[1]\n"),
)


@settings(max_examples=15, deadline=None)
@given(
    lines=st.lists(LINE_MAKERS, min_size=1, max_size=25),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=6),
    actions=st.lists(st.sampled_from(["run", "restart", "poll_then_kill"]), min_size=7, max_size=7),
)
def test_chunked_appends_with_restarts_end_like_one_backfill(
    lines: list[bytes], cuts: list[int], actions: list[str]
) -> None:
    """Any chunking of the stream (lines split anywhere) with restarts between chunks gives one backfill's state."""
    content = b"".join(lines)
    points = sorted({0, len(content), *(cut % (len(content) + 1) for cut in cuts)})
    with tempfile.TemporaryDirectory() as live_dir, tempfile.TemporaryDirectory() as batch_dir:
        live_home, batch_home = Path(live_dir), Path(batch_dir)
        for root in (live_home, batch_home):
            (root / "logs").mkdir()
        live = build_settings(live_home, sources=("exit",), overrides={"backfill_batch_lines": 3})
        engine = Engine(live, start_at_end=False, purpose="test")
        try:
            for index, (start, end) in enumerate(pairwise(points)):
                append(live_home / "logs" / "exit.jsonl", content[start:end])
                action = actions[index % len(actions)]
                if action == "poll_then_kill":
                    engine.poll(2)
                if action != "run":
                    engine.close()
                    engine = Engine(live, start_at_end=False, purpose="test")
                drain(engine, 3)
            live_print = engine.store.fingerprint()
        finally:
            engine.close()
        append(batch_home / "logs" / "exit.jsonl", content)
        run_backfill(build_settings(batch_home, sources=("exit",)))
        batch_store = Store.open(build_settings(batch_home, sources=("exit",)).db_path)
        try:
            batch_print = batch_store.fingerprint()
        finally:
            batch_store.close()
    assert live_print == batch_print


@dataclass(slots=True)
class _RefusingLearner(CountingLearner):
    """A counting learner that refuses the signal candidates of one symbol, as a learner checking a record would."""

    name: str = "refusing"

    def apply(self, source: str, record: Record) -> Applied:
        if isinstance(record, SignalRecord) and record.symbol == "TSLA":
            raise RecordError("refused", record.symbol)
        return CountingLearner.apply(self, source, record)


def signal_line(symbol: str, *, components: bytes = b'{"flow": 1.5, "whale": -0.25}') -> bytes:
    return (
        b'{"ts":"2026-03-02T15:10:04.090+00:00","type":"signal","cluster":{"ticker":"%s","direction":"bullish",'
        b'"composite_score":3.5,"composite_meta":{"components":%s},"gate_passed":true}}\n'
        % (symbol.encode(), components)
    )


def test_signal_lines_are_applied_counted_or_quarantined_in_line_order(home: Path) -> None:
    """Signal candidates (typed or decoded the general way) reach their learners in line order and are counted as
    applied; a bad line, and a candidate a learner refuses, are quarantined with their reasons."""
    settings = build_settings(home, sources=("signals",))
    store = Store.open(settings.db_path, window_lines=settings.dedupe_window_lines)
    counting = CountingLearner()
    refusing = _RefusingLearner()
    ingestor = Ingestor(settings, store, [counting, refusing], start_at_end=False)
    append(
        home / "logs" / "signals.jsonl",
        signal_line("AMD")
        + b"{not json\n"
        + signal_line("TSLA")
        + signal_line("NVDA", components=b'{"flow": null, "whale": 2}')
        + signal_line("AMD"),
    )
    while ingestor.poll(1000):
        ingestor.commit()
    ingestor.commit()
    outcomes = {(outcome, kind): n for (_, outcome, kind), n in store.line_counts().items()}
    assert outcomes == {("applied", "signal"): 3, ("quarantined", "invalid_json"): 1, ("quarantined", "refused"): 1}
    assert counting.counts == {"signals": {"SignalRecord": 4}}
    assert refusing.counts == {"signals": {"SignalRecord": 3}}
    ingestor.close()
    store.close()
