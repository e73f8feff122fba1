"""A simulated bot home: the four JSONL logs in FORMATS.md shapes with planted, known edges, plus truth.json.

Feeds `make run`, the tests and the evaluation; deterministic for a seed (identical bytes) and reads no clock.
"""

from __future__ import annotations

import math
import random
import uuid
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from learnd.learning.stats import spearman
from learnd.records.components import ENTRY_BASE_WEIGHTS, ENTRY_COMPONENTS, exit_component
from learnd.sessions.tables import calendar_of

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LOG_FILES: Final[tuple[str, ...]] = ("attribution", "exit", "signals", "orders")
STRATEGIES: Final[tuple[str, ...]] = ("equity", "momentum")
REGIMES: Final[tuple[str, ...]] = ("low_vol_uptrend", "high_vol_neg_gamma", "mixed", "downtrend_flow_heavy", "RISK_ON")
_REGIME_SHARES: Final = (0.35, 0.15, 0.25, 0.15, 0.10)
_MOMENTUM_SHARE: Final = 0.10
# Regimes persist through a session; this share of trades sees an intraday switch.
_REGIME_SWITCH_SHARE: Final = 0.20

# Short keys as the live bot logs them (FORMATS.md), and the legacy keys of its oldest logs.
_LOG_KEYS: Final[dict[str, str]] = {
    "options_flow": "flow",
    "iv_term_skew": "iv_skew",
    "smile_slope": "smile",
    "whale_persistence": "whale",
    "event_alignment": "event",
    "temporal_motif": "motif_bonus",
    "regime_modifier": "regime",
    "calendar_catalyst": "calendar",
}
_LEGACY_LOG_KEYS: Final[dict[str, str]] = {
    "options_flow": "flow_premium",
    "dark_pool": "darkpool",
    "greeks_gamma": "gamma",
}
_LEGACY_SHARE: Final = 0.10
UNKNOWN_COMPONENT_KEY: Final = "mystery_alpha"
_UNKNOWN_KEY_SHARE: Final = 0.015
_FRESHNESS_SHARE: Final = 0.6

# How often each component is present in a trade's entry components.
_PRESENCE: Final[dict[str, float]] = {
    "options_flow": 0.97,
    "dark_pool": 0.75,
    "insider": 0.3,
    "iv_term_skew": 0.6,
    "smile_slope": 0.45,
    "whale_persistence": 0.5,
    "event_alignment": 0.4,
    "temporal_motif": 0.35,
    "toxicity_penalty": 0.6,
    "regime_modifier": 0.7,
    "congress": 0.3,
    "shorts_squeeze": 0.3,
    "institutional": 0.4,
    "market_tide": 0.6,
    "calendar_catalyst": 0.3,
    "etf_flow": 0.4,
    "greeks_gamma": 0.5,
    "ftd_pressure": 0.3,
    "iv_rank": 0.5,
    "oi_change": 0.45,
    "squeeze_score": 0.3,
}
_STRENGTH_SHAPE: Final = 1.5
_STRENGTH_SCALE: Final = 0.5
_MULTIPLIER_LOW: Final = 0.4
_MULTIPLIER_HIGH: Final = 2.0
# Pinned multipliers of the components that dominate the score's variance: without them a random draw can leave
# the truth nearly parallel to the base weights, and learning would have nothing to gain. The rest are a seeded
# permutation of a geometric spread over [0.4, 2.0].
_PINNED_MULTIPLIERS: Final[dict[str, dict[str, float]]] = {
    "equity": {"options_flow": 0.5, "toxicity_penalty": 2.0},
    "momentum": {"options_flow": 2.0, "toxicity_penalty": 0.5},
}

# Outcome model: pnl_pct = signal + exit effect + day shock + noise, signal scaled to this std.
_SIGNAL_STD_PCT: Final = 0.8
_NOISE_STD_PCT: Final = 1.2
_DAY_SHOCK_STD_PCT: Final = 0.3

_TRADES_PER_SESSION: Final = 20
_FULL_SESSION_MINUTES: Final = 390
_HOLD_MINUTES: Final = (5.0, 240.0)
_SCALE_SHARE: Final = 0.15
_SCALE_FRACTIONS: Final = (0.25, 0.33, 0.5)
_NO_STRATEGY_SHARE: Final = 0.04
_BULLISH_SHARE: Final = 0.7
_DUPLICATE_CLOSE_ROWS: Final = 2

_EXIT_FAMILIES: Final[tuple[str, ...]] = (
    "trail_stop",
    "signal_decay",
    "drawdown",
    "time_exit",
    "profit_target",
    "stale_trade",
    "flow_reversal",
    "displaced",
    "momentum_reversal",
    "regime",
)
_EXIT_FAMILY_SHARES: Final = (0.22, 0.16, 0.14, 0.12, 0.10, 0.08, 0.06, 0.05, 0.04, 0.03)
EXIT_EFFECTS_PCT: Final[dict[str, float]] = {"signal_decay": 0.4, "drawdown": -0.4}

