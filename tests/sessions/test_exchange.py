"""Tests for learnd.market_calendar: sessions, trading days and run times of the NYSE calendar."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from learnd.errors import ConfigError, LearndError
from learnd.sessions.exchange import CalendarError, ExchangeCalendar, local_midnights_us, to_epoch_us

NEW_YORK = ZoneInfo("America/New_York")
GRACE = timedelta(minutes=15)
FIRST_YEAR, LAST_YEAR = 2000, 2030


@pytest.fixture(scope="module")
def nyse() -> ExchangeCalendar:
    return ExchangeCalendar.load("XNYS", FIRST_YEAR, LAST_YEAR)


def new_york(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK)


def new_york_us(day: date, at: time) -> int:
    return to_epoch_us(datetime.combine(day, at, tzinfo=NEW_YORK))


COVERED_START_US = to_epoch_us(new_york(FIRST_YEAR, 1, 1))
COVERED_END_US = to_epoch_us(new_york(LAST_YEAR + 1, 1, 1))
covered_us = st.integers(min_value=COVERED_START_US, max_value=COVERED_END_US - 1)
covered_moments = st.datetimes(
    min_value=datetime(FIRST_YEAR, 1, 2), max_value=datetime(LAST_YEAR, 4, 1), timezones=st.just(UTC)
)
# Windows start in `covered_moments` and span at most two of these, so they end inside the covered years.
spans = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=120))


@pytest.mark.parametrize(
    "after",
    [
        new_york(2026, 11, 25, 9, 30),
        new_york(2026, 11, 25, 16, 0),
        new_york(2026, 11, 25, 16, 14, second=59) + timedelta(microseconds=999_999),
    ],
)
def test_daily_run_after_a_close_is_that_close_plus_grace(nyse: ExchangeCalendar, after: datetime) -> None:
    day, run = nyse.next_daily_run(after, GRACE)
    assert (day, run) == (date(2026, 11, 25), datetime(2026, 11, 25, 21, 15, tzinfo=UTC))
    assert nyse.to_exchange_time(run) == new_york(2026, 11, 25, 16, 15)


def test_daily_run_after_thanksgiving_eve_skips_the_holiday_to_the_early_close(nyse: ExchangeCalendar) -> None:
    day, run = nyse.next_daily_run(datetime(2026, 11, 25, 21, 15, tzinfo=UTC), GRACE)
    assert (day, run) == (date(2026, 11, 27), datetime(2026, 11, 27, 18, 15, tzinfo=UTC))
    assert nyse.to_exchange_time(run) == new_york(2026, 11, 27, 13, 15)


def test_returned_run_times_are_utc(nyse: ExchangeCalendar) -> None:
    _, run = nyse.next_daily_run(new_york(2026, 11, 25, 12, 0), GRACE)
    assert run.tzinfo is UTC


@pytest.mark.parametrize(
    ("after", "label", "run"),
    [
        pytest.param(new_york(2027, 3, 22), "2027-W12", datetime(2027, 3, 25, 20, 15, tzinfo=UTC), id="good-friday"),
        pytest.param(new_york(2027, 3, 1), "2027-W09", datetime(2027, 3, 5, 21, 15, tzinfo=UTC), id="normal-winter"),
        pytest.param(new_york(2027, 6, 7), "2027-W23", datetime(2027, 6, 11, 20, 15, tzinfo=UTC), id="normal-summer"),
        pytest.param(new_york(2026, 11, 23), "2026-W48", datetime(2026, 11, 27, 18, 15, tzinfo=UTC), id="thanksgiving"),
    ],
)
def test_weekly_run_follows_the_last_session_of_the_iso_week(
    nyse: ExchangeCalendar, after: datetime, label: str, run: datetime
) -> None:
    assert nyse.next_weekly_run(after, GRACE) == (label, run)


def test_weekly_run_of_good_friday_week_is_thursday_close_in_new_york_time(nyse: ExchangeCalendar) -> None:
    _, run = nyse.next_weekly_run(new_york(2027, 3, 22), GRACE)
    assert nyse.to_exchange_time(run) == new_york(2027, 3, 25, 16, 15)


def test_weekly_run_asked_at_its_own_time_moves_to_the_next_week(nyse: ExchangeCalendar) -> None:
    assert nyse.next_weekly_run(datetime(2027, 3, 25, 20, 15, tzinfo=UTC), GRACE)[0] == "2027-W13"


@pytest.mark.parametrize(
    ("day", "run"),
    [
        pytest.param(date(2027, 3, 12), datetime(2027, 3, 12, 21, 15, tzinfo=UTC), id="before-march-2027-change"),
        pytest.param(date(2027, 3, 15), datetime(2027, 3, 15, 20, 15, tzinfo=UTC), id="after-march-2027-change"),
        pytest.param(date(2026, 10, 30), datetime(2026, 10, 30, 20, 15, tzinfo=UTC), id="before-november-2026-change"),
        pytest.param(date(2026, 11, 2), datetime(2026, 11, 2, 21, 15, tzinfo=UTC), id="after-november-2026-change"),
    ],
)
def test_daily_run_stays_at_1615_new_york_across_dst_changes(nyse: ExchangeCalendar, day: date, run: datetime) -> None:
    after = datetime.combine(day, time(0), tzinfo=NEW_YORK)
    assert nyse.next_daily_run(after, GRACE) == (day, run)
    assert nyse.to_exchange_time(run).time() == time(16, 15)


@given(first=covered_us, second=covered_us)
def test_session_index_is_monotone(nyse: ExchangeCalendar, first: int, second: int) -> None:
    earlier, later = sorted((first, second))
    assert nyse.session_index(earlier) <= nyse.session_index(later)


@given(event_us=covered_us)
def test_trading_day_is_a_session_on_or_before_the_new_york_date(nyse: ExchangeCalendar, event_us: int) -> None:
    day = nyse.trading_day(event_us)
    local_day = datetime.fromtimestamp(event_us / 1_000_000, tz=NEW_YORK).date()
    assert nyse.is_session(day)
    assert day <= local_day
    assert not any(nyse.is_session(day + timedelta(days=n)) for n in range(1, (local_day - day).days + 1))


@pytest.mark.parametrize("at", [time(0), time(9, 29), time(16, 0), time(20, 30), time(23, 59, 59, 999999)])
def test_moments_of_a_session_day_share_its_session(nyse: ExchangeCalendar, at: time) -> None:
    day = date(2026, 11, 25)
    assert nyse.session_index(new_york_us(day, at)) == nyse.session_index(new_york_us(day, time(12)))
    assert nyse.trading_day(new_york_us(day, at)) == day


@pytest.mark.parametrize(
    ("day", "session"),
    [
        pytest.param(date(2026, 11, 28), date(2026, 11, 27), id="saturday"),
        pytest.param(date(2026, 11, 29), date(2026, 11, 27), id="sunday"),
        pytest.param(date(2026, 11, 26), date(2026, 11, 25), id="thanksgiving"),
        pytest.param(date(2027, 3, 26), date(2027, 3, 25), id="good-friday"),
        pytest.param(date(2027, 1, 1), date(2026, 12, 31), id="new-year"),
        pytest.param(date(2000, 1, 1), date(1999, 12, 31), id="first-covered-day"),
    ],
)
def test_non_session_days_map_to_the_previous_session(nyse: ExchangeCalendar, day: date, session: date) -> None:
    for at in (time(0), time(12), time(23, 59)):
        assert nyse.sessions[nyse.session_index(new_york_us(day, at))] == session
        assert nyse.trading_day(new_york_us(day, at)) == session


@pytest.mark.parametrize(
    ("day", "is_session"),
    [
        (date(2026, 11, 25), True),
        (date(2026, 11, 26), False),
        (date(2026, 11, 28), False),
        (date(2027, 3, 26), False),
        (date(1999, 12, 31), True),
        (date(2030, 12, 31), True),
    ],
)
def test_is_session_knows_holidays_and_weekends(nyse: ExchangeCalendar, day: date, is_session: bool) -> None:
    assert nyse.is_session(day) is is_session


def test_session_close_is_the_early_close_in_utc(nyse: ExchangeCalendar) -> None:
    assert nyse.session_close_utc(date(2026, 11, 27)) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def test_session_close_of_a_holiday_is_refused(nyse: ExchangeCalendar) -> None:
    with pytest.raises(ValueError, match="2026-11-26 is not a XNYS session"):
        nyse.session_close_utc(date(2026, 11, 26))


@pytest.mark.parametrize(("day", "label"), [(date(2026, 11, 25), "2026-W48"), (date(2027, 1, 1), "2026-W53")])
def test_week_label_is_the_iso_week(nyse: ExchangeCalendar, day: date, label: str) -> None:
    assert nyse.week_label(day) == label


def test_daily_runs_between_lists_thanksgiving_week_once_each(nyse: ExchangeCalendar) -> None:
    runs = nyse.daily_runs_between(new_york(2026, 11, 23, 16, 15), new_york(2026, 11, 27, 13, 15), GRACE)
    assert [day for day, _ in runs] == [date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 27)]


@given(start=covered_moments, middle_span=spans, end_span=spans)
def test_daily_runs_between_splits_without_loss_or_repeat(
    nyse: ExchangeCalendar, start: datetime, middle_span: timedelta, end_span: timedelta
) -> None:
    middle, end = start + middle_span, start + middle_span + end_span
    whole = nyse.daily_runs_between(start, end, GRACE)
    assert whole == nyse.daily_runs_between(start, middle, GRACE) + nyse.daily_runs_between(middle, end, GRACE)
    assert all(start < run <= end for _, run in whole)
    assert [run for _, run in whole] == sorted({run for _, run in whole})


@given(start=covered_moments, span=spans)
def test_daily_runs_between_matches_chained_next_daily_run(
    nyse: ExchangeCalendar, start: datetime, span: timedelta
) -> None:
    end, chained, cursor = start + span, [], start
    while (found := nyse.next_daily_run(cursor, GRACE))[1] <= end:
        chained.append(found)
        cursor = found[1]
    assert nyse.daily_runs_between(start, end, GRACE) == chained


@given(start=covered_moments, middle_span=spans, end_span=spans)
def test_weekly_runs_between_splits_without_loss_or_repeat(
    nyse: ExchangeCalendar, start: datetime, middle_span: timedelta, end_span: timedelta
) -> None:
    middle, end = start + middle_span, start + middle_span + end_span
    whole = nyse.weekly_runs_between(start, end, GRACE)
    assert whole == nyse.weekly_runs_between(start, middle, GRACE) + nyse.weekly_runs_between(middle, end, GRACE)
    assert all(start < run <= end for _, run in whole)
    labels = [label for label, _ in whole]
    assert labels == sorted(set(labels))


def test_weekly_runs_between_gives_every_week_of_a_quarter(nyse: ExchangeCalendar) -> None:
    runs = nyse.weekly_runs_between(new_york(2027, 1, 1), new_york(2027, 4, 1), GRACE)
    assert [label for label, _ in runs] == [f"2027-W{week:02d}" for week in range(1, 13)]


def test_window_with_start_after_end_is_refused(nyse: ExchangeCalendar) -> None:
    with pytest.raises(ValueError, match="after its end"):
        nyse.daily_runs_between(new_york(2026, 11, 27), new_york(2026, 11, 20), GRACE)


def test_negative_grace_is_refused(nyse: ExchangeCalendar) -> None:
    with pytest.raises(ValueError, match="negative"):
        nyse.next_daily_run(new_york(2026, 11, 27), -GRACE)


NAIVE = datetime(2026, 11, 25, 16, 0)
AWARE = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda cal: cal.next_daily_run(NAIVE, GRACE), id="next_daily_run"),
        pytest.param(lambda cal: cal.next_weekly_run(NAIVE, GRACE), id="next_weekly_run"),
        pytest.param(lambda cal: cal.daily_runs_between(NAIVE, AWARE, GRACE), id="daily_runs_between-start"),
        pytest.param(lambda cal: cal.daily_runs_between(AWARE, NAIVE, GRACE), id="daily_runs_between-end"),
        pytest.param(lambda cal: cal.weekly_runs_between(NAIVE, AWARE, GRACE), id="weekly_runs_between"),
        pytest.param(lambda cal: cal.to_exchange_time(NAIVE), id="to_exchange_time"),
    ],
)
def test_naive_datetimes_are_refused(nyse: ExchangeCalendar, call: Callable[[ExchangeCalendar], Any]) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        call(nyse)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda cal: cal.session_index(to_epoch_us(new_york(1999, 12, 31, 23))), id="index-before"),
        pytest.param(lambda cal: cal.trading_day(to_epoch_us(new_york(2031, 1, 1))), id="trading-day-after"),
        pytest.param(lambda cal: cal.is_session(date(1999, 12, 30)), id="is-session-before"),
        pytest.param(lambda cal: cal.session_close_utc(date(2031, 1, 2)), id="close-after"),
        pytest.param(lambda cal: cal.next_daily_run(new_york(2040, 1, 1), GRACE), id="daily-after"),
        pytest.param(lambda cal: cal.next_daily_run(new_york(2030, 12, 31, 17), GRACE), id="daily-next-year"),
        pytest.param(lambda cal: cal.next_weekly_run(new_york(2030, 12, 28), GRACE), id="weekly-next-year"),
        pytest.param(
            lambda cal: cal.daily_runs_between(new_york(2030, 12, 1), new_york(2031, 1, 5), GRACE), id="window-end"
        ),
    ],
)
def test_moments_outside_the_covered_years_raise_calendar_error(
    nyse: ExchangeCalendar, call: Callable[[ExchangeCalendar], Any]
) -> None:
    with pytest.raises(CalendarError, match=r"covered years 2000\.\.2030"):
        call(nyse)


def test_a_window_that_begins_before_the_covered_years_lists_the_runs_from_their_start(nyse: ExchangeCalendar) -> None:
    """No run lies before the covered years, so a window from before them (a job that never ran, whose first trade
    is in the session before them: New Year's Day's trades belong to the last session of the year before) lists
    the runs from where they begin, as a window from their first moment does."""
    from_before = nyse.daily_runs_between(new_york(1999, 12, 1), new_york(2000, 1, 5, 17), GRACE)
    assert from_before == nyse.daily_runs_between(new_york(2000, 1, 1), new_york(2000, 1, 5, 17), GRACE)
    assert [day for day, _ in from_before] == [date(2000, 1, 3), date(2000, 1, 4), date(2000, 1, 5)]
    assert [label for label, _ in nyse.weekly_runs_between(new_york(1999, 12, 1), new_york(2000, 1, 8), GRACE)] == [
        "2000-W01"
    ]


def test_calendar_error_is_a_learnd_error() -> None:
    assert issubclass(CalendarError, LearndError)
    assert not issubclass(CalendarError, ConfigError)


def test_unknown_exchange_code_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="XFAKE"):
        ExchangeCalendar.load("XFAKE", 2026, 2027)


def test_reversed_year_range_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="first_year 2027 is after last_year 2026"):
        ExchangeCalendar.load("XNYS", 2027, 2026)


def test_library_failure_raises_calendar_error_not_market_closed() -> None:
    """exchange_calendars 4.13 records XSHG holidays only through 2026, so it refuses later years."""
    with pytest.raises(CalendarError, match=r"could not build XSHG for 2026\.\.2030") as raised:
        ExchangeCalendar.load("XSHG", 2026, 2030)
    assert isinstance(raised.value.__cause__, ValueError)


def test_library_deprecation_warnings_stay_inside_construction() -> None:
    """XHKG's construction trips pandas 4 deprecations inside exchange_calendars; warnings are errors here."""
    assert ExchangeCalendar.load("XHKG", 2026, 2026).tz == "Asia/Hong_Kong"


