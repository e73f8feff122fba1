"""jobs.longrun: the long-run figures kept as periods advance are those of one pass over every trade, whatever the
order and however many periods they came in; persisted rows restore them; attribute_pnl splits a trade's P&L."""

from __future__ import annotations

import math
import random
from collections import ChainMap
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from learnd.errors import StateError
from learnd.jobs.longrun import (
    PERIOD_VALUES,
    RECENT_SESSIONS,
    STATE_VERSION,
    CellOutcomes,
    LongRun,
    OutcomeRun,
    SessionOutcomes,
    Tally,
    attribute_pnl,
    gather_periods,
    is_attributed,
    outcome_index,
    pack_values,
    unpack_period,
)
from learnd.jobs.reports import daily_report, longrun_of
from learnd.learning.entry_model import regime_scope
from learnd.learning.execution import symbol_outcomes
from learnd.learning.multipliers import GLOBAL_SCOPE, TICKER_SCOPE_PREFIX
from learnd.records.parse import TradeOutcome
from tests.jobs.test_reports import DAY, DAY_TRADES, component_sets, ledger, make_trade, pnl_values, session_of


def test_attribution_splits_weighted_pnl_by_absolute_contribution() -> None:
    """A penalty's share follows |contribution|; a partial close's P&L is scaled by its fraction."""
    assert attribute_pnl(DAY_TRADES[0]) == (("options_flow", 1.5), ("toxicity_penalty", 0.5))
    assert attribute_pnl(DAY_TRADES[2]) == (("dark_pool", 2.0),)
    assert attribute_pnl(DAY_TRADES[3]) == ()


@given(pnl_values, component_sets, st.sampled_from([0.25, 0.5, 1.0]))
def test_attribution_conserves_the_weighted_pnl(pnl: float, components: dict[str, float], weight: float) -> None:
    """The shares sum to pnl_pct x weight whenever some component contributed, and share its sign."""
    shares = attribute_pnl(make_trade("close_x", pnl, components, weight=weight))
    if any(value != 0.0 for value in components.values()):
        assert math.fsum(share for _, share in shares) == pytest.approx(pnl * weight, abs=1e-9)
        assert all(share * pnl >= 0.0 for _, share in shares)
    else:
        assert shares == ()


def test_a_subnormal_contribution_still_carries_the_whole_pnl() -> None:
    """Found by hypothesis: 5e-324 times a P&L underflowed to 0 before the division, and the P&L vanished."""
    shares = attribute_pnl(make_trade("close_x", 1.0, {"options_flow": 5e-324}, weight=0.25))
    assert shares == (("options_flow", 0.25),)


LAST_SESSION = 59
EARLIER_ROW = "longrun\x1fearlier"  # an older store's earlier tallies
TRADES = ledger(3, sessions=LAST_SESSION + 1)


def figures(longrun: LongRun) -> dict[str, Any]:
    """Everything the reports read of the figures, as plain comparable data (recent outcomes sorted per session and
    cell: their order within a session is not part of the figures)."""
    return {
        "through": longrun.through,
        "earlier_through": longrun.earlier_through,
        "strategies": {
            name: (kept.trades, kept.first_session, kept.last_session, sorted(kept.evidence.items()))
            for name, kept in longrun.strategies.items()
        },
        "symbols": {
            key: (
                kept.closed,
                kept.closed_pnl_pct.value,
                kept.closed_pnl_usd.value,
                kept.profile.view(),
                {name: tally.view() for name, tally in kept.shares.items()},
                kept.last_event_us,
                sorted(kept.evidence.items()),
            )
            for key, kept in longrun.symbols.items()
        },
        "earlier": {
            strategy: {
                cell: (kept.tally.view(), kept.sorted_sample().values.tolist(), kept.sorted_sample().tie_term)
                for cell, kept in longrun.earlier_cells(strategy).items()
            }
            for strategy in sorted(longrun.earlier)
        },
        "recent": {
            session: (
                outcomes.trades,
                {
                    (strategy, cell): (kept.counts, sorted(kept.values))
                    for strategy, cells in outcomes.cells.items()
                    for cell, kept in cells.items()
                },
            )
            for session, outcomes in longrun.recent.items()
        },
        "evidence": longrun.evidence(),
    }


