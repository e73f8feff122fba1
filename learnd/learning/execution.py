"""Execution quality: the "execution" learner counts order events per day, symbol, order type, side and exchange
time-of-day bucket, upserting one row per group; `execution_summary` turns those rows into rates, slippage and flags.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson

from learnd.config import ExecutionSettings
from learnd.errors import RecordError, StateError
from learnd.learning.learner import NOTHING, Applied, Learner
from learnd.records.parse import MAX_FIELD_MAGNITUDE, OrderRecord, Record, TradeOutcome

NAME: Final = "execution"
STATE_VERSION: Final = 1
# By the exchange's clock on the order's day: before its open, its first and last edge_minutes, between, after its
# close; "closed" on a day that is no session (a holiday, a weekend).
BUCKETS: Final[tuple[str, ...]] = ("pre", "open", "midday", "close", "post", "closed")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Localize = Callable[[int], datetime]
# A day's session (open, close) in minutes after the exchange's local midnight; None when the day is no session.
SessionHours = Callable[[date], tuple[int, int] | None]

# Action rows carry no order type: the action says which order it belongs to. The market fallback is the last
# step of a limit entry, so it counts against the limit order it replaced (that is what its rate measures).
_ACTION_TYPES: Final[dict[str, str]] = {
    "submit_limit_filled": "limit",
    "limit_not_filled": "limit",
    "limit_retry_failed": "limit",
    "submit_market_fallback": "limit",
    "market_fail": "market",
    "close_position": "close",
    "close_position_failed": "close",
    "scale_out": "close",
}
# Close-side actions have no entry row before them: each one is its own submission.
_SELF_SUBMITTED: Final = frozenset({"close_position", "close_position_failed", "scale_out"})
_FILL_ACTIONS: Final = frozenset({"submit_limit_filled", "submit_market_fallback", "close_position", "scale_out"})
# The actions that complete an entry row's submission (the bot logs them a few seconds after it), and how long after
# the submission one still does: such an action counts in its submission's day and bucket, so an order whose two
# rows fall on either side of a bucket's edge is one submission and one fill in one group, not a fill in each.
_COMPLETING: Final = frozenset(_ACTION_TYPES) - _SELF_SUBMITTED
_COMPLETION_WINDOW_US: Final = 10 * 60 * 1_000_000
Submission = tuple[int, str, str]  # event_us, day, bucket of the last entry row of a (strategy, symbol, side)


@dataclass(frozen=True, slots=True)
class ExecutionParams:
    """Exchange clock and flagging thresholds."""

    tz: str = "America/New_York"
    session_open: time = time(9, 30)
    session_close: time = time(16, 0)
    edge_minutes: int = 30
    retain_days: int = 1
    cost_share_threshold: float = 0.25
    min_fills: int = 5
    min_trades: int = 5
    # Each day's own session hours (the calendar's: early closes, holidays); None: session_open to session_close
    # every day.
    hours: SessionHours | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, config: ExecutionSettings, tz: str, hours: SessionHours | None = None) -> ExecutionParams:
        """The parameters of the `[execution]` settings, in the exchange's time zone `tz`, with the calendar's
        session `hours`."""
        return cls(
            tz=tz,
            hours=hours,
            edge_minutes=config.edge_minutes,
            retain_days=config.retain_days,
            cost_share_threshold=config.cost_share_threshold,
            min_fills=config.min_fills,
            min_trades=config.min_trades,
        )


def exchange_clock(tz: str) -> Localize:
    """Event time (epoch microseconds) to exchange-local time."""
    zone = ZoneInfo(tz)

    def localize(event_us: int) -> datetime:
        return (_EPOCH + timedelta(microseconds=event_us)).astimezone(zone)

    return localize


# The bucket of a session day's orders after its close (the next session's daily report reads them).
AFTER_CLOSE: Final = "post"


def time_bucket(local: datetime, params: ExecutionParams) -> str:
    """pre / open (first `edge_minutes`) / midday / close (last `edge_minutes`) / post, by the exchange's clock and
    the day's own session (a 13:00 close ends its close bucket then); closed on a day that is no session."""
    minute = local.hour * 60 + local.minute
    if params.hours is not None:
        found = params.hours(local.date())
        if found is None:
            return "closed"
        opens, closes = found
    else:
        opens = params.session_open.hour * 60 + params.session_open.minute
        closes = params.session_close.hour * 60 + params.session_close.minute
    if minute < opens:
        return "pre"
    if minute < opens + params.edge_minutes:
        return "open"
    if minute < closes - params.edge_minutes:
        return "midday"
    if minute < closes:
        return "close"
    return AFTER_CLOSE


