"""The trade learner: closed trades feed the entry model, exit outcomes the exit model, in event-time order.

Shell around the pure models: it maps event time to trading sessions, replays the ledger when a record
arrives out of event order (so the state is a function of the lines, not of how they arrived), and hands its
model to the exports as a LearnedModel.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

import orjson

from learnd.config import LearningParams
from learnd.errors import RecordError
from learnd.learning.entry_model import MODEL as ENTRY_MODEL
from learnd.learning.entry_model import STATE_VERSION as ENTRY_STATE_VERSION
from learnd.learning.entry_model import EntryModel, regime_scope
from learnd.learning.exit_model import ExitModel
from learnd.learning.learner import (
    LEARNED,
    NOTHING,
    Applied,
    History,
    LearnedModel,
    Learner,
    PointReader,
    ReplayPoints,
)
from learnd.learning.multipliers import GLOBAL_SCOPE, TICKER_SCOPE_PREFIX, MultiplierChange
from learnd.records.components import ENTRY_COMPONENTS
from learnd.records.parse import ExitOutcome, Record, TradeOutcome
from learnd.sessions.exchange import CalendarError, ExchangeCalendar, from_epoch_us

NAME: Final = "trades"
STATE_VERSION: Final = 1
# The weekly decay touches a multiplier whose component had no evidence in its scope for this many sessions.
STALE_IDLE_SESSIONS: Final = 20
# The reasons of the multiplier changes a replay logs: a record learned out of event order (or a state kept by an
# older learnd), or new learning parameters (a reload).
REPLAY_OUT_OF_ORDER: Final = "replay_out_of_order"
RETRAINED: Final = "retrained_new_parameters"
_DAY_US: Final = 86_400_000_000
# How far after the newest trade (or exit) learned from its file one may lie before it alone is refused (see
# _refuse_far_ahead): a garbled year or a clock set years ahead, never a pause of the bot's, nor a bot or strategy
# that trades once a month (at 14 days such a bot lost every other trade).
FAR_AHEAD_US: Final = 366 * _DAY_US
# A replay starts from the newest checkpoint that holds none of the trades it must place: the entry side's state
# as a replay has it, taken every CHECKPOINT_TRADES trades learned in event order, each the learner's stored state
# (about 250 KB on a simulated home of 5,000 trades, 1.9 ms to take). The newest KEPT_CHECKPOINTS are kept as
# taken; older ones are thinned (see _thinned) so that a late trade d trades deep costs at most about 2d plus
# CHECKPOINT_TRADES trades, never all of history (11 checkpoints at 400,000 trades; at most THINNED_CHECKPOINTS
# beyond the newest, the oldest go first). They are committed with the state (replay_points) and known again at
# start, so a restart keeps them; once committed, a checkpoint's state is read back from the store when a replay
# starts from it (bind_replay_points), not held in memory.
CHECKPOINT_TRADES: Final = 2_000
KEPT_CHECKPOINTS: Final = 4
THINNED_CHECKPOINTS: Final = 12
# The exit side has checkpoints of its own (its model and newest exit: about 6 KB, 0.04 ms to take), kept by the
# same rules, every CHECKPOINT_EXITS exits learned in event order (an exit costs about 6 us to relearn).
CHECKPOINT_EXITS: Final = 2_000
# A replay offered in steps (replay_steps) hands back after about this long: some 200 trades relearned at a time.
REPLAY_STEP_S: Final = 0.05
_STATE_OPTIONS: Final = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    """The entry side as a replay in event order has it once it learned every ledger trade with an event time up
    to `through_us`, and no other (serialized: the learner goes on changing its arrays in place; None once
    committed: the store holds it)."""

    through_us: int
    ordinal: int  # the trades it holds
    state: bytes | None
    number: int  # in the order this learner took them (the store's key)


# A replay's session rows (upserted) and the multipliers it changed.
_Replayed: TypeAlias = tuple[list[tuple[str, int, bytes]], list[MultiplierChange]]


def iso_from_us(event_us: int) -> str:
    """An event time as ISO-8601 UTC with microseconds."""
    return datetime.fromtimestamp(event_us / 1_000_000, tz=UTC).isoformat(timespec="microseconds")


def change_document(change: MultiplierChange) -> dict[str, Any]:
    """One line of data/weight_learning.jsonl."""
    return {
        "event_us": change.event_us,
        "event_ts": iso_from_us(change.event_us),
        "strategy": change.strategy,
        "model": change.model,
        "component": change.component,
        "regime": change.regime,
        "old": change.old,
        "new": change.new,
        "reason": change.reason,
        "samples": change.samples,
    }


class TradeLearner(Learner):
    """Feeds TradeOutcome records to the entry model and ExitOutcome records to the exit model.

    Records are learned in arrival order while event time does not go backwards (equal times keep file order,
    which a live run and a backfill share). A record older than the last one learned (history backfilled after
    live lines, a late line from a rotated copy) rebuilds the model from the ledger in event order, once per batch.
    """

    name = NAME
    record_types = (TradeOutcome, ExitOutcome)

    def __init__(self, params: LearningParams, calendar: ExchangeCalendar, state: bytes | None = None) -> None:
        self.params = params
        self.calendar = calendar
        self._history: History | None = None
        self._point_reader: PointReader | None = None
        self._replay_pending = False
        self._exit_replay_pending = False
        # Why the pending replay runs, as the reason its multiplier changes are logged with.
        self._replay_reason = REPLAY_OUT_OF_ORDER
        # The replays under way (replay_steps), and what the replays of this batch returned so far (rows and
        # changes for finish_batch; None when none ran).
        self._replay: Generator[None, None, _Replayed] | None = None
        self._replayed: _Replayed | None = None
        self._checkpoints: list[_Checkpoint] = []  # oldest first
        self._since_checkpoint = 0  # trades learned in event order since the newest checkpoint
        self._exit_checkpoints: list[_Checkpoint] = []  # the exit side's, oldest first
        self._since_exit_checkpoint = 0
        self._next_number = 0  # of the next checkpoint taken
        self._committed_number = -1  # the newest checkpoint number handed to the store (replay_points)
        self._checkpoints_changed = False
        self._dirty = False
        self._model: LearnedModel | None = None
        # The entry side's view and state as JSON, kept while only the exit side changes (an exit, most commits in a
        # live run): the entry side is most of both and costs about 1.9 and 0.6 ms to make again. The view is also
        # kept per strategy: a trade changes its own strategy's alone.
        self._entry_view: dict[str, Any] | None = None
        self._strategy_views: dict[str, dict[str, Any]] = {}
        self._entry_state: orjson.Fragment | None = None
        # The entry state was written by an older learnd: the entry side is relearned from the ledger before the
        # next commit (finish_batch); until then the model is empty.
        self.is_relearning = False
        # Per side and source ("trade|attribution"): the newest event time learned from it, and the key of the record
        # before when it was refused as far ahead of that (see _refuse_far_ahead).
        self.newest_by_source: dict[str, int] = {}
        self.far_ahead_refused: dict[str, str] = {}
        if state is None:
            self.entry = EntryModel(params)
            self.exit = ExitModel(params)
            self.last_trade: tuple[int, str] = (-1, "")
            self.last_exit: tuple[int, str] = (-1, "")
            self.counts: dict[str, int] = {"trades": 0, "partials": 0, "exits": 0, "replays": 0, "late": 0}
            # The session of the newest trade learned (still open), and the last session closed.
            self.current_session = -1
            self.closed_through = -1
            self.reported_through = -1
            # (strategy, component, scope) -> the last session whose trades carried that component there.
            self.last_evidence: dict[tuple[str, str, str], int] = {}
        else:
            document = orjson.loads(state)
            entry_state = document["entry"]
            if _is_older_entry_state(entry_state):
                self.entry = EntryModel(params)
                self.is_relearning = self._replay_pending = True
            else:
                self.entry = EntryModel.from_state(params, entry_state)
            self.exit = ExitModel.from_state(params, document["exit"])
            self.last_trade = (document["last_trade"][0], document["last_trade"][1])
            self.last_exit = (document["last_exit"][0], document["last_exit"][1])
            self.counts = dict(document["counts"])
            if self.is_relearning:
                self.counts["replays"] += 1  # a replay counts when it is asked for, as a late trade's or a retrain's
            self.newest_by_source = dict(document.get("newest_by_source", {}))
            self.far_ahead_refused = dict(document.get("far_ahead_refused", {}))
            learned_under = document.get("params")
            if learned_under is not None and learned_under != self._params_hash():
                # Learned under other parameters (changed while learnd was stopped): relearned under these at the
                # first commit, as a reload that changes them does; otherwise the old state went on under the new
                # parameters, and a late trade later relearned the entry side alone.
                self.retrain(params)
            # Keys added after the first stores were written default to "nothing closed or seen yet".
            self.current_session = int(document.get("current_session", -1))
            self.closed_through = int(document.get("closed_through", -1))
            # A state from before the daily job's close was kept apart: every closed session counted as reported.
            self.reported_through = int(document.get("reported_through", self.closed_through))
            self.last_evidence = {
                (strategy, component, scope): int(session)
                for strategy, component, scope, session in document.get("last_evidence", [])
            }

    def bind_history(self, history: History) -> None:
        """Where to read every record of a ledger kind in event order (for replays)."""
        self._history = history

    def bind_replay_points(self, reader: PointReader) -> None:
        """Where to read the state of a checkpoint this learner committed (replay_points), by its number."""
        self._point_reader = reader

    def apply(self, source: str, record: Record) -> Applied:
        rows: list[tuple[str, int, bytes]] = []
        changes: list[MultiplierChange] = []
        if isinstance(record, TradeOutcome):
            self._refuse_far_ahead(f"trade|{source}", record)
        elif isinstance(record, ExitOutcome):
            self._refuse_far_ahead(f"exit|{source}", record)
        if self._replay is not None:
            self._run_replay_to_end()  # it read the ledger as it was: every record after it waits for its end
        if isinstance(record, TradeOutcome):
            session = self._session(record.event_us)
            late = session <= self.closed_through
            if session <= self.reported_through:
                # Its session's daily job ran before it arrived (its report is written without it): counted and
                # listed as late. A session the stream closed (a trade of a later one came first) is not: its
                # report is still to be written, with it, and whether the stream closed it depends on the batches.
                self.counts["late"] += 1
                rows.append(self._late_row(record, session))
            self._checkpoints = self._still_valid(self._checkpoints, record.event_us)
            if record.event_us < self.last_trade[0]:
                # Older than what was learned: the whole batch's trades are relearned in event order once, at the
                # end of the batch (finish_batch), instead of once per such trade. Counted per such trade, as exits
                # are, so that the count does not depend on how the lines were batched (a daemon's commits and a
                # backfill's differ).
                self._replay_pending = True
                self.counts["replays"] += 1
            elif late:
                # In a session settled without it (a backfill settles the session after it): relearned the same
                # way, the sessions closed again after it.
                self._replay_pending = True
            if not self._replay_pending:
                rows_now, changes = self._learn_in_order(record, session)
                rows += rows_now
            elif record.event_us >= self.last_trade[0]:
                self.last_trade = (record.event_us, record.key)  # the newest so far, as the relearn leaves it
            self.counts["partials" if record.is_partial else "trades"] += 1
        elif isinstance(record, ExitOutcome):
            session = self._session(record.event_us)
            self._exit_checkpoints = self._still_valid(self._exit_checkpoints, record.event_us)
            if record.event_us < self.last_exit[0]:
                # Older than what was learned: the exits are relearned in event order once, at the end of the
                # batch, as the trades are (a burst of late exits relearned every exit once each). Counted per
                # late exit, as when each was relearned at once, so the count does not depend on the batches.
                self._exit_replay_pending = True
                self.counts["replays"] += 1
            elif self._exit_replay_pending:
                self.last_exit = (record.event_us, record.key)  # the newest so far, as the relearn leaves it
            else:
                changes = self._learn_exit_in_order(record, session, self.counts["exits"])
            self.counts["exits"] += 1
        else:
            return NOTHING
        self._changed(entry=False)  # the entry side's were noted as they happened (or a replay's will be)
        if not changes and not rows:
            return LEARNED  # most records: nothing moved, nothing to keep
        return Applied(learned=True, changes=tuple(change_document(change) for change in changes), rows=tuple(rows))

    def _refuse_far_ahead(self, stream: str, record: TradeOutcome | ExitOutcome) -> None:
        """A trade (or exit) dated more than FAR_AHEAD_US after the newest one learned from its file (`stream`: side
        and source), when the one before it there was not: a garbled date or a host clock set years ahead, which
        learned would make every later record older than it (each one late, relearned, its evidence decayed to that
        date). Refused (RecordError: the line is quarantined) and noted; the next record of the file as far ahead,
        another one (a repeat of the same row is refused again), says the clock did move, and is learned. Each file
        is judged by its own records in file order, as every path feeds them, however the files interleave."""
        event_us = record.event_us
        newest_us = self.newest_by_source.get(stream, -1)
        far_ahead = newest_us >= 0 and event_us - newest_us > FAR_AHEAD_US
        refused = self.far_ahead_refused.get(stream)
        if far_ahead and (refused is None or refused == record.key):
            self.far_ahead_refused[stream] = record.key
            self._dirty = True
            raise RecordError(
                "far_ahead",
                f"{from_epoch_us(event_us).isoformat()} is more than {FAR_AHEAD_US // _DAY_US} days after the newest "
                f"record learned from {stream.partition('|')[2]} ({from_epoch_us(newest_us).isoformat()}): not "
                "learned (the next one as far ahead would be)",
            )
        self.far_ahead_refused.pop(stream, None)
        if event_us > newest_us:
            self.newest_by_source[stream] = event_us
        self._dirty = True

    def _learn_in_order(
        self, record: TradeOutcome, session: int
    ) -> tuple[list[tuple[str, int, bytes]], list[MultiplierChange]]:
        """The in-order path: close the sessions this trade leaves behind, note its evidence, learn it."""
        rows: list[tuple[str, int, bytes]] = []
        changes: list[MultiplierChange] = []
        if (
            self._since_checkpoint >= CHECKPOINT_TRADES
            and record.event_us > self.last_trade[0]
            and self.closed_through < self.current_session
        ):
            # Every trade up to the last one learned, and none after (later in event order than all of them); its
            # session still open, as a replay has it (a daily job may close a session before a late trade of it).
            self._keep_checkpoint()
        self._since_checkpoint += 1
        if session > self.closed_through and session > self.current_session:
            rows, changes = self.close_through(session - 1)
            self.current_session = session
        regime = regime_scope(record.regime)
        for name, contribution in record.components:
            if contribution != 0.0:
                self.last_evidence[(record.strategy, name, GLOBAL_SCOPE)] = session
                self.last_evidence[(record.strategy, name, regime)] = session
        changes += self.entry.learn(record, session)
        self.last_trade = (record.event_us, record.key)
        self._changed(strategy=record.strategy)  # here, not in apply: a replay's learner learns here too
        return rows, changes

    def _learn_exit_in_order(self, record: ExitOutcome, session: int, ordinal: int) -> list[MultiplierChange]:
        """The exit side's in-order path: a checkpoint when one is due (`ordinal`: the exits learned before this
        one), then the exit."""
        if self._since_exit_checkpoint >= CHECKPOINT_EXITS and record.event_us > self.last_exit[0]:
            state = orjson.dumps(
                {"exit": self.exit.to_state(), "last_exit": list(self.last_exit)}, option=_STATE_OPTIONS
            )
            self._exit_checkpoints = self._with_new(self._exit_checkpoints, self.last_exit[0], ordinal, state)
            self._since_exit_checkpoint = 0
        self._since_exit_checkpoint += 1
        changes = self.exit.learn(record, session)
        self.last_exit = (record.event_us, record.key)
        return changes

    def replay_steps(self) -> Iterator[None]:
        """The replays finish_batch would run (begun now, when the batch asks for them: the entry side's, then the
        exit side's), a step of about REPLAY_STEP_S at a time: the caller may do other work between two steps, but
        not with this learner (apply, close_sessions, retrain and finish_batch run what is left first). Their rows
        and changes come with finish_batch."""
        if (self._replay_pending or self._exit_replay_pending) and self._replay is None:
            self._replay = self._replays()
        return self._replay_turns()

    def _replays(self) -> Generator[None, None, _Replayed]:
        rows: list[tuple[str, int, bytes]] = []
        changes: list[MultiplierChange] = []
        # Each side stays due until its replay ended: one that fails is due again, one that ended is not.
        if self._replay_pending:
            rows, changes = yield from self._entry_replay()
            self._replay_pending = False
        if self._exit_replay_pending:
            changes += yield from self._exit_replay()
            self._exit_replay_pending = False
        self._replay_reason = REPLAY_OUT_OF_ORDER
        return rows, changes

    @property
    def replaying(self) -> bool:
        """A replay is under way (replay_steps was left between two steps) or due before the next commit."""
        return self._replay is not None or self._replay_pending or self._exit_replay_pending

    def _replay_turns(self) -> Iterator[None]:
        while self._replay is not None:
            # Out of reach during the step: one that fails (the store could not be read) leaves no replay under way,
            # the side at hand as before its replay began and still due.
            replay, self._replay = self._replay, None
            try:
                next(replay)
            except StopIteration as done:
                rows, changes = self._replayed or ([], [])
                self._replayed = (rows + done.value[0], changes + done.value[1])
                return
            self._replay = replay
            yield

    def _run_replay_to_end(self) -> None:
        for _ in self._replay_turns():
            pass

    def finish_batch(self) -> Applied:
        """Called once before each commit: run the replays that out-of-order trades and exits asked for (what is
        left of them when replay_steps ran part)."""
        for _ in self.replay_steps():
            pass
        if self._replayed is None:
            return NOTHING
        rows, changes = self._replayed
        self._replayed = None
        return Applied(learned=True, changes=tuple(change_document(change) for change in changes), rows=tuple(rows))

    def close_through(self, session: int) -> tuple[list[tuple[str, int, bytes]], list[MultiplierChange]]:
        """Close every session up to `session`. For the open one: the daily medium-term update (settle), the
        weekly stability decay when it ends its ISO week, then its end-of-session snapshot as a row
        (`session|YYYY-MM-DD`) for the daily report. Driven by the attribution stream's event time (a trade of a
        later session) or by the daily job after the close, whichever comes first; both close at the same point
        of the stream, so a live run and a backfill keep the same rows and make the same changes."""
        if session <= self.closed_through:
            return [], []
        rows: list[tuple[str, int, bytes]] = []
        changes: list[MultiplierChange] = []
        open_session = self.current_session
        if self.closed_through < open_session <= session:
            close_us = self.calendar.closes_us[open_session]
            changes += self.entry.settle_session(open_session, close_us)
            decays: list[MultiplierChange] = []
            if self._ends_week(open_session):
                decays = self.entry.decay_stale(
                    open_session, close_us, self.last_evidence, idle_sessions=STALE_IDLE_SESSIONS
                )
                changes += decays
            rows.append(self._session_row(open_session, decays))
        self.closed_through = session
        self._changed()
        return rows, changes

    def _ends_week(self, session: int) -> bool:
        week = self.calendar.week_label(self.calendar.sessions[session])
        return self.calendar.week_label(self.calendar.sessions[session + 1]) != week

    def _session_row(self, session: int, decays: list[MultiplierChange]) -> tuple[str, int, bytes]:
        """The end-of-session row: the multipliers as the session closed, and the stability decay its close applied
        (the weekly report lists it; the changes themselves are pruned once the daily report read them)."""
        day = self.calendar.sessions[session]
        body = orjson.dumps(
            {
                "day": day.isoformat(),
                "session": session,
                # Only counts of the attribution stream: exit rows arrive from another file, and how the two files
                # interleave differs between a live run and a backfill. Not the late count either: a session a
                # replay closes again is closed by a learner that saw none late, the sessions after it by one that
                # did, so the rows would hold it or not by when the session was closed.
                "counts": {name: self.counts[name] for name in ("trades", "partials")},
                "entry": self._multipliers(),
                "stale_decay": [
                    {"strategy": c.strategy, "component": c.component, "regime": c.regime, "old": c.old, "new": c.new}
                    for c in decays
                ],
            },
            option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        )
        return f"session|{day.isoformat()}", self.calendar.closes_us[session], body

    def _multipliers(self) -> dict[str, Any]:
        """Every entry multiplier in the shape of EntryModel.snapshot() (strategy -> component -> multiplier,
        by_regime, by_ticker), without the evidence: what the reports need of a session's end, at a fraction of
        the cost and the size."""
        result: dict[str, Any] = {}
        for strategy in self.entry.strategies():
            scopes = self.entry.scopes(strategy)
            regimes = [scope for scope in scopes if not scope.startswith(TICKER_SCOPE_PREFIX)]
            tickers = [scope for scope in scopes if scope.startswith(TICKER_SCOPE_PREFIX)]
            components: dict[str, Any] = {}
            scale = self.entry.scale_factors(strategy)
            for name in ENTRY_COMPONENTS:
                view: dict[str, Any] = {
                    "multiplier": self.entry.multiplier(strategy, name),
                    "by_regime": {
                        scope: {"multiplier": self.entry.multiplier(strategy, name, scope)} for scope in regimes
                    },
                }
                if name in scale:
                    # Learned on a standardized scale: the reports say so.
                    view["standardized"] = True
                    view["scale_factor"] = scale[name]
                if self.params.per_ticker:
                    view["by_ticker"] = {
                        scope.removeprefix(TICKER_SCOPE_PREFIX): {
                            "multiplier": self.entry.multiplier(strategy, name, scope)
                        }
                        for scope in tickers
                    }
                components[name] = view
            result[strategy] = components
        return result

    def _late_row(self, record: TradeOutcome, session: int) -> tuple[str, int, bytes]:
        # A late trade arrives while a later session is open: the newest trade's, or, before any trade of a later
        # session, the first one not closed yet (the closed one's report is written: it would never be listed).
        arrival = min(max(self.current_session, self.closed_through + 1), len(self.calendar.closes_us) - 1)
        body = orjson.dumps(
            {
                "key": record.key,
                "day": self.calendar.sessions[session].isoformat(),
                "arrived_in_session": arrival,
                "arrived_day": self.calendar.sessions[arrival].isoformat(),
                "event_us": record.event_us,
            },
            option=orjson.OPT_SORT_KEYS,
        )
        # Keyed by the open session's close so the next daily report finds it by time.
        return f"late|{record.key}", self.calendar.closes_us[arrival], body

    def _session(self, event_us: int) -> int:
        try:
            return self.calendar.session_index(event_us)
        except CalendarError as error:
            # Checked before anything is mutated, so the pipeline can quarantine the record cleanly.
            raise RecordError("timestamp_out_of_range", str(error)) from None

    def _keep_checkpoint(self) -> None:
        state = orjson.dumps(self._document(), option=_STATE_OPTIONS)
        # Every trade learned so far lies in event order up to the last one (a late one was relearned in place).
        ordinal = self.counts["trades"] + self.counts["partials"]
        self._checkpoints = self._with_new(self._checkpoints, self.last_trade[0], ordinal, state)
        self._since_checkpoint = 0

    def _with_new(
        self, checkpoints: list[_Checkpoint], through_us: int, ordinal: int, state: bytes
    ) -> list[_Checkpoint]:
        """One side's `checkpoints` with a new one taken (numbered in the order taken, either side), thinned."""
        self._next_number += 1
        self._checkpoints_changed = True
        return _thinned([*checkpoints, _Checkpoint(through_us, ordinal, state, self._next_number - 1)])

    def _still_valid(self, checkpoints: list[_Checkpoint], event_us: int) -> list[_Checkpoint]:
        """One side's `checkpoints` once a record of that side at `event_us` arrived: those that should have held it
        are no place to replay from."""
        if not checkpoints or checkpoints[-1].through_us < event_us:
            return checkpoints
        self._checkpoints_changed = True
        return [kept for kept in checkpoints if kept.through_us < event_us]

    def _checkpoint_tag(self, side: str) -> str:
        """What a checkpoint is and was learned under: its side (entry or exit), the state versions and the
        parameters. One read back under another tag (an upgrade, parameters changed between two runs) is not
        replayed from."""
        return f"{side}.{STATE_VERSION}.{ENTRY_STATE_VERSION}.{self._params_hash()}"

    def _params_hash(self) -> str:
        """The learning parameters the state is learned under, as the state and its checkpoints name them."""
        return hashlib.sha256(repr(self.params).encode()).hexdigest()[:16]

    def replay_points(self) -> ReplayPoints | None:
        """The checkpoints to commit: every number kept, and those taken since the last call."""
        if not self._checkpoints_changed:
            return None
        self._checkpoints_changed = False
        sides = (
            (self._checkpoint_tag("entry"), self._checkpoints),
            (self._checkpoint_tag("exit"), self._exit_checkpoints),
        )
        new = tuple(
            (kept.number, kept.through_us, kept.ordinal, tag, kept.state)
            for tag, checkpoints in sides
            for kept in checkpoints
            if kept.number > self._committed_number and kept.state is not None  # not committed: held here
        )
        kept_numbers = tuple(kept.number for _, checkpoints in sides for kept in checkpoints)
        self._committed_number = self._next_number - 1
        if self._point_reader is not None:
            # Handed to the commit: read back from the store when a replay needs one (a commit that fails is followed
            # by a learner rebuilt from the store).
            self._checkpoints = [replace(kept, state=None) for kept in self._checkpoints]
            self._exit_checkpoints = [replace(kept, state=None) for kept in self._exit_checkpoints]
        return ReplayPoints(kept=kept_numbers, new=new)

    def restore_replay_points(self, points: Iterable[tuple[int, int, int, str]]) -> None:
        """The checkpoints the store kept with this state (oldest first), as replay_points committed them (number,
        through_us, ordinal, tag; their states are read when needed, see bind_replay_points). Those taken under
        another tag, or holding a trade this state has not learned, are dropped."""
        stored = list(points)
        entry_tag, exit_tag = self._checkpoint_tag("entry"), self._checkpoint_tag("exit")
        self._checkpoints = [
            _Checkpoint(through_us, ordinal, None, number)
            for number, through_us, ordinal, tag in stored
            if tag == entry_tag and through_us <= self.last_trade[0] and not self.is_relearning
        ]
        self._exit_checkpoints = [
            _Checkpoint(through_us, ordinal, None, number)
            for number, through_us, ordinal, tag in stored
            if tag == exit_tag and through_us <= self.last_exit[0]
        ]
        self._next_number = max((point[0] for point in stored), default=-1) + 1
        self._committed_number = self._next_number - 1
        self._checkpoints_changed = len(self._checkpoints) + len(self._exit_checkpoints) != len(stored)

    def _replay_start(self, checkpoints: list[_Checkpoint]) -> tuple[_Checkpoint | None, bytes | None]:
        """The newest of `checkpoints` (one side's) whose state can be had, and that state (None, None: from
        nothing). One the store no longer holds (it cannot happen while the store is the one they were committed
        to) is dropped from the list."""
        while checkpoints:
            newest = checkpoints[-1]
            state = newest.state
            if state is None and self._point_reader is not None:
                state = self._point_reader(newest.number)
            if state is not None:
                return newest, state
            checkpoints.pop()
            self._checkpoints_changed = True
        return None, None

    def _replaying_from(self, checkpoint: _Checkpoint | None, state: bytes | None) -> TradeLearner:
        """A learner for a replay: empty, or as it stood at `checkpoint` (its `state`), with the counts a replay
        keeps for its session rows (trades and partials from the ledger, no late ones)."""
        if checkpoint is None:
            fresh = TradeLearner(self.params, self.calendar)
        else:
            fresh = TradeLearner(self.params, self.calendar, state)
            counts = fresh.counts
            fresh.counts = {**dict.fromkeys(counts, 0), "trades": counts["trades"], "partials": counts["partials"]}
        fresh._checkpoints = list(self._checkpoints)
        fresh._next_number = self._next_number
        fresh._point_reader = self._point_reader
        return fresh

    def _entry_replay(self) -> Generator[None, None, _Replayed]:
        """Rebuild the entry side from the ledger in event order through the same in-order path (session closes,
        daily settles and weekly decays included), then close what the daily jobs had closed: the state a
        backfill of these lines in event order would reach. It starts from the newest checkpoint still valid (see
        CHECKPOINT_TRADES), or from nothing. Returns the session rows (upserted) and the multipliers that
        changed. Hands back (yields) about every REPLAY_STEP_S; the learner it replaces stays as it was until the
        end, when the rebuilt one takes its place at once."""
        before = self.model().entry  # the view the exports read, when it is made already
        start, state = self._replay_start(self._checkpoints)
        fresh = self._replaying_from(start, state)
        rows: list[tuple[str, int, bytes]] = []
        step_ends = time.perf_counter() + REPLAY_STEP_S
        for record in self._require_history()("trade", None if start is None else start.through_us):
            if isinstance(record, TradeOutcome):
                replayed_rows, _ = fresh._learn_in_order(record, self.calendar.session_index(record.event_us))
                # Counted as apply() counts them, so each session row says what a backfill's says.
                fresh.counts["partials" if record.is_partial else "trades"] += 1
                rows += replayed_rows
                if time.perf_counter() >= step_ends:
                    yield
                    step_ends = time.perf_counter() + REPLAY_STEP_S
        closed_rows, _ = fresh.close_through(self.closed_through)
        rows += closed_rows
        self.entry = fresh.entry
        self.last_trade = fresh.last_trade
        self.last_evidence = fresh.last_evidence
        self._checkpoints = fresh._checkpoints
        self._since_checkpoint = fresh._since_checkpoint
        self._next_number = fresh._next_number
        self._checkpoints_changed = True
        self.current_session = max(self.current_session, fresh.current_session)
        self.is_relearning = False
        self._changed()
        # Made here through the model, it is the view the next export reads (not made a second time).
        return rows, _differences(before, self.model().entry, "entry", self.last_trade[0], self._replay_reason)

    def _exit_replay(self) -> Generator[None, None, list[MultiplierChange]]:
        """Rebuild the exit side from the ledger in event order, from its newest checkpoint still valid (see
        CHECKPOINT_EXITS) or from nothing; returns the multipliers that changed. Hands back (yields) about every
        REPLAY_STEP_S; the exit side it replaces stays as it was until the end."""
        start, state = self._replay_start(self._exit_checkpoints)
        fresh = TradeLearner(self.params, self.calendar)
        fresh._exit_checkpoints = list(self._exit_checkpoints)
        fresh._next_number = self._next_number
        ordinal = 0
        if start is not None and state is not None:
            document = orjson.loads(state)
            fresh.exit = ExitModel.from_state(self.params, document["exit"])
            fresh.last_exit, ordinal = (document["last_exit"][0], document["last_exit"][1]), start.ordinal
        step_ends = time.perf_counter() + REPLAY_STEP_S
        for record in self._require_history()("exit", None if start is None else start.through_us):
            if isinstance(record, ExitOutcome):
                fresh._learn_exit_in_order(record, self.calendar.session_index(record.event_us), ordinal)
                ordinal += 1
                if time.perf_counter() >= step_ends:
                    yield
                    step_ends = time.perf_counter() + REPLAY_STEP_S
        before = self.exit
        self.exit, self.last_exit = fresh.exit, fresh.last_exit
        self._exit_checkpoints, self._since_exit_checkpoint = fresh._exit_checkpoints, fresh._since_exit_checkpoint
        self._next_number = fresh._next_number
        self._checkpoints_changed = True
        self._changed(entry=False)
        return _differences(before.snapshot(), self.exit.snapshot(), "exit", self.last_exit[0], self._replay_reason)

    def retrain(self, params: LearningParams) -> Applied:
        """New learning parameters (a reload changed them): both sides are relearned from the whole ledger under
        them at the end of the batch, as a replay from nothing (finish_batch, or in steps: replay_steps), which
        brings the session rows it rebuilt and every multiplier that moved."""
        if self._replay is not None:
            self._replay.close()  # begun under the old parameters
            self._replay = None
        self.params = params
        self._checkpoints = []  # taken under the old parameters
        self._exit_checkpoints = []
        self._checkpoints_changed = True
        self._replay_pending = self._exit_replay_pending = True
        self._replay_reason = RETRAINED
        self.counts["replays"] += 2  # one for each side relearned, counted when asked for
        self._changed()
        return LEARNED

    def close_sessions(self, through_session: int) -> Applied:
        if self._replay is not None:
            self._run_replay_to_end()  # the sessions close on the state it rebuilds
        if self.closed_through < self.current_session <= through_session and not self._replay_pending:
            # The daily job settles the open session: the state just before, which a trade of that session arriving
            # afterwards is relearned from (the trades since the close, not up to CHECKPOINT_TRADES of them).
            self._keep_checkpoint()
        rows, changes = self.close_through(through_session)
        if through_session > self.reported_through:
            self.reported_through = through_session
            self._dirty = True  # the model is as it was
        if not rows and not changes:
            return NOTHING
        return Applied(learned=True, changes=tuple(change_document(change) for change in changes), rows=tuple(rows))

    def _require_history(self) -> History:
        if self._history is None:
            raise RuntimeError("TradeLearner needs bind_history() before it can replay")
        return self._history

    def dump(self) -> bytes | None:
        if not self._dirty:
            return None
        self._dirty = False
        return orjson.dumps(self._document(), option=_STATE_OPTIONS)

    def _changed(self, *, entry: bool = True, strategy: str | None = None) -> None:
        """The state changed (to commit, and the model to make again); `entry` when the entry side may have, all of
        it, or with `strategy` that strategy's alone."""
        self._dirty = True
        self._model = None
        if strategy is not None:
            self._strategy_views.pop(strategy, None)
        elif entry:
            self._strategy_views.clear()
        if entry or strategy is not None:
            self._entry_view = None
            self._entry_state = None

    def _document(self) -> dict[str, Any]:
        """The state as the store keeps it (and a checkpoint, see CHECKPOINT_TRADES)."""
        if self._entry_state is None:
            # Encoded alone with the options the whole is, it is the same bytes the whole would hold.
            self._entry_state = orjson.Fragment(orjson.dumps(self.entry.to_state(), option=_STATE_OPTIONS))
        return {
            "version": STATE_VERSION,
            "entry": self._entry_state,
            "exit": self.exit.to_state(),
            "last_trade": list(self.last_trade),
            "last_exit": list(self.last_exit),
            "counts": self.counts,
            "current_session": self.current_session,
            "closed_through": self.closed_through,
            "reported_through": self.reported_through,
            "last_evidence": sorted([*key, session] for key, session in self.last_evidence.items()),
            "newest_by_source": self.newest_by_source,
            "far_ahead_refused": self.far_ahead_refused,
            "params": self._params_hash(),
        }

    def model(self) -> LearnedModel:
        """The multipliers as they stand (cached until the next record or session close changes them)."""
        if self._model is None:
            if self._entry_view is None:
                views = self._strategy_views
                names = self.entry.strategies()  # in name order, as EntryModel.snapshot() gives them
                for name in names:
                    if name not in views:
                        views[name] = self.entry.strategy_snapshot(name)
                self._entry_view = {name: views[name] for name in names}
            self._model = LearnedModel(
                entry=self._entry_view,
                exits=self.exit.snapshot(),
                trades_learned=self.counts["trades"],
                partials_learned=self.counts["partials"],
                exits_learned=self.counts["exits"],
                last_trade_us=self.last_trade[0],
            )
        return self._model