def by_session(trades: list[TradeOutcome]) -> dict[int, list[TradeOutcome]]:
    grouped: dict[int, list[TradeOutcome]] = {}
    for trade in trades:
        grouped.setdefault(session_of(trade.event_us), []).append(trade)
    return grouped


def period_by_period(
    trades: list[TradeOutcome], keep: list[tuple[dict[str, bytes], list[Any]]] | None = None
) -> LongRun:
    """The figures as the daily job keeps them: each session's trades taken in after its close, the sessions that
    left the recent window settled into the earlier samples; with `keep`, each period's rows collected."""
    longrun = LongRun()
    grouped = by_session(trades)
    for session in range(LAST_SESSION + 1):
        longrun.absorb(grouped.get(session, []), session)
        longrun.through = session
        longrun.settle_earlier(session - RECENT_SESSIONS)
        if keep is not None:
            keep.append(longrun.rows())
    return longrun


def test_figures_kept_period_by_period_equal_one_pass_over_all_trades() -> None:
    """Sixty daily periods, each taking in its session, end with the figures of one pass over the whole ledger."""
    kept = period_by_period(TRADES)
    once = longrun_of(TRADES, session_of, LAST_SESSION, RECENT_SESSIONS)
    assert figures(kept) == figures(once)
    assert kept.earlier_through == LAST_SESSION - RECENT_SESSIONS
    assert set(kept.recent) == set(range(LAST_SESSION - RECENT_SESSIONS + 1, LAST_SESSION + 1))


@pytest.mark.parametrize("seed", range(3))
def test_the_order_trades_come_in_changes_nothing(seed: int) -> None:
    """Sums are exact and samples sorted: the same trades in another order give identical figures."""
    shuffled = list(TRADES)
    random.Random(seed).shuffle(shuffled)
    once = figures(longrun_of(TRADES, session_of, LAST_SESSION, RECENT_SESSIONS))
    assert figures(longrun_of(shuffled, session_of, LAST_SESSION, RECENT_SESSIONS)) == once


def test_rows_committed_each_period_restore_the_figures() -> None:
    """The state rows (upserted) and value chunks (appended) of every period rebuild the figures; the recent window,
    not kept, is taken in again from the trades above earlier_through."""
    periods: list[tuple[dict[str, bytes], list[Any]]] = []
    live = period_by_period(TRADES, periods)
    state: dict[str, bytes] = {}
    chunks: list[tuple[str, int, bytes]] = []
    for period_state, period_chunks in periods:
        state.update(period_state)
        chunks.extend(period_chunks)
    assert figures(restored_from(state, chunks)) == figures(live)


def restored_from(state: dict[str, bytes], chunks: list[tuple[str, int, bytes]]) -> LongRun:
    """The figures the rows of every period of TRADES restore, their recent window taken in again."""
    restored = LongRun.from_rows(state, chunks)
    for trade in TRADES:
        session = session_of(trade.event_us)
        if session > restored.earlier_through:
            restored.restore_recent([trade], session)
    return restored