@dataclass(slots=True)
class Counters:
    """What one group of order events adds up to. Slippage in bps is positive when it costs."""

    submissions: int = 0
    fills: int = 0
    filled_on_submit: int = 0
    limit_not_filled: int = 0
    limit_retry_failed: int = 0
    market_fallback: int = 0
    market_fail: int = 0
    close_failures: int = 0
    other_actions: int = 0
    slippage_logged_count: int = 0
    slippage_logged_bps_sum: float = 0.0
    slippage_computed_count: int = 0
    slippage_computed_bps_sum: float = 0.0
    cost_usd_sum: float = 0.0
    notional_usd_sum: float = 0.0
    first_us: int = 2**62
    # The fees the bot logged (`fee_amount`, dollars), and on how many rows.
    fee_count: int = 0
    fee_usd_sum: float = 0.0

    def add(self, order: OrderRecord) -> None:
        self.first_us = min(self.first_us, order.event_us)
        action = order.action
        if action is None:
            self.submissions += 1
            self.filled_on_submit += order.status == "filled"
        else:
            self.submissions += action in _SELF_SUBMITTED
            self.limit_not_filled += action == "limit_not_filled"
            self.limit_retry_failed += action == "limit_retry_failed"
            self.market_fallback += action == "submit_market_fallback"
            self.market_fail += action == "market_fail"
            self.close_failures += action == "close_position_failed"
            self.other_actions += action not in _ACTION_TYPES
            if action in _FILL_ACTIONS and _is_filled(order):
                self.fills += 1
        if order.fee_amount is not None:
            self.fee_count += 1
            self.fee_usd_sum += order.fee_amount
        self._add_slippage(order)

    def _add_slippage(self, order: OrderRecord) -> None:
        if order.slippage_bps is not None:
            bps = order.slippage_bps
            self.slippage_logged_count += 1
            self.slippage_logged_bps_sum += bps
        else:
            computed = computed_slippage_bps(order)
            if computed is None:
                return
            bps = computed
            self.slippage_computed_count += 1
            self.slippage_computed_bps_sum += bps
        notional = _notional(order)
        if notional is not None:
            self.notional_usd_sum += notional
            self.cost_usd_sum += bps / 10_000 * notional

    def merge(self, other: Counters) -> None:
        # Field by field, spelled out: the summaries merge tens of thousands of groups per report.
        self.submissions += other.submissions
        self.fills += other.fills
        self.filled_on_submit += other.filled_on_submit
        self.limit_not_filled += other.limit_not_filled
        self.limit_retry_failed += other.limit_retry_failed
        self.market_fallback += other.market_fallback
        self.market_fail += other.market_fail
        self.close_failures += other.close_failures
        self.other_actions += other.other_actions
        self.slippage_logged_count += other.slippage_logged_count
        self.slippage_logged_bps_sum += other.slippage_logged_bps_sum
        self.slippage_computed_count += other.slippage_computed_count
        self.slippage_computed_bps_sum += other.slippage_computed_bps_sum
        self.cost_usd_sum += other.cost_usd_sum
        self.notional_usd_sum += other.notional_usd_sum
        self.first_us = min(self.first_us, other.first_us)
        self.fee_count += other.fee_count
        self.fee_usd_sum += other.fee_usd_sum

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _COUNTER_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counters:
        # Rows and states written before the fees were counted have none. A null (a sum that was not finite, as
        # older versions could write) is refused here, not added later.
        counters = cls(**{name: data[name] for name in _COUNTER_FIELDS if name in data})
        missing = [name for name in _COUNTER_FIELDS if getattr(counters, name) is None]
        if missing:
            raise ValueError(f"execution counters without a value: {', '.join(missing)}")
        return counters


