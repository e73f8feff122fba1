"""Pictures of what learning did: each component's multiplier over event time, per regime, drawn from
data/weight_learning.jsonl, on one time axis, with the planted truth when the home came from `learnd simulate`.
matplotlib is an optional extra (`pip install 'learnd[plot]'`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from learnd.config import Settings
from learnd.errors import LearndError
from learnd.learning.multipliers import GLOBAL_SCOPE
from learnd.views.weights import load_model

Series = dict[str, list[tuple[datetime, float]]]
# The planted multipliers of a simulated home for one strategy: component -> regime -> multiplier.
Planted = dict[str, dict[str, float]]


def multiplier_series(
    changes: Iterable[Mapping[str, Any]], *, model: str, strategy: str, until: datetime | None = None
) -> dict[str, Series]:
    """{component: {regime: [(event time, multiplier after the change), ...]}} for one model and strategy; with
    `until`, every line is carried on to that time at its last value (a multiplier holds until it moves)."""
    result: dict[str, Series] = {}
    for change in changes:
        if change.get("model") != model or change.get("strategy") != strategy:
            continue
        moment = datetime.fromtimestamp(int(change["event_us"]) / 1_000_000, tz=UTC)
        points = result.setdefault(str(change["component"]), {}).setdefault(str(change["regime"]), [])
        if not points:
            points.append((moment, float(change["old"])))
        points.append((moment, float(change["new"])))
    if until is not None:
        for series in result.values():
            for points in series.values():
                if points[-1][0] < until:
                    points.append((until, points[-1][1]))
    return result


def last_event(changes: Iterable[Mapping[str, Any]]) -> datetime | None:
    """The event time of the latest change of any model or strategy (None without changes)."""
    latest = max((int(change["event_us"]) for change in changes if "event_us" in change), default=None)
    return None if latest is None else datetime.fromtimestamp(latest / 1_000_000, tz=UTC)


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


def planted_truth(home: Path, strategy: str) -> Planted | None:
    """The multipliers `learnd simulate` planted for `strategy` (HOME/truth.json), component -> regime (case-folded
    like learnd's labels) -> multiplier; None for a home that did not come from the simulator."""
    try:
        truth = orjson.loads((home / "truth.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    by_regime = truth.get("multipliers", {}).get(strategy) if isinstance(truth, dict) else None
    if not isinstance(by_regime, dict):
        return None
    planted: Planted = {}
    for regime, values in by_regime.items():
        for component, value in values.items():
            planted.setdefault(component, {})[regime.casefold()] = float(value)
    return planted


class NothingToChart(LearndError):
    """No multiplier of the strategy asked for has moved yet: there is no line to draw."""


def draw_multipliers(
    changes_path: Path,
    target: Path,
    *,
    model: str = "entry",
    strategy: str = "equity",
    until: datetime | None = None,
    planted: Planted | None = None,
) -> Path:
    """Draw one small panel per component (strategy-wide line bold, regimes thin) into a PNG at `target`. Every
    panel shares one time axis, every line runs on to `until` or the latest change in the file, whichever is later,
    and `planted` (a simulated home's truth) is drawn dashed: its common value, and each regime that differs."""
    plt = _pyplot()
    changes = read_changes(changes_path)
    ends = [moment for moment in (until, last_event(changes)) if moment is not None]
    series = multiplier_series(changes, model=model, strategy=strategy, until=max(ends, default=None))
    if not series:
        raise NothingToChart(f"no {model} multiplier changes for strategy {strategy!r} in {changes_path} yet")
    title = f"{model} multipliers over event time, strategy {strategy}"
    figure = multipliers_figure(series, planted, title)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=90)
    plt.close(figure)
    return target


def multipliers_figure(series: Mapping[str, Series], planted: Planted | None, title: str) -> Any:
    """The chart as a matplotlib Figure: a panel per component, all on one time axis and one multiplier scale."""
    plt = _pyplot()
    names = sorted(series)
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False, sharex=True, sharey=True
    )
    for index, name in enumerate(names):
        axis = axes[index // columns][index % columns]
        colors: dict[str, Any] = {}
        for regime, points in sorted(series[name].items()):
            times = [moment for moment, _ in points]
            values = [value for _, value in points]
            width = 2.2 if regime == GLOBAL_SCOPE else 0.9
            (line,) = axis.step(
                times, values, where="post", linewidth=width, label="all regimes" if regime == GLOBAL_SCOPE else regime
            )
            colors[regime] = line.get_color()
        if planted is not None and name in planted:
            _draw_planted(axis, planted[name], colors)
        axis.axhline(1.0, color="grey", linewidth=0.5, linestyle=":")
        axis.set_title(name, fontsize=9)
        axis.set_ylim(0.2, 2.6)
        axis.tick_params(labelsize=7)
        axis.tick_params(axis="x", labelrotation=30)
        axis.legend(fontsize=6, loc="upper left")
    for index in range(len(names), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    if planted is not None:
        title += " (dashed: planted by simulate)"
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure


def draw_home_multipliers(settings: Settings, *, strategy: str = "equity") -> Path:
    """`learnd report`'s chart: data/reports/multipliers-<strategy>.png, lines carried to the last trade learned,
    with the planted truth when the home has a truth.json."""
    model = load_model(settings)
    until = datetime.fromtimestamp(model.last_trade_us / 1_000_000, tz=UTC) if model.last_trade_us >= 0 else None
    return draw_multipliers(
        settings.data_dir / "weight_learning.jsonl",
        settings.data_dir / "reports" / f"multipliers-{strategy}.png",
        strategy=strategy,
        until=until,
        planted=planted_truth(settings.home, strategy),
    )


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LearndError(
            "the chart needs matplotlib, an optional extra: pip install 'learnd[plot]' (or .venv/bin/pip install "
            "matplotlib); the Markdown and JSON reports do not"
        ) from None
    return plt


def _draw_planted(axis: Any, by_regime: Mapping[str, float], colors: Mapping[str, Any]) -> None:
    """The planted value most regimes share, in black, and each regime's own where it differs, in its line's color."""
    values = sorted(by_regime.values())
    common = max(values, key=values.count)
    axis.axhline(common, color="black", linewidth=1.0, linestyle="--", label="planted")
    for regime, value in sorted(by_regime.items()):
        if value != common:
            axis.axhline(
                value, color=colors.get(regime, "black"), linewidth=1.0, linestyle="--", label=f"planted {regime}"
            )
