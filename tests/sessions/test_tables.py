"""Session tables: the shipped table is what exchange_calendars builds, a subset of years reads the same as a
fresh build, another exchange is built once and cached, and the daemon's quick paths never import pandas."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path

import pytest

from learnd.config import ScheduleSettings, load_settings
from learnd.sessions import tables
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
    # main(), not `python -m learnd`: as a program a quick command leaves at once, before the probe could look.
    probe = (
        "import sys\nfrom learnd.cli import main\nmain(['--home', sys.argv[1], sys.argv[2]])\n"
        "sys.stderr.write('PANDAS' if 'pandas' in sys.modules else 'CLEAN')\n"
    )
    (tmp_path / "logs").mkdir()
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path), command], capture_output=True, text=True, check=False
    )
    assert result.stderr.endswith("CLEAN"), result.stderr[-2000:]


def test_the_library_version_is_the_one_importlib_metadata_gives() -> None:
    assert tables._library_version() == metadata.version("exchange-calendars")


def fake_site(root: Path, versions: list[str]) -> ModuleSpec:
    """A folder holding an exchange_calendars package and a dist-info per version; the spec the package has there."""
    (root / "exchange_calendars").mkdir()
    (root / "exchange_calendars" / "__init__.py").write_text("")
    for version in versions:
        info = root / f"exchange_calendars-{version}.dist-info"
        info.mkdir()
        # A header after the blank line is the description's, not the version.
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: exchange_calendars\nVersion: {version}\n\nVersion: 0\n"
        )
    spec = spec_from_file_location("exchange_calendars", root / "exchange_calendars" / "__init__.py")
    assert spec is not None
    return spec


def test_the_library_version_is_read_from_the_dist_info_beside_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faked at the seam: the package's spec points into a folder of this test's making."""
    spec = fake_site(tmp_path, ["9.9.9"])
    monkeypatch.setattr(tables, "find_spec", lambda name: spec)
    assert tables._library_version() == "9.9.9"


def test_two_dist_infos_beside_the_package_leave_the_version_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which of two is installed is importlib.metadata's call (faked at the seam, as above)."""
    spec = fake_site(tmp_path, ["9.9.9", "9.9.8"])
    monkeypatch.setattr(tables, "find_spec", lambda name: spec)
    assert tables._library_version() == metadata.version("exchange-calendars")
