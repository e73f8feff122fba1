"""Tests for learnd.simulate: a deterministic, parseable bot home whose planted edges are really there."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from learnd.config import SourceKind
from learnd.devtools.simulate import (
    LOG_FILES,
    REGIMES,
    UNKNOWN_COMPONENT_KEY,
    Drift,
    RegimeEdge,
    SimulationTruth,
    simulate,
)
from learnd.errors import RecordError
from learnd.learning.stats import spearman
from learnd.records.components import ENTRY_COMPONENTS
from learnd.records.parse import (
    ExitOutcome,
    Ignored,
    OrderRecord,
    SignalRecord,
    TradeEntry,
    TradeOutcome,
    parse_event_us,
    parse_record,
)
from learnd.sessions.exchange import ExchangeCalendar

FILE_KINDS: dict[str, SourceKind] = {
    "attribution": "attribution",
    "exit": "exit",
    "signals": "signals",
    "orders": "orders",
}


@dataclass
class ParsedLog:
    """One log file read back: records by line kind, garbage and repeated lines counted."""

    counts: Counter[str] = field(default_factory=Counter)
    records: list[Any] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


def read_log(path: Path, kind: SourceKind) -> ParsedLog:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n")
    parsed = ParsedLog()
    previous = b""
    for line in data.splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            parsed.counts["garbage"] += 1
            continue
        if not isinstance(row, dict):
            parsed.counts["garbage"] += 1
            continue
        if line == previous:
            parsed.counts["duplicate"] += 1
            continue
        previous = line
        record = parse_record(kind, row)
        parsed.counts[line_kind(record)] += 1
        parsed.records.append(record)
        parsed.rows.append(row)
    return parsed


def line_kind(record: object) -> str:
    match record:
        case TradeEntry():
            return "open"
        case TradeOutcome(is_partial=True):
            return "scale"
        case TradeOutcome():
            return "close"
        case ExitOutcome(weight=1.0):
            return "outcome"
        case ExitOutcome():
            return "scale_outcome"
        case Ignored():
            return "other"
        case SignalRecord():
            return "signal"
        case OrderRecord(action=None):
            return "entry"
        case OrderRecord():
            return "action"
    raise AssertionError(f"unexpected record {record!r}")


def read_home(home: Path) -> dict[str, ParsedLog]:
    return {name: read_log(home / "logs" / f"{name}.jsonl", FILE_KINDS[name]) for name in LOG_FILES}


def closes(home: Path, strategy: str) -> list[TradeOutcome]:
    return [
        record
        for record in read_log(home / "logs" / "attribution.jsonl", "attribution").records
        if isinstance(record, TradeOutcome) and not record.is_partial and record.strategy == strategy
    ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationTruth]:
    home = tmp_path_factory.mktemp("demo")
    return home, simulate(home, 800, seed=3)


@pytest.fixture(scope="module")
def parsed(demo: tuple[Path, SimulationTruth]) -> dict[str, ParsedLog]:
    return read_home(demo[0])


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationTruth]:
    home = tmp_path_factory.mktemp("large")
    return home, simulate(home, 3000, seed=7)


@pytest.fixture(scope="module")
def large_shuffled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationTruth]:
    home = tmp_path_factory.mktemp("shuffled")
    return home, simulate(home, 3000, seed=7, shuffle_outcomes=True)


def test_same_seed_writes_identical_bytes(tmp_path: Path) -> None:
    simulate(tmp_path / "a", 150, seed=11)
    simulate(tmp_path / "b", 150, seed=11)
    simulate(tmp_path / "c", 150, seed=12)
    names = [f"logs/{name}.jsonl" for name in LOG_FILES] + ["truth.json"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "logs/attribution.jsonl").read_bytes() != (
        tmp_path / "c" / "logs/attribution.jsonl"
    ).read_bytes()


def test_every_line_parses_and_counts_match_truth(
    demo: tuple[Path, SimulationTruth], parsed: dict[str, ParsedLog]
) -> None:
    """Apart from the planted garbage and duplicates, every line is a record of the expected kind."""
    _, truth = demo
    for name in LOG_FILES:
        expected = {kind: count for kind, count in truth.line_counts[name].items() if kind != "total" and count}
        assert dict(parsed[name].counts) == expected, name
        assert truth.garbage_lines[name] == truth.line_counts[name]["garbage"] >= 4
    assert truth.line_counts["attribution"]["close"] == truth.trades
    assert truth.line_counts["exit"]["outcome"] == truth.trades
    assert truth.line_counts["attribution"]["scale"] == truth.line_counts["exit"]["scale_outcome"] > 0
    assert truth.duplicate_rows == parsed["attribution"].counts["duplicate"] == 2


def test_garbage_lines_are_not_records(demo: tuple[Path, SimulationTruth]) -> None:
    """Each planted garbage line fails JSON decoding or is not an object; none is a blank line."""
    data = (demo[0] / "logs" / "signals.jsonl").read_bytes()
    lines = data.splitlines()
    assert all(lines)
    undecodable = 0
    for line in lines:
        try:
            line.decode()
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable == 1


def test_files_are_sorted_by_event_time(parsed: dict[str, ParsedLog]) -> None:
    for name in LOG_FILES:
        stamps = [parse_event_us(row["ts"]) for row in parsed[name].rows]
        assert stamps == sorted(stamps), name


def test_truth_json_is_the_returned_truth_with_sorted_keys(demo: tuple[Path, SimulationTruth]) -> None:
    home, truth = demo
    written = (home / "truth.json").read_bytes()
    assert orjson.loads(written) == truth.to_dict()
    assert written == orjson.dumps(truth.to_dict(), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
    assert truth.noise_std_pct > truth.signal_std_pct
    assert 0.0 < truth.static_ic < truth.best_ic < 1.0


def test_trades_happen_inside_sessions_and_honour_early_closes(tmp_path: Path) -> None:
    """Entries and exits fall between a session's open and close; the day after Thanksgiving closes at 13:00 ET."""
    simulate(tmp_path, 500, seed=5, start=date(2026, 11, 20))
    calendar = ExchangeCalendar.load("XNYS", 2026, 2027)
    outcomes = [r for r in read_log(tmp_path / "logs/attribution.jsonl", "attribution").records if is_close_outcome(r)]
    early_close_exits = 0
    for outcome in outcomes:
        assert outcome.entry_us is not None and outcome.hold_minutes is not None
        index = calendar.session_index(outcome.entry_us)
        assert calendar.opens_us[index] < outcome.entry_us < outcome.event_us < calendar.closes_us[index]
        assert 5.0 <= outcome.hold_minutes <= 240.0
        if calendar.sessions[index] == date(2026, 11, 27):
            early_close_exits += 1
            assert outcome.event_us < to_us(datetime(2026, 11, 27, 18, 0, tzinfo=UTC))
    assert early_close_exits > 0