def older_store(
    periods: list[tuple[dict[str, bytes], list[Any]]], version: int
) -> tuple[dict[str, bytes], list[tuple[str, int, bytes]]]:
    """The rows a version 1 or 2 store would hold after `periods`: the earlier tallies as one row, and the values as
    period rows without tallies (version 2) or as rows of one cell each, numbered per cell in the head (version 1)."""
    state: dict[str, bytes] = {}
    chunks: list[tuple[str, int, bytes]] = []
    for period_state, period_chunks in periods:
        state.update(period_state)
        chunks.extend(period_chunks)
    figures_then = LongRun.from_rows(state, chunks)
    state[EARLIER_ROW] = orjson.dumps(
        {
            "\x1f".join((strategy, *((cell,) if isinstance(cell, str) else cell))): kept.tally.to_json()
            for strategy, cells in figures_then.earlier.items()
            for cell, kept in cells.items()
        }
    )
    head = {**orjson.loads(state["longrun"]), "version": version}
    older: list[tuple[str, int, bytes]] = []
    numbers: dict[str, int] = {}
    for _, number, body in chunks:
        moved = {cell_id: part.tolist() for cell_id, part, _ in unpack_period(body)}
        if version == 2:
            older.append((PERIOD_VALUES, number, pack_values(moved)))
            continue
        for cell_id, part in moved.items():
            older.append((cell_id, numbers.get(cell_id, 0), np.asarray(part, dtype="<f8").tobytes()))
            numbers[cell_id] = numbers.get(cell_id, 0) + 1
    if version == 1:
        head["next_chunk"] = numbers
        del head["next_run"]
    state["longrun"] = orjson.dumps(head)
    return state, sorted(older)


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_is_read_and_kept_as_version_3_rows(version: int) -> None:
    """A store written by version 1 (a value row per cell, the head numbering each cell's rows) or 2 (period rows
    without tallies), its earlier tallies in one row, restores the figures it held; what later periods move goes
    into period rows carrying their tallies, read after the older rows, and the figures at the end are those kept
    all along."""
    periods: list[tuple[dict[str, bytes], list[Any]]] = []
    live = period_by_period(TRADES, periods)
    halfway = LAST_SESSION // 2
    state, chunks = older_store(periods[: halfway + 1], version)
    restored = LongRun.from_rows(state, chunks)
    grouped = by_session(TRADES)
    for session in range(restored.earlier_through + 1, halfway + 1):
        restored.restore_recent(grouped.get(session, []), session)
    for session in range(halfway + 1, LAST_SESSION + 1):
        restored.absorb(grouped.get(session, []), session)
        restored.through = session
        restored.settle_earlier(session - RECENT_SESSIONS)
        period_state, period_chunks = restored.rows()
        assert [name for name, _, _ in period_chunks] in ([], [PERIOD_VALUES])
        assert EARLIER_ROW not in period_state
        state.update(period_state)
        chunks.extend(period_chunks)
    assert orjson.loads(state["longrun"])["version"] == STATE_VERSION == 3
    # Read as the store reads them: by cell name, then number.
    assert figures(restored_from(state, sorted(chunks))) == figures(live)


def test_packed_values_come_back_per_cell_in_order() -> None:
    """A period row holds each cell's values, in the order given, bit for bit (a negative zero stays one)."""
    values = {"b\x1fx": [0.5, -0.0, 3.25], "a\x1fy\x1fmixed": [], "a\x1fy": [1e-300, -2.0]}
    body = pack_values(values)
    unpacked = [(cell, part) for cell, part, _ in unpack_period(body)]
    assert [(cell, part.tolist()) for cell, part in unpacked] == sorted(values.items())
    assert math.copysign(1.0, dict(unpacked)["b\x1fx"][1]) == -1.0


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["a\x1fx", "a\x1fx\x1fmixed", "b\x1fy"]),
            st.lists(st.sampled_from([-0.0, 0.0, 1.0, -2.5]) | st.floats(-1e6, 1e6, allow_nan=False), max_size=12),
        ),
        max_size=6,
    ),
    st.booleans(),
)
def test_period_rows_gathered_per_cell_are_each_row_unpacked_in_turn(
    periods: list[dict[str, list[float]]], with_tallies: bool
) -> None:
    """gather_periods reads what unpack_period reads of each row, per cell: the values row after row, bit for bit
    (a -0.0 stays where it was), and the counts and exact-sum parts the rows carry, one row's after another's."""
    bodies = [
        pack_values(period, {cell: _tally_of(values) for cell, values in period.items()} if with_tallies else None)
        for period in periods
    ]
    values: dict[str, list[float]] = {}
    moved: dict[str, list[Any]] = {}
    for body in bodies:
        for cell_id, part, tally in unpack_period(body):
            values.setdefault(cell_id, []).extend(part.tolist())
            if tally is not None:
                found = moved.setdefault(cell_id, [0, 0, 0, []])
                found[0] += part.size
                found[1] += tally[0]
                found[2] += tally[1]
                found[3] += tally[2]
    gathered, tallies = gather_periods(bodies)
    assert {cell: part.tobytes() for cell, part in gathered.items()} == {
        cell: np.asarray(found, dtype="<f8").tobytes() for cell, found in values.items()
    }
    assert tallies == {cell: tuple(found) for cell, found in moved.items()}