_COUNTER_FIELDS: Final = tuple(item.name for item in fields(Counters))


def computed_slippage_bps(order: OrderRecord) -> float | None:
    """Slippage of a fill against the decision price in the same row (buy: paid above, sell: got below), or None;
    None too beyond the bound every logged figure keeps (a price of 1e-300 made it infinite, summed into every
    figure of its group, written as null and read back as None: the group's reports failed for good)."""
    side = (order.side or "").casefold()
    if order.fill_price is None or order.price is None or order.price <= 0 or side not in ("buy", "sell"):
        return None
    move = (order.fill_price - order.price) / order.price * 10_000
    if not abs(move) <= MAX_FIELD_MAGNITUDE:
        return None
    return move if side == "buy" else -move


def _is_filled(order: OrderRecord) -> bool:
    if order.filled_qty is not None:
        return order.filled_qty > 0
    return order.fill_price is not None


def _notional(order: OrderRecord) -> float | None:
    price = order.fill_price if order.fill_price is not None else order.price
    qty = order.filled_qty if order.filled_qty else order.qty
    if price is None or qty is None:
        return None
    return abs(price * qty)


GroupKey = tuple[str, str, str, str, str, str]  # day, strategy, symbol, order type, side, bucket


def order_group(
    order: OrderRecord,
    localize: Localize,
    params: ExecutionParams,
    submissions: dict[tuple[str, str, str], Submission] | None = None,
) -> GroupKey:
    """The group an order event counts in: exchange-local day, strategy, symbol, order type, side, bucket.

    With `submissions` (the last entry row of each strategy, symbol and side, in file order; updated here), an
    action completing a submission made up to ten minutes before counts in that submission's day and bucket."""
    local = localize(order.event_us)
    action = order.action
    if order.order_type:
        order_type = order.order_type.casefold()
    elif action is not None:
        order_type = _ACTION_TYPES.get(action, "other")
    else:
        order_type = "unknown"
    side = (order.side or "unknown").casefold()
    day, bucket = local.date().isoformat(), time_bucket(local, params)
    if submissions is not None:
        who = (order.strategy, order.symbol, side)
        if action is None:
            submissions[who] = (order.event_us, day, bucket)
        elif action in _COMPLETING:
            submitted = submissions.get(who)
            if submitted is not None and 0 <= order.event_us - submitted[0] <= _COMPLETION_WINDOW_US:
                _, day, bucket = submitted
    return (day, order.strategy, order.symbol, order_type, side, bucket)


