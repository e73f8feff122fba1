"""Bot homes for the benchmarks, ending where a bot's history ends: at the last session before today. One small
simulated home (the base) is replicated to any size; its sessions, copy after copy, are spread evenly over the
home's trading sessions, every ISO timestamp keeping its share of its session's trading hours. Event time keeps
increasing through each file, and trade ids and exit keys (which embed timestamps) stay unique.

Generated logs are cached under bench/work/ keyed by size, sessions, seed and last session; the simulator runs
once per seed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Final

import orjson

import learnd
from learnd.config import load_settings
from learnd.devtools.simulate import LOG_FILES, simulate
from learnd.sessions.exchange import ExchangeCalendar
from learnd.sessions.tables import calendar_for

WORK_DIR: Final = Path(__file__).resolve().parent / "work"
BASE_TRADES: Final = 600
# The base's own dates do not matter (every copy is moved); these are the simulator's cached ones.
BASE_START: Final = date(2000, 1, 3)
# A base session's position is counted in these units: far finer than a microsecond of its trading hours.
_SESSION_UNITS: Final = 1 << 48
_DAY_US: Final = 86_400_000_000
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_ISO: Final = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?\+00:00")
_COMPLETE: Final = ".complete"
# Homes and stores under bench/work/ whose history ends on another day: never used again.
_DATED_PREFIXES: Final = ("home-", "caught-up-")


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


@lru_cache(maxsize=1)
def exchange_calendar() -> ExchangeCalendar:
    """The calendar learnd uses with its default settings (the homes' sessions must be its sessions)."""
    return calendar_for(load_settings(home=WORK_DIR, environ={}))


@dataclass(frozen=True, slots=True)
class SessionMap:
    """Where each copy of the base puts each base moment.

    A base moment is read as a position in the base's sessions: session j plus the share of j's open-to-close hours
    passed. Copy k's session j is session k * m + j of the home (m base sessions per copy); the home's
    `base_sessions` are spread evenly over `sessions` target sessions (from `opens_us[0]` on), each moment keeping
    its share of the target session's hours. Positions past the home (later copies) fall in the sessions after it.
    Non-decreasing in (copy, moment); moments packed closer than a microsecond become one, which generation checks
    for the moments that make trade ids and exit keys.
    """

    base_opens_us: tuple[int, ...]
    base_closes_us: tuple[int, ...]
    opens_us: tuple[int, ...]
    closes_us: tuple[int, ...]
    base_sessions: int
    sessions: int

    def moment(self, copy: int, event_us: int) -> int:
        index = bisect_right(self.base_opens_us, event_us) - 1
        if index < 0 or event_us >= self.base_closes_us[index]:
            raise ValueError(f"base moment {event_us} is outside the base's trading hours")
        base_open = self.base_opens_us[index]
        position = (copy * len(self.base_opens_us) + index) * _SESSION_UNITS + (
            (event_us - base_open) * _SESSION_UNITS // (self.base_closes_us[index] - base_open)
        )
        scale = self.base_sessions * _SESSION_UNITS
        session, rest = divmod(position * self.sessions, scale)
        session_open = self.opens_us[session]
        return session_open + rest * (self.closes_us[session] - session_open) // scale


@dataclass(frozen=True, slots=True)
class _Log:
    """One base log with its timestamps found once: their spans, epoch microseconds and fraction digits."""

    data: bytes
    spans: tuple[tuple[int, int], ...]
    moments: tuple[int, ...]
    digits: tuple[int, ...]

    @classmethod
    def of(cls, data: bytes) -> _Log:
        matches = list(_ISO.finditer(data))
        return cls(
            data,
            tuple(match.span() for match in matches),
            tuple(parse_iso_us(match) for match in matches),
            tuple(len(match.group(7) or b"") for match in matches),
        )

    def moved(self, copy: int, session_map: SessionMap) -> bytes:
        """The log with every timestamp moved by `session_map` as copy `copy`, each keeping its precision."""
        parts: list[bytes] = []
        previous = 0
        for (start, end), moment, digits in zip(self.spans, self.moments, self.digits, strict=True):
            parts.append(self.data[previous:start])
            parts.append(format_iso(session_map.moment(copy, moment), digits))
            previous = end
        parts.append(self.data[previous:])
        return b"".join(parts)


class BaseHome:
    """The simulated home every benchmark home is replicated from (logs read into memory once), and the sessions
    that end with the last one before `today`, where every home's history ends."""

    def __init__(self, seed: int, today: date) -> None:
        self.seed = seed
        self.path = WORK_DIR / f"base-{BASE_TRADES}-seed{seed}-{BASE_START.isoformat()}"
        if not (self.path / _COMPLETE).exists():
            shutil.rmtree(self.path, ignore_errors=True)
            simulate(self.path, trades=BASE_TRADES, seed=seed, start=BASE_START)
            (self.path / _COMPLETE).touch()
        self.logs = {name: _Log.of((self.path / "logs" / f"{name}.jsonl").read_bytes()) for name in LOG_FILES}
        self.calendar = exchange_calendar()
        moments = [moment for log in self.logs.values() for moment in log.moments]
        first = self.calendar.session_index(min(moments))
        last = self.calendar.session_index(max(moments))
        self.session_count = last - first + 1
        self._base_bounds = (
            tuple(self.calendar.opens_us[first : last + 1]),
            tuple(self.calendar.closes_us[first : last + 1]),
        )
        self.last_index = bisect_left(self.calendar.sessions, today) - 1
        self.end_day = self.calendar.sessions[self.last_index]

    def session_map(self, base_sessions: int, sessions: int) -> SessionMap:
        """`base_sessions` base sessions spread over the `sessions` sessions that end at `end_day`."""
        first = self.last_index - sessions + 1
        if sessions < 1 or base_sessions < 1 or first < 0:
            raise ValueError(f"no home of {base_sessions} base sessions over {sessions} sessions")
        opens, closes = self._base_bounds
        return SessionMap(
            opens,
            closes,
            tuple(self.calendar.opens_us[first:]),
            tuple(self.calendar.closes_us[first:]),
            base_sessions,
            sessions,
        )

    @cached_property
    def live_map(self) -> SessionMap:
        """One copy over as many sessions as the base has, ending at `end_day`; later copies follow session by
        session, at the simulator's own density: what a live bot writes, then appends."""
        return self.session_map(self.session_count, self.session_count)

    def moved_copy(self, name: str, copy: int, session_map: SessionMap, part: int | None = None) -> bytes:
        """Copy `copy` of one log, or with `part` only the lines of its first `part` sessions."""
        log = self.logs[name] if part is None else self._part(name, part)
        return log.moved(copy, session_map)

    def key_count(self, name: str, part: int | None = None) -> int:
        """How many distinct dedupe keys one log holds (all of it, or its first `part` sessions)."""
        log = self.logs[name] if part is None else self._part(name, part)
        return len(_keys(name, log.data))

    @lru_cache(maxsize=8)  # noqa: B019 - a few parts per base home, which lives as long as the run
    def _part(self, name: str, sessions: int) -> _Log:
        """The lines of one log in its first `sessions` sessions: a line is in the session of its first timestamp,
        a line without one (garbage) in the session of the line before it."""
        log = self.logs[name]
        opens, _ = self._base_bounds
        kept: list[bytes] = []
        session = 0
        for line in log.data.splitlines(keepends=True):
            match = _ISO.search(line)
            if match is not None:
                session = bisect_right(opens, parse_iso_us(match)) - 1
            if session < sessions:
                kept.append(line)
        return _Log.of(b"".join(kept))


@dataclass(frozen=True, slots=True)
class GeneratedHome:
    """A cached set of logs (absolute paths per source), its directory and its shape."""

    directory: Path
    logs: dict[str, Path]
    base_sessions: int
    sessions: int

    @property
    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.logs.values())

    def line_count(self) -> int:
        total = 0
        for path in self.logs.values():
            with open(path, "rb") as handle:
                total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 22), b""))
        return total