def _tally_of(values: list[float]) -> Tally:
    return Tally.of(values, values)


def test_rows_hold_only_what_changed_since_the_last_call() -> None:
    """After a period that saw only NVDA, the rows rewrite NVDA's figures and the head, not AMD's."""
    longrun = LongRun()
    longrun.absorb([make_trade("close_a", 1.0, {"options_flow": 1.0}, symbol="AMD")], 0)
    first, _ = longrun.rows()
    longrun.absorb([make_trade("close_n", -1.0, {"options_flow": 1.0}, symbol="NVDA")], 1)
    second, chunks = longrun.rows()
    assert any(name.endswith("AMD") for name in first)
    assert not any(name.endswith("AMD") for name in second)
    assert any(name.endswith("NVDA") for name in second)
    assert "longrun" in second
    assert chunks == []  # nothing settled into the earlier samples yet


def test_a_period_row_carries_the_tallies_of_the_values_it_moved() -> None:
    """No row holds the earlier tallies: a period that moved outcomes writes them in its value row, each cell's
    values with their count, wins, losses and exact sum; a period that moved nothing writes no value row."""
    longrun = LongRun()
    longrun.settle_earlier(0)
    assert longrun.rows() == ({"longrun": longrun.rows()[0]["longrun"]}, [])
    longrun.absorb([make_trade("close_a", 1.0, {"options_flow": 1.0}), make_trade("close_b", -0.5, {"gex": 1.0})], 2)
    longrun.absorb([make_trade("close_c", 0.25, {"options_flow": 1.0})], 3)
    longrun.settle_earlier(1)
    assert longrun.rows()[1] == []
    longrun.settle_earlier(3)
    moved, chunks = longrun.rows()
    assert EARLIER_ROW not in moved
    ((name, number, body),) = chunks
    assert (name, number) == (PERIOD_VALUES, 0)
    assert [(cell, part.tolist(), moved_tally) for cell, part, moved_tally in unpack_period(body)] == [
        ("equity\x1fgex", [-0.5], (0, 1, [-0.5])),
        ("equity\x1fgex\x1fmixed", [-0.5], (0, 1, [-0.5])),
        ("equity\x1foptions_flow", [1.0, 0.25], (2, 0, [1.0, 0.25])),
        ("equity\x1foptions_flow\x1fmixed", [1.0, 0.25], (2, 0, [1.0, 0.25])),
    ]
    longrun.settle_earlier(4)
    assert longrun.rows()[1] == []


def test_the_earlier_tallies_restored_from_period_rows_are_those_kept() -> None:
    """The tallies summed from every period row read the same as those kept all along, and as one pass."""
    periods: list[tuple[dict[str, bytes], list[Any]]] = []
    live = period_by_period(TRADES, periods)
    once = longrun_of(TRADES, session_of, LAST_SESSION, RECENT_SESSIONS)
    chunks = [chunk for _, period_chunks in periods for chunk in period_chunks]
    restored = LongRun.from_rows(dict(ChainMap(*(state for state, _ in reversed(periods)))), chunks)
    for kept in (live, once):
        assert {
            strategy: {cell: cell_figures.tally.view() for cell, cell_figures in cells.items()}
            for strategy, cells in restored.earlier.items()
        } == {
            strategy: {cell: cell_figures.tally.view() for cell, cell_figures in cells.items()}
            for strategy, cells in kept.earlier.items()
        }