def is_close_outcome(record: object) -> bool:
    return isinstance(record, TradeOutcome) and not record.is_partial


def to_us(moment: datetime) -> int:
    return parse_event_us(moment.isoformat())


def test_rows_carry_the_contract_shapes(parsed: dict[str, ParsedLog], demo: tuple[Path, SimulationTruth]) -> None:
    """Entry scores sum the contributions, scale rows scale pnl, a few rows use legacy, unknown or no strategy keys."""
    _, truth = demo
    attribution = parsed["attribution"]
    entries = [r for r in attribution.records if isinstance(r, TradeEntry)]
    for entry in entries:
        assert entry.entry_score == pytest.approx(sum(value for _, value in entry.components), abs=1e-3)
        assert dict(entry.components).get("toxicity_penalty", 0.0) <= 0.0
    assert sum(1 for e in entries if e.unknown_components == (UNKNOWN_COMPONENT_KEY,)) == truth.unknown_key_trades
    legacy_rows = [
        i for i, row in enumerate(r for r in attribution.rows if is_open(r)) if "darkpool" in components(row)
    ]
    assert legacy_rows and max(legacy_rows) < truth.legacy_key_trades
    for row in attribution.rows:
        if row["trade_id"].startswith("scale_"):
            context = row["context"]
            assert row["pnl_pct"] == pytest.approx(context["pnl_pct"] * context["fraction"], abs=1e-4)
    strategies = Counter(row.get("strategy_id", "missing") for row in attribution.rows)
    assert strategies["missing"] > 0 and strategies["momentum"] > 0 and strategies["equity"] > strategies["momentum"]
    assert {r.regime for r in entries} == {regime.casefold() for regime in REGIMES}
    start_ts_types = {type(row["cluster"]["start_ts"]) for row in parsed["signals"].rows}
    assert start_ts_types == {int, str}


