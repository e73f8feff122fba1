"""Results: each benchmark yields figures (a value, its baseline measured in the same run, their ratio, and the
target); this module renders the table and writes bench/results.json with the machine it ran on.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure. `ratio` is value / baseline unless stated; `passed` is None when there is no target."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None


@dataclass(slots=True)
class Section:
    """One benchmark's figures plus raw detail (repeats, sizes) for results.json."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in (0, 1])."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> dict[str, Any]:
    uname = platform.uname()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = uname.processor
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "system": f"{uname.system} {uname.release}",
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
    }


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "nan"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render(sections: Sequence[Section], started: datetime, quick: bool) -> str:
    rows = [("benchmark", "figure", "value", "unit", "baseline", "ratio", "target", "ok")]
    for section in sections:
        if section.error is not None:
            rows.append((section.name, "ERROR", section.error[:60], "", "", "", "", "no"))
        for figure in section.figures:
            ok = "-" if figure.passed is None else ("yes" if figure.passed else "NO")
            rows.append(
                (
                    section.name,
                    figure.name,
                    _number(figure.value),
                    figure.unit,
                    _number(figure.baseline),
                    _number(figure.ratio),
                    figure.target,
                    ok,
                )
            )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    info = machine()
    lines = [
        f"learnd bench {'--quick ' if quick else ''}{started:%Y-%m-%d %H:%M} UTC; "
        f"{info['cpu']} x{info['cores']}, Python {info['python']}",
    ]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


def write_results(path: Path, sections: Sequence[Section], started: datetime, quick: bool, argv: Sequence[str]) -> None:
    document = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "quick": quick,
        "argv": list(argv),
        "machine": machine(),
        "sections": [asdict(section) for section in sections],
    }
    path.write_bytes(
        orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
    )
