"""learnd.learning.stats against scipy (a test-only dependency): ranks, Spearman plain and weighted, the block
bootstrap interval, the Mann-Whitney U test, the Wilson interval, the Student t quantile and the mean's t-interval.
"""

from __future__ import annotations

import ast
import math
import random
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.learning import stats
from learnd.learning.stats import (
    ExactSum,
    FloatArray,
    SortedSample,
    average_ranks,
    distinct_of,
    distinct_sorted,
    mann_whitney,
    mann_whitney_sorted,
    mean_interval,
    spearman,
    spearman_difference_interval,
    t_quantile,
    tie_growth,
    weighted_spearman,
    wilson_interval,
)

# Where our formula is scipy's formula, only float rounding may differ; near 0 a relative bound means nothing.
REL = 1e-9
ABS = 1e-12
# t_quantile's documented accuracy at 95 % for df >= 3 (a Cornish-Fisher expansion, not the exact quantile).
T_QUANTILE_REL = 5e-3

# A handful of distinct values makes ties common; the wide floats exercise the rest.
sample_values = st.one_of(st.integers(-3, 3).map(float), st.floats(-1e6, 1e6, allow_nan=False))
pnl_values = st.floats(min_value=-20.0, max_value=20.0, allow_nan=False)
# The first scipy call of a kind loads submodules: timing is not what these tests check.
against_scipy = settings(deadline=None)


def is_constant(values: FloatArray) -> bool:
    return bool(values.size == 0 or np.all(values == values[0]))


def scipy_spearman(x: FloatArray, y: FloatArray) -> float:
    """scipy's Spearman, with our convention for a constant side (scipy gives nan and a warning)."""
    if is_constant(x) or is_constant(y):
        return 0.0
    return float(scipy.stats.spearmanr(x, y).statistic)


# Ranks and Spearman ---------------------------------------------------------------------------------------------


def test_average_ranks_share_ties() -> None:
    assert average_ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]


@against_scipy
@given(st.lists(sample_values, max_size=80))
def test_average_ranks_equal_scipy_rankdata(values: list[float]) -> None:
    """Average ranks are half-integers, exact in floats: equal to scipy's, not merely close."""
    assert average_ranks(values).tolist() == scipy.stats.rankdata(values, method="average").tolist()


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


@against_scipy
@given(st.lists(st.tuples(sample_values, sample_values), min_size=2, max_size=80))
def test_spearman_equals_scipy_spearmanr(pairs: list[tuple[float, float]]) -> None:
    """Ties, n = 2 and constant sides included (a constant side gives 0, where scipy gives nan)."""
    x = np.array([pair[0] for pair in pairs])
    y = np.array([pair[1] for pair in pairs])
    assert spearman(x, y) == pytest.approx(scipy_spearman(x, y), rel=REL, abs=ABS)


# Weighted Spearman ----------------------------------------------------------------------------------------------


def reference_weighted_midranks(values: FloatArray, weights: FloatArray) -> FloatArray:
    """Each point's mean rank among the data with point i repeated weights[i] times, counted pair by pair."""
    below = (weights[None, :] * (values[None, :] < values[:, None])).sum(axis=1)
    tied = (weights[None, :] * (values[None, :] == values[:, None])).sum(axis=1)
    ranks: FloatArray = below + (tied + 1.0) / 2.0
    return ranks


def reference_weighted_pearson(a: FloatArray, b: FloatArray, weights: FloatArray) -> float:
    covariance = np.cov(a, b, aweights=weights)
    return float(covariance[0, 1] / math.sqrt(covariance[0, 0] * covariance[1, 1]))


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


