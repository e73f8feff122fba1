"""devtools.calendars: the tool that rebuilds the shipped session table writes exactly the table learnd ships
(built into a temporary directory here, never over the shipped one)."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from learnd.config import ScheduleSettings
from learnd.devtools.calendars import main, shipped_table_name
from learnd.sessions import tables
from learnd.sessions.tables import SHIPPED_DIR, calendar_of


def test_main_writes_the_table_learnd_ships(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rebuild with the pinned exchange-calendars gives the shipped file byte for byte (gzip without a time
    stamp), and says where it wrote how many sessions."""
    assert main(tmp_path) == 0
    name = shipped_table_name(ScheduleSettings().exchange)
    written = (tmp_path / name).read_bytes()
    assert written == (SHIPPED_DIR / name).read_bytes()
    table = orjson.loads(gzip.decompress(written))
    assert (table["code"], table["first_year"], table["last_year"]) == ("XNYS", 1990, 2050)
    assert capsys.readouterr().out == f"{tmp_path / name}: {len(table['days'])} sessions of XNYS ({table['library']})\n"


def test_the_written_table_is_the_one_calendars_are_read_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the shipped folder pointed at the rebuilt one, and building from the library made to fail (the seam
    faked here), the default calendar still loads: from the file main() wrote, under the name it is looked up by."""
    main(tmp_path)
    schedule = ScheduleSettings()
    expected = calendar_of(schedule.exchange, schedule.calendar_first_year, schedule.calendar_last_year)

    def no_build(code: str, first_year: int, last_year: int) -> dict[str, object]:
        raise AssertionError(f"built {code} from the library instead of reading the table")

    monkeypatch.setattr(tables, "SHIPPED_DIR", tmp_path)
    monkeypatch.setattr(tables, "build_table", no_build)
    loaded = calendar_of(schedule.exchange, schedule.calendar_first_year, schedule.calendar_last_year)
    assert (loaded.code, loaded.sessions, loaded.opens_us, loaded.closes_us) == (
        expected.code,
        expected.sessions,
        expected.opens_us,
        expected.closes_us,
    )
    assert calendar_of("NYSE", 2026, 2026).code == "XNYS"  # an alias finds it too