def test_a_symbol_row_holds_every_share_tally_as_serialized_afresh() -> None:
    """A symbol's row is written again when it trades, its share tallies serialized again only when they changed:
    the last row written of each symbol holds every tally as serializing it now gives."""
    periods: list[tuple[dict[str, bytes], list[Any]]] = []
    live = period_by_period(TRADES, periods)
    written: dict[str, bytes] = {}
    for state, _ in periods:
        written.update(state)
    for (strategy, symbol), kept in live.symbols.items():
        row = orjson.loads(written[f"longrun\x1fsymbol\x1f{strategy}\x1f{symbol}"])
        assert row["shares"] == {name: tally.to_json() for name, tally in sorted(kept.shares.items())}
        assert list(row["shares"]) == sorted(kept.shares)
        assert list(row["evidence"].items()) == sorted(kept.evidence.items())


def test_a_strategy_row_lists_its_evidence_sorted_as_kept() -> None:
    """A strategy's row lists every (component, scope, session) of its evidence in order, scopes added since the
    last row included."""
    periods: list[tuple[dict[str, bytes], list[Any]]] = []
    live = period_by_period(TRADES, periods)
    written: dict[str, bytes] = {}
    for state, _ in periods:
        written.update(state)
    for name, kept in live.strategies.items():
        row = orjson.loads(written[f"longrun\x1fstrategy\x1f{name}"])
        assert row["evidence"] == sorted(
            [component, scope, session] for (component, scope), session in kept.evidence.items()
        )
        assert (row["trades"], row["first_session"], row["last_session"]) == (
            kept.trades,
            kept.first_session,
            kept.last_session,
        )


def test_an_earlier_sample_is_sorted_when_a_test_asks_for_it() -> None:
    """Outcomes settled into a cell wait unsorted until a drift test needs the cell's sample; the sample then holds
    every one of them, sorted, with the tie term of the whole sample."""
    longrun = LongRun()
    values = [0.5, -1.0, 0.5, 2.0]
    for session, pnl in enumerate(values):
        longrun.absorb([make_trade(f"close_{session}", pnl, {"options_flow": 1.0})], session)
    longrun.settle_earlier(len(values))
    cell = longrun.earlier_cells("equity")["options_flow"]
    assert cell.sample.count == 0
    assert sorted(cell.pending) == sorted(values)
    sample = cell.sorted_sample()
    assert sample.values.tolist() == sorted(values)
    assert sample.tie_term == 2**3 - 2
    assert cell.pending == []


def test_closed_outcomes_kept_as_symbols_trade_are_those_of_all_closed_trades() -> None:
    """What the execution section reads per symbol, brought up to date for the symbols that traded, is at every
    period (and after a restore from the rows) symbol_outcomes of every trade so far; partial closes stay out."""
    trades = [*TRADES[:40], replace(TRADES[40], key="close_partial", symbol="PART", is_partial=True), *TRADES[40:]]
    grouped = by_session(trades)
    longrun = LongRun()
    state: dict[str, bytes] = {}
    for session in range(LAST_SESSION + 1):
        longrun.absorb(grouped.get(session, []), session)
        longrun.through = session
        longrun.settle_earlier(session - RECENT_SESSIONS)
        state.update(longrun.rows()[0])
        so_far = [trade for trade in trades if session_of(trade.event_us) <= session]
        assert dict(longrun.closed_outcomes()) == symbol_outcomes(so_far)
    assert ("equity", "PART") in longrun.symbols
    assert ("equity", "PART") not in longrun.closed_outcomes()
    assert dict(LongRun.from_rows(state, []).closed_outcomes()) == symbol_outcomes(trades)