@against_scipy
@given(st.lists(st.tuples(sample_values, sample_values, st.integers(0, 4)), min_size=2, max_size=40))
def test_weighted_spearman_equals_scipy_on_the_repeated_data(rows: list[tuple[float, float, int]]) -> None:
    """Per resample: scipy's Spearman of the data with each point repeated, and, independently, the weighted
    Pearson (numpy's weighted covariance) of weighted mid-ranks counted pair by pair."""
    x = np.array([row[0] for row in rows])
    y = np.array([row[1] for row in rows])
    repeats = np.array([row[2] for row in rows])
    weights = np.stack([repeats, repeats[::-1], np.zeros_like(repeats)]).astype(np.float64)
    result = weighted_spearman(x, y, weights)
    assert result[2] == 0.0, "an empty resample has no rank information"
    for row, value in zip(weights[:2], result[:2], strict=True):
        counts = row.astype(int)
        resampled_x, resampled_y = np.repeat(x, counts), np.repeat(y, counts)
        assert value == pytest.approx(scipy_spearman(resampled_x, resampled_y), rel=REL, abs=ABS)
        if is_constant(resampled_x) or is_constant(resampled_y):
            assert value == 0.0
            continue
        expected = reference_weighted_pearson(
            reference_weighted_midranks(x, row), reference_weighted_midranks(y, row), row
        )
        assert value == pytest.approx(expected, rel=REL, abs=ABS)


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


@pytest.mark.parametrize(("seed", "size", "blocks"), [(0, 12, 2), (1, 40, 5), (2, 60, 12), (3, 25, 25)])
@pytest.mark.parametrize("level", [0.95, 0.8])
def test_bootstrap_interval_equals_scipy_on_the_rebuilt_resamples(
    seed: int, size: int, blocks: int, level: float
) -> None:
    """Rebuilding each resample from the same seeded draws of whole blocks (as the docstring promises: the seed fixes
    the resamples) and taking scipy's Spearman of it gives the same percentile interval."""
    rng = np.random.default_rng(100 + seed)
    # Integer draws give ties; the block labels are sparse and unordered, as session indexes may be.
    a = rng.integers(0, 6, size).astype(np.float64)
    b = rng.normal(size=size)
    y = rng.integers(-2, 3, size).astype(np.float64)
    labels = rng.permutation(np.arange(blocks) * 7 + 3)
    days = labels[np.arange(size) % blocks]
    interval = spearman_difference_interval(a, b, y, days, samples=300, seed=seed, level=level)

    block_of = np.unique(days, return_inverse=True)[1]
    draws = np.random.default_rng(seed).multinomial(blocks, np.full(blocks, 1.0 / blocks), size=300)
    differences = []
    for drawn in draws:
        repeats = drawn[block_of]
        resampled_y = np.repeat(y, repeats)
        differences.append(
            scipy_spearman(np.repeat(a, repeats), resampled_y) - scipy_spearman(np.repeat(b, repeats), resampled_y)
        )
    tail = (1.0 - level) / 2.0
    expected = np.quantile(differences, [tail, 1.0 - tail])
    assert interval == pytest.approx(tuple(expected), rel=REL, abs=ABS)


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


def assert_mann_whitney_matches_scipy(a: list[float], b: list[float]) -> None:
    """Ours is two-sided, normal approximation, tie-corrected variance, continuity correction 0.5 towards the
    centre: scipy's mannwhitneyu with alternative='two-sided', method='asymptotic', use_continuity=True."""
    result = mann_whitney(a, b)
    if len(set(a) | set(b)) == 1:
        # All values tie: zero variance. scipy divides by it (z = -inf, p clipped to 1); we say z = 0, p = 1.
        assert (result.z, result.p_value, result.superiority) == (0.0, 1.0, 0.5)
        return
    expected = scipy.stats.mannwhitneyu(a, b, use_continuity=True, alternative="two-sided", method="asymptotic")
    assert result.u == float(expected.statistic)
    assert result.superiority == pytest.approx(float(expected.statistic) / (len(a) * len(b)), rel=REL, abs=ABS)
    assert result.p_value == pytest.approx(float(expected.pvalue), rel=REL, abs=0.0)
    # scipy reports no z: |z| is the normal quantile of its two-sided p, signed like U - n_a n_b / 2.
    magnitude = float(scipy.stats.norm.isf(expected.pvalue / 2.0)) if expected.pvalue < 1.0 else 0.0
    assert abs(result.z) == pytest.approx(magnitude, rel=REL, abs=ABS)
    assert result.z * (result.u - len(a) * len(b) / 2.0) >= 0.0


