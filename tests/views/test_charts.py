"""The multipliers chart: one time axis for every panel, every line carried to the last event, and the planted
truth drawn when the home came from `learnd simulate`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from learnd.devtools.simulate import REGIME_EDGE, simulate
from learnd.service.backfill import run_backfill
from learnd.views.charts import draw_home_multipliers, multiplier_series, multipliers_figure, planted_truth
from tests.conftest import build_settings


def change(event_s: int, component: str, regime: str, old: float, new: float) -> dict[str, object]:
    return {
        "event_us": event_s * 1_000_000,
        "model": "entry",
        "strategy": "equity",
        "component": component,
        "regime": regime,
        "old": old,
        "new": new,
    }


def test_every_line_is_carried_to_the_last_event() -> None:
    """A line whose last change came early still reaches `until`, at its last value; a later point is kept."""
    changes = [change(100, "dark_pool", "*", 1.0, 1.1), change(500, "iv_rank", "mixed", 1.0, 0.8)]
    until = datetime.fromtimestamp(900, tz=UTC)
    series = multiplier_series(changes, model="entry", strategy="equity", until=until)
    assert series["dark_pool"]["*"][-1] == (until, 1.1)
    assert series["iv_rank"]["mixed"][-1] == (until, 0.8)
    assert series["dark_pool"]["*"][0] == (datetime.fromtimestamp(100, tz=UTC), 1.0)


def test_the_figure_shares_one_time_axis_and_draws_the_planted_truth() -> None:
    """Every panel shares the x axis with the first; the planted value is a dashed line, and a regime planted
    apart gets its own."""
    changes = [change(100, "dark_pool", "*", 1.0, 1.1), change(5000, "iv_rank", "*", 1.0, 0.8)]
    series = multiplier_series(changes, model="entry", strategy="equity", until=datetime.fromtimestamp(9000, tz=UTC))
    planted = {"dark_pool": {"mixed": 1.0, "high_vol_neg_gamma": 2.0, "risk_on": 1.0}, "iv_rank": {"mixed": 0.6}}
    figure = multipliers_figure(series, planted, "test")
    axes = [axis for axis in figure.axes if axis.get_visible()]
    assert len(axes) == 2
    assert all(axes[0].get_shared_x_axes().joined(axes[0], axis) for axis in axes)
    labels = [line.get_label() for line in axes[0].get_lines()]
    assert "planted" in labels and "planted high_vol_neg_gamma" in labels
    assert "planted" in [line.get_label() for line in axes[1].get_lines()]


def test_a_simulated_home_charts_its_truth(tmp_path: Path) -> None:
    """`learnd report`'s chart on a simulated home: the truth is read with learnd's case-folded labels (the one
    regime planted apart included) and the PNG is drawn; a home without truth.json has none."""
    simulate(tmp_path, 400, seed=4, garbage=False)
    settings = build_settings(tmp_path, sources=("attribution",))
    run_backfill(settings, progress="none")
    planted = planted_truth(tmp_path, "equity")
    assert planted is not None
    assert planted[REGIME_EDGE.component][REGIME_EDGE.regime] == REGIME_EDGE.multiplier
    assert "risk_on" in planted["dark_pool"]
    path = draw_home_multipliers(settings, strategy="equity")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert planted_truth(tmp_path / "not_simulated", "equity") is None