def test_no_committed_rows_is_a_fresh_start() -> None:
    """Before any job kept figures, there is nothing through any session."""
    longrun = LongRun.from_rows({}, [])
    assert (longrun.through, longrun.seq, longrun.strategies, longrun.symbols) == (-1, 0, {}, {})


@pytest.mark.parametrize(
    ("state", "chunks", "message"),
    [
        pytest.param({"longrun": b'{"version": 99}'}, [], r"version 99 is not one of \[1, 2, 3\]", id="newer-version"),
        pytest.param({"longrun": b"{not json"}, [], "damaged", id="not-json"),
        pytest.param(
            {"longrun": b'{"version": 1, "through": 3, "seq": 0, "earlier_through": 1, "next_chunk": {}}'},
            [("equity\x1foptions_flow", 0, b"\x00" * 8)],
            "have no tally",
            id="values-without-tally",
        ),
        pytest.param(
            {"longrun": b'{"version": 2, "through": 3, "seq": 0, "earlier_through": 1, "next_run": 1}'},
            [(PERIOD_VALUES, 0, pack_values({"equity\x1foptions_flow": [1.0]}))],
            "have no tally",
            id="period-values-without-tally",
        ),
        pytest.param(
            {"longrun": b'{"version": 2, "through": 3, "seq": 0, "earlier_through": 1, "next_run": 1}'},
            [(PERIOD_VALUES, 0, pack_values({"equity\x1foptions_flow": [1.0]})[:-8])],
            "holds 0 values",
            id="period-values-cut-short",
        ),
        pytest.param(
            {"longrun": b'{"version": 2, "through": 3, "seq": 0, "earlier_through": 1, "next_run": 1}'},
            [(PERIOD_VALUES, 0, b"\x05" + b"\x00" * 7 + b"{not")],
            "value row is damaged",
            id="period-values-not-json",
        ),
    ],
)
def test_damaged_rows_are_a_state_error(state: dict[str, bytes], chunks: list[Any], message: str) -> None:
    """Rows that do not make figures again stop the job with StateError instead of starting over silently."""
    with pytest.raises(StateError, match=message):
        LongRun.from_rows(state, chunks)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(b'["e",0,0]', id="tally-cut-short"),
        pytest.param(b'["e",0,0,0,"not parts"]', id="tally-without-parts"),
        pytest.param(b'["e",0,0,0,[],1]', id="tally-too-long"),
    ],
)
def test_a_damaged_header_entry_is_a_state_error(entry: bytes) -> None:
    """A value row's header entry is [cell, count] or [cell, count, wins, losses, [parts]]; anything else is a
    damaged row."""
    header = b"[" + entry + b"]"
    header += b" " * (-len(header) % 8)
    head = b'{"version": 3, "through": 3, "seq": 0, "earlier_through": 1, "next_run": 1}'
    with pytest.raises(StateError, match="value row is damaged"):
        LongRun.from_rows({"longrun": head}, [(PERIOD_VALUES, 0, len(header).to_bytes(8, "little") + header)])


def test_evidence_is_the_last_session_a_component_carried_a_trade_per_scope() -> None:
    """Strategy-wide, per regime and per ticker; a zero contribution is no evidence."""
    longrun = LongRun()
    longrun.absorb([make_trade("close_a", 1.0, {"options_flow": 1.0}, symbol="AMD", regime="mixed")], 3)
    longrun.absorb([make_trade("close_b", 1.0, {"options_flow": 2.0, "dark_pool": 0.0}, symbol="NVDA")], 5)
    longrun.absorb([make_trade("close_c", 1.0, {"options_flow": 1.0}, symbol="AMD", regime="risk_on")], 4)
    assert longrun.evidence() == {
        ("equity", "options_flow", GLOBAL_SCOPE): 5,
        ("equity", "options_flow", regime_scope("mixed")): 5,
        ("equity", "options_flow", regime_scope("risk_on")): 4,
        ("equity", "options_flow", f"{TICKER_SCOPE_PREFIX}AMD"): 4,
        ("equity", "options_flow", f"{TICKER_SCOPE_PREFIX}NVDA"): 5,
    }