_SYMBOL_PRICES: Final[dict[str, float]] = {
    "AAPL": 228.0,
    "AMD": 135.0,
    "AMZN": 186.0,
    "AVGO": 172.0,
    "BA": 176.0,
    "BAC": 41.0,
    "COIN": 212.0,
    "COST": 905.0,
    "CRM": 290.0,
    "DIS": 98.0,
    "GOOGL": 167.0,
    "GS": 520.0,
    "HD": 395.0,
    "INTC": 22.0,
    "IWM": 221.0,
    "JPM": 218.0,
    "LLY": 890.0,
    "MARA": 19.0,
    "META": 560.0,
    "MSFT": 430.0,
    "MSTR": 180.0,
    "MU": 98.0,
    "NFLX": 705.0,
    "NVDA": 124.0,
    "ORCL": 168.0,
    "PLTR": 38.0,
    "PYPL": 72.0,
    "QQQ": 480.0,
    "RIVN": 11.0,
    "SHOP": 79.0,
    "SMCI": 42.0,
    "SNOW": 118.0,
    "SOFI": 9.5,
    "SPY": 570.0,
    "TSLA": 250.0,
    "UBER": 71.0,
    "UNH": 590.0,
    "WMT": 80.0,
    "XOM": 118.0,
}
_SYMBOLS: Final[tuple[str, ...]] = tuple(_SYMBOL_PRICES)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND_US: Final = 1_000_000
_MINUTE_US: Final = 60 * _SECOND_US
_DAY_NAMES: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class RegimeEdge:
    """The one planted edge that exists in a single regime: `multiplier` there, `elsewhere` in every other. From
    trade `from_trade` on (entry order); before it the regime too has `elsewhere`."""

    strategy: str
    component: str
    regime: str
    multiplier: float
    elsewhere: float
    from_trade: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able plain data (`from_trade` only when the edge starts late, so older truth files read the same)."""
        document: dict[str, Any] = {
            "strategy": self.strategy,
            "component": self.component,
            "regime": self.regime,
            "multiplier": self.multiplier,
            "elsewhere": self.elsewhere,
        }
        if self.from_trade:
            document["from_trade"] = self.from_trade
        return document


@dataclass(frozen=True, slots=True)
class Drift:
    """A change of one component's edge: from trade `at_trade` on (entry order), `component`'s true multiplier is
    `multiplier` in every regime of `strategy` (a negative one flips the sign of its edge)."""

    component: str
    at_trade: int
    multiplier: float
    strategy: str = "equity"


REGIME_EDGE: Final = RegimeEdge(
    strategy="equity", component="dark_pool", regime="high_vol_neg_gamma", multiplier=2.0, elsewhere=1.0
)


@dataclass(frozen=True, slots=True)
class SimulationTruth:
    """What a simulation planted and wrote; `to_dict()` is the content of truth.json.

    `multipliers[strategy][regime][component]` are the true multipliers of the outcome model
    pnl_pct = pnl_scale * sum_j m_j * (x_j - mean x_j) + exit effect + day shock + noise, with x_j the logged
    contribution. Stds are measured on the generated trades before any shuffle (`noise_std_pct` is the std of
    pnl minus signal minus exit effect: idiosyncratic noise plus day shock); `best_ic` (true signal) and
    `static_ic` (entry_score) are Spearman ICs against the written, possibly shuffled, close pnl.
    """

    seed: int
    trades: int
    sessions: int
    first_session: date
    last_session: date
    shuffle_outcomes: bool
    garbage: bool
    strategy_trades: Mapping[str, int]
    regime_trades: Mapping[str, int]
    multipliers: Mapping[str, Mapping[str, Mapping[str, float]]]
    regime_edge: RegimeEdge | None
    exit_effects_pct: Mapping[str, float]
    pnl_scale: float
    signal_std_pct: float
    noise_std_pct: float
    day_shock_std_pct: float
    pnl_std_pct: float
    best_ic: float
    static_ic: float
    line_counts: Mapping[str, Mapping[str, int]]
    garbage_lines: Mapping[str, int]
    duplicate_rows: int
    legacy_key_trades: int
    unknown_key_trades: int
    edges: Mapping[str, float] | None = None
    drift: Mapping[str, Any] | None = None
    raw_scale: Mapping[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The truth as JSON-able plain data (the shape of truth.json). The keys of the scenario options (edges,
        drift, raw_scale) appear only when the option was used, so a default home's truth.json keeps its bytes."""
        document = {
            "seed": self.seed,
            "trades": self.trades,
            "sessions": self.sessions,
            "first_session": self.first_session.isoformat(),
            "last_session": self.last_session.isoformat(),
            "shuffle_outcomes": self.shuffle_outcomes,
            "garbage": self.garbage,
            "strategy_trades": dict(self.strategy_trades),
            "regime_trades": dict(self.regime_trades),
            "multipliers": {
                strategy: {regime: dict(values) for regime, values in by_regime.items()}
                for strategy, by_regime in self.multipliers.items()
            },
            "regime_edge": self.regime_edge.to_dict() if self.regime_edge is not None else None,
            "exit_effects": {
                token: {"exit_component": exit_component(token), "pnl_pct": effect}
                for token, effect in self.exit_effects_pct.items()
            },
            "pnl_model": {
                "formula": "pnl_pct = pnl_scale * sum_j m[strategy][regime][j] * (x_j - mean_x_j)"
                " + exit_effect + day_shock + noise",
                "pnl_scale": self.pnl_scale,
                "signal_std_pct": self.signal_std_pct,
                "noise_std_pct": self.noise_std_pct,
                "day_shock_std_pct": self.day_shock_std_pct,
                "pnl_std_pct": self.pnl_std_pct,
                "best_ic": self.best_ic,
                "static_ic": self.static_ic,
                "scale_rows": "context.pnl_pct = signal + day shock + independent noise (no exit effect)",
            },
            "line_counts": {name: dict(counts) for name, counts in self.line_counts.items()},
            "garbage_lines": dict(self.garbage_lines),
            "duplicate_rows": self.duplicate_rows,
            "legacy_key_trades": self.legacy_key_trades,
            "unknown_key_trades": self.unknown_key_trades,
        }
        if self.edges is not None:
            document["edges"] = dict(self.edges)
        if self.drift is not None:
            document["drift"] = dict(self.drift)
        if self.raw_scale is not None:
            document["raw_scale"] = dict(self.raw_scale)
        return document


@dataclass(frozen=True, slots=True)
class _Sessions:
    days: tuple[date, ...]
    opens_us: IntArray
    closes_us: IntArray
    trade_counts: IntArray


@dataclass(frozen=True, slots=True)
class _Draws:
    """Every per-trade quantity, drawn vectorised; row emission only formats these."""

    session: IntArray
    entry_us: IntArray
    exit_us: IntArray
    scale_us: IntArray
    strategy: IntArray
    regime: IntArray
    bullish: npt.NDArray[np.bool_]
    symbol: IntArray
    present: npt.NDArray[np.bool_]
    contributions: FloatArray
    # What the bot logs per component: the contribution, or for a raw-scale component its raw signal.
    logged: FloatArray
    entry_score: FloatArray
    exit_family: IntArray
    is_scaled: npt.NDArray[np.bool_]
    fraction: FloatArray
    pnl_pct: FloatArray
    scale_pnl_pct: FloatArray
    price: FloatArray
    notional: FloatArray