def _thinned(checkpoints: list[_Checkpoint]) -> list[_Checkpoint]:
    """The checkpoints kept (oldest first) once the newest was added: the newest KEPT_CHECKPOINTS as they are, and
    of the older ones each whose neighbours lie no further apart than the newer neighbour lies from the newest
    (in trades) dropped, then all but THINNED_CHECKPOINTS of them. Ages only grow, so every gap left stays within
    the age of the checkpoint after it: a trade d deep is replayed from one at most max(d, CHECKPOINT_TRADES)
    older than itself."""
    kept = list(checkpoints)
    newest = kept[-1].ordinal
    index = 1
    while index < len(kept) - KEPT_CHECKPOINTS:
        if kept[index + 1].ordinal - kept[index - 1].ordinal <= newest - kept[index + 1].ordinal:
            del kept[index]
        else:
            index += 1
    older = max(0, len(kept) - KEPT_CHECKPOINTS)
    return kept[max(0, older - THINNED_CHECKPOINTS) :]


def _is_older_entry_state(state: object) -> bool:
    """An entry model state an older learnd wrote (a version this one relearns rather than reads)."""
    if not isinstance(state, dict) or state.get("model") != ENTRY_MODEL:
        return False
    version = state.get("version")
    return isinstance(version, int) and 1 <= version < ENTRY_STATE_VERSION