def test_last_evidence_looks_up_what_evidence_holds() -> None:
    """The looked-up mapping holds the keys and sessions of evidence(), and nothing else: no session for a scope,
    component, symbol or strategy never seen, nor for a regime named like a ticker scope."""
    longrun = period_by_period(TRADES)
    longrun.absorb([make_trade("close_t", 1.0, {"options_flow": 1.0}, symbol="ZZ", regime="ticker:AMD")], 60)
    whole = longrun.evidence()
    looked_up = longrun.last_evidence()
    assert dict(looked_up) == whole
    assert len(looked_up) == len(whole)
    assert all(looked_up[key] == session for key, session in whole.items())
    assert regime_scope("ticker:AMD") != f"{TICKER_SCOPE_PREFIX}AMD"
    for missing in [
        ("equity", "options_flow", f"{TICKER_SCOPE_PREFIX}NOPE"),
        ("equity", "nothing", GLOBAL_SCOPE),
        ("nobody", "options_flow", GLOBAL_SCOPE),
        ("equity", "options_flow", "no_regime"),
        ("equity", "options_flow", "ticker:AMD:x"),
    ]:
        assert missing not in whole
        assert looked_up.get(missing) is None


def test_partial_closes_count_in_the_profile_but_not_as_closed_trades() -> None:
    """A symbol's closed trades (the execution section's) leave partial closes out; its profile weighs them."""
    longrun = LongRun()
    longrun.absorb([make_trade("close_a", 2.0, {"options_flow": 1.0})], 0)
    longrun.absorb([make_trade("scale_a", 4.0, {"options_flow": 1.0}, weight=0.5)], 0)
    amd = longrun.symbols["equity", "AMD"]
    assert (amd.closed, amd.closed_pnl_pct.value) == (1, 2.0)
    assert amd.profile.view()["trades"] == 2
    assert amd.profile.view()["attributed_pnl_pct"] == 4.0


@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), max_size=300))
def test_a_tally_taken_in_one_go_reads_as_one_added_to_outcome_by_outcome(outcomes: list[tuple[float, float]]) -> None:
    one_by_one = Tally()
    for pnl_pct, attributed in outcomes:
        one_by_one.add(pnl_pct, attributed)
    taken = Tally.of([pnl_pct for pnl_pct, _ in outcomes], [attributed for _, attributed in outcomes])
    assert taken.view() == one_by_one.view()


@given(st.lists(st.lists(st.tuples(st.floats(-50, 50), st.floats(-1e-300, 1e6)), max_size=40), max_size=30))
def test_a_tally_summed_run_by_run_reads_as_one_added_to_value_by_value(runs: list[list[tuple[float, float]]]) -> None:
    """add_summed (a run's exact sum as its few floats) reads as add_run (each value in turn): counts and sum."""
    by_value, summed = Tally(), Tally()
    for outcomes in runs:
        run = OutcomeRun()
        for pnl_pct, attributed in outcomes:
            run.values.append(attributed)
            run.counts[outcome_index(pnl_pct)] += 1
        by_value.add_run(run)
        summed.add_summed(run)
    assert (summed.trades, summed.wins, summed.losses) == (by_value.trades, by_value.wins, by_value.losses)
    assert summed.total.value == by_value.total.value
    assert summed.view() == by_value.view()