class ExecutionLearner(Learner):
    """Counts order events (file order) per group and upserts the group's row after each one.

    Memory holds only the groups of the latest `retain_days` + 1 exchange days (by the latest event time seen).
    An order for a day already let go counts in a new generation of its groups (row key suffix `#n`), which the
    summary adds up: rows are never overwritten with partial counts, and the state stays a function of the lines.
    """

    name = NAME
    record_types = (OrderRecord,)

    def __init__(self, params: ExecutionParams, state: bytes | None = None, localize: Localize | None = None) -> None:
        self.params = params
        self._localize = localize or exchange_clock(params.tz)
        self._dirty = False
        self._groups: dict[GroupKey, tuple[int, Counters]] = {}
        self.watermark_day = ""
        self.generations: dict[str, int] = {}
        self.order_count = 0
        self._submissions: dict[tuple[str, str, str], Submission] = {}
        # The day of the order before, when the watermark is ahead of it (one order dated far ahead, a host clock
        # jump): days let go as the orders move on behind the watermark too, so memory stays bounded.
        self.last_day = ""
        if state is not None:
            document = orjson.loads(state)
            if document.get("version") != STATE_VERSION:
                raise StateError(f"execution learner state version {document.get('version')!r} is not {STATE_VERSION}")
            self.watermark_day = document["watermark_day"]
            self.generations = dict(document["generations"])
            self.order_count = document["order_count"]
            for item in document["groups"]:
                self._groups[_group_key(item["group"])] = (item["generation"], Counters.from_json(item["counters"]))
            for strategy, symbol, side, event_us, day, bucket in document.get("submissions", []):
                self._submissions[strategy, symbol, side] = (event_us, day, bucket)
            self.last_day = document.get("last_day", "")

    def apply(self, source: str, record: Record) -> Applied:
        if not isinstance(record, OrderRecord):
            return NOTHING
        try:
            group = order_group(record, self._localize, self.params, self._submissions)
        except (OverflowError, ValueError) as error:
            # Checked before anything changes, so the pipeline can quarantine the line instead of crashing.
            raise RecordError("timestamp_out_of_range", f"{record.event_us}: {error}") from None
        self._dirty = True
        self.order_count += 1
        day = group[0]
        if day > self.watermark_day:
            self.watermark_day = day
            self._evict(self._oldest_kept_day())
        elif day > self.last_day and self.last_day:
            # Behind the watermark and moving on: what lies `retain_days` behind this order is let go as well.
            self._evict(_days_before(day, self.params.retain_days))
        self.last_day = day
        kept = self._groups.get(group)
        if kept is None:
            generation = 0
            if day < self._oldest_kept_day():
                # The day was let go: its rows are final, so this one starts a fresh generation of its own.
                generation = self.generations[day] = self.generations.get(day, 0) + 1
            kept = self._groups[group] = (generation, Counters())
        generation, counters = kept
        counters.add(record)
        return Applied(learned=True, rows=(self._row(group, generation, counters),))

    def _oldest_kept_day(self) -> str:
        if not self.watermark_day:
            return ""
        return _days_before(self.watermark_day, self.params.retain_days)

    def _evict(self, oldest: str) -> None:
        for group in [group for group in self._groups if group[0] < oldest]:
            del self._groups[group]
        for who in [who for who, (_, day, _) in self._submissions.items() if day < oldest]:
            del self._submissions[who]

    def _row(self, group: GroupKey, generation: int, counters: Counters) -> tuple[str, int, bytes]:
        key = "|".join(group) + (f"#{generation}" if generation else "")
        body = {"group": list(group), "generation": generation, "counters": counters.to_json()}
        return key, counters.first_us, orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    @property
    def open_group_count(self) -> int:
        return len(self._groups)

    def gauges(self) -> dict[str, float]:
        return {"execution_orders": self.order_count}

    def dump(self) -> bytes | None:
        if not self._dirty:
            return None
        self._dirty = False
        return self.state()

    def state(self) -> bytes:
        """The full state (what `dump` commits), whether or not it changed."""
        return orjson.dumps(
            {
                "version": STATE_VERSION,
                "watermark_day": self.watermark_day,
                "generations": self.generations,
                "order_count": self.order_count,
                "groups": [
                    {"group": list(group), "generation": generation, "counters": counters.to_json()}
                    for group, (generation, counters) in sorted(self._groups.items())
                ],
                "submissions": [[*who, *submitted] for who, submitted in sorted(self._submissions.items())],
                "last_day": self.last_day,
            },
            option=orjson.OPT_SORT_KEYS,
        )


def _days_before(day: str, days: int) -> str:
    return (date.fromisoformat(day) - timedelta(days=days)).isoformat()


def _group_key(items: list[str]) -> GroupKey:
    return (items[0], items[1], items[2], items[3], items[4], items[5])


def aggregates_from_rows(rows: Iterable[tuple[str, int, bytes]]) -> dict[GroupKey, Counters]:
    """The store's learner_rows of this learner (key, event_us, body), generations added up per group."""
    aggregates, _ = aggregates_of(GroupRow(body) for _, _, body in rows)
    return aggregates