def test_alias_is_stored_under_its_canonical_code() -> None:
    assert ExchangeCalendar.load("NYSE", 2026, 2026).code == "XNYS"


def test_other_exchanges_keep_their_own_time_zone() -> None:
    london = ExchangeCalendar.load("XLON", 2026, 2026)
    assert london.tz == "Europe/London"
    assert london.session_close_utc(date(2026, 12, 24)) == datetime(2026, 12, 24, 12, 30, tzinfo=UTC)


def test_loaded_calendar_holds_only_plain_python_data(nyse: ExchangeCalendar) -> None:
    assert (nyse.code, nyse.tz) == ("XNYS", "America/New_York")
    assert all(type(day) is date for day in nyse.sessions)
    assert all(type(moment) is int for moment in [*nyse.opens_us, *nyse.closes_us])
    assert list(nyse.sessions) == sorted(set(nyse.sessions))


def test_calendar_is_immutable(nyse: ExchangeCalendar) -> None:
    with pytest.raises(AttributeError):
        nyse.code = "XLON"  # type: ignore[misc]


def test_importing_the_module_does_not_import_pandas() -> None:
    probe = "import sys, learnd.sessions.exchange; sys.exit('pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"])
def test_local_midnights_are_the_aware_midnights(zone: str) -> None:
    """The fast midnights equal to_epoch_us of the aware local midnight on every day of years with DST changes
    (Lord Howe shifts by half an hour, Kolkata sits at +05:30)."""
    tz = ZoneInfo(zone)
    days = [date(1990, 1, 1) + timedelta(days=offset) for offset in range(0, 365 * 40, 1)]
    expected = [to_epoch_us(datetime.combine(day, time(0), tzinfo=tz)) for day in days]
    assert list(local_midnights_us(days, tz)) == expected


def test_each_weekly_run_follows_the_last_session_of_its_iso_week(nyse: ExchangeCalendar) -> None:
    """Over all covered years, the weekly runs are one a week, after the session whose ISO week the next one leaves."""
    start, end = new_york(FIRST_YEAR, 1, 3), new_york(LAST_YEAR, 12, 1)
    runs = nyse.weekly_runs_between(start, end, GRACE)
    sessions = [day for day in nyse.sessions if start.date() <= day <= date(LAST_YEAR, 12, 31)]
    last_of_week = [
        day for day, following in pairwise(sessions) if day.isocalendar()[:2] != following.isocalendar()[:2]
    ]
    expected = [(nyse.week_label(day), nyse.session_close_utc(day) + GRACE) for day in last_of_week]
    assert runs == [run for run in expected if start < run[1] <= end]
    assert len(runs) > 1500