def generated_home(base: BaseHome, size_bytes: int, sessions: int, sources: Sequence[str] = LOG_FILES) -> GeneratedHome:
    """Logs of `sources` totalling about `size_bytes` over the `sessions` sessions ending at `base.end_day`, built
    from whole base sessions (copies of the base, the last one cut at a session), cached."""
    per_session = sum(len(base.logs[name].data) for name in sources) / base.session_count
    base_sessions = max(1, round(size_bytes / per_session))
    tag = "all" if tuple(sources) == LOG_FILES else "-".join(sources)
    directory = WORK_DIR / f"home-{tag}-{base_sessions}b-{sessions}s-seed{base.seed}-to{base.end_day.isoformat()}"
    logs = {name: directory / "logs" / f"{name}.jsonl" for name in sources}
    if not (directory / _COMPLETE).exists():
        shutil.rmtree(directory, ignore_errors=True)
        (directory / "logs").mkdir(parents=True)
        _write_home(base, logs, base.session_map(base_sessions, sessions))
        (directory / _COMPLETE).touch()
    return GeneratedHome(directory, logs, base_sessions, sessions)


def _write_home(base: BaseHome, logs: dict[str, Path], session_map: SessionMap) -> None:
    """Write the copies, checking that no trade id or exit key of the base became the same as another."""
    full, part = divmod(session_map.base_sessions, base.session_count)
    keys: dict[str, set[object]] = {name: set() for name in logs}
    with ExitStack() as stack:
        handles = {name: stack.enter_context(open(path, "wb")) for name, path in logs.items()}
        for copy in range(full + (part > 0)):
            cut = part if copy == full else None
            for name, handle in handles.items():
                data = base.moved_copy(name, copy, session_map, cut)
                keys[name] |= _keys(name, data)
                handle.write(data)
    for name in logs:
        expected = full * base.key_count(name) + (base.key_count(name, part) if part else 0)
        if len(keys[name]) != expected:
            raise RuntimeError(f"{name}: {expected - len(keys[name])} keys collided in the generated home")


