"""The jobs' long-run figures, kept up to date as periods advance instead of recomputed from the whole ledger.

`LongRun` holds, through the last session a job covered: per strategy and per symbol what the weekly report and
the execution section need of all history (counts, exact sums, the last evidence of each component), the recent
window's attributed outcomes per session and cell (`SessionOutcomes`, which the daily report of the session reads
too), and, for the weekly drift test, every component's earlier outcomes as a sorted sample with exact tallies.
Pure: trades in, figures and rows out; the shell reads the ledger and persists the rows.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, groupby
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import orjson

from learnd.config import RECENT_REPORT_SESSIONS
from learnd.errors import StateError
from learnd.learning.entry_model import regime_scope
from learnd.learning.execution import SymbolOutcomes
from learnd.learning.multipliers import GLOBAL_SCOPE, TICKER_SCOPE_PREFIX
from learnd.learning.stats import ExactSum, FloatArray, SortedSample
from learnd.records.parse import TradeOutcome

# Version 3: a period's value row carries, beside each cell's values, the tally they add (counts and exact sum), and
# no row holds the earlier tallies (version 2 rewrote them all, one row, every period that moved a session: 37 KB at
# the end of a year). Version 2: the earlier values a period moved are one value row for all their cells (version 1
# wrote a row per cell and numbered each cell's rows in the head). An older store's rows are read as they are: its
# earlier tallies' row holds the tallies of every value row it wrote.
STATE_VERSION: Final = 3
_READABLE_VERSIONS: Final = frozenset({1, 2, STATE_VERSION})
# The cell name of the value rows that hold a period's values of many cells (numbered in period order); a version 1
# store also holds rows of one cell each, under the cell's name (never empty: it starts with the strategy).
PERIOD_VALUES: Final = ""
# The weekly report's recent window: the last this many sessions; earlier is everything before.
RECENT_SESSIONS: Final = RECENT_REPORT_SESSIONS
_SEPARATOR: Final = "\x1f"
_ROUND_DIGITS: Final = 6
_SMALLEST_NORMAL: Final = sys.float_info.min

# A drift-test cell: a component strategy-wide, or (component, regime).
Cell = str | tuple[str, str]
# A trade's attributed P&L: (component, share), sorted by component.
Shares = tuple[tuple[str, float], ...]


def attribute_pnl(trade: TradeOutcome) -> Shares:
    """The trade's weighted P&L (pnl_pct x weight) split across its components in proportion to |contribution|.

    Sorted by component; empty when no component contributed (the P&L is then unattributed). The shares sum to
    the weighted P&L up to float rounding.
    """
    components = trade.components
    sizes = [abs(contribution) for _, contribution in components]
    if 0.0 in sizes:
        components = tuple((name, size) for (name, _), size in zip(components, sizes, strict=True) if size != 0.0)
        sizes = [size for _, size in components]
    total = math.fsum(sizes)
    if total <= 0.0:
        return ()
    weighted = trade.pnl_pct * trade.weight
    # weighted * size / total; a product too small for a normal float (a subnormal contribution) would lose all
    # precision before the division, so it is taken as weighted * (size / total) instead. The product grows with
    # the size, so when the smallest one's is normal, all are.
    if weighted == 0.0 or abs(weighted * min(sizes)) >= _SMALLEST_NORMAL:
        shares = [(name, weighted * size / total) for (name, _), size in zip(components, sizes, strict=True)]
    else:
        shares = [
            (name, weighted * size / total if abs(weighted * size) >= _SMALLEST_NORMAL else weighted * (size / total))
            for (name, _), size in zip(components, sizes, strict=True)
        ]
    shares.sort()
    return tuple(shares)


def session_runs(
    trades: Iterable[TradeOutcome], session_of: Callable[[int], int]
) -> Iterator[tuple[int, list[TradeOutcome]]]:
    """The trades in runs of one session each (session, trades), in the order given: what LongRun.absorb takes."""
    for session, run in groupby(trades, key=lambda trade: session_of(trade.event_us)):
        yield session, list(run)


def is_attributed(trade: TradeOutcome) -> bool:
    """Whether attribute_pnl(trade) splits anything (some component contributed), without splitting it."""
    return any(contribution != 0.0 for _, contribution in trade.components)


@dataclass(slots=True)
class Tally:
    """Outcomes of one cell: counts, and the attributed P&L summed exactly (the result does not depend on the
    order the outcomes came in, nor on how many periods they were spread over)."""

    trades: int = 0
    wins: int = 0
    losses: int = 0
    total: ExactSum = field(default_factory=ExactSum)

    def add(self, pnl_pct: float, attributed: float) -> None:
        self.trades += 1
        if pnl_pct > 0.0:
            self.wins += 1
        elif pnl_pct < 0.0:
            self.losses += 1
        self.total.add(attributed)

    def add_run(self, run: OutcomeRun) -> None:
        """add() each outcome of `run` in turn, in one go."""
        self.trades += len(run.values)
        self.wins += run.counts[0]
        self.losses += run.counts[1]
        self.total.add_all(run.values)

    def add_summed(self, run: OutcomeRun) -> None:
        """add_run(run) for a tally that is only read (its exact sum's value, never its parts): the run's exact sum
        goes in as the few floats the run keeps it as (OutcomeRun.exact_sum), not value by value."""
        self.trades += len(run.values)
        self.wins += run.counts[0]
        self.losses += run.counts[1]
        self.total.add_all(run.exact_sum())

    @classmethod
    def of(cls, pnls: Sequence[float], attributed: list[float]) -> Tally:
        """The tally of outcomes (pnls[i], attributed[i]), taken in one go."""
        return cls(
            len(attributed),
            len([pnl for pnl in pnls if pnl > 0.0]),
            len([pnl for pnl in pnls if pnl < 0.0]),
            ExactSum(attributed),
        )

    def merged(self, other: Tally) -> Tally:
        """Both tallies as one, to read: its exact sum holds the two's as a few floats each (to_floats, which
        folds each in place: a long-run cell's sum holds up to 256 parts, and copying and folding them with the
        recent ones cost more than the view made of them)."""
        total = ExactSum([*self.total.to_floats(), *other.total.to_floats()])
        return Tally(self.trades + other.trades, self.wins + other.wins, self.losses + other.losses, total)

    def view(self, pnl_key: str = "attributed_pnl_pct") -> dict[str, Any]:
        """Counts, win rate, the sum (as `pnl_key`) and the mean, rounded for a report."""
        total = self.total.value
        return {
            "trades": self.trades,
            "wins": self.wins,
            "losses": self.losses,
            "win_rate": _ratio(self.wins, self.trades),
            pnl_key: _round(total),
            f"mean_{pnl_key}": _ratio(total, self.trades),
        }

    def to_json(self) -> list[Any]:
        return [self.trades, self.wins, self.losses, self.total.to_floats()]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> Tally:
        return cls(int(data[0]), int(data[1]), int(data[2]), ExactSum(data[3]))


@dataclass(slots=True)
class EarlierCell:
    """A drift-test cell's outcomes before the recent window: tallies and the attributed values, sorted (`sample`)
    but for those taken in since a test last needed them (`pending`): most cells are never tested, or seldom."""

    tally: Tally = field(default_factory=Tally)
    sample: SortedSample = field(default_factory=SortedSample)
    pending: list[float] = field(default_factory=list)
    # The weekly report's view of the cell when the recent window holds none of it, made once per tally (reports
    # share it and never change it); dropped when outcomes move in.
    view_alone: dict[str, Any] | None = None

    def sorted_sample(self) -> SortedSample:
        """Every attributed value, sorted (the pending ones merged in now)."""
        if self.pending:
            self.sample.add(self.pending)
            self.pending = []
        return self.sample


class OutcomeRun:
    """Outcomes taken in one after another (a cell's in one session, a symbol's in one run of trades): their
    attributed values in that order, and how many were wins, losses and neither (by each outcome's P&L)."""

    __slots__ = ("_sum", "counts", "values")

    def __init__(self) -> None:
        self.values: list[float] = []
        self.counts = [0, 0, 0]
        # The exact sum of the first this many values, as a few floats (values are only ever appended).
        self._sum: tuple[int, list[float]] = (0, [])

    def exact_sum(self) -> list[float]:
        """The values' exact sum as a few floats (ExactSum.to_floats), kept until more values come: a session's
        cell is summed once for its daily report and the weekly reports whose recent window holds it."""
        summed, parts = self._sum
        if summed != len(self.values):
            parts = ExactSum(self.values).to_floats()
            self._sum = (len(self.values), parts)
        return parts

    def tally(self) -> Tally:
        """The outcomes as a tally."""
        return Tally(len(self.values), self.counts[0], self.counts[1], ExactSum(self.exact_sum()))

    def extend(self, later: OutcomeRun) -> None:
        """Take in outcomes that came after these."""
        self.values.extend(later.values)
        for index, count in enumerate(later.counts):
            self.counts[index] += count


def outcome_index(pnl_pct: float) -> int:
    """Where an outcome counts in OutcomeRun.counts: 0 a win (pnl_pct > 0), 1 a loss (< 0), 2 neither."""
    return 0 if pnl_pct > 0.0 else 1 if pnl_pct < 0.0 else 2


@dataclass(frozen=True, slots=True)
class CellOutcomes:
    """A cell's outcomes over several sessions (`runs`, one per session in session order) and their tally."""

    tally: Tally
    runs: tuple[OutcomeRun, ...]

    @classmethod
    def of(cls, runs: Sequence[OutcomeRun]) -> CellOutcomes:
        """The runs' outcomes; the tally's exact sum holds each run's exact sum as it is (any floats whose exact sum
        is the total will do: this tally is read, never kept)."""
        trades = wins = losses = 0
        parts: list[float] = []
        for run in runs:
            trades += len(run.values)
            wins += run.counts[0]
            losses += run.counts[1]
            parts += run.exact_sum()
        return cls(Tally(trades, wins, losses, ExactSum(parts)), tuple(runs))

    def values(self) -> list[float]:
        """The attributed values, in session order (a list: the drift test sorts a few dozen in Python)."""
        values: list[float] = []
        for run in self.runs:
            values += run.values
        return values


class SessionOutcomes:
    """One session's attributed trades as the reports read them: per strategy, how many there were, and the
    outcomes of each cell they carried (a component's, strategy-wide and in the trade's regime)."""

    __slots__ = ("cells", "trades")

    def __init__(self) -> None:
        self.trades: dict[str, int] = {}
        self.cells: dict[str, dict[Cell, OutcomeRun]] = {}

    @classmethod
    def of(cls, trades: Iterable[TradeOutcome]) -> SessionOutcomes:
        """The outcomes of `trades` (attributed here)."""
        outcomes = cls()
        for trade in trades:
            outcomes.add(trade, attribute_pnl(trade))
        return outcomes

    def add(self, trade: TradeOutcome, shares: Shares) -> None:
        """Take in one trade, its P&L split as `shares`."""
        self.add_shares(trade.strategy, trade.regime, outcome_index(trade.pnl_pct), shares)

    def add_shares(self, strategy: str, regime: str, kind: int, shares: Shares) -> None:
        """add() of a trade of `strategy` in `regime` whose outcome counts at `kind` (outcome_index)."""
        self.trades[strategy] = self.trades.get(strategy, 0) + 1
        cells = self.cells.get(strategy)
        if cells is None:
            cells = self.cells[strategy] = {}
        for name, share in shares:
            cell = cells.get(name)
            if cell is None:
                cell = cells[name] = OutcomeRun()
            cell.values.append(share)
            cell.counts[kind] += 1
            by_regime = (name, regime)
            cell = cells.get(by_regime)
            if cell is None:
                cell = cells[by_regime] = OutcomeRun()
            cell.values.append(share)
            cell.counts[kind] += 1

    def extend(self, later: SessionOutcomes) -> None:
        """Take in the outcomes of trades that came after these."""
        for strategy, count in later.trades.items():
            self.trades[strategy] = self.trades.get(strategy, 0) + count
        for strategy, later_cells in later.cells.items():
            cells = self.cells.setdefault(strategy, {})
            for name, later_cell in later_cells.items():
                cell = cells.get(name)
                if cell is None:
                    cells[name] = later_cell
                else:
                    cell.extend(later_cell)


class _SymbolRun:
    """What a run of trades adds to one symbol's figures, collected to be added in one go (in the same order)."""

    __slots__ = ("closed_pnl_pct", "closed_pnl_usd", "last_event_us", "profile", "shares")

    def __init__(self) -> None:
        self.closed_pnl_pct: list[float] = []
        self.closed_pnl_usd: list[float] = []
        self.profile = OutcomeRun()
        self.last_event_us = -1
        self.shares: dict[str, OutcomeRun] = {}

    def add(self, trade: TradeOutcome, shares: Shares, kind: int) -> None:
        """Take in one trade, its P&L split as `shares`, its outcome counting at `kind` (outcome_index)."""
        pnl = trade.pnl_pct
        if not trade.is_partial:
            self.closed_pnl_pct.append(pnl)
            self.closed_pnl_usd.append(trade.pnl_usd)
        profile = self.profile
        profile.values.append(pnl * trade.weight)
        profile.counts[kind] += 1
        self.last_event_us = max(self.last_event_us, trade.event_us)
        runs = self.shares
        for name, share in shares:
            found = runs.get(name)
            if found is None:
                found = runs[name] = OutcomeRun()
            found.values.append(share)
            found.counts[kind] += 1


@dataclass(slots=True)
class StrategyFigures:
    """All of a strategy's history: trades, first and last session, and the last session each component carried
    a trade strategy-wide and in each regime scope."""

    trades: int = 0
    first_session: int = -1
    last_session: int = -1
    evidence: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(slots=True)
class SymbolFigures:
    """All of a (strategy, symbol)'s history: closed trades for the execution section, the ticker profile, and the
    last session each component carried a trade of the symbol."""

    closed: int = 0
    closed_pnl_pct: ExactSum = field(default_factory=ExactSum)
    closed_pnl_usd: ExactSum = field(default_factory=ExactSum)
    profile: Tally = field(default_factory=Tally)
    last_event_us: int = -1
    shares: dict[str, Tally] = field(default_factory=dict)
    evidence: dict[str, int] = field(default_factory=dict)


class LongRun:
    """The long-run figures through session `through` (every trade of a session up to it, and every ledger row
    inserted up to `seq`). Recent outcomes are kept per session above `earlier_through`; the drift test's earlier
    samples hold every outcome at or below it."""

    def __init__(self) -> None:
        self.through = -1
        self.seq = 0
        self.earlier_through = -1
        self.strategies: dict[str, StrategyFigures] = {}
        self.symbols: dict[tuple[str, str], SymbolFigures] = {}
        self.recent: dict[int, SessionOutcomes] = {}
        self.earlier: dict[str, dict[Cell, EarlierCell]] = {}
        # The weekly report's view of each (strategy, symbol)'s figures, made once until the symbol takes in trades
        # (reports share them and never change them).
        self.ticker_views: dict[tuple[str, str], dict[str, Any]] = {}
        # What the execution section reads of each symbol with closed trades, brought up to date when next asked
        # for the symbols whose closed trades changed since.
        self._closed: dict[tuple[str, str], SymbolOutcomes] = {}
        self._closed_stale: set[tuple[str, str]] = set()
        self._next_run = 0  # the number of the next value row
        # What changed since `rows()` last ran: those rows, and the new earlier values, are what must be written.
        self._touched_strategies: set[str] = set()
        self._touched_symbols: set[tuple[str, str]] = set()
        # Each symbol's share tallies as last serialized (a symbol's row is written again when it trades, yet most of
        # its components' tallies did not change), and those that changed since.
        self._share_parts: dict[tuple[str, str], dict[str, list[Any]]] = {}
        self._stale_shares: dict[tuple[str, str], set[str]] = {}
        # Each strategy's evidence scopes, sorted as its row lists them.
        self._evidence_order: dict[str, list[tuple[str, str]]] = {}
        # The outcomes moved into the earlier samples since rows() last ran, per cell id in the order they moved
        # (runs no longer kept anywhere else, so never changed again): the next value row's values and tallies.
        self._fresh: dict[str, list[OutcomeRun]] = {}

    # Absorbing -----------------------------------------------------------------------------------------------

    def absorb(self, trades: Sequence[TradeOutcome], session: int) -> None:
        """Count trades of session `session` (at or below `through`, or about to be), in the order given. A run of a
        session's trades is taken in at once: each exact sum gets the same values in the same order as if the
        trades came one by one."""
        outcomes = SessionOutcomes()
        runs: dict[tuple[str, str], _SymbolRun] = {}
        for trade in trades:
            shares = attribute_pnl(trade)
            pnl = trade.pnl_pct
            kind = 0 if pnl > 0.0 else 1 if pnl < 0.0 else 2  # outcome_index(pnl), inline: once per trade
            owner = trade.strategy
            outcomes.add_shares(owner, trade.regime, kind, shares)
            key = (owner, trade.symbol)
            run = runs.get(key)
            if run is None:
                run = runs[key] = _SymbolRun()
                if key not in self.symbols:
                    self.symbols[key] = SymbolFigures()
            run.add(trade, shares, kind)
        for name, count in outcomes.trades.items():
            strategy = self.strategies.get(name)
            if strategy is None:
                strategy = self.strategies[name] = StrategyFigures()
            strategy.trades += count
            strategy.first_session = session if strategy.first_session < 0 else min(strategy.first_session, session)
            strategy.last_session = max(strategy.last_session, session)
            # A trade carries a cell exactly when a component contributed to it: the cells are the evidence.
            for cell in outcomes.cells.get(name, {}):
                scope = (cell, GLOBAL_SCOPE) if isinstance(cell, str) else (cell[0], regime_scope(cell[1]))
                strategy.evidence[scope] = max(session, strategy.evidence.get(scope, session))
            self._touched_strategies.add(name)
        for key, run in runs.items():
            symbol = self.symbols[key]
            symbol.closed += len(run.closed_pnl_pct)
            if run.closed_pnl_pct:
                self._closed_stale.add(key)
            symbol.closed_pnl_pct.add_all(run.closed_pnl_pct)
            symbol.closed_pnl_usd.add_all(run.closed_pnl_usd)
            symbol.profile.add_run(run.profile)
            symbol.last_event_us = max(symbol.last_event_us, run.last_event_us)
            self.ticker_views.pop(key, None)
            stale = self._stale_shares.get(key)
            if stale is None:
                stale = self._stale_shares[key] = set()
            stale.update(run.shares)
            for name, shared in run.shares.items():
                tally = symbol.shares.get(name)
                if tally is None:
                    tally = symbol.shares[name] = Tally()
                tally.add_run(shared)
                symbol.evidence[name] = max(session, symbol.evidence.get(name, session))
            self._touched_symbols.add(key)
        if not outcomes.trades:
            return
        if session > self.earlier_through:
            kept = self.recent.get(session)
            if kept is None:
                self.recent[session] = outcomes
            else:
                kept.extend(outcomes)
        else:
            self._to_earlier(outcomes)

    def restore_recent(self, trades: Iterable[TradeOutcome], session: int) -> None:
        """Put back trades of the recent window (taken in before, not kept: see from_rows); nothing else moves."""
        for trade in trades:
            kept = self.recent.get(session)
            if kept is None:
                kept = self.recent[session] = SessionOutcomes()
            kept.add(trade, attribute_pnl(trade))

    def settle_earlier(self, cutoff: int) -> None:
        """Move the recent window's sessions at or below `cutoff` into the earlier samples."""
        if cutoff <= self.earlier_through:
            return
        for session in sorted(session for session in self.recent if session <= cutoff):
            self._to_earlier(self.recent.pop(session))
        self.earlier_through = cutoff

    def _to_earlier(self, outcomes: SessionOutcomes) -> None:
        for strategy, session_cells in outcomes.cells.items():
            cells = self.earlier.setdefault(strategy, {})
            for cell, outcome in session_cells.items():
                kept = cells.get(cell)
                if kept is None:
                    kept = cells[cell] = EarlierCell()
                # The earlier tallies are read, never written (a period's value row carries what it moved), and the
                # value row sums each run anyway.
                kept.tally.add_summed(outcome)
                kept.view_alone = None
                self._fresh.setdefault(_cell_id(strategy, cell), []).append(outcome)
                kept.pending.extend(outcome.values)

    def earlier_cells(self, strategy: str) -> dict[Cell, EarlierCell]:
        """A strategy's earlier cells (their samples sorted when asked: EarlierCell.sorted_sample)."""
        return self.earlier.get(strategy, {})

    def recent_count(self, strategy: str) -> int:
        """How many trades of a strategy the recent window (sessions above `earlier_through`) holds."""
        return sum(outcomes.trades.get(strategy, 0) for outcomes in self.recent.values())

    def recent_cells(self, strategy: str) -> dict[Cell, CellOutcomes]:
        """A strategy's outcomes per cell over the recent window."""
        runs: dict[Cell, list[OutcomeRun]] = {}
        for session in sorted(self.recent):
            for cell, run in self.recent[session].cells.get(strategy, {}).items():
                runs.setdefault(cell, []).append(run)
        return {cell: CellOutcomes.of(found) for cell, found in runs.items()}

    def closed_outcomes(self) -> Mapping[tuple[str, str], SymbolOutcomes]:
        """Per (strategy, symbol) with closed trades (partial closes left out), how many and their P&L sums."""
        for key in self._closed_stale:
            figures = self.symbols[key]
            self._closed[key] = SymbolOutcomes(
                figures.closed, figures.closed_pnl_pct.value, figures.closed_pnl_usd.value
            )
        self._closed_stale.clear()
        return MappingProxyType(self._closed)

    def evidence(self) -> dict[tuple[str, str, str], int]:
        """Last session each (strategy, component, scope) saw a trade carrying the component: strategy-wide (`*`),
        in the trade's regime scope and in its `ticker:SYM` scope."""
        last: dict[tuple[str, str, str], int] = {}
        for name, strategy_figures in self.strategies.items():
            for (component, scope), session in strategy_figures.evidence.items():
                last[name, component, scope] = session
        for (strategy, symbol), symbol_figures in self.symbols.items():
            for component, session in symbol_figures.evidence.items():
                last[strategy, component, f"{TICKER_SCOPE_PREFIX}{symbol}"] = session
        return last

    def last_evidence(self) -> LastEvidence:
        """evidence() as a mapping that looks each key up in the figures instead of building the whole dict (a
        weekly report asks for the few scopes its snapshot has multipliers of)."""
        return LastEvidence(self)

    # Persisting ----------------------------------------------------------------------------------------------

    def rows(self) -> tuple[dict[str, bytes], list[tuple[str, int, bytes]]]:
        """The state rows (job_state: name -> body) and value rows (job_values: cell, chunk, body) that changed
        since the last call; written with the job run they belong to. The earlier values moved since then, with the
        tallies they add, are one value row (PERIOD_VALUES, numbered in order): a row per cell put ~110 rows a
        period into as many pages of the table, each a page written to the WAL, and more of them the longer the
        history."""
        state: dict[str, bytes] = {}
        for name in sorted(self._touched_strategies):
            kept = self.strategies[name]
            evidence = kept.evidence
            # The scopes in order, sorted again only when one was added (none is ever taken away).
            order = self._evidence_order.get(name)
            if order is None or len(order) != len(evidence):
                order = self._evidence_order[name] = sorted(evidence)
            state[f"longrun{_SEPARATOR}strategy{_SEPARATOR}{name}"] = _dumps(
                {
                    "trades": kept.trades,
                    "first_session": kept.first_session,
                    "last_session": kept.last_session,
                    "evidence": [[component, scope, evidence[component, scope]] for component, scope in order],
                }
            )
        # Dicts are written with their keys sorted (_dumps): a symbol's shares and evidence are handed over as kept.
        for strategy, symbol in sorted(self._touched_symbols):
            figures = self.symbols[strategy, symbol]
            shares = self._shares_json(strategy, symbol)
            state[f"longrun{_SEPARATOR}symbol{_SEPARATOR}{strategy}{_SEPARATOR}{symbol}"] = _dumps(
                {
                    "closed": figures.closed,
                    "closed_pnl_pct": figures.closed_pnl_pct.to_floats(),
                    "closed_pnl_usd": figures.closed_pnl_usd.to_floats(),
                    "profile": figures.profile.to_json(),
                    "last_event_us": figures.last_event_us,
                    "shares": shares,
                    "evidence": figures.evidence,
                }
            )
        chunks: list[tuple[str, int, bytes]] = []
        if self._fresh:
            values: dict[str, list[float]] = {}
            tallies: dict[str, Tally] = {}
            for cell_id, runs in self._fresh.items():
                if len(runs) == 1:  # one session moved, as a daily period moves it
                    (run,) = runs
                    values[cell_id] = run.values
                    tallies[cell_id] = Tally(len(run.values), run.counts[0], run.counts[1], ExactSum(run.exact_sum()))
                    continue
                moved = tallies[cell_id] = Tally()
                values[cell_id] = list(chain.from_iterable(run.values for run in runs))
                for run in runs:
                    moved.add_run(run)
            chunks.append((PERIOD_VALUES, self._next_run, pack_values(values, tallies)))
            self._next_run += 1
        state["longrun"] = _dumps(
            {
                "version": STATE_VERSION,
                "through": self.through,
                "seq": self.seq,
                "earlier_through": self.earlier_through,
                "next_run": self._next_run,
            }
        )
        self._touched_strategies.clear()
        self._touched_symbols.clear()
        self._fresh.clear()
        return state, chunks

    def _shares_json(self, strategy: str, symbol: str) -> dict[str, list[Any]]:
        """A symbol's share tallies as its row holds them (in no order), each serialized again only when it
        changed: every share a run adds to is marked stale, a new one too."""
        key = (strategy, symbol)
        parts = self._share_parts.get(key)
        stale = self._stale_shares.pop(key, set())
        tallies = self.symbols[key].shares
        if parts is None:
            parts = self._share_parts[key] = {name: tally.to_json() for name, tally in tallies.items()}
        else:
            for name in stale:
                parts[name] = tallies[name].to_json()
        return parts

    @classmethod
    def from_rows(cls, state: Mapping[str, bytes], chunks: Iterable[tuple[str, int, bytes]]) -> LongRun:
        """The figures as committed: the state rows by name and every value row (in number order per cell name;
        a version 1 store's rows of one cell come before the period rows). The earlier tallies are an older
        store's earlier row, with what each version 3 period row adds. The recent window is not kept: the caller
        absorbs it again from the ledger (sessions above earlier_through, rows up to seq)."""
        longrun = cls()
        head = state.get("longrun")
        if head is None:
            return longrun
        try:
            document = orjson.loads(head)
            if document.get("version") not in _READABLE_VERSIONS:
                raise StateError(
                    f"long-run job state version {document.get('version')!r} is not one of {sorted(_READABLE_VERSIONS)}"
                )
            longrun.through = int(document["through"])
            longrun.seq = int(document["seq"])
            longrun.earlier_through = int(document["earlier_through"])
            longrun._next_run = int(document.get("next_run", 0))
            for name, body in state.items():
                parts = name.split(_SEPARATOR)
                if parts[0] != "longrun" or len(parts) == 1:
                    continue
                data = orjson.loads(body)
                if parts[1] == "strategy":
                    longrun.strategies[parts[2]] = StrategyFigures(
                        trades=int(data["trades"]),
                        first_session=int(data["first_session"]),
                        last_session=int(data["last_session"]),
                        evidence={(str(c), str(s)): int(session) for c, s, session in data["evidence"]},
                    )
                elif parts[1] == "symbol":
                    if data["closed"]:
                        longrun._closed_stale.add((parts[2], parts[3]))
                    longrun.symbols[parts[2], parts[3]] = SymbolFigures(
                        closed=int(data["closed"]),
                        closed_pnl_pct=ExactSum(data["closed_pnl_pct"]),
                        closed_pnl_usd=ExactSum(data["closed_pnl_usd"]),
                        profile=Tally.from_json(data["profile"]),
                        last_event_us=int(data["last_event_us"]),
                        shares={str(k): Tally.from_json(v) for k, v in data["shares"].items()},
                        evidence={str(k): int(v) for k, v in data["evidence"].items()},
                    )
                elif parts[1] == "earlier":
                    for cell_id, tally in data.items():
                        strategy, cell = _parse_cell_id(cell_id)
                        longrun.earlier.setdefault(strategy, {})[cell] = EarlierCell(tally=Tally.from_json(tally))
        except (KeyError, TypeError, ValueError, IndexError, orjson.JSONDecodeError) as error:
            raise StateError(f"long-run job state is damaged: {error!r}") from error
        # Per cell, its values in the order they moved: a version 1 store's rows of the cell, then the period rows.
        # An older store's cells all have their tallies by now; a version 3 row's cells get theirs from the row.
        values: dict[str, list[FloatArray]] = {}
        periods: list[bytes] = []
        for cell_id, _, body in chunks:
            if cell_id == PERIOD_VALUES:
                periods.append(body)
            else:
                values.setdefault(cell_id, []).append(np.frombuffer(body, dtype="<f8"))
        period_values, moved = gather_periods(periods)
        for cell_id, (trades, wins, losses, total) in moved.items():
            strategy, cell = _parse_cell_id(cell_id)
            tally = longrun.earlier.setdefault(strategy, {}).setdefault(cell, EarlierCell()).tally
            tally.trades += trades
            tally.wins += wins
            tally.losses += losses
            tally.total.add_all(total)
        for cell_id, part in period_values.items():
            values.setdefault(cell_id, []).append(part)
        for cell_id, pieces in values.items():
            strategy, cell = _parse_cell_id(cell_id)
            kept = longrun.earlier.get(strategy, {}).get(cell)
            if kept is None:
                raise StateError(f"long-run job values for {cell_id!r} have no tally")
            kept.sample.add(pieces[0] if len(pieces) == 1 else np.concatenate(pieces))
        return longrun


def pack_values(values: Mapping[str, Sequence[float]], tallies: Mapping[str, Tally] | None = None) -> bytes:
    """One value row of many cells' values: the header's length (8 bytes), the header ([[cell, count], ...] in
    cell order, each entry followed by the cell's wins, losses and exact sum (Tally.to_json) when `tallies` has
    it; JSON padded to 8 bytes) and every cell's values in turn (little-endian float64)."""
    cells = sorted(values)
    header = orjson.dumps(
        [
            [cell_id, len(values[cell_id])]
            if tallies is None or cell_id not in tallies
            else [
                cell_id,
                len(values[cell_id]),
                tallies[cell_id].wins,
                tallies[cell_id].losses,
                tallies[cell_id].total.to_floats(),
            ]
            for cell_id in cells
        ]
    )
    header += b" " * (-len(header) % 8)
    floats = np.asarray(list(chain.from_iterable(values[cell_id] for cell_id in cells)), dtype="<f8")
    return len(header).to_bytes(8, "little") + header + floats.tobytes()


def unpack_period(body: bytes) -> Iterator[tuple[str, FloatArray, tuple[int, int, list[float]] | None]]:
    """The (cell, values, what the row says of their tally besides its count: wins, losses and the exact sum's
    parts, or None when the row does not carry it) of a pack_values row; StateError when the row does not hold what
    its header says."""
    header, floats = _period_row(body)
    try:
        cells = [(str(entry[0]), int(entry[1]), _moved_tally(entry)) for entry in header]
    except (TypeError, ValueError, IndexError) as error:
        raise StateError(f"a long-run job value row is damaged: {error!r}") from error
    _check_count(sum(count for _, count, _ in cells), floats)
    start = 0
    for cell_id, count, tally in cells:
        yield cell_id, floats[start : start + count], tally
        start += count


# What period rows add to a cell's tally: trades, wins, losses and the exact sum's parts (one row's after another's).
MovedTally = tuple[int, int, int, list[float]]


def gather_periods(bodies: Iterable[bytes]) -> tuple[dict[str, FloatArray], dict[str, MovedTally]]:
    """unpack_period of each row in turn, gathered per cell: its values, row after row, and what the rows that
    carry tallies add to it; StateError as unpack_period's. One pass over the headers and a stable sort of the
    values by cell, not an array and a tally per entry: a five-year store's period rows hold 167,000 entries."""
    numbers: dict[str, int] = {}  # each cell's number, in the order first met
    owners: list[int] = []  # per header entry, its cell's number
    counts: list[int] = []
    arrays: list[FloatArray] = []
    moved: dict[str, list[Any]] = {}
    try:
        for body in bodies:
            header, floats = _period_row(body)
            first = len(counts)
            for cell_id, count, *tally in header:
                number = numbers.get(cell_id)
                if number is None:
                    number = numbers[cell_id] = len(numbers)
                owners.append(number)
                counts.append(count)
                if not tally:
                    continue
                if len(tally) != 3 or not isinstance(tally[2], list):
                    _moved_tally([cell_id, count, *tally])  # raises, saying what the entry should be
                found = moved.get(cell_id)
                if found is None:
                    found = moved[cell_id] = [0, 0, 0, []]
                found[0] += count
                found[1] += tally[0]
                found[2] += tally[1]
                found[3] += tally[2]
            _check_count(sum(counts[first:]), floats)
            arrays.append(floats)
        # Checked and converted once per cell (a damaged row's entries fail here as they would one by one).
        tallies = {
            str(cell_id): (int(trades), int(wins), int(losses), [float(part) for part in parts])
            for cell_id, (trades, wins, losses, parts) in moved.items()
        }
        if not arrays:
            return {}, tallies
        owner = np.repeat(np.asarray(owners, dtype=np.int64), np.asarray(counts, dtype=np.int64))
    except (TypeError, ValueError, IndexError) as error:
        raise StateError(f"a long-run job value row is damaged: {error!r}") from error
    # A stable sort keeps each cell's values in row order.
    grouped = np.concatenate(arrays)[np.argsort(owner, kind="stable")]
    bounds = np.concatenate(([0], np.cumsum(np.bincount(owner, minlength=len(numbers))))).tolist()
    return {str(cell_id): grouped[bounds[number] : bounds[number + 1]] for cell_id, number in numbers.items()}, tallies


def _period_row(body: bytes) -> tuple[list[Any], FloatArray]:
    """A pack_values row's header entries (as stored) and values; StateError when it does not read as one."""
    try:
        size = int.from_bytes(body[:8], "little")
        header = orjson.loads(body[8 : 8 + size])
        floats = np.frombuffer(body, dtype="<f8", offset=8 + size)
    except (TypeError, ValueError, IndexError, orjson.JSONDecodeError) as error:
        raise StateError(f"a long-run job value row is damaged: {error!r}") from error
    if not isinstance(header, list):
        raise StateError(f"a long-run job value row is damaged: its header {header!r} is no list")
    return header, floats


def _check_count(count: int, floats: FloatArray) -> None:
    if count != floats.size:
        raise StateError(f"a long-run job value row holds {floats.size} values, not what its header says")


def _moved_tally(entry: Sequence[Any]) -> tuple[int, int, list[float]] | None:
    """The wins, losses and exact sum's parts a value row's header entry carries (None when it has only the cell
    and count); ValueError when it is neither."""
    if len(entry) == 2:
        return None
    if len(entry) != 5 or not isinstance(entry[4], list):
        raise ValueError(
            f"a value row's header entry {entry!r} is neither [cell, count] nor [cell, count, wins, losses, [parts]]"
        )
    return int(entry[2]), int(entry[3]), [float(part) for part in entry[4]]


class LastEvidence(Mapping[tuple[str, str, str], int]):
    """LongRun.evidence() read through: (strategy, component, scope) -> the last session with evidence, looked up
    in the figures as they stand (a `ticker:SYM` scope in the symbol's, any other in the strategy's)."""

    __slots__ = ("_longrun",)

    def __init__(self, longrun: LongRun) -> None:
        self._longrun = longrun

    def __getitem__(self, key: tuple[str, str, str]) -> int:
        strategy, component, scope = key
        found: int | None = None
        if scope.startswith(TICKER_SCOPE_PREFIX):
            symbol = self._longrun.symbols.get((strategy, scope.removeprefix(TICKER_SCOPE_PREFIX)))
            if symbol is not None:
                found = symbol.evidence.get(component)
        else:
            figures = self._longrun.strategies.get(strategy)
            if figures is not None:
                found = figures.evidence.get((component, scope))
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        return iter(self._longrun.evidence())

    def __len__(self) -> int:
        return len(self._longrun.evidence())


def _cell_id(strategy: str, cell: Cell) -> str:
    if isinstance(cell, tuple):
        return _SEPARATOR.join((strategy, cell[0], cell[1]))
    return _SEPARATOR.join((strategy, cell))


def _parse_cell_id(cell_id: str) -> tuple[str, Cell]:
    parts = cell_id.split(_SEPARATOR)
    if len(parts) == 3:
        return parts[0], (parts[1], parts[2])
    return parts[0], parts[1]


def _dumps(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def _round(value: float) -> float:
    # Adding 0.0 turns -0.0 into 0.0, so a zero prints one way whatever its history.
    return round(value, _ROUND_DIGITS) + 0.0


def _ratio(numerator: float, denominator: float) -> float | None:
    return _round(numerator / denominator) if denominator else None
