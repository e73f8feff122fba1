"""Bot homes for the benchmarks: one small simulated home, replicated to any size with every ISO timestamp
moved forward copy by copy (so trade ids and exit keys stay unique and event time keeps increasing).

Generated logs are cached under bench/work/ keyed by size and seed; the simulator runs once per seed.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Final

import learnd
from learnd.config import ScheduleSettings
from learnd.devtools.simulate import LOG_FILES, simulate

WORK_DIR: Final = Path(__file__).resolve().parent / "work"
BASE_TRADES: Final = 600
# A Monday early in the calendar's coverage, so a gigabyte of history fits before the coverage ends.
HISTORY_START: Final = date(2000, 1, 3)
_DAY_US: Final = 86_400_000_000
_WEEK_US: Final = 7 * _DAY_US
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_ISO: Final = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?\+00:00")
_COMPLETE: Final = ".complete"


@lru_cache(maxsize=100_000)
def _day_us(year: int, month: int, day: int) -> int:
    return (date(year, month, day).toordinal() - _EPOCH_ORDINAL) * _DAY_US


@lru_cache(maxsize=100_000)
def _day_text(day_index: int) -> bytes:
    return date.fromordinal(day_index + _EPOCH_ORDINAL).isoformat().encode()


def parse_iso_us(match: re.Match[bytes]) -> int:
    """Epoch microseconds of one `_ISO` match."""
    year, month, day, hour, minute, second, fraction = match.groups()
    micros = int((fraction or b"0").ljust(6, b"0"))
    return (
        _day_us(int(year), int(month), int(day))
        + ((int(hour) * 60 + int(minute)) * 60 + int(second)) * 1_000_000
        + micros
    )


def format_iso(event_us: int, digits: int) -> bytes:
    """`event_us` as the bot writes it: date, time, `digits` fraction digits (0, 3 or 6), +00:00."""
    day_index, rest = divmod(event_us, _DAY_US)
    seconds, micros = divmod(rest, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = b"%sT%02d:%02d:%02d" % (_day_text(day_index), hour, minute, second)
    if digits:
        text += b".%0*d" % (digits, micros // 10 ** (6 - digits))
    return text + b"+00:00"


@dataclass(frozen=True, slots=True)
class TimeMap:
    """Copy k >= first of the base logs moves each moment t (origin <= t < origin + span) to
    origin + first * span + ((k - first) * span + t - origin) // factor.

    Copies before `first` are the base itself shifted by whole spans; `factor` > 1 compresses the later copies
    when they would not fit in the calendar's coverage otherwise. Event time increases from copy to copy.
    """

    origin_us: int
    span_us: int
    factor: int
    first: int = 0

    def moment(self, copy: int, event_us: int) -> int:
        offset = event_us - self.origin_us
        if copy < self.first:
            return event_us + copy * self.span_us
        return self.origin_us + self.first * self.span_us + ((copy - self.first) * self.span_us + offset) // self.factor

    def rewrite(self, data: bytes, copy: int) -> bytes:
        """Every ISO timestamp in `data` moved to copy `copy`, each keeping its precision."""

        def replace(match: re.Match[bytes]) -> bytes:
            fraction = match.group(7)
            return format_iso(self.moment(copy, parse_iso_us(match)), len(fraction) if fraction else 0)

        return _ISO.sub(replace, data)


class BaseHome:
    """The simulated home every benchmark home is replicated from (logs read into memory once)."""

    def __init__(self, seed: int, start: date = HISTORY_START) -> None:
        self.seed = seed
        self.start = start
        self.path = WORK_DIR / f"base-{BASE_TRADES}-seed{seed}-{start.isoformat()}"
        if not (self.path / _COMPLETE).exists():
            shutil.rmtree(self.path, ignore_errors=True)
            simulate(self.path, trades=BASE_TRADES, seed=seed, start=start)
            (self.path / _COMPLETE).touch()
        self.logs = {name: (self.path / "logs" / f"{name}.jsonl").read_bytes() for name in LOG_FILES}
        self.origin_us = (start.toordinal() - _EPOCH_ORDINAL) * _DAY_US
        last_us = max(max(parse_iso_us(m) for m in _ISO.finditer(data)) for data in self.logs.values())
        self.span_us = (math.ceil((last_us - self.origin_us) / _WEEK_US) + 1) * _WEEK_US

    def time_map(self, copies: int, first: int = 0) -> TimeMap:
        """The time map that fits `copies` copies from `first` on (plus room for appends) in the calendar's coverage."""
        # The years learnd's calendar covers come from its settings: the homes must fit inside them.
        last_year = ScheduleSettings().calendar_last_year
        room_us = (date(last_year, 11, 1).toordinal() - self.start.toordinal()) * _DAY_US - first * self.span_us
        factor = max(1, math.ceil((copies + 1) * self.span_us / room_us))
        return TimeMap(self.origin_us, self.span_us, factor, first)

    def lines_per_copy(self, name: str) -> int:
        return self.logs[name].count(b"\n")

    def copy_lines(self, name: str, copy: int, time_map: TimeMap) -> list[bytes]:
        """The lines of one log in copy `copy`, newline-terminated."""
        return time_map.rewrite(self.logs[name], copy).splitlines(keepends=True)


