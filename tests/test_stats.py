"""learnd.learning.stats: ranks, Spearman plain and weighted, the block bootstrap interval, the Mann-Whitney U test,
the Wilson interval, the Student t quantile and the mean's t-interval.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from learnd.learning import stats
from learnd.learning.stats import (
    FloatArray,
    average_ranks,
    mann_whitney,
    mean_interval,
    spearman,
    spearman_difference_interval,
    t_quantile,
    weighted_spearman,
    wilson_interval,
)

pnl_values = st.floats(min_value=-20.0, max_value=20.0, allow_nan=False)


# Ranks and Spearman ---------------------------------------------------------------------------------------------


def test_average_ranks_share_ties() -> None:
    assert average_ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ([1, 2, 2, 3], [1, 3, 2, 4], 4.5 / math.sqrt(4.5 * 5.0)),
        ([1, 2, 2, 2, 5], [2, 1, 3, 3, 4], 6.0 / math.sqrt(8.0 * 9.5)),
        ([1, 1, 2, 2], [1, 2, 1, 2], 0.0),
        ([1, 2, 3], [30, 20, 10], -1.0),
        ([1, 2, 3], [7, 7, 7], 0.0),
        ([4], [1], 0.0),
    ],
)
def test_spearman_matches_hand_computed_values(x: list[float], y: list[float], expected: float) -> None:
    assert spearman(x, y) == pytest.approx(expected, abs=1e-12)


def test_spearman_refuses_unpaired_samples() -> None:
    with pytest.raises(ValueError, match="paired"):
        spearman([1.0, 2.0], [1.0])


# Weighted Spearman ----------------------------------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(st.integers(-3, 3), st.integers(-3, 3), st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=30
    )
)
def test_weighted_spearman_equals_spearman_of_the_repeated_data(rows: list[tuple[int, int, int, int]]) -> None:
    """A bootstrap resample's IC, computed from repeat counts, is the IC of the resample itself."""
    x = np.array([float(r[0]) for r in rows])
    y = np.array([float(r[1]) for r in rows])
    weights = np.array([[float(r[2]) for r in rows], [float(r[3]) for r in rows]])
    result = weighted_spearman(x, y, weights)
    for row, value in zip(weights, result, strict=True):
        repeats = row.astype(int)
        if repeats.sum() == 0:
            continue
        assert value == pytest.approx(spearman(np.repeat(x, repeats), np.repeat(y, repeats)), abs=1e-9)


# Block bootstrap interval ---------------------------------------------------------------------------------------


def blocked_sample(
    seed: int, blocks: int = 30, per_block: int = 8
) -> tuple[FloatArray, FloatArray, FloatArray, list[int]]:
    """`a` tracks `y`, `b` is noise; `y` shares a level within each block (a trading day's market)."""
    rng = np.random.default_rng(seed)
    days = np.repeat(np.arange(blocks), per_block)
    y = rng.normal(size=days.size) + rng.normal(size=blocks)[days]
    a = y + rng.normal(size=days.size)
    b = rng.normal(size=days.size)
    return a, b, y, days.tolist()


def test_bootstrap_interval_is_deterministic_and_brackets_the_estimate() -> None:
    a, b, y, days = blocked_sample(seed=4)
    first = spearman_difference_interval(a, b, y, days, samples=400, seed=9)
    assert first == spearman_difference_interval(a, b, y, days, samples=400, seed=9)
    assert first != spearman_difference_interval(a, b, y, days, samples=400, seed=10)
    assert first is not None
    estimate = spearman(a, y) - spearman(b, y)
    assert first[0] < estimate < first[1]


def test_bootstrap_interval_needs_two_blocks() -> None:
    assert spearman_difference_interval([1.0, 2.0], [2.0, 1.0], [1.0, 2.0], [5, 5]) is None
    assert spearman_difference_interval([], [], [], []) is None


# Mann-Whitney U -------------------------------------------------------------------------------------------------


def test_mann_whitney_matches_the_textbook_figures() -> None:
    """Fully separated 3 vs 3: U = 0, z = -(4.5 - 0.5) / sqrt(5.25), p = 0.0809 (continuity-corrected)."""
    result = mann_whitney([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert result.u == 0.0
    assert result.z == pytest.approx(-4.0 / math.sqrt(5.25))
    assert result.p_value == pytest.approx(0.0809, abs=1e-4)
    assert result.superiority == 0.0
    assert mann_whitney([1.0, 1.0], [1.0, 1.0]).p_value == 1.0
    assert mann_whitney([], [1.0]).p_value == 1.0


@given(st.lists(pnl_values, min_size=1, max_size=15), st.lists(pnl_values, min_size=1, max_size=15))
def test_mann_whitney_is_symmetric(a: list[float], b: list[float]) -> None:
    """Swapping the samples mirrors U and z and keeps p in [0, 1]."""
    forward, backward = mann_whitney(a, b), mann_whitney(b, a)
    assert forward.u + backward.u == pytest.approx(len(a) * len(b))
    assert forward.z == pytest.approx(-backward.z)
    assert forward.p_value == pytest.approx(backward.p_value)
    assert 0.0 <= forward.p_value <= 1.0


# Wilson interval ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [(0, 10, 0.0, 0.277533), (5, 10, 0.236593, 0.763407), (81, 263, 0.255289, 0.366210)],
)
def test_wilson_interval_matches_reference_values(successes: int, trials: int, low: float, high: float) -> None:
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=1e-5)


def test_wilson_interval_without_trials_is_everything() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


# Student t quantile and the mean's interval ---------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [(1, 12.7062), (3, 3.1824), (5, 2.5706), (10, 2.2281), (60, 2.0003)])
def test_t_quantile_is_close_to_the_table(df: int, expected: float) -> None:
    assert t_quantile(df) == pytest.approx(expected, rel=2e-3)


def test_t_quantile_refuses_no_degrees_of_freedom() -> None:
    with pytest.raises(ValueError, match="df >= 1"):
        t_quantile(0)


def test_mean_interval() -> None:
    mean, low, high = mean_interval([1.0, 2.0, 3.0]) or (math.nan, math.nan, math.nan)
    assert mean == 2.0
    assert (low, high) == pytest.approx((2.0 - 4.3027 / math.sqrt(3), 2.0 + 4.3027 / math.sqrt(3)), rel=1e-4)
    assert mean_interval([1.0]) is None


# Purity ---------------------------------------------------------------------------------------------------------


def test_stats_imports_only_the_standard_library_and_numpy() -> None:
    """Numbers in, numbers out: nothing of learnd, no IO, clock, logging or asyncio."""
    tree = ast.parse(Path(stats.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    allowed = {"__future__", "math", "statistics", "collections.abc", "dataclasses", "typing", "numpy", "numpy.typing"}
    assert imported <= allowed
