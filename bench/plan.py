"""What one `python -m bench` run measures: sizes, repeats and durations for the full run or `--quick`."""

from __future__ import annotations

from dataclasses import dataclass

_MB = 1_000_000
_GB = 1_000_000_000
# Sessions in a year and in five: the big home's history, and the longest of the history benchmark's.
YEAR_SESSIONS = 252
FIVE_YEARS_SESSIONS = 5 * YEAR_SESSIONS


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes in bytes, durations in seconds, rates in lines per second.

    Every generated home ends at the last session before today and has the big home's density: `big_bytes` over
    `big_sessions`, so a home's size sets how many sessions it spans (`sessions_for`). The live benchmarks seed and
    append at the simulator's own density instead (bench.homes.BaseHome.live_map).
    """

    quick: bool
    seed: int
    big_bytes: int
    big_sessions: int
    throughput_repeats: int
    rescan_small_bytes: int
    rescan_repeats: int
    latency_trades: int
    latency_trades_per_s: float
    latency_other_lines_per_s: float
    memory_small_bytes: int
    history_sessions: tuple[int, ...]
    commands_repeats: int
    idle_s: float
    sustained_s: float
    sustained_lines_per_s: float

    @classmethod
    def build(cls, *, quick: bool, gb: float, seed: int) -> Plan:
        # The quick run's big home is one year of sessions at a fifth of the full run's density.
        big = 40 * _MB if quick else round(gb * _GB)
        return cls(
            quick=quick,
            seed=seed,
            big_bytes=big,
            big_sessions=YEAR_SESSIONS if quick else FIVE_YEARS_SESSIONS,
            throughput_repeats=3,
            rescan_small_bytes=2 * _MB if quick else 10 * _MB,
            rescan_repeats=5 if quick else 3,
            latency_trades=200 if quick else 1000,
            latency_trades_per_s=20.0,
            latency_other_lines_per_s=1000.0,
            memory_small_bytes=big // 10,
            # One month, one year and five years of sessions (one month, three months and one year in a quick run).
            history_sessions=(21, 63, YEAR_SESSIONS) if quick else (21, YEAR_SESSIONS, FIVE_YEARS_SESSIONS),
            commands_repeats=5,
            idle_s=10.0 if quick else 60.0,
            sustained_s=10.0 if quick else 60.0,
            sustained_lines_per_s=2000.0,
        )

    def sessions_for(self, size_bytes: int) -> int:
        """How many sessions a home of `size_bytes` spans at the big home's density."""
        return max(1, round(size_bytes * self.big_sessions / self.big_bytes))

    def bytes_for(self, sessions: int) -> int:
        """How large a home of `sessions` sessions is at the big home's density."""
        return round(sessions * self.big_bytes / self.big_sessions)