@against_scipy
@given(st.lists(sample_values, min_size=1, max_size=40), st.lists(sample_values, min_size=1, max_size=40))
def test_mann_whitney_equals_scipy(a: list[float], b: list[float]) -> None:
    assert_mann_whitney_matches_scipy(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1.0], [2.0]),
        ([1.0], [1.0, 2.0]),
        ([0.0, 0.0, 0.0], [0.0, 0.0, 1.0]),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
        ([5.0] * 30, [1.0] * 30),
    ],
)
def test_mann_whitney_edge_cases_equal_scipy(a: list[float], b: list[float]) -> None:
    """Single observations, one differing value among ties, identical samples, two separated constant samples."""
    assert_mann_whitney_matches_scipy(a, b)


@pytest.mark.parametrize("seed", range(5))
def test_mann_whitney_equals_scipy_on_large_tied_samples(seed: int) -> None:
    """Hundreds of outcomes over a few distinct values: the tie correction carries most of the variance."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 8, int(rng.integers(50, 400))).astype(float).tolist()
    b = (rng.integers(0, 8, int(rng.integers(50, 400))) + rng.integers(0, 2)).astype(float).tolist()
    assert_mann_whitney_matches_scipy(a, b)


# Wilson interval ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [(0, 10, 0.0, 0.277533), (5, 10, 0.236593, 0.763407), (81, 263, 0.255289, 0.366210)],
)
def test_wilson_interval_matches_reference_values(successes: int, trials: int, low: float, high: float) -> None:
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=1e-5)


@against_scipy
@given(
    st.integers(1, 5000).flatmap(lambda trials: st.tuples(st.integers(0, trials), st.just(trials))),
    st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99, 0.999]),
)
def test_wilson_interval_equals_scipy(outcome: tuple[int, int], confidence: float) -> None:
    """Including no success and all successes, where the bound is 0 or 1 exactly (as scipy pins it)."""
    successes, trials = outcome
    expected = scipy.stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = wilson_interval(successes, trials, confidence)
    assert (low, high) == pytest.approx((expected.low, expected.high), rel=REL, abs=ABS)
    assert 0.0 <= low <= successes / trials <= high <= 1.0


@pytest.mark.parametrize("trials", [5, 10, 13, 15, 17])
def test_wilson_interval_holds_the_observed_proportion_at_the_edges(trials: int) -> None:
    """0 of n starts at 0.0 and n of n ends at 1.0 exactly (the bare formula gave 2.8e-17 and 0.9999999999999998)."""
    assert wilson_interval(0, trials)[0] == 0.0
    assert wilson_interval(trials, trials)[1] == 1.0


def test_wilson_interval_without_trials_is_everything() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


# Student t quantile and the mean's interval ---------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [(1, 12.7062), (3, 3.1824), (5, 2.5706), (10, 2.2281), (60, 2.0003)])
def test_t_quantile_is_close_to_the_table(df: int, expected: float) -> None:
    assert t_quantile(df) == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.9, 0.95, 0.99, 0.999])
@pytest.mark.parametrize("df", [1, 2])
def test_t_quantile_is_exact_for_df_1_and_2_at_any_confidence(df: int, confidence: float) -> None:
    """The two the expansion is too coarse for (at 99 % and df 1 it gave 40.5 for 63.7) have closed forms."""
    exact = float(scipy.stats.t.ppf(0.5 + confidence / 2, df))
    assert t_quantile(df, confidence) == pytest.approx(exact, rel=REL, abs=0.0)


@pytest.mark.parametrize(("confidence", "rel"), [(0.8, T_QUANTILE_REL), (0.95, T_QUANTILE_REL), (0.99, 1e-2)])
def test_t_quantile_is_within_its_documented_accuracy_of_scipy(confidence: float, rel: float) -> None:
    """For df >= 3 the Cornish-Fisher value is within 0.5 % of scipy's t.ppf at 95 % (worst at df 3, 0.12 %) and
    1 % at 99 % (0.8 % at df 3)."""
    for df in [*range(3, 1001), 10_000, 1_000_000]:
        exact = float(scipy.stats.t.ppf(0.5 + confidence / 2, df))
        assert t_quantile(df, confidence) == pytest.approx(exact, rel=rel, abs=0.0)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_quantiles_asked_again_are_the_values_worked_out_from_the_normal_quantile(confidence: float) -> None:
    """t_quantile and wilson_interval keep what they worked out (a report asks for the same ones thousands of
    times): asked again, or at another confidence between, they give the very floats the formulas give."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    for df in (3, 7, 40):
        expansion = (
            z
            + (z**3 + z) / 4 / df
            + (5 * z**5 + 16 * z**3 + 3 * z) / 96 / df**2
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384 / df**3
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160 / df**4
        )
        assert t_quantile(df, confidence) == t_quantile(df, confidence) == pytest.approx(expansion, rel=1e-15)
    centre = (0.3 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.3 * 0.7 / 10 + z * z / 400) / (1 + z * z / 10)
    assert wilson_interval(3, 10, confidence) == (centre - half, centre + half)
    t_quantile(5, 0.8)
    assert wilson_interval(3, 10, confidence) == (centre - half, centre + half)