class GroupRow:
    """A learner row read for the summaries: its group and counters (one generation of the group), and, made when
    first asked, those counters added up as a summary adds a group's generations (from zero) with the group's
    view: what a group one row holds comes to. A function of the row's bytes, so a report job can keep it for
    the other reports that read the same day; nobody changes it."""

    __slots__ = ("_view", "_whole", "counters", "group")

    def __init__(self, body: bytes) -> None:
        document = orjson.loads(body)
        self.group = _group_key(document["group"])
        self.counters = Counters.from_json(document["counters"])
        self._whole: Counters | None = None
        self._view: dict[str, Any] | None = None

    def whole(self) -> Counters:
        """The group's counters when this row holds all of it."""
        if self._whole is None:
            whole = Counters()
            whole.merge(self.counters)
            self._whole = whole  # kept once whole: a merge that failed half-way keeps nothing
        return self._whole

    def view(self) -> dict[str, Any]:
        """group_view of the group when this row holds all of it."""
        if self._view is None:
            self._view = group_view(self.group, self.whole())
        return self._view


def aggregates_of(rows: Iterable[GroupRow]) -> tuple[dict[GroupKey, Counters], dict[GroupKey, dict[str, Any]]]:
    """Generations added up per group, and the views of the groups one row holds (what execution_summary takes)."""
    rows = list(rows)
    generations: dict[GroupKey, int] = {}
    for row in rows:
        generations[row.group] = generations.get(row.group, 0) + 1
    aggregates: dict[GroupKey, Counters] = {}
    views: dict[GroupKey, dict[str, Any]] = {}
    for row in rows:
        if generations[row.group] == 1:
            aggregates[row.group] = row.whole()
            views[row.group] = row.view()
        else:
            found = aggregates.get(row.group)
            if found is None:
                found = aggregates[row.group] = Counters()
            found.merge(row.counters)
    return aggregates, views


def group_view(group: GroupKey, counters: Counters) -> dict[str, Any]:
    """A group's entry in the summary's `groups`: its key and rates."""
    return {
        "day": group[0],
        "strategy": group[1],
        "symbol": group[2],
        "order_type": group[3],
        "side": group[4],
        "bucket": group[5],
        **_rates(counters, effective_fills(counters)),
    }


def aggregate_orders(
    orders: Iterable[OrderRecord], params: ExecutionParams | None = None, localize: Localize | None = None
) -> dict[GroupKey, Counters]:
    """Group order events directly (no learner, no eviction): what the learner's rows add up to."""
    params = params or ExecutionParams()
    clock = localize or exchange_clock(params.tz)
    totals: dict[GroupKey, Counters] = {}
    submissions: dict[tuple[str, str, str], Submission] = {}
    for order in orders:
        group = order_group(order, clock, params, submissions)
        totals.setdefault(group, Counters()).add(order)
    return totals


def effective_fills(counters: Counters) -> int:
    """Fills of one group. A fill is logged as an action row, as an entry row's status, or both (one order): the
    larger count is the group's, so neither family alone undercounts and both together do not double count."""
    return max(counters.fills, counters.filled_on_submit)


def _rates(counters: Counters, fills: int) -> dict[str, Any]:
    # Every figure of every group and scope of a report: each quotient rounded where it is written, spelled out
    # (no helper call per figure).
    subs = counters.submissions
    logged, computed = counters.slippage_logged_count, counters.slippage_computed_count
    logged_sum, computed_sum = counters.slippage_logged_bps_sum, counters.slippage_computed_bps_sum
    measured = logged + computed
    if logged and computed:
        source: str | None = "mixed"
    elif logged:
        source = "logged"
    elif computed:
        source = "computed"
    else:
        source = None
    limit_not_filled, market_fallback = counters.limit_not_filled, counters.market_fallback
    return {
        "submissions": subs,
        "fills": fills,
        "fill_rate": _round(fills / subs) if subs else None,
        "limit_not_filled": limit_not_filled,
        "limit_not_filled_rate": _round(limit_not_filled / subs) if subs else None,
        "market_fallback": market_fallback,
        "market_fallback_rate": _round(market_fallback / subs) if subs else None,
        "limit_retry_failed": counters.limit_retry_failed,
        "market_fail": counters.market_fail,
        "close_failures": counters.close_failures,
        "other_actions": counters.other_actions,
        "slippage_bps": _round((logged_sum + computed_sum) / measured) if measured else None,
        "slippage_logged_bps": _round(logged_sum / logged) if logged else None,
        "slippage_computed_bps": _round(computed_sum / computed) if computed else None,
        "slippage_count": measured,
        "slippage_source": source,
        "cost_usd": _round(counters.cost_usd_sum),
        "notional_usd": _round(counters.notional_usd_sum),
        "fee_count": counters.fee_count,
        "fees_usd": _round(counters.fee_usd_sum),
    }


