"""Pictures of what learning did: each component's multiplier over event time, per regime, drawn from
data/weight_learning.jsonl. matplotlib is an optional extra (`pip install 'learnd[plot]'`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from learnd.errors import LearndError

Series = dict[str, list[tuple[datetime, float]]]


def multiplier_series(changes: Iterable[Mapping[str, Any]], *, model: str, strategy: str) -> dict[str, Series]:
    """{component: {regime: [(event time, multiplier after the change), ...]}} for one model and strategy."""
    result: dict[str, Series] = {}
    for change in changes:
        if change.get("model") != model or change.get("strategy") != strategy:
            continue
        moment = datetime.fromtimestamp(int(change["event_us"]) / 1_000_000, tz=UTC)
        points = result.setdefault(str(change["component"]), {}).setdefault(str(change["regime"]), [])
        if not points:
            points.append((moment, float(change["old"])))
        points.append((moment, float(change["new"])))
    return result


def read_changes(path: Path) -> list[dict[str, Any]]:
    """The documents of data/weight_learning.jsonl (a torn last line from a crash is skipped)."""
    if not path.exists():
        return []
    documents: list[dict[str, Any]] = []
    for line in path.read_bytes().splitlines():
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a crash mid-append leaves such a torn line; the next append starts on a new line
        if isinstance(document, dict):
            documents.append(document)
    return documents


def draw_multipliers(changes_path: Path, target: Path, *, model: str = "entry", strategy: str = "equity") -> Path:
    """Draw one small panel per component (strategy-wide line bold, regimes thin) into a PNG at `target`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LearndError(
            "the chart needs matplotlib, an optional extra: pip install 'learnd[plot]' (or .venv/bin/pip install "
            "matplotlib); the Markdown and JSON reports do not"
        ) from None
    series = multiplier_series(read_changes(changes_path), model=model, strategy=strategy)
    if not series:
        raise LearndError(f"no {model} multiplier changes for strategy {strategy!r} in {changes_path} yet")
    names = sorted(series)
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False, sharey=True)
    for index, name in enumerate(names):
        axis = axes[index // columns][index % columns]
        for regime, points in sorted(series[name].items()):
            times = [moment for moment, _ in points]
            values = [value for _, value in points]
            width = 2.2 if regime == "*" else 0.9
            axis.step(times, values, where="post", linewidth=width, label="all regimes" if regime == "*" else regime)
        axis.axhline(1.0, color="grey", linewidth=0.5, linestyle=":")
        axis.set_title(name, fontsize=9)
        axis.set_ylim(0.2, 2.6)
        axis.tick_params(labelsize=7)
        axis.tick_params(axis="x", labelrotation=30)
        axis.legend(fontsize=6, loc="upper left")
    for index in range(len(names), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    figure.suptitle(f"{model} multipliers over event time, strategy {strategy}", fontsize=11)
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=90)
    plt.close(figure)
    return target