def test_t_quantile_refuses_no_degrees_of_freedom() -> None:
    with pytest.raises(ValueError, match="df >= 1"):
        t_quantile(0)


def test_mean_interval() -> None:
    mean, low, high = mean_interval([1.0, 2.0, 3.0]) or (math.nan, math.nan, math.nan)
    assert mean == 2.0
    assert (low, high) == pytest.approx((2.0 - 4.3027 / math.sqrt(3), 2.0 + 4.3027 / math.sqrt(3)), rel=1e-4)
    assert mean_interval([1.0]) is None


@against_scipy
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=60))
def test_mean_interval_equals_scipy_t_interval(values: list[float]) -> None:
    """Mean and standard error as scipy's (rounding only); the t factor within t_quantile's accuracy, exact for
    two and three values."""
    mean, low, high = mean_interval(values) or (math.nan, math.nan, math.nan)
    assert mean == pytest.approx(float(np.mean(values)), rel=REL, abs=1e-9)
    standard_error = float(scipy.stats.sem(values))
    # mean +- half, rounded: the half-width comes back to within a few units in the last place of the mean.
    rounding = 1e-9
    assert high - mean == pytest.approx(t_quantile(len(values) - 1) * standard_error, rel=REL, abs=rounding)
    assert mean - low == pytest.approx(high - mean, rel=REL, abs=rounding)
    if standard_error == 0.0:
        return
    expected_low, expected_high = scipy.stats.t.interval(0.95, len(values) - 1, loc=mean, scale=standard_error)
    rel = REL if len(values) <= 3 else T_QUANTILE_REL
    assert high - mean == pytest.approx(float(expected_high) - mean, rel=rel, abs=rounding)
    assert mean - low == pytest.approx(mean - float(expected_low), rel=rel, abs=rounding)


# Purity ---------------------------------------------------------------------------------------------------------


