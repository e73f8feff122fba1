"""Tests for bench.homes: generated homes end at the last session before today, span the sessions asked, keep
event time increasing through each file and keep trade ids and exit keys unique; a live bot's appends come after.

The homes are written under tmp_path: bench.homes.WORK_DIR is the seam (the cache directory), patched per test.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import orjson
import pytest

from bench import homes
from bench.appender import seed_logs, upcoming
from bench.homes import BaseHome, GeneratedHome, _write_home, generated_home, prune_stale
from learnd.devtools.simulate import LOG_FILES
from learnd.records.parse import parse_event_us
from learnd.sessions.exchange import ExchangeCalendar

TODAY = date(2026, 12, 7)  # a Monday: the homes end on Friday 2026-12-04
SEED = 11


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture
def base(work_dir: Path, monkeypatch: pytest.MonkeyPatch) -> BaseHome:
    monkeypatch.setattr(homes, "WORK_DIR", work_dir)
    return BaseHome(SEED, TODAY)


def rows(path: Path) -> list[dict[str, object]]:
    """The JSON objects of a log, in file order (garbage lines left out)."""
    return objects(path.read_bytes().splitlines())


def objects(lines: list[bytes]) -> list[dict[str, object]]:
    found = []
    for line in lines:
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict):
            found.append(row)
    return found


def moments(row: dict[str, object]) -> list[int]:
    return [parse_event_us(value) for key, value in row.items() if key == "ts" and isinstance(value, str)]


def sessions_used(calendar: ExchangeCalendar, home: GeneratedHome) -> set[int]:
    used = set()
    for path in home.logs.values():
        for row in rows(path):
            for moment in moments(row):
                index = calendar.session_index(moment)
                assert calendar.opens_us[index] <= moment < calendar.closes_us[index], "outside trading hours"
                used.add(index)
    return used


def test_the_history_ends_at_the_last_session_before_today(base: BaseHome) -> None:
    assert base.end_day == date(2026, 12, 4)


@pytest.mark.parametrize(("copies", "sessions"), [(2.5, 21), (0.4, 63)])
def test_a_home_spans_the_sessions_asked_ending_at_the_last_one(base: BaseHome, copies: float, sessions: int) -> None:
    """Whole base sessions (a copy cut at a session when the size asks for it) spread over exactly the sessions
    that end at `end_day`, every moment within a session's trading hours."""
    size = round(copies * sum(len(log.data) for log in base.logs.values()))
    home = generated_home(base, size, sessions)
    calendar = base.calendar
    used = sessions_used(calendar, home)
    assert calendar.sessions[max(used)] == base.end_day
    assert min(used) >= base.last_index - sessions + 1
    # Dense enough to leave no session empty: every one of the window holds an event.
    assert len(used) == sessions
    assert home.size_bytes == pytest.approx(size, rel=0.05)


def test_event_time_increases_through_each_file(base: BaseHome) -> None:
    home = generated_home(base, round(2.5 * sum(len(log.data) for log in base.logs.values())), 40)
    for name, path in home.logs.items():
        times = [moments(row)[0] for row in rows(path) if moments(row)]
        # The base plants one truncated copy of an earlier line per log and copy: it is not JSON, so not here.
        assert times == sorted(times), name


def test_trade_ids_and_exit_keys_stay_unique(base: BaseHome) -> None:
    """Each copy's closed trades and exit rows are new ones: as many distinct keys as copies times the base's."""
    home = generated_home(base, round(3 * sum(len(log.data) for log in base.logs.values())), 21)
    trade_ids = [row["trade_id"] for row in rows(home.logs["attribution"])]
    exit_keys = [(row.get("msg"), row.get("symbol"), row["ts"]) for row in rows(home.logs["exit"])]
    assert len(set(trade_ids)) == 3 * base.key_count("attribution")
    assert len(set(exit_keys)) == 3 * base.key_count("exit")


def test_a_map_that_merges_keys_is_refused(base: BaseHome, tmp_path: Path) -> None:
    """Sessions a few microseconds long (a map built by hand: no real calendar has them) merge distinct trade ids
    and exit keys: writing the home fails loudly instead."""
    real = base.live_map
    opens = tuple(range(real.opens_us[0], real.opens_us[0] + 100 * len(real.opens_us), 100))
    squeezed = replace(real, opens_us=opens, closes_us=tuple(start + 5 for start in opens))
    logs = {name: tmp_path / f"{name}.jsonl" for name in ("attribution", "exit")}
    with pytest.raises(RuntimeError, match="keys collided"):
        _write_home(base, logs, squeezed)


def test_a_live_bot_appends_after_the_seeded_history(base: BaseHome, tmp_path: Path) -> None:
    logs = seed_logs(base, tmp_path, LOG_FILES)
    for name, path in logs.items():
        seeded = [moment for row in rows(path) for moment in moments(row)]
        appended = [moment for row in objects(upcoming(base, name, 500)) for moment in moments(row)]
        assert base.calendar.trading_day(max(seeded)) == base.end_day
        assert min(appended) > max(seeded)
        assert base.calendar.trading_day(min(appended)) > base.end_day


def test_homes_ending_on_another_day_are_pruned(base: BaseHome, work_dir: Path) -> None:
    home = generated_home(base, 100_000, 5)
    stale = work_dir / "home-all-1b-5s-seed11-to2026-11-27"
    stale.mkdir()
    removed = prune_stale(base.end_day)
    assert removed == [stale]
    assert home.directory.exists()