def is_open(row: dict[str, Any]) -> bool:
    return str(row["trade_id"]).startswith("open_")


def components(row: dict[str, Any]) -> dict[str, float]:
    result: dict[str, float] = row["context"]["components"]
    return result


def test_without_garbage_every_line_is_a_record(tmp_path: Path) -> None:
    truth = simulate(tmp_path, 120, seed=2, garbage=False)
    assert truth.duplicate_rows == 0 and set(truth.garbage_lines.values()) == {0}
    for name in LOG_FILES:
        for line in (tmp_path / "logs" / f"{name}.jsonl").read_bytes().splitlines():
            try:
                parse_record(FILE_KINDS[name], orjson.loads(line))
            except RecordError as error:  # pragma: no cover - the assertion below reports it
                raise AssertionError(f"{name}: {line[:120]!r}") from error


def test_no_trades_still_writes_a_home(tmp_path: Path) -> None:
    truth = simulate(tmp_path, 0, seed=1)
    assert truth.trades == 0 and truth.sessions == 0
    assert (tmp_path / "logs" / "attribution.jsonl").exists()


def least_squares_multipliers(outcomes: list[TradeOutcome], pnl_scale: float) -> np.ndarray[Any, np.dtype[np.float64]]:
    """OLS of pnl on the contributions (plus intercept), divided by the pnl scale: estimates of the multipliers."""
    x = np.array([[dict(o.components).get(name, 0.0) for name in ENTRY_COMPONENTS] for o in outcomes])
    y = np.array([o.pnl_pct for o in outcomes])
    design = np.column_stack([np.ones(len(y)), x])
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0][1:]
    return np.asarray(coefficients / pnl_scale, dtype=np.float64)


def test_planted_multipliers_are_recoverable_by_least_squares(large: tuple[Path, SimulationTruth]) -> None:
    home, truth = large
    outcomes = closes(home, "equity")
    estimated = least_squares_multipliers(outcomes, truth.pnl_scale)
    planted = np.array([truth.multipliers["equity"]["low_vol_uptrend"][name] for name in ENTRY_COMPONENTS])
    assert spearman(estimated, planted) > 0.6
    flow = ENTRY_COMPONENTS.index("options_flow")
    assert estimated[flow] == pytest.approx(planted[flow], abs=0.25)


def test_regime_edge_shows_in_its_regime_only(large: tuple[Path, SimulationTruth]) -> None:
    home, truth = large
    edge = truth.regime_edge
    assert edge is not None
    outcomes = closes(home, edge.strategy)
    inside = least_squares_multipliers([o for o in outcomes if o.regime == edge.regime.casefold()], truth.pnl_scale)
    outside = least_squares_multipliers([o for o in outcomes if o.regime != edge.regime.casefold()], truth.pnl_scale)
    j = ENTRY_COMPONENTS.index(edge.component)
    assert inside[j] > outside[j] + 0.5
    assert outside[j] == pytest.approx(edge.elsewhere, abs=0.3)