def test_stats_imports_only_the_standard_library_and_numpy() -> None:
    """Numbers in, numbers out: nothing of learnd, no IO, clock, logging or asyncio."""
    tree = ast.parse(Path(stats.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    allowed = {
        "__future__",
        "math",
        "statistics",
        "collections.abc",
        "dataclasses",
        "functools",
        "typing",
        "numpy",
        "numpy.typing",
    }
    assert imported <= allowed


def test_scipy_stays_a_test_dependency() -> None:
    """Importing the statistics and the modules built on them never loads scipy."""
    probe = (
        "import sys, learnd.learning.stats, learnd.jobs.reports, learnd.learning.evaluate, learnd.learning.signals; "
        "sys.exit('scipy' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr


# The kept forms of the weekly drift test: a growing sorted sample and exact sums ----------------------------------

_tied_floats = st.one_of(
    st.sampled_from([-1.5, -0.0, 0.0, 0.25, 2.0]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
)


@given(st.lists(_tied_floats, max_size=90), st.lists(st.lists(_tied_floats, max_size=60), max_size=5))
def test_mann_whitney_against_a_kept_sorted_sample_is_the_same_test(a: list[float], chunks: list[list[float]]) -> None:
    """Adding b in chunks to a SortedSample and testing a against it gives mann_whitney(a, b)'s floats exactly."""
    kept = SortedSample()
    for chunk in chunks:
        kept.add(chunk)
    b = [value for chunk in chunks for value in chunk]
    assert mann_whitney_sorted(a, kept) == mann_whitney(a, b)


@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300), max_size=600),
    st.integers(0, 600),
)
def test_an_exact_sum_reads_as_fsum_whatever_the_order(values: list[float], split: int) -> None:
    """Kept one value at a time (folded into a few floats on the way, merged from two halves, written out and read
    back), the sum is math.fsum's correctly rounded value, and the floats kept sum to exactly the values."""
    whole, left, right = ExactSum(), ExactSum(), ExactSum()
    for value in values:
        whole.add(value)
    for value in values[:split]:
        left.add(value)
    for value in reversed(values[split:]):
        right.add(value)
    left.merge(right)
    kept = ExactSum(whole.to_floats())
    assert whole.value == math.fsum(values)
    assert left.value == whole.value
    assert kept.value == whole.value
    assert math.fsum([*whole.to_floats(), *(-value for value in values)]) == 0.0
    assert len(whole.to_floats()) <= 40


@given(st.integers(0, 40), st.lists(st.integers(0, 700), max_size=5), st.integers(0, 2**32))
def test_an_exact_sum_added_in_runs_keeps_the_parts_of_one_value_at_a_time(
    first: int, run_lengths: list[int], seed: int
) -> None:
    """add_all folds where one-at-a-time adds would: the parts it keeps (the floats a store writes) are the same,
    in the same order, before and after folding, whatever the runs' lengths against the fold threshold."""
    rng = random.Random(seed)
    values = [rng.choice([0.1, -2.5, 1e-300]) if rng.random() < 0.2 else rng.uniform(-1e6, 1e6) for _ in range(first)]
    one_by_one, in_runs = ExactSum(values), ExactSum(values)
    for length in run_lengths:
        run = [rng.uniform(-1e6, 1e6) * 10.0 ** rng.randint(-20, 20) for _ in range(length)]
        values += run
        for value in run:
            one_by_one.add(value)
        in_runs.add_all(run)
        assert in_runs._parts == one_by_one._parts  # what to_floats writes, before it folds them
        assert in_runs.to_floats() == one_by_one.to_floats()
    assert in_runs.value == math.fsum(values)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300), max_size=60))
def test_a_fold_keeps_the_greedy_parts_of_the_exact_sum(values: list[float]) -> None:
    """The parts a fold keeps (the floats a store writes) are the exact sum rounded, then what is left of it rounded,
    and so on until nothing is left: each the fsum of the values and the parts before it, negated."""
    expected: list[float] = []
    while (part := math.fsum([*values, *(-taken for taken in expected)])) != 0.0:
        expected.append(part)
    folded = ExactSum([*values, *([0.0] * 9)])  # more than the parts kept as they are: to_floats folds them
    assert folded.to_floats() == expected


@given(st.lists(st.sampled_from([-0.0, 0.0, 1.0, -2.5]) | sample_values, max_size=60))
def test_the_distinct_values_of_a_sorted_array_are_np_unique_s(values: list[float]) -> None:
    """distinct_sorted of a sorted array: np.unique's distinct values (a -0.0 and a 0.0 are one) and counts."""
    ordered = np.sort(np.asarray(values, dtype=np.float64), kind="stable")
    distinct, counts = distinct_sorted(ordered)
    expected, expected_counts = np.unique(ordered, return_counts=True)
    assert distinct.tolist() == expected.tolist()
    assert counts.tolist() == expected_counts.tolist()


@given(st.lists(st.sampled_from([-0.0, 0.0, 1.0, -2.5]) | sample_values, max_size=90))
def test_the_distinct_values_of_a_sample_are_those_of_it_sorted(values: list[float]) -> None:
    """distinct_of (grouped in Python up to some 40 values, in numpy past them): distinct_sorted's values and counts
    of the values sorted, as a list or an array."""
    expected, expected_counts = distinct_sorted(np.sort(np.asarray(values, dtype=np.float64), kind="stable"))
    for given_as in (values, np.asarray(values, dtype=np.float64)):
        distinct, counts = distinct_of(given_as)
        assert distinct.dtype == np.float64
        assert counts.dtype == np.int64
        assert distinct.tolist() == expected.tolist()
        assert counts.tolist() == expected_counts.tolist()


