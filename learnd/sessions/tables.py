"""Session tables: an exchange's sessions as plain data on disk, so that building a calendar costs a file read,
not pandas. The default exchange ships with learnd (sessions/data/); another is built once with exchange_calendars
and kept in state/ by the process that owns the home.
"""

from __future__ import annotations

import gzip
import os
from bisect import bisect_left, bisect_right
from datetime import date, timedelta
from importlib.util import find_spec
from itertools import repeat
from operator import add
from pathlib import Path
from typing import Any, Final

import orjson

from learnd.config import Settings
from learnd.sessions.exchange import PADDING_DAYS, CalendarError, ExchangeCalendar

SHIPPED_DIR: Final = Path(__file__).resolve().parent / "data"
TABLE_VERSION: Final = 1
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def calendar_for(settings: Settings, *, cache: bool = False) -> ExchangeCalendar:
    """The configured exchange's calendar over the configured years (fixed years, never derived from today: which
    records are in range must not depend on when they are read).

    From the table shipped with learnd when it covers them, else from the one cached in state/, else built with
    exchange_calendars (about a second, and pandas in memory); with `cache` (the home's owner) the built table is
    kept in state/ for next time.
    """
    schedule = settings.schedule
    cache_path = settings.state_dir / f"calendar-{schedule.exchange}.json.gz"
    return calendar_of(
        schedule.exchange, schedule.calendar_first_year, schedule.calendar_last_year, cache_path, cache=cache
    )


def calendar_of(
    code: str, first_year: int, last_year: int, cache_path: Path | None = None, *, cache: bool = False
) -> ExchangeCalendar:
    """The calendar of exchange `code` over the years: shipped table, else `cache_path`, else the library (and,
    with `cache`, the built table written to `cache_path`)."""
    for path in (*sorted(SHIPPED_DIR.glob("*.json.gz")), *([cache_path] if cache_path is not None else [])):
        table = _read(path)
        if table is not None and _covers(table, code, first_year, last_year):
            return from_table(table, first_year, last_year)
    table = build_table(code, first_year, last_year)
    if cache and cache_path is not None:
        write_table(cache_path, table)
    return from_table(table, first_year, last_year)


def build_table(code: str, first_year: int, last_year: int) -> dict[str, Any]:
    """The sessions of exchange `code` for the given years (padded as ExchangeCalendar needs), from the library."""
    calendar = ExchangeCalendar.load(code, first_year, last_year)
    return {
        "version": TABLE_VERSION,
        "code": calendar.code,
        "aliases": _aliases(calendar.code),
        "tz": calendar.tz,
        "first_year": first_year,
        "last_year": last_year,
        "library": _library_version(),
        "days": [day.toordinal() - _EPOCH_ORDINAL for day in calendar.sessions],
        "opens_us": list(calendar.opens_us),
        "closes_us": list(calendar.closes_us),
    }


def from_table(table: dict[str, Any], first_year: int, last_year: int) -> ExchangeCalendar:
    """The calendar of `first_year..last_year` from a table covering at least those years (padding included)."""
    low = date(first_year, 1, 1) - timedelta(days=PADDING_DAYS)
    high = date(last_year, 12, 31) + timedelta(days=PADDING_DAYS)
    days: list[int] = table["days"]
    # The days are in order (the calendar refuses them otherwise): the years wanted are one slice.
    start = bisect_left(days, low.toordinal() - _EPOCH_ORDINAL)
    stop = bisect_right(days, high.toordinal() - _EPOCH_ORDINAL)
    return ExchangeCalendar(
        code=table["code"],
        tz=table["tz"],
        first_year=first_year,
        last_year=last_year,
        sessions=tuple(map(date.fromordinal, map(add, days[start:stop], repeat(_EPOCH_ORDINAL)))),
        opens_us=table["opens_us"][start:stop],
        closes_us=table["closes_us"][start:stop],
    )


def write_table(path: Path, table: dict[str, Any]) -> None:
    """Keep a table (gzip JSON), replacing any older one atomically; a read-only state dir only costs speed."""
    temp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(gzip.compress(orjson.dumps(table), mtime=0))
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        table = orjson.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, orjson.JSONDecodeError):
        return None  # absent, or damaged: built again
    if not isinstance(table, dict) or table.get("version") != TABLE_VERSION:
        return None
    return table


def _covers(table: dict[str, Any], code: str, first_year: int, last_year: int) -> bool:
    """Whether a table answers for `code` (or an alias of it), built by the library learnd runs with, and spans
    the years (the table's own padding reaches past its years as the calendar needs)."""
    names = {table["code"], *table.get("aliases", ())}
    return (
        code in names
        and table["library"] == _library_version()
        and table["first_year"] <= first_year
        and last_year <= table["last_year"]
    )


def _library_version() -> str:
    """The installed exchange-calendars version, as importlib.metadata gives it: read from the wheel's dist-info
    beside the package when there is exactly one (importing importlib.metadata costs more than the rest of a quick
    command's calendar), else asked of importlib.metadata."""
    version = _version_beside_package()
    if version is not None:
        return version
    from importlib import metadata

    try:
        return metadata.version("exchange-calendars")
    except metadata.PackageNotFoundError as error:
        raise CalendarError("exchange-calendars is not installed") from error


def _version_beside_package() -> str | None:
    """The `Version` of the one `exchange_calendars-*.dist-info` in the folder the package imports from; None when
    the package cannot be found, there is no such folder or more than one, or its METADATA names no version."""
    spec = find_spec("exchange_calendars")
    if spec is None or spec.origin is None:
        return None
    infos = list(Path(spec.origin).parent.parent.glob("exchange_calendars-*.dist-info"))
    if len(infos) != 1:
        return None
    try:
        with (infos[0] / "METADATA").open(encoding="utf-8") as headers:
            for header in headers:
                if not header.strip():
                    break  # the headers end at the first blank line; the description follows
                name, _, value = header.partition(":")
                if name == "Version":
                    return value.strip()
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _aliases(code: str) -> list[str]:
    """Other names the library resolves to `code` (NYSE for XNYS), so a config that says NYSE finds the table."""
    import exchange_calendars

    names = exchange_calendars.get_calendar_names(include_aliases=True)
    return sorted(name for name in names if name != code and exchange_calendars.resolve_alias(name) == code)