_DIGITS: Final = 6  # what the summaries round their figures to


def _round(value: float) -> float:
    """`value` rounded as reported; adding 0.0 turns -0.0 into 0.0, so a zero prints one way whatever its sum."""
    return round(value, _DIGITS) + 0.0


@dataclass(frozen=True, slots=True)
class SymbolOutcomes:
    """A (strategy, symbol)'s closed trades (partial closes left out): how many, and their P&L summed exactly."""

    trades: int
    pnl_pct_total: float
    pnl_usd_total: float


def symbol_outcomes(outcomes: Iterable[TradeOutcome]) -> dict[tuple[str, str], SymbolOutcomes]:
    """Per (strategy, symbol), the closed trades among `outcomes`."""
    closed: dict[tuple[str, str], list[TradeOutcome]] = {}
    for outcome in outcomes:
        if not outcome.is_partial:
            closed.setdefault((outcome.strategy, outcome.symbol), []).append(outcome)
    return {
        key: SymbolOutcomes(
            len(trades), math.fsum(trade.pnl_pct for trade in trades), math.fsum(trade.pnl_usd for trade in trades)
        )
        for key, trades in closed.items()
    }


def execution_summary(
    aggregates: Mapping[GroupKey, Counters],
    outcomes: Mapping[tuple[str, str], SymbolOutcomes],
    params: ExecutionParams | None = None,
    *,
    views: Mapping[GroupKey, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Rates and slippage per group and per symbol, and the symbols whose execution cost eats a material share
    of their mean trade P&L. Cost per trade is a round trip: twice the mean slippage (bps -> percent of price),
    against the mean pnl_pct of the symbol's closed trades (already net of that cost). A symbol is flagged when
    the share reaches `cost_share_threshold`, or when its trades lose only because of the cost. JSON-able and
    deterministic. `views` are group_view's of some groups, made before (shared, never changed here)."""
    params = params or ExecutionParams()
    views = views or {}
    groups: list[dict[str, Any]] = []
    # Each symbol's and (order type, bucket)'s counters and fills, its groups merged in key order (the same floats
    # whichever way the report is read).
    per_symbol: dict[tuple[str, str], _Scope] = {}
    per_bucket: dict[tuple[str, str], _Scope] = {}
    for key, counters in sorted(aggregates.items()):
        view = views.get(key)
        groups.append(view if view is not None else group_view(key, counters))
        filled = effective_fills(counters)
        scope = per_symbol.get((key[1], key[2]))
        if scope is None:
            scope = per_symbol[key[1], key[2]] = _Scope()
        scope.counters.merge(counters)
        scope.fills += filled
        scope = per_bucket.get((key[3], key[5]))
        if scope is None:
            scope = per_bucket[key[3], key[5]] = _Scope()
        scope.counters.merge(counters)
        scope.fills += filled
    symbols: list[dict[str, Any]] = []
    for (strategy, symbol), scope in sorted(per_symbol.items()):
        view = {"strategy": strategy, "symbol": symbol, **_rates(scope.counters, scope.fills)}
        view.update(_cost_share(view, outcomes.get((strategy, symbol)), params))
        symbols.append(view)
    return {
        "params": {
            "tz": params.tz,
            "edge_minutes": params.edge_minutes,
            "cost_share_threshold": params.cost_share_threshold,
            "min_fills": params.min_fills,
            "min_trades": params.min_trades,
        },
        "groups": groups,
        "symbols": symbols,
        "buckets": [
            {"order_type": key[0], "bucket": key[1], **_rates(scope.counters, scope.fills)}
            for key, scope in sorted(per_bucket.items())
        ],
        "flagged": [
            {"strategy": row["strategy"], "symbol": row["symbol"], "reason": row["flag_reason"]}
            for row in symbols
            if row["flagged"]
        ],
    }


class _Scope:
    """What a summary adds up of the groups in one of its scopes (a symbol, an order type's bucket)."""

    __slots__ = ("counters", "fills")

    def __init__(self) -> None:
        self.counters = Counters()
        self.fills = 0


def _cost_share(view: Mapping[str, Any], outcomes: SymbolOutcomes | None, params: ExecutionParams) -> dict[str, Any]:
    count = outcomes.trades if outcomes is not None else 0
    mean_pnl = outcomes.pnl_pct_total / count if outcomes is not None and count else None
    mean_pnl_usd = outcomes.pnl_usd_total / count if outcomes is not None and count else None
    slippage = view["slippage_bps"]
    cost_pct = 2 * slippage / 100 if slippage is not None else None
    share: float | None = None
    reason: str | None = None
    enough = view["slippage_count"] >= params.min_fills and count >= params.min_trades
    if enough and cost_pct is not None and mean_pnl is not None and cost_pct > 0:
        if mean_pnl > 0:
            share = cost_pct / mean_pnl
            if share >= params.cost_share_threshold:
                reason = "cost_share"
        elif mean_pnl + cost_pct > 0:
            # Trades that paid before costs and lose after them: execution ate all of the edge.
            reason = "cost_exceeds_pnl"
    return {
        "trades": count,
        "mean_pnl_pct": _round(mean_pnl) if mean_pnl is not None else None,
        "mean_pnl_usd": _round(mean_pnl_usd) if mean_pnl_usd is not None else None,
        "round_trip_cost_pct": _round(cost_pct) if cost_pct is not None else None,
        "cost_share": _round(share) if share is not None else None,
        "flagged": reason is not None,
        "flag_reason": reason,
    }


def render_execution(summary: Mapping[str, Any], *, limit: int = 20) -> str:
    """The execution section of a report (and `learnd execution`): per-symbol rates, slippage and flags."""
    lines = [f"Execution quality: {len(summary['symbols'])} symbols, {len(summary['flagged'])} flagged"]
    header = (
        f"  {'strategy':<10} {'symbol':<7} {'subs':>5} {'fill':>7} {'lnf':>7} {'fallbk':>7} {'closefail':>9} "
        f"{'slip bps':>9} {'source':<9} {'fees $':>9} {'pnl%':>7} {'cost/pnl':>8}"
    )
    busiest = sorted(summary["symbols"], key=lambda row: (-row["submissions"], row["strategy"], row["symbol"]))
    if busiest:
        lines.append(header)
    for row in busiest[:limit]:
        mark = " !" if row["flagged"] else ""
        lines.append(
            f"  {row['strategy']:<10} {row['symbol']:<7} {row['submissions']:>5} {_pct(row['fill_rate']):>7} "
            f"{_pct(row['limit_not_filled_rate']):>7} {_pct(row['market_fallback_rate']):>7} "
            f"{row['close_failures']:>9} {_num(row['slippage_bps']):>9} {row['slippage_source'] or '-':<9} "
            f"{_num(row['fees_usd'] if row['fee_count'] else None):>9} "
            f"{_num(row['mean_pnl_pct']):>7} {_pct(row['cost_share']):>8}{mark}"
        )
    for item in summary["flagged"]:
        lines.append(f"  flagged {item['strategy']} {item['symbol']}: {item['reason']}")
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