def test_exit_effects_move_mean_pnl(large: tuple[Path, SimulationTruth]) -> None:
    home, truth = large
    outcomes = closes(home, "equity") + closes(home, "momentum")
    by_family: dict[str, list[float]] = {"signal_decay": [], "drawdown": [], "other": []}
    for outcome in outcomes:
        reason = outcome.close_reason or ""
        family = next((token for token in ("signal_decay", "drawdown") if token in reason), "other")
        by_family[family].append(outcome.pnl_pct)
    other = float(np.mean(by_family["other"]))
    for token, effect in truth.exit_effects_pct.items():
        assert float(np.mean(by_family[token])) - other == pytest.approx(effect, abs=0.2)


def test_pnl_stays_mostly_within_five_percent(large: tuple[Path, SimulationTruth]) -> None:
    outcomes = closes(large[0], "equity")
    inside = sum(1 for o in outcomes if abs(o.pnl_pct) <= 5.0)
    assert inside / len(outcomes) > 0.99


def test_shuffled_outcomes_carry_no_edge(
    large: tuple[Path, SimulationTruth], large_shuffled: tuple[Path, SimulationTruth]
) -> None:
    """Shuffling keeps the pnl values but cuts them loose from the components."""
    home, truth = large_shuffled
    outcomes = closes(home, "equity")
    estimated = least_squares_multipliers(outcomes, truth.pnl_scale)
    planted = np.array([truth.multipliers["equity"]["low_vol_uptrend"][name] for name in ENTRY_COMPONENTS])
    assert abs(spearman(estimated, planted)) < 0.4
    assert abs(truth.best_ic) < 0.05 and abs(truth.static_ic) < 0.05
    original = sorted(o.pnl_pct for o in closes(large[0], "equity") + closes(large[0], "momentum"))
    assert sorted(o.pnl_pct for o in outcomes + closes(home, "momentum")) == original


EDGES = {"dark_pool": 1.9, "insider": 0.5}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationTruth, Path, SimulationTruth]:
    """The same 3000 trades twice: planted `edges` with dark_pool's flipping at trade 1500, and without the flip."""
    flip = tmp_path_factory.mktemp("flip")
    stay = tmp_path_factory.mktemp("stay")
    drift = Drift(component="dark_pool", at_trade=1500, multiplier=-1.9)
    return (
        flip,
        simulate(flip, 3000, 7, edges=EDGES, drift=drift, regime_edge=None),
        stay,
        simulate(stay, 3000, 7, edges=EDGES, regime_edge=None),
    )


def test_edges_plant_their_multipliers_and_leave_the_rest_average(
    scenario: tuple[Path, SimulationTruth, Path, SimulationTruth],
) -> None:
    """With `edges`, every other component's truth is 1 in every regime and strategy; least squares agrees."""
    _, _, home, truth = scenario
    for strategy in truth.multipliers.values():
        for regime in strategy.values():
            assert regime == {name: EDGES.get(name, 1.0) for name in ENTRY_COMPONENTS}
    estimated = least_squares_multipliers(closes(home, "equity"), truth.pnl_scale)
    assert estimated[ENTRY_COMPONENTS.index("dark_pool")] == pytest.approx(1.9, abs=0.4)
    average = [estimated[j] for j, name in enumerate(ENTRY_COMPONENTS) if name not in EDGES and name != "options_flow"]
    assert float(np.median(average)) == pytest.approx(1.0, abs=0.25)


