"""What one `python -m bench` run measures: sizes, repeats and durations for the full run or `--quick`."""

from __future__ import annotations

from dataclasses import dataclass

_MB = 1_000_000
_GB = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes in bytes, durations in seconds, rates in lines per second."""

    quick: bool
    seed: int
    throughput_bytes: int
    throughput_repeats: int
    rescan_small_bytes: int
    rescan_big_bytes: int
    rescan_repeats: int
    latency_trades: int
    latency_trades_per_s: float
    latency_other_lines_per_s: float
    memory_small_bytes: int
    memory_big_bytes: int
    idle_s: float
    sustained_s: float
    sustained_lines_per_s: float

    @classmethod
    def build(cls, *, quick: bool, gb: float, seed: int) -> Plan:
        if quick:
            return cls(
                quick=True,
                seed=seed,
                throughput_bytes=30 * _MB,
                throughput_repeats=3,
                rescan_small_bytes=2 * _MB,
                rescan_big_bytes=40 * _MB,
                rescan_repeats=5,
                latency_trades=200,
                latency_trades_per_s=20.0,
                latency_other_lines_per_s=1000.0,
                memory_small_bytes=10 * _MB,
                memory_big_bytes=50 * _MB,
                idle_s=10.0,
                sustained_s=10.0,
                sustained_lines_per_s=2000.0,
            )
        big = round(gb * _GB)
        return cls(
            quick=False,
            seed=seed,
            throughput_bytes=big,
            throughput_repeats=3,
            rescan_small_bytes=10 * _MB,
            rescan_big_bytes=big,
            rescan_repeats=3,
            latency_trades=1000,
            latency_trades_per_s=20.0,
            latency_other_lines_per_s=1000.0,
            memory_small_bytes=big // 10,
            memory_big_bytes=big,
            idle_s=60.0,
            sustained_s=60.0,
            sustained_lines_per_s=2000.0,
        )