@given(st.lists(st.lists(st.floats(-1e300, 1e300, allow_nan=False), max_size=300), max_size=6))
def test_runs_added_as_one_keep_the_parts_of_each_added_in_turn(runs: list[list[float]]) -> None:
    """add_all of runs joined end to end keeps the same parts, in the same order, as add_all of each run in turn
    (so a reader may sum many rows' parts of a cell in one go)."""
    in_turn, joined = ExactSum(), ExactSum()
    for run in runs:
        in_turn.add_all(run)
    joined.add_all([value for run in runs for value in run])
    assert joined._parts == in_turn._parts
    assert joined.to_floats() == in_turn.to_floats()


@given(
    st.lists(
        st.lists(st.sampled_from([-0.0, 0.0, 1.0, -1.0, 2.5]) | st.floats(-1e6, 1e6, allow_nan=False), max_size=30),
        max_size=6,
    )
)
def test_a_sorted_sample_merged_in_chunks_is_one_stable_sort_of_them(chunks: list[list[float]]) -> None:
    """Each chunk merged in gives the array a stable sort of everything so far gives, bit for bit (a -0.0 stays
    where it was among the zeros), and the tie term of its values."""
    kept = SortedSample()
    everything: list[float] = []
    for chunk in chunks:
        kept.add(chunk)
        everything += chunk
        expected = np.sort(np.asarray(everything, dtype=np.float64), kind="stable")
        assert kept.values.tobytes() == expected.tobytes()
        _, counts = np.unique(expected, return_counts=True)
        assert kept.tie_term == sum(int(count) ** 3 - int(count) for count in counts)


def test_a_large_sample_takes_small_batches_in_beside_it_and_tests_the_same() -> None:
    """Batches an eighth of the sample or smaller wait beside it, sorted, until they add up to that share (a
    sample of fewer than 1,500 values takes them in at once): the counts below and equal, the tie term, the test
    and the values read are those of one sorted array all along."""
    rng = random.Random(5)
    kept = SortedSample()
    everything = [*(round(rng.gauss(0.0, 1.0), 2) for _ in range(800)), 0.0, -0.0]
    kept.add(everything)
    kept.add([0.5, -0.0])
    everything += [0.5, -0.0]
    assert not kept._recent.size
    grown = [round(rng.gauss(0.0, 1.0), 2) for _ in range(1_000)]
    kept.add(grown)
    everything += grown
    for batches in range(1, 41):
        batch = [*(round(rng.gauss(0.0, 1.0), 2) for _ in range(rng.randrange(1, 12))), -0.0]
        kept.add(batch)
        everything += batch
        recent = [round(rng.gauss(0.0, 1.0), 2) for _ in range(15)]
        assert kept.count == len(everything)
        assert mann_whitney_sorted(recent, kept) == mann_whitney(recent, everything)
        points = np.unique(np.asarray([*recent, 0.0]))
        below, equal = kept.below_and_equal(points)
        ordered = np.sort(np.asarray(everything, dtype=np.float64), kind="stable")
        assert below.tolist() == np.searchsorted(ordered, points, side="left").tolist()
        assert equal.tolist() == (np.searchsorted(ordered, points, side="right") - below).tolist()
        if batches == 1:
            assert kept._recent.size
        if batches % 10 == 0:
            assert kept.values.tobytes() == ordered.tobytes()
    _, counts = np.unique(ordered, return_counts=True)
    assert kept.tie_term == sum(int(count) ** 3 - int(count) for count in counts)
    assert kept.values.tobytes() == ordered.tobytes()


@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 5000)), max_size=50))
def test_tie_growth_is_exact_in_arrays_and_in_python_integers(groups: list[tuple[int, int]]) -> None:
    """The tie term's growth is the same integer whether summed in int64 arrays (small samples) or in Python
    integers (a total past the int64-safe bound), and is the difference of the sums of t^3 - t."""
    before = np.array([old for old, _ in groups], dtype=np.int64)
    added = np.array([new for _, new in groups], dtype=np.int64)
    expected = sum((old + new) ** 3 - (old + new) - (old**3 - old) for old, new in groups)
    total = int(before.sum() + added.sum())
    assert tie_growth(before, added, total) == expected
    assert tie_growth(before, added, 2**40) == expected
