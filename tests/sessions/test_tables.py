"""Session tables: the shipped table is what exchange_calendars builds, a subset of years reads the same as a
fresh build, another exchange is built once and cached, and the daemon's quick paths never import pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from learnd.config import ScheduleSettings, load_settings
from learnd.sessions.exchange import ExchangeCalendar
from learnd.sessions.tables import SHIPPED_DIR, calendar_for, calendar_of


def test_the_shipped_table_is_what_the_pinned_library_builds() -> None:
    """A stale table (the exchange-calendars pin moved) fails here; python -m learnd.devtools.calendars rebuilds it."""
    schedule = ScheduleSettings()
    shipped = calendar_of(schedule.exchange, schedule.calendar_first_year, schedule.calendar_last_year)
    built = ExchangeCalendar.load(schedule.exchange, schedule.calendar_first_year, schedule.calendar_last_year)
    assert shipped == built
    assert (shipped.sessions, shipped.opens_us, shipped.closes_us) == (built.sessions, built.opens_us, built.closes_us)


@pytest.mark.parametrize(("first", "last"), [(2026, 2026), (2000, 2030), (1990, 1991)])
def test_fewer_years_read_from_the_table_equal_a_fresh_build(first: int, last: int) -> None:
    from_table = calendar_of("XNYS", first, last)
    built = ExchangeCalendar.load("XNYS", first, last)
    assert (from_table.sessions, from_table.opens_us, from_table.closes_us) == (
        built.sessions,
        built.opens_us,
        built.closes_us,
    )
    assert (from_table.first_year, from_table.last_year) == (first, last)


def test_an_alias_finds_the_shipped_table() -> None:
    """`schedule.exchange = "NYSE"` is the XNYS calendar, read from the table."""
    assert calendar_of("NYSE", 2026, 2026).code == "XNYS"


def london_years(first: int, last: int) -> dict[str, object]:
    return {"schedule.exchange": "XLON", "schedule.calendar_first_year": first, "schedule.calendar_last_year": last}


def test_another_exchange_is_built_once_and_cached_in_state(tmp_path: Path) -> None:
    """No shipped table: the owner builds it with the library and keeps it; the next read uses the file."""
    settings = load_settings(
        home=tmp_path,
        environ={},
        overrides=london_years(2024, 2026),
    )
    assert not (SHIPPED_DIR / "XLON.json.gz").exists()
    built = calendar_for(settings, cache=True)
    cached = settings.state_dir / "calendar-XLON.json.gz"
    assert cached.exists()
    before = cached.stat().st_mtime_ns
    again = calendar_for(settings, cache=True)
    assert again == built
    assert cached.stat().st_mtime_ns == before


def test_a_damaged_cache_is_built_again(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path,
        environ={},
        overrides=london_years(2025, 2025),
    )
    cached = settings.state_dir / "calendar-XLON.json.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not gzip")
    assert calendar_for(settings, cache=True).code == "XLON"
    assert cached.read_bytes()[:2] == b"\x1f\x8b"


@pytest.mark.parametrize("command", ["status", "weights", "schedule"])
def test_quick_commands_do_not_import_pandas(tmp_path: Path, command: str) -> None:
    """The calendar comes from the table: pandas (half a second and 40 MiB) stays out of quick commands."""
    probe = (
        "import sys, runpy; sys.argv = ['learnd', '--home', sys.argv[1], sys.argv[2]]\n"
        "try:\n    runpy.run_module('learnd', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "sys.stderr.write('PANDAS' if 'pandas' in sys.modules else 'CLEAN')\n"
    )
    (tmp_path / "logs").mkdir()
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path), command], capture_output=True, text=True, check=False
    )
    assert result.stderr.endswith("CLEAN"), result.stderr[-2000:]