@dataclass(frozen=True, slots=True)
class GeneratedHome:
    """A cached set of logs (absolute paths per source) and what was written."""

    logs: dict[str, Path]
    copies: int
    time_map: TimeMap

    @property
    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.logs.values())

    def line_count(self) -> int:
        total = 0
        for path in self.logs.values():
            with open(path, "rb") as handle:
                total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 22), b""))
        return total


def generated_home(base: BaseHome, size_bytes: int, sources: Sequence[str] = LOG_FILES) -> GeneratedHome:
    """Logs of `sources` totalling about `size_bytes`, built by replicating the base home (cached)."""
    per_copy = sum(len(base.logs[name]) for name in sources)
    copies = max(1, math.ceil(size_bytes / per_copy))
    time_map = base.time_map(copies)
    tag = "all" if tuple(sources) == LOG_FILES else "-".join(sources)
    directory = WORK_DIR / f"home-{tag}-{copies}x-seed{base.seed}-{base.start.isoformat()}"
    logs = {name: directory / "logs" / f"{name}.jsonl" for name in sources}
    if not (directory / _COMPLETE).exists():
        shutil.rmtree(directory, ignore_errors=True)
        (directory / "logs").mkdir(parents=True)
        handles = {name: open(path, "wb") for name, path in logs.items()}  # noqa: SIM115 - closed below
        try:
            for copy in range(copies):
                for name, handle in handles.items():
                    handle.write(time_map.rewrite(base.logs[name], copy))
        finally:
            for handle in handles.values():
                handle.close()
        (directory / _COMPLETE).touch()
    return GeneratedHome(logs=logs, copies=copies, time_map=time_map)


def stream_lines(base: BaseHome, name: str, first_copy: int, time_map: TimeMap) -> Iterator[bytes]:
    """Lines of one log from copy `first_copy` on, endlessly: what a live bot would append next."""
    copy = first_copy
    while True:
        yield from base.copy_lines(name, copy, time_map)
        copy += 1


def last_moment_us(path: Path) -> int:
    """The latest ISO timestamp in the last 64 KiB of a log."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 65536))
        tail = handle.read()
    return max(parse_iso_us(match) for match in _ISO.finditer(tail))


def retimed(line: bytes, event_us: int) -> bytes:
    """`line` with every ISO timestamp set to `event_us` (a fresh trade id when the id embeds the time)."""
    return _ISO.sub(lambda match: format_iso(event_us, 6), line)


def recent_start(today: date) -> date:
    """A Monday seven weeks before `today`: a base home starting there ends before today, so the daemon has only a
    few weeks of scheduled jobs to catch up, and appended copies lie after today."""
    monday = today - timedelta(days=today.weekday())
    return monday - timedelta(weeks=7)


def learnd_digest() -> str:
    """A short digest of learnd's source, for caches of state that learnd wrote."""
    digest = hashlib.sha256()
    for path in sorted((Path(learnd.__file__).parent).rglob("*.py")):
        digest.update(str(path.relative_to(Path(learnd.__file__).parent)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def fresh_run_dir(name: str) -> Path:
    """An empty directory under bench/work/run/ for one measurement's state."""
    path = WORK_DIR / "run" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