def simulate(
    out: Path,
    trades: int,
    seed: int,
    *,
    shuffle_outcomes: bool = False,
    garbage: bool = True,
    start: date = date(2026, 1, 5),
    edges: Mapping[str, float] | None = None,
    drift: Drift | None = None,
    regime_edge: RegimeEdge | None = REGIME_EDGE,
    raw_scale: Mapping[str, float] | None = None,
) -> SimulationTruth:
    """Write a simulated bot home under `out` (logs/*.jsonl and truth.json) and return the planted truth.

    `trades` closed trades over NYSE sessions from `start` (about 20 a session). `shuffle_outcomes` permutes pnl
    across trades (null data: nothing to learn). `garbage` adds unparseable lines and duplicate close rows.

    Scenario options (the defaults write the same bytes as before they existed):
    - `edges`: the planted multipliers, {component: multiplier} for every strategy, every other component at 1
      (average), instead of the seeded spread over [0.4, 2.0];
    - `drift`: one component's edge changes at a given trade (a sign flip with a negative multiplier);
    - `regime_edge`: the edge planted in one regime only (None: none), from its `from_trade` on;
    - `raw_scale`: {component: factor}: the bot logs these components raw, as their signal times `factor`, not as
      their weighted contribution; `entry_score` (the bot's own score) still sums the true contributions, and the
      outcomes depend on the contributions.
    """
    if trades < 0:
        raise ValueError(f"trades must be >= 0, got {trades}")
    _check_scenario(trades, edges, drift, regime_edge, raw_scale)
    rng = np.random.default_rng(seed)
    py_random = random.Random(seed)
    sessions = _sessions(start, trades, rng)
    multipliers = _true_multipliers(rng, edges, regime_edge)
    draws, stats = _draw_trades(
        trades,
        sessions,
        multipliers,
        rng,
        shuffle_outcomes=shuffle_outcomes,
        drift=drift,
        regime_edge=regime_edge,
        raw_scale=raw_scale or {},
    )
    drift_truth = None
    if drift is not None:
        s, j = STRATEGIES.index(drift.strategy), ENTRY_COMPONENTS.index(drift.component)
        at_session = int(draws.session[drift.at_trade]) if drift.at_trade < trades else len(sessions.days)
        drift_truth = {
            "strategy": drift.strategy,
            "component": drift.component,
            "at_trade": drift.at_trade,
            "at_session": at_session,
            "at_day": sessions.days[at_session].isoformat() if at_session < len(sessions.days) else None,
            "before": round(float(multipliers[s, 0, j]), 4),
            "after": drift.multiplier,
        }
        # `multipliers` is the truth at the end of the history.
        multipliers[s, :, j] = drift.multiplier
    home = _Home(py_random, legacy_cutoff=_legacy_cutoff_us(draws), raw_scale=raw_scale or {})
    for index in range(trades):
        home.add_trade(draws, index, sessions)
    for open_us, close_us in zip(sessions.opens_us.tolist(), sessions.closes_us.tolist(), strict=True):
        home.add_session_noise(open_us, close_us)
    lines, line_counts, garbage_counts, duplicates = home.finish(garbage=garbage)

    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name in LOG_FILES:
        (logs / f"{name}.jsonl").write_bytes(b"".join(lines[name]))
    truth = SimulationTruth(
        seed=seed,
        trades=trades,
        sessions=len(sessions.days),
        first_session=sessions.days[0] if sessions.days else start,
        last_session=sessions.days[-1] if sessions.days else start,
        shuffle_outcomes=shuffle_outcomes,
        garbage=garbage,
        strategy_trades={name: int((draws.strategy == i).sum()) for i, name in enumerate(STRATEGIES)},
        regime_trades={name: int((draws.regime == i).sum()) for i, name in enumerate(REGIMES)},
        multipliers={
            strategy: {
                regime: {
                    component: round(float(multipliers[s, r, j]), 4) for j, component in enumerate(ENTRY_COMPONENTS)
                }
                for r, regime in enumerate(REGIMES)
            }
            for s, strategy in enumerate(STRATEGIES)
        },
        regime_edge=regime_edge,
        exit_effects_pct=dict(EXIT_EFFECTS_PCT),
        pnl_scale=stats["pnl_scale"],
        signal_std_pct=stats["signal_std_pct"],
        noise_std_pct=stats["noise_std_pct"],
        day_shock_std_pct=_DAY_SHOCK_STD_PCT,
        pnl_std_pct=stats["pnl_std_pct"],
        best_ic=stats["best_ic"],
        static_ic=stats["static_ic"],
        line_counts=line_counts,
        garbage_lines=garbage_counts,
        duplicate_rows=duplicates,
        legacy_key_trades=home.legacy_trade_count,
        unknown_key_trades=home.unknown_key_trade_count,
        edges=dict(edges) if edges is not None else None,
        drift=drift_truth,
        raw_scale=dict(raw_scale) if raw_scale is not None else None,
    )
    (out / "truth.json").write_bytes(
        orjson.dumps(truth.to_dict(), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
    )
    return truth


def _log_key(component: str, *, legacy: bool = False) -> str:
    """The key under which the bot logs a canonical component (a legacy key in old logs where one exists)."""
    if legacy and component in _LEGACY_LOG_KEYS:
        return _LEGACY_LOG_KEYS[component]
    return _LOG_KEYS.get(component, component)


def _sessions(start: date, trades: int, rng: np.random.Generator) -> _Sessions:
    """The sessions from `start` that hold the trades, with a trade count per session (fewer on early closes)."""
    if trades == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _Sessions((), empty, empty, empty)
    # Twice the sessions expected, so running out needs an absurd run of tiny draws; the loop only guards that.
    span_years = 1 + math.ceil(trades / _TRADES_PER_SESSION * 2 / 250)
    while True:
        calendar = calendar_of("XNYS", start.year, start.year + span_years)
        first = bisect_left(calendar.sessions, start)
        opens = np.asarray(calendar.opens_us[first:], dtype=np.int64)
        closes = np.asarray(calendar.closes_us[first:], dtype=np.int64)
        minutes = (closes - opens) / _MINUTE_US
        counts = np.maximum(
            3, np.round(rng.poisson(_TRADES_PER_SESSION, opens.size) * minutes / _FULL_SESSION_MINUTES)
        ).astype(np.int64)
        totals = np.cumsum(counts)
        if totals[-1] >= trades:
            break
        span_years *= 2
    used = int(np.searchsorted(totals, trades)) + 1
    counts = counts[:used].copy()
    counts[-1] -= int(totals[used - 1]) - trades
    return _Sessions(tuple(calendar.sessions[first : first + used]), opens[:used], closes[:used], counts)


def _check_scenario(
    trades: int,
    edges: Mapping[str, float] | None,
    drift: Drift | None,
    regime_edge: RegimeEdge | None,
    raw_scale: Mapping[str, float] | None,
) -> None:
    named = [*(edges or {}), *(raw_scale or {})]
    if drift is not None:
        named.append(drift.component)
        if not 0 <= drift.at_trade <= trades:
            raise ValueError(f"drift.at_trade must be within 0..{trades}, got {drift.at_trade}")
        if drift.strategy not in STRATEGIES:
            raise ValueError(f"drift.strategy must be one of {STRATEGIES}, got {drift.strategy!r}")
        if regime_edge is not None and (regime_edge.strategy, regime_edge.component) == (
            drift.strategy,
            drift.component,
        ):
            raise ValueError(f"{drift.component!r} carries the regime edge; drift another component")
    if regime_edge is not None:
        named.append(regime_edge.component)
        if regime_edge.regime not in REGIMES or regime_edge.strategy not in STRATEGIES:
            raise ValueError(f"regime edge {regime_edge!r} names an unknown regime or strategy")
    unknown = sorted(set(named) - set(ENTRY_COMPONENTS))
    if unknown:
        raise ValueError(f"not canonical entry components: {unknown}")
    if any(not factor > 0.0 for factor in (raw_scale or {}).values()):
        raise ValueError(f"raw_scale factors must be > 0, got {dict(raw_scale or {})}")


def _true_multipliers(
    rng: np.random.Generator, edges: Mapping[str, float] | None, regime_edge: RegimeEdge | None
) -> FloatArray:
    """True multipliers [strategy, regime, component]: a spread over [0.4, 2.0] per strategy (or `edges` with the
    rest at 1), plus the regime edge."""
    components = len(ENTRY_COMPONENTS)
    multipliers = np.ones((len(STRATEGIES), len(REGIMES), components))
    if edges is not None:
        for component, value in edges.items():
            multipliers[:, :, ENTRY_COMPONENTS.index(component)] = value
    else:
        for s, strategy in enumerate(STRATEGIES):
            pinned = _PINNED_MULTIPLIERS[strategy]
            for component, value in pinned.items():
                multipliers[s, :, ENTRY_COMPONENTS.index(component)] = value
            free = [
                j
                for j, component in enumerate(ENTRY_COMPONENTS)
                if component not in pinned
                and not (
                    regime_edge is not None and strategy == regime_edge.strategy and component == regime_edge.component
                )
            ]
            multipliers[s][:, free] = rng.permutation(np.geomspace(_MULTIPLIER_LOW, _MULTIPLIER_HIGH, len(free)))
    if regime_edge is not None:
        edge_strategy = STRATEGIES.index(regime_edge.strategy)
        edge_component = ENTRY_COMPONENTS.index(regime_edge.component)
        multipliers[edge_strategy, :, edge_component] = regime_edge.elsewhere
        multipliers[edge_strategy, REGIMES.index(regime_edge.regime), edge_component] = regime_edge.multiplier
    return multipliers


def _draw_trades(
    n: int,
    sessions: _Sessions,
    multipliers: FloatArray,
    rng: np.random.Generator,
    *,
    shuffle_outcomes: bool,
    drift: Drift | None,
    regime_edge: RegimeEdge | None,
    raw_scale: Mapping[str, float],
) -> tuple[_Draws, dict[str, float]]:
    session = np.repeat(np.arange(sessions.trade_counts.size, dtype=np.int64), sessions.trade_counts)
    opens = sessions.opens_us[session]
    closes = sessions.closes_us[session]
    # Entries leave room for a signal episode after the open and the shortest hold before the close.
    earliest = opens + 3 * _MINUTE_US
    latest = closes - 8 * _MINUTE_US
    entry_us = np.sort(earliest + (rng.random(n) * (latest - earliest)).astype(np.int64))
    low, high = _HOLD_MINUTES
    hold_us = (np.exp(rng.uniform(math.log(low), math.log(high), n)) * _MINUTE_US).astype(np.int64)
    hold_us = np.minimum(hold_us, closes - _MINUTE_US - entry_us)
    exit_us = entry_us + hold_us
    scale_us = entry_us + (hold_us * rng.uniform(0.3, 0.8, n)).astype(np.int64)

    strategy = (rng.random(n) < _MOMENTUM_SHARE).astype(np.int64)
    session_regime = rng.choice(len(REGIMES), size=sessions.trade_counts.size, p=_REGIME_SHARES)
    regime = session_regime[session].astype(np.int64)
    switched = rng.random(n) < _REGIME_SWITCH_SHARE
    regime[switched] = rng.choice(len(REGIMES), size=int(switched.sum()), p=_REGIME_SHARES)
    bullish = rng.random(n) < _BULLISH_SHARE
    symbol = rng.integers(0, len(_SYMBOLS), n)

    base = np.array([ENTRY_BASE_WEIGHTS[c] for c in ENTRY_COMPONENTS])
    presence = np.array([_PRESENCE[c] for c in ENTRY_COMPONENTS])
    present = rng.random((n, base.size)) < presence
    strength = rng.gamma(_STRENGTH_SHAPE, _STRENGTH_SCALE, (n, base.size))
    contributions = np.where(present, np.round(base * strength, 4), 0.0)
    entry_score = np.round(contributions.sum(axis=1), 4)
    logged = contributions
    if raw_scale:
        logged = contributions.copy()
        for component, factor in raw_scale.items():
            j = ENTRY_COMPONENTS.index(component)
            raw_signal = np.round(math.copysign(factor, base[j]) * strength[:, j], 4)
            logged[:, j] = np.where(present[:, j], raw_signal, 0.0)

    # Centred per strategy so the planted edge is about ranking trades, not about the average trade.
    means = np.zeros((len(STRATEGIES), base.size))
    for s in range(len(STRATEGIES)):
        mine = strategy == s
        if mine.any():
            means[s] = contributions[mine].mean(axis=0)
    centered = contributions - means[strategy]
    planted = multipliers[strategy, regime]
    late_edge = regime_edge is not None and regime_edge.from_trade > 0
    if regime_edge is not None and late_edge:
        in_edge_regime = (strategy == STRATEGIES.index(regime_edge.strategy)) & (
            regime == REGIMES.index(regime_edge.regime)
        )
        planted[in_edge_regime, ENTRY_COMPONENTS.index(regime_edge.component)] = regime_edge.elsewhere
    # The P&L scale comes from the edges as planted at the start, so a later change of one edge (a drift, a regime
    # edge that starts late) changes that component's effect alone, never the others'.
    raw = (planted * centered).sum(axis=1)
    raw_std = float(raw.std()) if n else 0.0
    pnl_scale = _SIGNAL_STD_PCT / raw_std if raw_std > 0 else 0.0
    if regime_edge is not None and late_edge:
        later = in_edge_regime & (np.arange(n) >= regime_edge.from_trade)
        planted[later, ENTRY_COMPONENTS.index(regime_edge.component)] = regime_edge.multiplier
    if drift is not None:
        after = (strategy == STRATEGIES.index(drift.strategy)) & (np.arange(n) >= drift.at_trade)
        planted[after, ENTRY_COMPONENTS.index(drift.component)] = drift.multiplier
    if drift is not None or late_edge:
        raw = (planted * centered).sum(axis=1)
    signal = pnl_scale * raw

    exit_family = rng.choice(len(_EXIT_FAMILIES), size=n, p=_EXIT_FAMILY_SHARES).astype(np.int64)
    effects = np.array([EXIT_EFFECTS_PCT.get(family, 0.0) for family in _EXIT_FAMILIES])
    exit_effect = effects[exit_family]
    day_shock = rng.normal(0.0, _DAY_SHOCK_STD_PCT, sessions.trade_counts.size)[session]
    noise = rng.normal(0.0, _NOISE_STD_PCT, n)
    pnl_pct = signal + exit_effect + day_shock + noise
    is_scaled = rng.random(n) < _SCALE_SHARE
    fraction = rng.choice(_SCALE_FRACTIONS, size=n, p=(0.2, 0.2, 0.6))
    scale_pnl_pct = signal + day_shock + rng.normal(0.0, _NOISE_STD_PCT, n)
    price = np.array([_SYMBOL_PRICES[s] for s in _SYMBOLS])[symbol] * np.exp(rng.normal(0.0, 0.05, n))
    notional = rng.uniform(1500.0, 8000.0, n)

    stats = {
        "pnl_scale": round(pnl_scale, 6),
        "signal_std_pct": round(float(signal.std()) if n else 0.0, 4),
        "noise_std_pct": round(float((pnl_pct - signal - exit_effect).std()) if n else 0.0, 4),
    }
    if shuffle_outcomes:
        pnl_pct = pnl_pct[rng.permutation(n)]
        scale_pnl_pct[is_scaled] = scale_pnl_pct[is_scaled][rng.permutation(int(is_scaled.sum()))]
    pnl_pct = np.round(pnl_pct, 4)
    scale_pnl_pct = np.round(scale_pnl_pct, 4)
    stats["pnl_std_pct"] = round(float(pnl_pct.std()) if n else 0.0, 4)
    stats["best_ic"] = round(spearman(signal, pnl_pct), 4)
    stats["static_ic"] = round(spearman(entry_score, pnl_pct), 4)
    draws = _Draws(
        session=session,
        entry_us=entry_us,
        exit_us=exit_us,
        scale_us=scale_us,
        strategy=strategy,
        regime=regime,
        bullish=bullish,
        symbol=symbol,
        present=present,
        contributions=contributions,
        logged=logged,
        entry_score=entry_score,
        exit_family=exit_family,
        is_scaled=is_scaled,
        fraction=fraction,
        pnl_pct=pnl_pct,
        scale_pnl_pct=scale_pnl_pct,
        price=np.round(price, 2),
        notional=notional,
    )
    return draws, stats


def _legacy_cutoff_us(draws: _Draws) -> int:
    """Rows before the entry of the first trade past the legacy share use the old key names and ISO start_ts."""
    n = draws.entry_us.size
    legacy = round(n * _LEGACY_SHARE)
    if n == 0:
        return 0
    return int(draws.entry_us[legacy]) if legacy < n else int(draws.exit_us[-1]) + 1


def _iso(event_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=event_us)).isoformat(timespec="microseconds")