def _differences(
    before: Mapping[str, Any], after: Mapping[str, Any], model: str, event_us: int, reason: str
) -> list[MultiplierChange]:
    """Multipliers a replay changed, as change events with the replay's `reason`."""
    changes: list[MultiplierChange] = []
    for strategy in sorted(set(before) | set(after)):
        old_view = before.get(strategy, {})
        new_view = after.get(strategy, {})
        for component in sorted(set(old_view) | set(new_view)):
            for regime, old, new, samples in _scoped(old_view.get(component), new_view.get(component)):
                if old != new:
                    changes.append(
                        MultiplierChange(event_us, strategy, model, component, regime, old, new, reason, samples)
                    )
    return changes


def _scoped(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[tuple[str, float, float, float]]:
    old = old or {}
    new = new or {}
    rows = [(GLOBAL_SCOPE, old.get("multiplier", 1.0), new.get("multiplier", 1.0), new.get("samples", 0.0))]
    old_regimes = old.get("by_regime", {})
    new_regimes = new.get("by_regime", {})
    for regime in sorted(set(old_regimes) | set(new_regimes)):
        before = old_regimes.get(regime, {}).get("multiplier", 1.0)
        after = new_regimes.get(regime, {}).get("multiplier", 1.0)
        rows.append((regime, before, after, new_regimes.get(regime, {}).get("samples", 0.0)))
    return rows