def test_a_session_taken_in_one_run_writes_the_rows_of_its_trades_taken_one_by_one() -> None:
    """absorb() adds a session's trades per symbol and cell in one go: every period's rows (the exact sums' parts
    included, as the store keeps them) are those of taking each trade in alone."""
    in_runs: list[tuple[dict[str, bytes], list[Any]]] = []
    period_by_period(TRADES, in_runs)
    one_by_one = LongRun()
    grouped = by_session(TRADES)
    for session in range(LAST_SESSION + 1):
        for trade in grouped.get(session, []):
            one_by_one.absorb([trade], session)
        one_by_one.through = session
        one_by_one.settle_earlier(session - RECENT_SESSIONS)
        assert one_by_one.rows() == in_runs[session]


def test_a_session_taken_in_twice_holds_the_outcomes_the_daily_report_reads() -> None:
    """A session's outcomes kept by the figures (its trades taken in, then a late one) are those the daily report
    computes from the trades themselves, and the report reads the same with either."""
    trades = [*DAY_TRADES, *TRADES[:5]]
    longrun = LongRun()
    longrun.absorb(trades[:4], 7)
    longrun.absorb(trades[4:], 7)
    kept, computed = longrun.recent[7], SessionOutcomes.of(trades)
    assert kept.trades == computed.trades
    assert {
        strategy: {cell: (run.values, run.counts) for cell, run in cells.items()}
        for strategy, cells in kept.cells.items()
    } == {
        strategy: {cell: (run.values, run.counts) for cell, run in cells.items()}
        for strategy, cells in computed.cells.items()
    }
    assert daily_report(DAY, trades, (), (), outcomes=kept) == daily_report(DAY, trades, (), ())


@given(pnl_values, component_sets)
def test_is_attributed_says_whether_attribution_splits_anything(pnl: float, components: dict[str, float]) -> None:
    trade = make_trade("close_x", pnl, components)
    assert is_attributed(trade) == bool(attribute_pnl(trade))


@given(st.lists(st.tuples(pnl_values, pnl_values), max_size=600), st.integers(0, 600))
def test_two_tallies_merged_read_as_their_outcomes_tallied_at_once(
    outcomes: list[tuple[float, float]], split: int
) -> None:
    """A long-run cell's tally merged with a recent one (each folded to a few floats on the way) reads as all their
    outcomes tallied in one go, and each reads as before."""
    pnls = [pnl for pnl, _ in outcomes]
    values = [value for _, value in outcomes]
    earlier, recent = Tally(), Tally()
    for pnl, value in outcomes[:split]:
        earlier.add(pnl, value)
    for pnl, value in outcomes[split:]:
        recent.add(pnl, value)
    views = (earlier.view(), recent.view())
    assert earlier.merged(recent).view() == Tally.of(pnls, values).view()
    assert (earlier.view(), recent.view()) == views


@given(st.lists(st.lists(st.tuples(pnl_values, pnl_values), max_size=300), min_size=1, max_size=4))
def test_a_cell_over_sessions_reads_as_its_outcomes_tallied_at_once(sessions: list[list[tuple[float, float]]]) -> None:
    """Each session's run is summed once and kept; a run that grows after it was summed (a late trade) is summed
    again; the cell's tally and values over the sessions are those of all its outcomes taken in one go."""
    runs: list[OutcomeRun] = []
    for outcomes in sessions:
        run = OutcomeRun()
        for pnl, attributed in outcomes[: len(outcomes) // 2]:
            run.values.append(attributed)
            run.counts[0 if pnl > 0.0 else 1 if pnl < 0.0 else 2] += 1
        run.exact_sum()
        for pnl, attributed in outcomes[len(outcomes) // 2 :]:
            run.values.append(attributed)
            run.counts[0 if pnl > 0.0 else 1 if pnl < 0.0 else 2] += 1
        runs.append(run)
    everything = [outcome for outcomes in sessions for outcome in outcomes]
    cell = CellOutcomes.of(runs)
    once = Tally.of([pnl for pnl, _ in everything], [attributed for _, attributed in everything])
    assert cell.tally.view() == once.view()
    assert cell.tally.total.value == math.fsum(attributed for _, attributed in everything)
    assert cell.values() == [attributed for _, attributed in everything]