def test_a_drift_changes_one_components_edge_from_its_trade_on(
    scenario: tuple[Path, SimulationTruth, Path, SimulationTruth],
) -> None:
    """After the drift's trade, dark_pool's edge is flipped and the others are as planted: the outcomes are those of
    the home without the drift, except for dark_pool's term; truth.json says when and what."""
    flip, truth, stay, _ = scenario
    assert truth.drift is not None
    assert truth.drift["after"] == -1.9 and truth.drift["before"] == 1.9 and truth.drift["at_trade"] == 1500
    assert truth.multipliers["equity"]["mixed"]["dark_pool"] == -1.9
    flipped, steady = closes(flip, "equity"), closes(stay, "equity")
    assert [trade.components for trade in flipped] == [trade.components for trade in steady]
    # Equity holds about 90 % of the trades: the first 1300 of its closes all come before trade 1500.
    assert [trade.pnl_pct for trade in flipped[:1300]] == [trade.pnl_pct for trade in steady[:1300]]
    j = ENTRY_COMPONENTS.index("dark_pool")
    early = least_squares_multipliers(flipped[:1200], truth.pnl_scale)
    late = least_squares_multipliers(flipped[1500:], truth.pnl_scale)
    assert early[j] == pytest.approx(1.9, abs=0.5) and late[j] == pytest.approx(-1.9, abs=0.5)
    assert (flip / "truth.json").read_bytes() != (stay / "truth.json").read_bytes()


def test_a_regime_edge_can_start_late(tmp_path: Path) -> None:
    """A RegimeEdge with from_trade plants its multiplier in its regime from that trade on only."""
    edge = RegimeEdge("equity", "greeks_gamma", "high_vol_neg_gamma", multiplier=8.0, elsewhere=1.0, from_trade=1500)
    truth = simulate(tmp_path, 3000, 3, edges=EDGES, regime_edge=edge)
    assert truth.to_dict()["regime_edge"]["from_trade"] == 1500
    inside = [trade for trade in closes(tmp_path, "equity") if trade.regime == "high_vol_neg_gamma"]
    j = ENTRY_COMPONENTS.index("greeks_gamma")
    half = len(inside) // 2
    before = least_squares_multipliers(inside[:half], truth.pnl_scale)[j]
    after = least_squares_multipliers(inside[half:], truth.pnl_scale)[j]
    assert after > before + 1.5 and after > 3.0


def test_raw_scale_logs_a_component_raw_while_entry_score_sums_contributions(tmp_path: Path) -> None:
    """raw_scale: market_tide is logged as its signal times the factor (mean about 11 for 15), far off the others'
    scale; entry_score still sums the true contributions, so it no longer equals the sum of the logged values."""
    truth = simulate(tmp_path, 400, 5, raw_scale={"market_tide": 15.0})
    assert truth.to_dict()["raw_scale"] == {"market_tide": 15.0}
    rows = read_log(tmp_path / "logs" / "attribution.jsonl", "attribution").records
    outcomes = [row for row in rows if isinstance(row, TradeOutcome) and not row.is_partial]
    tide = [
        dict(outcome.components)["market_tide"] for outcome in outcomes if "market_tide" in dict(outcome.components)
    ]
    others = [value for outcome in outcomes for name, value in outcome.components if name != "market_tide"]
    assert 8.0 <= float(np.mean(tide)) <= 15.0 and float(np.mean(np.abs(others))) < 1.0
    for outcome in outcomes:
        contributions = dict(outcome.components)
        assert outcome.entry_score is not None
        if "market_tide" in contributions:
            true_tide = contributions["market_tide"] * 0.4 / 15.0
            expected = sum(value for name, value in contributions.items() if name != "market_tide") + true_tide
            assert outcome.entry_score == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize(
    "options",
    [
        {"edges": {"no_such_component": 2.0}},
        {"drift": Drift("dark_pool", 5000, -1.0)},
        {"drift": Drift("dark_pool", 10, -1.0)},  # dark_pool carries the default regime edge
        {"raw_scale": {"market_tide": 0.0}},
        {"regime_edge": RegimeEdge("equity", "dark_pool", "nowhere", 2.0, 1.0)},
    ],
)
def test_scenario_options_are_checked(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        simulate(tmp_path, 100, 1, **options)
