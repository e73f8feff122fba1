"""`python -m learnd.devtools.calendars`: rebuild the session table shipped with learnd (sessions/data/) from
exchange_calendars, after the pinned exchange-calendars version or the default years change. The tests check the
shipped table against the library, so a stale one fails them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from learnd.config import ScheduleSettings
from learnd.sessions.tables import SHIPPED_DIR, build_table, write_table


def shipped_table_name(code: str) -> str:
    return f"{code}.json.gz"


def main(target_dir: Path = SHIPPED_DIR) -> int:
    """Write the default exchange's table over the default years into `target_dir` (the shipped tables' folder
    unless a test says otherwise); prints where."""
    schedule = ScheduleSettings()
    table = build_table(schedule.exchange, schedule.calendar_first_year, schedule.calendar_last_year)
    target = target_dir / shipped_table_name(table["code"])
    write_table(target, table)
    print(f"{target}: {len(table['days'])} sessions of {table['code']} ({table['library']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