def _iso_ms(event_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=event_us)).isoformat(timespec="milliseconds")


_ENTRY_ACTIONS: Final = frozenset({"submit_limit_filled", "limit_not_filled", "submit_market_fallback"})


@dataclass(frozen=True, slots=True)
class _Position:
    """What the order rows of one trade share."""

    strategy: str
    symbol: str
    bullish: bool
    qty: int
    price: float
    canonical_id: str

    @property
    def entry_side(self) -> str:
        return "buy" if self.bullish else "sell"

    @property
    def exit_side(self) -> str:
        return "sell" if self.bullish else "buy"


class _Home:
    """Accumulates the rows of the four logs as (event_us, line) and lays them out at the end."""

    def __init__(self, py_random: random.Random, legacy_cutoff: int, raw_scale: Mapping[str, float]) -> None:
        self._random = py_random
        self._legacy_cutoff = legacy_cutoff
        self._raw_scale = raw_scale
        self._rows: dict[str, list[tuple[int, bytes]]] = {name: [] for name in LOG_FILES}
        self._counts: dict[str, dict[str, int]] = {
            "attribution": {"open": 0, "close": 0, "scale": 0},
            "exit": {"outcome": 0, "scale_outcome": 0, "other": 0},
            "signals": {"signal": 0},
            "orders": {"entry": 0, "action": 0},
        }
        self._close_lines: list[tuple[int, bytes]] = []
        self.legacy_trade_count = 0
        self.unknown_key_trade_count = 0

    def _add(self, name: str, kind: str, event_us: int, row: dict[str, Any]) -> bytes:
        line = orjson.dumps(row) + b"\n"
        self._rows[name].append((event_us, line))
        self._counts[name][kind] += 1
        return line

    def _strategy_field(self, row: dict[str, Any], strategy: str) -> dict[str, Any]:
        # A few rows omit strategy_id; readers must take that as the default strategy, so only equity rows do.
        if strategy != "equity" or self._random.random() >= _NO_STRATEGY_SHARE:
            row["strategy_id"] = strategy
        return row

    def add_trade(self, draws: _Draws, i: int, sessions: _Sessions) -> None:
        """All rows of trade `i`: signal episode, entry orders, open, monitors, scale-out, close."""
        rnd = self._random
        entry_us = int(draws.entry_us[i])
        exit_us = int(draws.exit_us[i])
        session = int(draws.session[i])
        session_open_us = int(sessions.opens_us[session])
        strategy = STRATEGIES[int(draws.strategy[i])]
        regime = REGIMES[int(draws.regime[i])]
        symbol = _SYMBOLS[int(draws.symbol[i])]
        bullish = bool(draws.bullish[i])
        direction, side = ("bullish", "long") if bullish else ("bearish", "short")
        sign = 1.0 if bullish else -1.0
        legacy = entry_us < self._legacy_cutoff
        self.legacy_trade_count += legacy
        components = self._components(draws, i, legacy=legacy)
        entry_score = float(draws.entry_score[i])
        entry_iso = _iso(entry_us)
        price = float(draws.price[i])
        notional = float(draws.notional[i])
        qty = max(1, int(notional / price))
        pnl_pct = float(draws.pnl_pct[i])
        hold_minutes = round((exit_us - entry_us) / _MINUTE_US, 1)
        reason = self._exit_reason(int(draws.exit_family[i]), hold_minutes)

        self._add_episode(
            strategy,
            symbol,
            direction,
            components,
            entry_score,
            open_us=session_open_us,
            end_us=entry_us,
            legacy=legacy,
        )
        position = _Position(strategy, symbol, bullish, qty, price, f"{symbol}|{side.upper()}|{entry_us // _SECOND_US}")
        self._add_entry_orders(position, entry_score, entry_us)
        open_us = entry_us + rnd.randrange(200, 50_000)
        open_row = {
            "ts": _iso(open_us),
            "type": "attribution",
            "trade_id": f"open_{symbol}_{entry_iso}",
            "symbol": symbol,
            "pnl_usd": 0.0,
            "context": {
                "direction": direction,
                "market_regime": regime,
                "entry_score": entry_score,
                "components": components,
                "entry_ts": entry_iso,
                "qty": qty,
                "entry_price": price,
                "notional_usd": round(qty * price, 2),
                "size_multiplier": round(rnd.uniform(0.5, 1.5), 2),
            },
        }
        self._add("attribution", "open", open_us, self._strategy_field(open_row, strategy))
        self._add_monitors(symbol, entry_us, exit_us, price, sign)

        remaining = 1.0
        if bool(draws.is_scaled[i]):
            fraction = float(draws.fraction[i])
            remaining -= fraction
            scale_us = int(draws.scale_us[i])
            scale_pnl = float(draws.scale_pnl_pct[i])
            scale_usd = round(scale_pnl / 100 * notional * fraction, 2)
            scale_price = round(price * (1 + sign * scale_pnl / 100), 2)
            scale_hold = round((scale_us - entry_us) / _MINUTE_US, 1)
            scale_reason = f"profit_target({rnd.choice((1, 2, 3))}%)"
            scale_iso = _iso(scale_us)
            self._add_action(
                position,
                "scale_out",
                scale_us - 90_000,
                max(1, round(qty * fraction)),
                scale_price,
                reason=scale_reason,
            )
            scale_row_us = scale_us + rnd.randrange(200, 900)
            scale_row = {
                "ts": _iso(scale_row_us),
                "type": "attribution",
                "trade_id": f"scale_{symbol}_{scale_iso}",
                "symbol": symbol,
                "entry_score": entry_score,
                "pnl_usd": scale_usd,
                "pnl_pct": round(scale_pnl * fraction, 4),
                "hold_minutes": scale_hold,
                "market_regime": regime,
                "context": {
                    "close_reason": scale_reason,
                    "fraction": fraction,
                    "pnl_pct": scale_pnl,
                    "entry_price": price,
                    "exit_price": scale_price,
                    "position_side": side,
                    "components": components,
                    "market_regime": regime,
                    "entry_ts": entry_iso,
                },
            }
            self._add("attribution", "scale", scale_row_us, self._strategy_field(scale_row, strategy))
            scale_exit_us = scale_us + rnd.randrange(20_000, 300_000)
            scale_exit = {
                "ts": _iso(scale_exit_us),
                "msg": "scale_out_attribution_logged",
                "symbol": symbol,
                "pnl_usd": scale_usd,
                "pnl_pct": round(scale_pnl, 2),
                "hold_min": scale_hold,
                "reason": scale_reason,
                "fraction": fraction,
            }
            self._add("exit", "scale_outcome", scale_exit_us, self._strategy_field(scale_exit, strategy))

        exit_price = round(price * (1 + sign * pnl_pct / 100), 2)
        pnl_usd = round(pnl_pct / 100 * notional * remaining, 2)
        first_token = reason.split("+", 1)[0]
        if rnd.random() < 0.03:
            self._add_action(position, "close_position_failed", exit_us - 2_500_000, 0, None, reason=first_token)
        closed_qty = max(1, round(qty * remaining))
        close_order_us = exit_us - rnd.randrange(30_000, 600_000)
        self._add_action(position, "close_position", close_order_us, closed_qty, exit_price, reason=first_token)
        close_row = {
            "ts": _iso(exit_us),
            "type": "attribution",
            "trade_id": f"close_{symbol}_{_iso(exit_us - rnd.randrange(100, 600))}",
            "symbol": symbol,
            "entry_score": entry_score,
            "pnl_usd": pnl_usd,
            "pnl_pct": pnl_pct,
            "hold_minutes": hold_minutes,
            "market_regime": regime,
            "context": {
                "close_reason": reason,
                "entry_price": price,
                "exit_price": exit_price,
                "position_side": side,
                "components": components,
                "market_regime": regime,
                "entry_ts": entry_iso,
                "time_of_day": _time_of_day((entry_us - session_open_us) / _MINUTE_US),
                "day_of_week": _DAY_NAMES[sessions.days[session].weekday()],
            },
        }
        line = self._add("attribution", "close", exit_us, self._strategy_field(close_row, strategy))
        self._close_lines.append((exit_us, line))
        exit_row_us = exit_us + rnd.randrange(20_000, 300_000)
        exit_row: dict[str, Any] = {
            "ts": _iso(exit_row_us),
            "msg": "attribution_logged",
            "symbol": symbol,
            "pnl_usd": pnl_usd,
            "pnl_pct": round(pnl_pct, 2),
            "hold_min": hold_minutes,
            "reason": reason,
        }
        if rnd.random() < 0.25:
            exit_row["market_regime"] = "BULL" if bullish else "BEAR"
        self._add("exit", "outcome", exit_row_us, self._strategy_field(exit_row, strategy))

    def _components(self, draws: _Draws, i: int, *, legacy: bool) -> dict[str, float]:
        contributions = draws.logged[i].tolist()
        present = draws.present[i].tolist()
        components = {
            _log_key(name, legacy=legacy): contributions[j] for j, name in enumerate(ENTRY_COMPONENTS) if present[j]
        }
        rnd = self._random
        if rnd.random() < _FRESHNESS_SHARE:
            components["freshness_factor"] = round(rnd.uniform(0.7, 1.0), 2)
        if rnd.random() < _UNKNOWN_KEY_SHARE:
            # Not part of entry_score: the bot's newest component, unknown to this contract.
            components[UNKNOWN_COMPONENT_KEY] = round(rnd.uniform(0.0, 1.0), 4)
            self.unknown_key_trade_count += 1
        return components

    def _add_episode(
        self,
        strategy: str,
        symbol: str,
        direction: str,
        components: dict[str, float],
        score: float,
        *,
        open_us: int,
        end_us: int,
        legacy: bool,
    ) -> None:
        """Repeated candidates for one symbol and direction, one per cycle, ending just before `end_us`."""
        rnd = self._random
        count = rnd.randint(5, 40)
        steps = [rnd.randrange(10 * _SECOND_US, 60 * _SECOND_US) for _ in range(count - 1)]
        last_us = end_us - rnd.randrange(500_000, 5 * _SECOND_US)
        room = last_us - open_us - 20 * _SECOND_US
        span = sum(steps)
        if span > room:
            # Early entries: the bot was only scanning since the open, so cycles come faster.
            steps = [step * room // span for step in steps]
        start_us = last_us - sum(steps)
        start_ts: str | int = _iso(start_us) if legacy else start_us // _SECOND_US
        at = start_us
        for number in range(1, count + 1):
            jittered = round(score * (1 + rnd.uniform(-0.06, 0.06)), 4)
            row = {
                "ts": _iso_ms(at),
                "type": "signal",
                "cluster": {
                    "ticker": symbol,
                    "direction": direction,
                    "composite_score": jittered,
                    "composite_meta": {"score": jittered, "components": components},
                    "gate_passed": True,
                    "source": "composite_v3",
                    "count": number,
                    "start_ts": start_ts,
                },
            }
            self._add("signals", "signal", at, self._strategy_field(row, strategy))
            if number < count:
                at += steps[number - 1]

    def _add_entry_orders(self, position: _Position, score: float, entry_us: int) -> None:
        rnd = self._random
        submitted_us = entry_us - rnd.randrange(1 * _SECOND_US, 3 * _SECOND_US)
        qty, price = position.qty, position.price
        limit_price = round(price * (1 + (0.0005 if position.bullish else -0.0005)), 2)
        filled = rnd.random() < 0.85
        entry_row = {
            "ts": _iso_ms(submitted_us),
            "type": "order",
            "symbol": position.symbol,
            "qty": qty,
            "side": position.entry_side,
            "score": score,
            "price": limit_price,
            "order_type": "limit",
            "status": "filled" if filled else "submitted",
        }
        self._add("orders", "entry", submitted_us, self._strategy_field(entry_row, position.strategy))
        if filled:
            self._add_action(position, "submit_limit_filled", entry_us - 150_000, qty, price)
            return
        self._add_action(position, "limit_not_filled", entry_us - 900_000, 0, None)
        self._add_action(position, "submit_market_fallback", entry_us - 100_000, qty, price)

    def _add_action(
        self,
        position: _Position,
        action: str,
        event_us: int,
        filled_qty: int,
        fill_price: float | None,
        *,
        reason: str | None = None,
    ) -> None:
        rnd = self._random
        entering = action in _ENTRY_ACTIONS
        row: dict[str, Any] = {
            "ts": _iso_ms(event_us),
            "type": "order",
            "action": action,
            "symbol": position.symbol,
            "side": position.entry_side if entering else position.exit_side,
            "order_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "filled_qty": filled_qty,
            "filled_avg_price": fill_price,
        }
        if reason is not None:
            row["reason"] = reason
        if fill_price is not None and rnd.random() < 0.85:
            row["slippage_bps"] = round(rnd.gauss(1.5, 2.0), 1)
        row["canonical_trade_id"] = position.canonical_id
        self._add("orders", "action", event_us, self._strategy_field(row, position.strategy))

    def _add_monitors(self, symbol: str, entry_us: int, exit_us: int, price: float, sign: float) -> None:
        """Non-outcome exit events while the position is open."""
        rnd = self._random
        count = rnd.randint(1, 4)
        for k in range(1, count + 1):
            at = entry_us + (exit_us - entry_us) * k // (count + 1)
            kind = rnd.choice(("position_monitor", "exit_check", "stop_updated"))
            row: dict[str, Any] = {"ts": _iso(at), "msg": kind, "symbol": symbol}
            if kind == "position_monitor":
                row["unrealized_pnl_pct"] = round(rnd.gauss(0.0, 1.0), 2)
                row["hold_min"] = round((at - entry_us) / _MINUTE_US, 1)
            elif kind == "exit_check":
                row["exit_score"] = round(rnd.uniform(0.0, 1.0), 3)
                row["threshold"] = 0.65
                row["decision"] = "hold"
            else:
                row["stop_price"] = round(price * (1 - sign * rnd.uniform(0.005, 0.02)), 2)
            self._add("exit", "other", at, row)

    def add_session_noise(self, open_us: int, close_us: int) -> None:
        """Per-session rows that are no trade's: exit cycles without a symbol and signal episodes never entered."""
        rnd = self._random
        at = open_us + rnd.randrange(0, 60 * _SECOND_US)
        while at < close_us:
            row = {"ts": _iso(at), "msg": "exit_cycle", "positions": rnd.randint(0, 12), "ms": rnd.randint(3, 400)}
            self._add("exit", "other", at, row)
            at += 10 * _MINUTE_US + rnd.randrange(-20 * _SECOND_US, 20 * _SECOND_US)
        for _ in range(rnd.randint(5, 12)):
            self._add_idle_episode(open_us, close_us)

    def _add_idle_episode(self, open_us: int, close_us: int) -> None:
        rnd = self._random
        symbol = rnd.choice(_SYMBOLS)
        direction = "bullish" if rnd.random() < _BULLISH_SHARE else "bearish"
        strategy = "momentum" if rnd.random() < _MOMENTUM_SHARE else "equity"
        start_us = rnd.randrange(open_us, close_us - 30 * _MINUTE_US)
        legacy = start_us < self._legacy_cutoff
        components: dict[str, float] = {}
        score = 0.0
        for name in ENTRY_COMPONENTS:
            if rnd.random() < _PRESENCE[name]:
                strength = 0.6 * rnd.gammavariate(_STRENGTH_SHAPE, _STRENGTH_SCALE)
                contribution = round(ENTRY_BASE_WEIGHTS[name] * strength, 4)
                score += contribution
                factor = self._raw_scale.get(name)
                logged = contribution if factor is None else round(math.copysign(factor, contribution) * strength, 4)
                components[_log_key(name, legacy=legacy)] = logged
        score = round(score, 4)
        count = rnd.randint(3, 25)
        end_us = start_us + sum(rnd.randrange(10 * _SECOND_US, 60 * _SECOND_US) for _ in range(count))
        self._add_episode(strategy, symbol, direction, components, score, open_us=open_us, end_us=end_us, legacy=legacy)

    def _exit_reason(self, family: int, hold_minutes: float) -> str:
        rnd = self._random
        name = _EXIT_FAMILIES[family]
        if name == "trail_stop":
            return "trail_stop" if rnd.random() < 0.5 else f"trail_stop(-{rnd.uniform(0.3, 1.5):.1f}%)"
        if name == "signal_decay":
            token = f"signal_decay({rnd.uniform(0.2, 0.8):.2f})"
            return f"trail_stop+{token}" if rnd.random() < 0.3 else token
        if name == "drawdown":
            token = f"drawdown({rnd.uniform(1.0, 4.0):.1f}%)"
            return f"{token}+stop" if rnd.random() < 0.3 else token
        if name == "time_exit":
            return (
                f"time_exit({round(hold_minutes / 60)}h)" if hold_minutes >= 60 else f"time_exit({hold_minutes:.0f}min)"
            )
        if name == "profit_target":
            return f"profit_target({rnd.choice((2, 3, 5))}%)"
        if name == "stale_trade":
            pick = rnd.random()
            if pick < 0.6:
                return f"stale_trade({hold_minutes:.0f}min,{rnd.uniform(-0.2, 0.2):.2f}%)"
            return "stale_position" if pick < 0.8 else f"stale_alpha_cutoff({hold_minutes:.0f}min,-0.00%)"
        if name == "displaced":
            return f"displaced_by_{rnd.choice(_SYMBOLS)}"
        if name == "regime":
            return rnd.choice(("regime_risk_off", "regime_shift"))
        return name

    def finish(self, *, garbage: bool) -> tuple[dict[str, list[bytes]], dict[str, dict[str, int]], dict[str, int], int]:
        """Each log's lines sorted by event time, with garbage and duplicates mixed in when asked; and the counts."""
        rnd = self._random
        duplicates = 0
        if garbage and self._close_lines:
            for event_us, line in rnd.sample(self._close_lines, min(_DUPLICATE_CLOSE_ROWS, len(self._close_lines))):
                # Same event time: the stable sort puts the repeat right behind the original.
                self._rows["attribution"].append((event_us, line))
                duplicates += 1
        lines: dict[str, list[bytes]] = {}
        garbage_counts: dict[str, int] = {}
        for name in LOG_FILES:
            rows = self._rows[name]
            rows.sort(key=lambda row: row[0])
            ordered = [line for _, line in rows]
            junk = _garbage_lines(rnd, ordered) if garbage else []
            for line in junk:
                ordered.insert(rnd.randrange(len(ordered) + 1), line)
            lines[name] = ordered
            garbage_counts[name] = len(junk)
        counts = {name: dict(kinds) for name, kinds in self._counts.items()}
        counts["attribution"]["duplicate"] = duplicates
        for name in LOG_FILES:
            counts[name]["garbage"] = garbage_counts[name]
            counts[name]["total"] = len(lines[name])
        return lines, counts, garbage_counts, duplicates


def _garbage_lines(rnd: random.Random, lines: list[bytes]) -> list[bytes]:
    """What a crashing, unlocked writer leaves: text, a cut-off row, a JSON non-object, undecodable bytes."""
    junk = [
        b"Traceback (most recent call last):\n",
        b'["exit_check", "AAPL", 0.42]\n',
        b"\xff\xfe\x00\x9c binary noise \x80\x81\n",
    ]
    if lines:
        victim = rnd.choice(lines)
        junk.append(victim[: max(1, len(victim) // 2)].rstrip(b"\n") + b"\n")
    junk.extend(b"WARNING: retrying in 5s\n" for _ in range(rnd.randint(0, 2)))
    return junk


def _time_of_day(minutes_since_open: float) -> str:
    if minutes_since_open < 120:
        return "morning"
    if minutes_since_open < 270:
        return "midday"
    return "afternoon"
