"""The exchange's trading sessions as plain data: event times map to trading days, and jobs run after session closes.

Built from a session table (sessions.tables) or once from exchange_calendars (pandas stays inside
`ExchangeCalendar.load`); every query after that is pure.
"""

from __future__ import annotations

import warnings
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import compress, count, repeat
from operator import lt, mul, ne, sub
from typing import Final
from zoneinfo import ZoneInfo

from learnd.errors import ConfigError, LearndError

DEFAULT_EXCHANGE: Final = "XNYS"
DEFAULT_FIRST_YEAR: Final = 2000

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_DAY_US: Final = 86_400_000_000
# Sessions are loaded a month beyond the covered years on each side so that a moment early in the first year has
# a previous session and an ISO week straddling the last new year is known in full.
PADDING_DAYS: Final = 31


class CalendarError(LearndError):
    """The calendar cannot answer: the library failed, or a moment falls outside the covered years."""


def to_epoch_us(moment: datetime) -> int:
    """Return a tz-aware datetime as integer microseconds since the Unix epoch; naive datetimes are refused."""
    _require_aware(moment)
    return (moment - _EPOCH) // _ONE_US


def from_epoch_us(event_us: int) -> datetime:
    """Return integer microseconds since the Unix epoch as a tz-aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=event_us)


@dataclass(frozen=True, slots=True)
class ExchangeCalendar:
    """An exchange's sessions over `first_year..last_year` (exchange-local years), immutable and pure to query.

    `sessions` are the session dates in order, `opens_us` and `closes_us` their UTC open and close in epoch
    microseconds (kept as compact integer arrays: a daemon holds some 15,000 sessions). They reach a few weeks past
    the covered years; moments and dates outside those years raise CalendarError rather than guess, except that the
    last session before `first_year` (the trading day of a moment on New Year's Day) is accepted back by the date
    queries. Weeks are ISO weeks in exchange-local dates; a week without any session has no weekly run.
    """

    code: str
    tz: str
    first_year: int
    last_year: int
    sessions: tuple[date, ...] = field(repr=False)
    opens_us: Sequence[int] = field(repr=False)
    closes_us: Sequence[int] = field(repr=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    # UTC microsecond of exchange-local midnight starting each session's date: moments from one of these up to the
    # next belong to that session, which is what makes `session_index` a single bisect.
    _day_starts_us: Sequence[int] = field(init=False, repr=False, compare=False)
    _week_last_indexes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _week_last_closes_us: Sequence[int] = field(init=False, repr=False, compare=False)
    _covered_start_us: int = field(init=False, repr=False, compare=False)
    _covered_end_us: int = field(init=False, repr=False, compare=False)
    _first_day: date = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.sessions or not len(self.sessions) == len(self.opens_us) == len(self.closes_us):
            raise CalendarError(f"{self.code}: sessions, opens and closes must be non-empty and of equal length")
        # map(lt, ...) walks each sequence in C: some 15,000 sessions are checked at every start.
        if not all(map(lt, self.sessions, self.sessions[1:])):
            raise CalendarError(f"{self.code}: session dates must be strictly increasing")
        if not (all(map(lt, self.opens_us, self.closes_us)) and all(map(lt, self.closes_us, self.closes_us[1:]))):
            raise CalendarError(f"{self.code}: each session must close after it opens and after the previous close")
        if self.first_year > self.last_year:
            raise ConfigError(f"first_year {self.first_year} is after last_year {self.last_year}")
        zone = ZoneInfo(self.tz)
        first_covered, last_covered = date(self.first_year, 1, 1), date(self.last_year, 12, 31)
        if not (self.sessions[0] < first_covered and self.sessions[-1] > last_covered):
            raise CalendarError(f"{self.code}: sessions must extend beyond {self.first_year}..{self.last_year}")
        # ISO weeks run Monday to Sunday, and ordinal 1 (0001-01-01) is a Monday: two dates share an ISO week exactly
        # when (ordinal - 1) // 7 is the same. A week's last session is one whose next session's week differs.
        weeks = [(ordinal - 1) // 7 for ordinal in map(date.toordinal, self.sessions)]
        week_last = tuple(compress(count(), map(ne, weeks, weeks[1:])))
        object.__setattr__(self, "opens_us", array("q", self.opens_us))
        object.__setattr__(self, "closes_us", array("q", self.closes_us))
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_day_starts_us", local_midnights_us(self.sessions, zone))
        object.__setattr__(self, "_week_last_indexes", week_last)
        object.__setattr__(self, "_week_last_closes_us", array("q", (self.closes_us[i] for i in week_last)))
        covered_start_us, covered_end_us = local_midnights_us((first_covered, date(self.last_year + 1, 1, 1)), zone)
        object.__setattr__(self, "_covered_start_us", covered_start_us)
        object.__setattr__(self, "_covered_end_us", covered_end_us)
        object.__setattr__(self, "_first_day", self.sessions[bisect_right(self.sessions, first_covered) - 1])

    @classmethod
    def load(
        cls, code: str = DEFAULT_EXCHANGE, first_year: int = DEFAULT_FIRST_YEAR, last_year: int = 2030
    ) -> ExchangeCalendar:
        """Build the calendar of exchange `code` (an exchange_calendars name or alias) for the given years.

        Callers choose the years (learnd takes them from schedule.calendar_first_year/last_year, never from
        today); sessions are loaded a month beyond them. Raises ConfigError for an unknown code or an empty year
        range, CalendarError if the library fails (for instance when it has no holidays recorded for the padded
        range).
        The stored `code` is the library's canonical name (alias "NYSE" is stored as "XNYS").
        """
        # Imported here, not at the top, so that importing this module and every query stay free of pandas.
        import exchange_calendars
        import numpy as np
        import pandas as pd

        if first_year > last_year:
            raise ConfigError(f"first_year {first_year} is after last_year {last_year}")
        try:
            canonical = exchange_calendars.resolve_alias(code)
        except exchange_calendars.errors.InvalidCalendarName as exc:
            raise ConfigError(f"unknown exchange calendar code {code!r} (exchange_calendars has no such name)") from exc
        start = date(first_year, 1, 1) - timedelta(days=PADDING_DAYS)
        end = date(last_year, 12, 31) + timedelta(days=PADDING_DAYS)
        try:
            with warnings.catch_warnings():
                # exchange_calendars 4.13 still calls pandas APIs that pandas 3.1 deprecates for pandas 4
                # (`Series.values` of tz-aware columns, `DatetimeIndex.weekday`); their results are unchanged until
                # then, so that one category is muted for the library's construction only. Process-wide while it
                # lasts, which is fine for a one-off call at startup.
                warnings.filterwarnings("ignore", category=pd.errors.Pandas4Warning)
                library_calendar = exchange_calendars.get_calendar(canonical, start=start, end=end)
            schedule = library_calendar.schedule
            tz = library_calendar.tz.key
            sessions = tuple(day.date() for day in schedule.index)
            opens_us = tuple(
                schedule["open"].dt.tz_convert(None).to_numpy(dtype="datetime64[us]").astype(np.int64).tolist()
            )
            closes_us = tuple(
                schedule["close"].dt.tz_convert(None).to_numpy(dtype="datetime64[us]").astype(np.int64).tolist()
            )
        except Exception as exc:
            raise CalendarError(
                f"exchange_calendars could not build {canonical} for {first_year}..{last_year}: {exc}"
            ) from exc
        return cls(
            code=canonical,
            tz=tz,
            first_year=first_year,
            last_year=last_year,
            sessions=sessions,
            opens_us=opens_us,
            closes_us=closes_us,
        )

    def session_index(self, event_us: int) -> int:
        """Return the index in `sessions` of the session a moment (epoch microseconds) belongs to.

        That is the session on the moment's exchange-local date, or for a moment on a non-session day the most
        recent session before it. Monotone non-decreasing in `event_us`; raises CalendarError outside the covered
        years.
        """
        if not self._covered_start_us <= event_us < self._covered_end_us:
            raise CalendarError(f"{from_epoch_us(event_us).isoformat()} is outside {self._coverage_text()}")
        return bisect_right(self._day_starts_us, event_us) - 1

    @property
    def covered_us(self) -> tuple[int, int]:
        """[start, end) in UTC microseconds of the moments the covered years hold (session_index's domain)."""
        return self._covered_start_us, self._covered_end_us

    def local_hours(self) -> Callable[[date], tuple[int, int] | None]:
        """A day's session hours on the exchange's clock, (open, close) in minutes after its local midnight, or None
        when the day is no session (a holiday, a weekend, a day outside the covered years); worked out once a day
        asked."""
        zone = ZoneInfo(self.tz)
        known: dict[date, tuple[int, int] | None] = {}

        def hours(day: date) -> tuple[int, int] | None:
            if day in known:
                return known[day]
            try:
                index = self._find_session(day)
            except CalendarError:
                index = None
            found = None
            if index is not None:
                opens = from_epoch_us(self.opens_us[index]).astimezone(zone)
                closes = from_epoch_us(self.closes_us[index]).astimezone(zone)
                found = (opens.hour * 60 + opens.minute, closes.hour * 60 + closes.minute)
            known[day] = found
            return found

        return hours

    def session_bounds_us(self, index: int) -> tuple[int, int]:
        """[start, end) in UTC microseconds of the moments belonging to session `index`: from its exchange-local
        midnight to the next session's (so a weekend or holiday belongs to the session before it)."""
        if not 0 <= index < len(self.sessions) - 1:
            raise CalendarError(f"{self.code}: session index {index} outside {self._coverage_text()}")
        return self._day_starts_us[index], self._day_starts_us[index + 1]

    def session_of_day(self, day: date) -> int:
        """The index of session `day`; ValueError when `day` is not a session."""
        index = self._find_session(day)
        if index is None:
            raise ValueError(f"{day} is not a {self.code} session")
        return index

    def trading_day(self, event_us: int) -> date:
        """Return the trading day a moment (epoch microseconds, e.g. a trade's close time) counts towards.

        The exchange-local date when that date is a session, whatever the hour (a trade closed after the bell still
        belongs to that day's session); otherwise the previous session.
        """
        return self.sessions[self.session_index(event_us)]

    def is_session(self, day: date) -> bool:
        """Return whether exchange-local date `day` is a session; CalendarError outside the covered years."""
        return self._find_session(day) is not None

    def session_close_utc(self, day: date) -> datetime:
        """Return the close of session `day` as a tz-aware UTC datetime; ValueError if `day` is not a session."""
        index = self._find_session(day)
        if index is None:
            raise ValueError(f"{day.isoformat()} is not a {self.code} session")
        return from_epoch_us(self.closes_us[index])

    def to_exchange_time(self, moment: datetime) -> datetime:
        """Return a tz-aware datetime rendered in the exchange's time zone (for logs and humans)."""
        _require_aware(moment)
        return moment.astimezone(self._zone)

    @staticmethod
    def week_label(day: date) -> str:
        """Return the ISO week label "YYYY-Www" of `day`."""
        iso_year, iso_week, _ = day.isocalendar()
        return f"{iso_year:04d}-W{iso_week:02d}"

    def next_daily_run(self, after: datetime, grace: timedelta) -> tuple[date, datetime]:
        """Return the first daily run strictly after `after`: (session day, its close + `grace` in UTC)."""
        grace_us = _grace_us(grace)
        index = bisect_right(self.closes_us, self._covered_us(after) - grace_us)
        return self._daily_run(index, grace_us)

    def daily_runs_between(self, start: datetime, end: datetime, grace: timedelta) -> list[tuple[date, datetime]]:
        """Return every daily run due in (start, end], in order: (session day, close + `grace` in UTC)."""
        grace_us = _grace_us(grace)
        start_us, end_us = self._window_us(start, end)
        first = bisect_right(self.closes_us, start_us - grace_us)
        stop = bisect_right(self.closes_us, end_us - grace_us)
        return [self._daily_run(index, grace_us) for index in range(first, stop)]

    def next_weekly_run(self, after: datetime, grace: timedelta) -> tuple[str, datetime]:
        """Return the first weekly run strictly after `after`: (ISO week label, close + `grace` in UTC).

        A week's run follows the close of its last session, so a Friday holiday moves it to Thursday's close.
        """
        grace_us = _grace_us(grace)
        position = bisect_right(self._week_last_closes_us, self._covered_us(after) - grace_us)
        return self._weekly_run(position, grace_us)

    def weekly_runs_between(self, start: datetime, end: datetime, grace: timedelta) -> list[tuple[str, datetime]]:
        """Return every weekly run due in (start, end], in order: (ISO week label, close + `grace` in UTC)."""
        grace_us = _grace_us(grace)
        start_us, end_us = self._window_us(start, end)
        first = bisect_right(self._week_last_closes_us, start_us - grace_us)
        stop = bisect_right(self._week_last_closes_us, end_us - grace_us)
        return [self._weekly_run(position, grace_us) for position in range(first, stop)]

    def _daily_run(self, index: int, grace_us: int) -> tuple[date, datetime]:
        day = self._covered_day(index)
        return day, from_epoch_us(self.closes_us[index] + grace_us)

    def _weekly_run(self, position: int, grace_us: int) -> tuple[str, datetime]:
        if position >= len(self._week_last_indexes):
            raise CalendarError(f"no weekly run is known after {self._coverage_text()}")
        index = self._week_last_indexes[position]
        return self.week_label(self._covered_day(index)), from_epoch_us(self.closes_us[index] + grace_us)

    def _covered_day(self, index: int) -> date:
        # A run found in the padding (or past it) would rest on sessions outside the years the caller asked for.
        if index >= len(self.sessions) or not self.first_year <= self.sessions[index].year <= self.last_year:
            raise CalendarError(f"the run falls outside {self._coverage_text()}")
        return self.sessions[index]

    def _find_session(self, day: date) -> int | None:
        if not self._first_day <= day <= date(self.last_year, 12, 31):
            raise CalendarError(f"{day.isoformat()} is outside {self._coverage_text()}")
        index = bisect_right(self.sessions, day) - 1
        return index if self.sessions[index] == day else None

    def _covered_us(self, moment: datetime) -> int:
        moment_us = to_epoch_us(moment)
        if not self._covered_start_us <= moment_us < self._covered_end_us:
            raise CalendarError(f"{moment.isoformat()} is outside {self._coverage_text()}")
        return moment_us

    def _window_us(self, start: datetime, end: datetime) -> tuple[int, int]:
        """(start, end] in microseconds; a start before the covered years is taken from where they begin (no run
        lies before them: a first trade in the session before them, say, New Year's Day's, starts there)."""
        start_us = max(to_epoch_us(start), self._covered_start_us)
        end_us = self._covered_us(end)
        if start_us > end_us:
            raise ValueError(f"window start {start.isoformat()} is after its end {end.isoformat()}")
        return start_us, end_us

    def _coverage_text(self) -> str:
        return f"the {self.code} calendar's covered years {self.first_year}..{self.last_year} ({self.tz})"


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} refused: pass a tz-aware datetime")


def _grace_us(grace: timedelta) -> int:
    if grace < timedelta(0):
        raise ValueError(f"grace {grace} is negative: a run cannot precede the close it follows")
    return grace // _ONE_US


def local_midnights_us(days: Sequence[date], zone: ZoneInfo) -> array[int]:
    """The UTC microsecond of each day's midnight in `zone`: its wall time's, less the zone's offset at that wall
    time (the integers `to_epoch_us(datetime.combine(day, time(0), tzinfo=zone))` gives, at under a quarter of the
    cost: every start takes some 15,000, so each step runs in map(), and each of the zone's few offsets is converted
    to microseconds once)."""
    offsets = list(map(zone.utcoffset, map(datetime.combine, days, repeat(time(0)))))
    offset_us = {offset: _utc_offset_us(offset) for offset in set(offsets)}
    wall_us = map(mul, map(sub, map(date.toordinal, days), repeat(_EPOCH_ORDINAL)), repeat(_DAY_US))
    return array("q", map(sub, wall_us, map(offset_us.__getitem__, offsets)))


def _utc_offset_us(offset: timedelta | None) -> int:
    assert offset is not None  # a ZoneInfo always has one
    return offset // _ONE_US