def _keys(name: str, data: bytes) -> set[object]:
    """learnd's dedupe keys in one log: trade ids in attribution, (msg, symbol, ts) in exit; none elsewhere."""
    if name not in ("attribution", "exit"):
        return set()
    keys: set[object] = set()
    for line in data.splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict):
            keys.add(
                row.get("trade_id") if name == "attribution" else (row.get("msg"), row.get("symbol"), row.get("ts"))
            )
    return keys


def stream_lines(base: BaseHome, name: str, first_copy: int) -> Iterator[bytes]:
    """Lines of one log from copy `first_copy` of the live map on, endlessly: what a live bot appends next."""
    copy = first_copy
    while True:
        yield from base.moved_copy(name, copy, base.live_map).splitlines(keepends=True)
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


def learnd_digest() -> str:
    """A short digest of learnd's source, for caches of state that learnd wrote."""
    digest = hashlib.sha256()
    for path in sorted((Path(learnd.__file__).parent).rglob("*.py")):
        digest.update(str(path.relative_to(Path(learnd.__file__).parent)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def prune_stale(end_day: date) -> list[Path]:
    """Remove the cached homes and stores whose history does not end at `end_day` (a home must end at the last
    session before today, so they would never be used again); returns what was removed."""
    removed = []
    for path in WORK_DIR.glob("*"):
        if path.name.startswith(_DATED_PREFIXES) and f"-to{end_day.isoformat()}" not in path.name:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def fresh_run_dir(name: str) -> Path:
    """An empty directory under bench/work/run/ for one measurement's state."""
    path = WORK_DIR / "run" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
