"""Closed trades become entry-weight multipliers: the entry learner, fed TradeOutcomes by the shell.

Pure and deterministic: no IO, no clock; time is the session index the shell derives from the record.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from numpy.linalg import LinAlgError, _umath_linalg

from learnd.config import LearningParams
from learnd.errors import StateError
from learnd.learning.multipliers import (
    GLOBAL_SCOPE,
    TICKER_SCOPE_PREFIX,
    BoundedMultiplier,
    MultiplierChange,
    clip,
    decay_factor,
    ticker_scope,
)
from learnd.records.components import ENTRY_BASE_WEIGHTS, ENTRY_COMPONENTS
from learnd.records.parse import TradeOutcome

FloatArray = npt.NDArray[np.float64]

MODEL: Final = "entry"
# 2: robust reference, interval moves, change detection, standardized off-scale components, the bot's score gate.
# 3: a change alarm forgets only the evidence from before the run of the statistic that raised it (the marks).
# 4: the trades after an alarm confirm it or not (the effect before it, the alarm's direction, the evidence since).
STATE_VERSION: Final = 4
_INTERCEPT: Final = 0
_SLOPE: Final = 1
_FIRST_COMPONENT: Final = 2
_COMPONENT_INDEX: Final[dict[str, int]] = {name: _FIRST_COMPONENT + i for i, name in enumerate(ENTRY_COMPONENTS)}
_K: Final = len(ENTRY_COMPONENTS)
_DIM: Final = _FIRST_COMPONENT + _K
_COMPONENTS: Final = slice(_FIRST_COMPONENT, _DIM)
_BASE_WEIGHTS: Final = np.array([abs(ENTRY_BASE_WEIGHTS[name]) for name in ENTRY_COMPONENTS])
# A component never seen still needs a finite prior variance; this is its stand-in mean squared contribution.
_MIN_MEAN_SQUARE: Final = 1e-4
# One trade moves a change statistic by at most this many standard deviations: a bad tick is one trade.
_CHANGE_CLIP: Final = 4.0
# The gate's score, likewise: within this many root-mean-squares of the scores before it, once the strategy has
# this much weight of them.
_GATE_CLIP_RMS: Final = 4.0
_GATE_CLIP_MIN_WEIGHT: Final = 10.0
# The regimes' center is refitted at the close of every this many sessions (session index divisible by it).
_CENTER_EVERY_SESSIONS: Final = 5
_NORMAL: Final = NormalDist()
# Off-scale detection needs this many components seen, each in this many trades, to know what the usual scale is.
_MIN_SCALE_SAMPLES: Final = 10.0
_MIN_SCALE_COMPONENTS: Final = 3
# A component whose own estimate lies this many standard deviations from the reference is a clear edge: it is left
# out of the median that makes the next reference.
_REFERENCE_EDGE_Z: Final = 3.0
# The coefficients fitted besides b: the intercept and the components (and their block of the matrices).
_FREE_COEFFICIENTS: Final = np.array([_INTERCEPT, *range(_FIRST_COMPONENT, _DIM)])
_FREE_BLOCK: Final = np.ix_(_FREE_COEFFICIENTS, _FREE_COEFFICIENTS)
# The same block's cells as positions in a flattened matrix: take and put move it without np.ix_'s indexing.
_FREE_CELLS: Final = (_FREE_COEFFICIENTS[:, np.newaxis] * _DIM + _FREE_COEFFICIENTS).ravel()
_FREE_DIAGONAL: Final = np.arange(_DIM - 1)
# The data-only fit of the reference regularizes each coefficient by this many trades of its mean square.
_DATA_RIDGE: Final = 1e-3

# A _Stats's (and a _Row's) sums in one float buffer, in this order: xtx (flattened), xty, the score gate's four
# sums, then per component its sum, sum of squares, presence, wins, losses and P&L sum.
_PART_SIZES: Final = (_DIM * _DIM, _DIM, 4, _K, _K, _K, _K, _K, _K)
_PART_STARTS: Final = tuple(sum(_PART_SIZES[:part]) for part in range(len(_PART_SIZES) + 1))
_XTX, _XTY, _GATE, _SUMS, _SQUARES, _PRESENT, _WINS, _LOSSES, _PNL_SUM = (
    slice(_PART_STARTS[part], _PART_STARTS[part + 1]) for part in range(len(_PART_SIZES))
)
_SIZE: Final = _PART_STARTS[-1]
# Each buffer position's part, so a factor per part spreads over the buffer with one take.
_PART_OF: Final = np.repeat(np.arange(len(_PART_SIZES)), _PART_SIZES)


class _Stats:
    """Decayed weighted sufficient statistics of one scope: the regression's (in logged units), the score gate's,
    each component's own moments (never forgotten: its scale and its change statistic are read from them), and
    per-component tallies."""

    __slots__ = (
        "buffer",
        "gate",
        "losses",
        "pnl_sum",
        "present",
        "session",
        "squares",
        "sums",
        "weight",
        "wins",
        "xtx",
        "xty",
        "y2_sum",
        "y_sum",
    )

    def __init__(self) -> None:
        # Every sum but the three scalars lives in one buffer (see _PARTS), so adding a row or decaying to a later
        # session is one operation; the named attributes are views of it.
        self.buffer: FloatArray = np.zeros(_SIZE)
        self.xtx: FloatArray = self.buffer[_XTX].reshape(_DIM, _DIM)
        self.xty: FloatArray = self.buffer[_XTY]
        self.weight = 0.0
        self.y_sum = 0.0
        self.y2_sum = 0.0
        # The score gate's regression of y on the trade's score g: sums of w g, w g^2, w g y and w y^2.
        self.gate: FloatArray = self.buffer[_GATE]
        self.sums: FloatArray = self.buffer[_SUMS]
        self.squares: FloatArray = self.buffer[_SQUARES]
        self.present: FloatArray = self.buffer[_PRESENT]
        self.wins: FloatArray = self.buffer[_WINS]
        self.losses: FloatArray = self.buffer[_LOSSES]
        self.pnl_sum: FloatArray = self.buffer[_PNL_SUM]
        self.session: int | None = None

    def advance(self, session: int, half_life_sessions: float) -> None:
        """Decay everything to `session`; the session index never moves backwards here."""
        if self.session is not None and session > self.session:
            factor = decay_factor(half_life_sessions, session - self.session)
            self.buffer *= factor
            self.weight *= factor
            self.y_sum *= factor
            self.y2_sum *= factor
        if self.session is None or session > self.session:
            self.session = session

    def add(self, row: _Row) -> None:
        """Add one outcome's weighted terms (a row's wins or losses are zeros where the outcome is not one: adding
        +0.0 leaves a sum of non-negative terms as it was)."""
        self.buffer += row.terms
        self.weight += row.weight
        self.y_sum += row.y
        self.y2_sum += row.y2

    def forget(self, index: int, before: _Evidence | None = None) -> None:
        """Forget the evidence on how outcomes follow component `index` about its mean, the rest of what the data
        say untouched: the intercept moves with it, so the fit at the mean contribution stays (an edge that turns
        changes the slope, not the average trade). A rank-one update of the information matrix, P - (Pu)(Pu)' /
        u'Pu for u = e_j - mean e_0 (the Kalman step of an unbounded random walk in that one direction); it leaves
        the data's estimate where it was, and the component's effect to its prior and to later trades. With
        `before` (these statistics as they stood at an earlier trade, decayed to now), only that part of the
        evidence is forgotten: the trades since keep all they say."""
        evidence = self if before is None else before
        intercept = float(evidence.xtx[_INTERCEPT, _INTERCEPT])
        if intercept <= 0.0:
            return
        mean = float(evidence.xtx[_INTERCEPT, index]) / intercept
        direction = evidence.xtx[:, index] - mean * evidence.xtx[:, _INTERCEPT]
        about_mean = float(direction[index]) - mean * float(direction[_INTERCEPT])
        if about_mean <= _MIN_MEAN_SQUARE * _MIN_MEAN_SQUARE:
            return
        moment = float(evidence.xty[index]) - mean * float(evidence.xty[_INTERCEPT])
        self.xtx -= np.outer(direction, direction) / about_mean
        self.xty -= (moment / about_mean) * direction
        self.y2_sum = max(0.0, self.y2_sum - moment * moment / about_mean)

    def evidence(self) -> _Evidence:
        """What `forget` reads, as it stands now."""
        return _Evidence(self.session, self.xtx.copy(), self.xty.copy())

    def to_state(self) -> dict[str, Any]:
        return {
            "xtx": self.xtx.tolist(),
            "xty": self.xty.tolist(),
            "weight": self.weight,
            "y_sum": self.y_sum,
            "y2_sum": self.y2_sum,
            "gate": self.gate.tolist(),
            "sums": self.sums.tolist(),
            "squares": self.squares.tolist(),
            "present": self.present.tolist(),
            "wins": self.wins.tolist(),
            "losses": self.losses.tolist(),
            "pnl_sum": self.pnl_sum.tolist(),
            "session": self.session,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Stats:
        stats = cls()
        try:
            stats.xtx[...] = _array(state["xtx"], (_DIM, _DIM))
            stats.xty[...] = _array(state["xty"], (_DIM,))
            stats.weight = float(state["weight"])
            stats.y_sum = float(state["y_sum"])
            stats.y2_sum = float(state["y2_sum"])
            stats.gate[...] = _array(state["gate"], (4,))
            stats.sums[...] = _array(state["sums"], (_K,))
            stats.squares[...] = _array(state["squares"], (_K,))
            stats.present[...] = _array(state["present"], (_K,))
            stats.wins[...] = _array(state["wins"], (_K,))
            stats.losses[...] = _array(state["losses"], (_K,))
            stats.pnl_sum[...] = _array(state["pnl_sum"], (_K,))
            session = state["session"]
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"bad entry statistics state: {error!r}") from error
        if session is not None and not isinstance(session, int):
            raise StateError(f"bad entry statistics session: {session!r}")
        stats.session = session
        return stats


# The values a trade makes on its way (_Row, _Evidence, _Frame, _Posterior, _Gate, _Origin) are never written after
# they are made, but are not frozen dataclasses: a frozen one's __init__ sets each field through
# object.__setattr__, about 1 us an instance, and a trade makes half a dozen (2.5% of its instructions at rx10).


@dataclass(slots=True)
class _Row:
    """One outcome's terms of the sums, each times its weight: computed once, added to every scope it feeds.
    `terms` is laid out as a _Stats buffer (_PARTS)."""

    terms: FloatArray
    weight: float
    y: float
    y2: float

    @classmethod
    def of(
        cls, features: FloatArray, y: float, pnl_pct: float, weight: float, present: FloatArray, *, score: float
    ) -> _Row:
        """An outcome of weight `weight` and score `score`; `present` marks (0/1) the components it carried.

        Each part is its factor times its values, the products the sums are defined by: weight * x x',
        (weight * y) * x, weight * (g, g^2, g y, y^2), weight * x_j and then (weight * x_j) * x_j, weight times
        the presence (a win's or a loss's tally, 0 times it for the other), (weight * pnl) times the presence."""
        contributions = features[_COMPONENTS]
        values = np.concatenate(
            (
                np.multiply.outer(features, features).ravel(),
                features,
                (score, score * score, score * y, y * y),
                contributions,
                contributions,
                present,
                present,
                present,
                present,
            )
        )
        factors = (
            weight,
            weight * y,
            weight,
            weight,
            weight,
            weight,
            weight if pnl_pct > 0.0 else 0.0,
            weight if pnl_pct < 0.0 else 0.0,
            weight * pnl_pct,
        )
        terms = values * np.array(factors).take(_PART_OF)
        terms[_SQUARES] *= contributions
        return cls(terms, weight, weight * y, weight * y * y)


@dataclass(slots=True)
class _Evidence:
    """A scope's regression moments as they stood after one trade (at session `session`): where a change the
    detector dates began."""

    session: int | None
    xtx: FloatArray
    xty: FloatArray

    def decayed_to(self, session: int | None, half_life_sessions: float) -> _Evidence:
        """These moments as the decay has left them by `session`, as the statistics that hold them decay."""
        if self.session is None or session is None or session <= self.session:
            return self
        factor = decay_factor(half_life_sessions, session - self.session)
        return _Evidence(session, self.xtx * factor, self.xty * factor)

    def to_state(self) -> list[Any]:
        return [self.session, self.xtx.tolist(), self.xty.tolist()]

    @classmethod
    def from_state(cls, state: Any) -> _Evidence:
        session, xtx, xty = state
        if session is not None and not isinstance(session, int):
            raise ValueError(f"bad evidence session {session!r}")
        return cls(session, _array(xtx, (_DIM, _DIM)), _array(xty, (_DIM,)))


@dataclass(slots=True)
class _Frame:
    """A scope's regression statistics on the learned scale: off-scale components divided down to the usual scale,
    the score column their sum. Per-coefficient mean squares come from the never-forgotten moments."""

    xtx: FloatArray
    xty: FloatArray
    mean_squares: FloatArray

    @classmethod
    def of(cls, stats: _Stats, scale: FloatArray | None, transform: FloatArray | None = None) -> _Frame:
        """`stats` on the learned scale; `transform` is _transform(scale) where the caller keeps it."""
        xtx, xty = _learned_moments(stats, scale, transform)
        squares = stats.squares if scale is None else stats.squares * scale * scale
        if not stats.weight > 0.0:
            return cls(xtx, xty, np.full(_DIM, _MIN_MEAN_SQUARE))
        mean_squares = np.empty(_DIM)
        mean_squares[_INTERCEPT] = xtx[_INTERCEPT, _INTERCEPT]
        mean_squares[_SLOPE] = xtx[_SLOPE, _SLOPE]
        mean_squares[_COMPONENTS] = squares
        mean_squares /= stats.weight
        return cls(xtx, xty, np.maximum(mean_squares, _MIN_MEAN_SQUARE, out=mean_squares))


def _learned_moments(
    stats: _Stats, scale: FloatArray | None, transform: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """The regression moments of `stats` (X'WX and X'Wy) on the learned scale; `transform` as _Frame.of's."""
    if scale is None:
        return stats.xtx, stats.xty
    if transform is None:
        transform = _transform(scale)
    return transform @ stats.xtx @ transform.T, transform @ stats.xty


@dataclass(slots=True)
class _Posterior:
    """Gaussian posterior of (a, b, d_1..d_K) for one scope, with the scope's evidence."""

    mean: FloatArray
    cov: FloatArray
    noise_var: float
    # With b fixed at the reference: the information of (a, d_1..d_K) that cov's block of them inverts (times the
    # noise variance); None for the other posteriors.
    free_information: FloatArray | None = None
    # What `columns` returns, once it has been asked (the strategy-wide posterior's are read by the move and by the
    # change detector); a posterior's arrays are never written after it is made.
    column_cache: _Columns | None = field(default=None, init=False, repr=False, compare=False)

    def z(self, index: int) -> float:
        return float(self.mean[index] / math.sqrt(self.cov[index, index]))

    def z_against(self, index: int, multiplier: float) -> float:
        """How many standard deviations the evidence on d_j lies from the effect `multiplier` stands for:
        d_j - (multiplier - 1) b, with the reference b's own uncertainty counted."""
        return _z_against(self.columns(), index, multiplier)

    def columns(self) -> _Columns:
        """The mean, the covariance's diagonal and its column of b, as lists of Python floats (what `z_against`
        reads)."""
        if self.column_cache is None:
            self.column_cache = (self.mean.tolist(), self.cov.diagonal().tolist(), self.cov[:, _SLOPE].tolist())
        return self.column_cache

    def z_against_each(self, multipliers: FloatArray) -> FloatArray:
        """`z_against` of every component at once, against its multiplier in `multipliers`: the same floats."""
        excess = multipliers - 1.0
        contrast = self.mean[_COMPONENTS] - excess * self.mean[_SLOPE]
        variance = (
            np.diagonal(self.cov)[_COMPONENTS]
            - 2.0 * excess * self.cov[_COMPONENTS, _SLOPE]
            + excess * excess * self.cov[_SLOPE, _SLOPE]
        )
        z: FloatArray = contrast / np.sqrt(np.maximum(variance, 1e-300))
        return z

    def interval(self, index: int, z: float) -> tuple[float, float] | None:
        """The multipliers the evidence does not reject at `z` (|z_against| <= z): an interval around the target
        (Fieller's, so the reference's uncertainty widens it); None while b itself is not `z` from 0."""
        b = float(self.mean[_SLOPE])
        d = float(self.mean[index])
        z2 = z * z
        quadratic = b * b - z2 * float(self.cov[_SLOPE, _SLOPE])
        if quadratic <= 0.0:
            return None
        half_linear = d * b - z2 * float(self.cov[index, _SLOPE])
        constant = d * d - z2 * float(self.cov[index, index])
        root = math.sqrt(max(0.0, half_linear * half_linear - quadratic * constant))
        return 1.0 + (half_linear - root) / quadratic, 1.0 + (half_linear + root) / quadratic

    def joint_z(self, seen: npt.NDArray[np.bool_]) -> float:
        """Evidence that the seen components' effects are not all equal (the base weights' proportions are wrong):
        the Wald statistic of their d_j, a chi-square on (seen - 1) degrees of freedom, as a normal z."""
        indices = seen.nonzero()[0] + _FIRST_COMPONENT
        degrees = indices.size - 1
        if degrees < 1:
            return 0.0
        d = self.mean[indices]
        if self.free_information is not None and indices.size == _K:
            # Every component seen: the inverse of cov's block of them is the Schur complement of the intercept in
            # the information, A_dd - A_da A_ad / A_aa (over the noise variance), with no solve.
            information = self.free_information
            cross = float(information[_INTERCEPT, 1:] @ d)
            quadratic = float(d @ (information[1:, 1:] @ d))
            wald = (quadratic - cross * cross / float(information[_INTERCEPT, _INTERCEPT])) / self.noise_var
        else:
            wald = float(d @ _solve(self.cov[indices[:, np.newaxis], indices], d))
        # Wilson-Hilferty: the cube root of chi-square / k is close to normal. A quadratic form of an information
        # matrix is never below 0; rounding can take a nearly flat one just under (and a negative float's cube root
        # is complex).
        spread = 2.0 / (9.0 * degrees)
        return float(((max(wald, 0.0) / degrees) ** (1.0 / 3.0) - (1.0 - spread)) / math.sqrt(spread))

    def has_reference(self) -> bool:
        """The average component's effect is positive, so targets relative to it have a meaning."""
        return bool(self.mean[_SLOPE] > 0.0)

    def target(self, index: int) -> float:
        """Component's fitted effect per unit contribution relative to the average component's: 1 + d_j / b (b > 0)."""
        return float(1.0 + self.mean[index] / self.mean[_SLOPE])

    def targets(self) -> FloatArray:
        """Every component's target (b > 0)."""
        targets: FloatArray = 1.0 + self.mean[_COMPONENTS] / self.mean[_SLOPE]
        return targets

    def target_variances(self) -> FloatArray:
        """Delta-method variance of each target 1 + d_j / b."""
        b = float(self.mean[_SLOPE])
        excess = self.targets() - 1.0
        diagonal = np.diagonal(self.cov)[_COMPONENTS]
        cross = self.cov[_COMPONENTS, _SLOPE]
        variance: FloatArray = diagonal - 2.0 * excess * cross + excess * excess * self.cov[_SLOPE, _SLOPE]
        return np.maximum(variance, 1e-300) / (b * b)


# A posterior's mean, its covariance's diagonal and its covariance with b, as lists (_Posterior.columns).
_Columns = tuple[list[float], list[float], list[float]]


def _z_against(columns: _Columns, index: int, multiplier: float) -> float:
    """_Posterior.z_against on its `columns`: the floats of z_against_each's array operations, one by one."""
    mean, variances, slope_covariances = columns
    excess = multiplier - 1.0
    contrast = mean[index] - excess * mean[_SLOPE]
    variance = variances[index] - 2.0 * excess * slope_covariances[index] + excess * excess * variances[_SLOPE]
    return contrast / math.sqrt(max(variance, 1e-300))


class _JointTest:
    """The joint test of a scope's components (_Posterior.joint_z of those seen), made the first time it is asked:
    most trades move nothing it licenses or reports."""

    __slots__ = ("posterior", "seen", "threshold", "value")

    def __init__(self, posterior: _Posterior, seen: npt.NDArray[np.bool_], threshold: float) -> None:
        self.posterior = posterior
        self.seen = seen
        # The z at which the components' weighting counts as wrong (_Gate.is_reweighting).
        self.threshold = threshold
        self.value: float | None = None

    def z(self) -> float:
        if self.value is None:
            self.value = self.posterior.joint_z(self.seen)
        return self.value


@dataclass(slots=True)
class _Gate:
    """Whether a scope may learn: enough trades and a score with an edge; and whether its components' effects as a
    whole differ (`is_reweighting`, from the `joint` test of an open gate)."""

    score_z: float
    is_open: bool
    # The z a component's own evidence needs without the joint test's license: z_threshold, Bonferroni-corrected
    # across the components seen (each is looked at every trade; 21 at z 2 would move one on noise alone).
    own_z: float = 2.0
    joint: _JointTest | None = None

    @property
    def joint_z(self) -> float:
        return 0.0 if self.joint is None else self.joint.z()

    @property
    def is_reweighting(self) -> bool:
        return self.joint is not None and self.joint.z() >= self.joint.threshold

    @classmethod
    def of(cls, stats: _Stats, posterior: _Posterior, params: LearningParams) -> _Gate:
        if stats.weight < params.min_effective_samples or not posterior.has_reference():
            return cls(0.0, is_open=False)
        edge_z = _score_z(stats, params)
        if edge_z < params.z_threshold:
            return cls(edge_z, is_open=False)
        seen = stats.present >= params.min_component_samples
        return cls(
            edge_z,
            is_open=True,
            own_z=_own_z(params.z_threshold, np.count_nonzero(seen)),
            joint=_JointTest(posterior, seen, params.z_threshold),
        )


@functools.lru_cache(maxsize=64)
def _own_z(z_threshold: float, seen_count: int) -> float:
    """_Gate.own_z: `z_threshold` Bonferroni-corrected across `seen_count` components (a function of the two only,
    so kept rather than recomputed every trade)."""
    tail = (1.0 - _NORMAL.cdf(z_threshold)) / max(1, seen_count)
    return _NORMAL.inv_cdf(1.0 - tail)


class _Changes:
    """Per-component change detection of one strategy: the two one-sided CUSUM statistics, the alarms raised
    (their count and the last one's session) and until which session each component's moves are boosted; and
    where each statistic's current run began (the change it would alarm on is dated there): the strategy-wide
    moments as they stood then, `marks` by the count of trades watched, `up_from` and `down_from` per component.
    After an alarm, what the trades that follow say of it: the component's effect as the fit stood before the
    alarm (`before`), the alarm's direction (+1 up, -1 down, 0 none yet) and the sum and weight of those trades'
    scores against that effect (`confirmation`, `confirmation_weight`)."""

    __slots__ = (
        "alarms",
        "allowance_cache",
        "before",
        "boost_until",
        "confirmation",
        "confirmation_weight",
        "direction",
        "down",
        "down_from",
        "last_alarm",
        "marks",
        "mean",
        "scale",
        "up",
        "up_from",
        "watched",
    )

    def __init__(self) -> None:
        self.up: FloatArray = np.zeros(_K)
        self.down: FloatArray = np.zeros(_K)
        # Per component, as of the last session close: its mean contribution and 1 / its standard deviation (0 for
        # a component not watched yet), which standardize the trades of the next session.
        self.mean: FloatArray = np.zeros(_K)
        self.scale: FloatArray = np.zeros(_K)
        # What `allowance` returned, with the scale and the allowance it was computed from.
        self.allowance_cache: tuple[FloatArray, float, FloatArray] | None = None
        self.alarms: list[int] = [0] * _K
        self.last_alarm: list[int] = [-1] * _K
        self.boost_until: list[int] = [-1] * _K
        self.watched = 0
        self.marks: dict[int, _Evidence] = {}
        self.up_from: list[int] = [-1] * _K
        self.down_from: list[int] = [-1] * _K
        self.before: FloatArray = np.zeros(_K)
        self.direction: FloatArray = np.zeros(_K)
        self.confirmation: FloatArray = np.zeros(_K)
        self.confirmation_weight: FloatArray = np.zeros(_K)

    def to_state(self) -> dict[str, Any]:
        return {
            "up": self.up.tolist(),
            "down": self.down.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "alarms": self.alarms,
            "last_alarm": self.last_alarm,
            "boost_until": self.boost_until,
            "watched": self.watched,
            "marks": [[mark, evidence.to_state()] for mark, evidence in sorted(self.marks.items())],
            "up_from": self.up_from,
            "down_from": self.down_from,
            "before": self.before.tolist(),
            "direction": self.direction.tolist(),
            "confirmation": self.confirmation.tolist(),
            "confirmation_weight": self.confirmation_weight.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Changes:
        changes = cls()
        try:
            changes.up = _array(state["up"], (_K,))
            changes.down = _array(state["down"], (_K,))
            changes.mean = _array(state["mean"], (_K,))
            changes.scale = _array(state["scale"], (_K,))
            changes.alarms = [int(value) for value in state["alarms"]]
            changes.last_alarm = [int(value) for value in state["last_alarm"]]
            changes.boost_until = [int(value) for value in state["boost_until"]]
            changes.watched = int(state["watched"])
            changes.marks = {int(mark): _Evidence.from_state(evidence) for mark, evidence in state["marks"]}
            changes.up_from = [int(value) for value in state["up_from"]]
            changes.down_from = [int(value) for value in state["down_from"]]
            changes.before = _array(state["before"], (_K,))
            changes.direction = _array(state["direction"], (_K,))
            changes.confirmation = _array(state["confirmation"], (_K,))
            changes.confirmation_weight = _array(state["confirmation_weight"], (_K,))
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"bad entry change-detection state: {error!r}") from error
        counts = {len(changes.alarms), len(changes.last_alarm), len(changes.boost_until)}
        if counts | {len(changes.up_from), len(changes.down_from)} != {_K}:
            raise StateError("bad entry change-detection state: wrong number of components")
        return changes

    def mark(self, stats: _Stats, edges: list[float], *, restart: bool) -> None:
        """After a watched trade: each statistic at 0 (every one, with `restart`: after an alarm, whose forgetting
        the older marks do not hold) starts its run here, at `stats` as they stand. Only the statistics an alarm
        of which would keep its run are marked: the one toward 1 of a component whose multiplier stands `edges`
        (multiplier - 1) away from it; the others start unmarked. Marks no run starts at go."""
        mark = self.watched
        self.watched += 1
        up, down = self.up.tolist(), self.down.tolist()
        is_marked = False
        for component, edge in enumerate(edges):
            if restart or up[component] == 0.0:
                self.up_from[component] = mark if edge < 0.0 else -1
                is_marked = is_marked or edge < 0.0
            if restart or down[component] == 0.0:
                self.down_from[component] = mark if edge > 0.0 else -1
                is_marked = is_marked or edge > 0.0
        if is_marked:
            self.marks[mark] = stats.evidence()
        live = set(self.up_from) | set(self.down_from)
        for stale in [known for known in self.marks if known not in live]:
            del self.marks[stale]

    def allowance(self, change_allowance: float) -> FloatArray:
        """What each statistic gives back a trade: `change_allowance` for a watched component (scale not 0), 0 for
        the others. The scale is replaced at session closes only, so this is kept until it is."""
        cached = self.allowance_cache
        if cached is None or cached[0] is not self.scale or cached[1] != change_allowance:
            cached = self.allowance_cache = (self.scale, change_allowance, change_allowance * self.scale.astype(bool))
        return cached[2]

    def is_confirmed(self, component: int, params: LearningParams) -> bool:
        """Whether the trades since the component's last alarm, scored against its effect as the fit stood before
        it, lie `change_confirm_z` standard deviations the alarm's way (each score has about unit variance: a
        standardized residual times a standardized contribution). Unlike the run that raised the alarm, which the
        threshold selected, these trades are no selection: after a false alarm they score about 0."""
        weight = float(self.confirmation_weight[component])
        return weight > 0.0 and float(self.confirmation[component]) >= params.change_confirm_z * math.sqrt(weight)

    def run_start(self, component: int) -> _Evidence | None:
        """The strategy-wide moments where the alarming statistic's run began (the larger one's); None when the
        run began before the detector watched."""
        mark = self.up_from[component] if self.up[component] >= self.down[component] else self.down_from[component]
        return self.marks.get(mark)

    def standardize(self, stats: _Stats, params: LearningParams) -> None:
        """Take the contributions' means and spreads for the next session from the strategy-wide moments; only a
        component seen in `min_component_samples` trades is watched."""
        if not stats.weight > 0.0:
            return
        mean = stats.sums / stats.weight
        variance = stats.squares / stats.weight - mean * mean
        watched = (stats.present >= params.min_component_samples) & (variance > _MIN_MEAN_SQUARE * _MIN_MEAN_SQUARE)
        self.mean = mean
        self.scale = np.where(watched, 1.0 / np.sqrt(np.where(watched, variance, 1.0)), 0.0)


class _StrategyState:
    """One strategy: its scopes' statistics and multipliers, and what the session closes keep up to date (the
    components' scale factors, the reference effect and the cross-regime centers) and the change detector."""

    __slots__ = (
        "center",
        "center_prior_cache",
        "changes",
        "multipliers",
        "reference",
        "scale",
        "scopes",
        "transform",
        "values",
    )

    def __init__(self) -> None:
        self.scopes: dict[str, _Stats] = {}
        self.multipliers: dict[str, dict[str, BoundedMultiplier]] = {}
        # Per scope: its multipliers' values in component order (1 where it has none), kept in step with
        # `multipliers` by `step` and built from them on first use (after a restore).
        self.values: dict[str, FloatArray] = {}
        # Per component: the factor its logged values are learned at (None: every component on scale), and the
        # map of a logged regression row to the learned one (_transform(scale)); both set by `rescale` only.
        self.scale: FloatArray | None = None
        self.transform: FloatArray | None = None
        # The average component's effect and its variance: the weighted median of the components' own estimates
        # (None until the first session close, when b is fitted with the rest).
        self.reference: tuple[float, float] | None = None
        # Per component: the robust center of the regimes' own targets, which regime scopes are pooled toward.
        self.center: FloatArray | None = None
        # What `center_prior` returned, with the center and the slope it was computed from.
        self.center_prior_cache: tuple[FloatArray, float, _CenterPrior] | None = None
        self.changes = _Changes()

    def scale_factors(self) -> FloatArray:
        return np.ones(_K) if self.scale is None else self.scale

    def rescale(self, scale: FloatArray | None) -> None:
        """Learn at `scale` from now on."""
        self.scale = scale
        self.transform = None if scale is None else _transform(scale)

    def frame(self, stats: _Stats) -> _Frame:
        """One of this strategy's scopes' statistics on its learned scale."""
        return _Frame.of(stats, self.scale, self.transform)

    def moments(self, stats: _Stats) -> tuple[FloatArray, FloatArray]:
        """The regression moments of `frame`, without its mean squares (a pooled posterior reads the strategy's)."""
        return _learned_moments(stats, self.scale, self.transform)

    def center_prior(self, slope: float) -> _CenterPrior | None:
        """_center_prior of the regimes' center at `slope` (None without a center). The center is replaced at
        session closes, and the slope is the reference effect, which moves only there too once there is one: so this
        is kept until either changes (a zero slope is never reused: its sign shows in the products)."""
        center = self.center
        if center is None:
            return None
        cached = self.center_prior_cache
        if cached is None or cached[0] is not center or not cached[1] == slope != 0.0:
            cached = self.center_prior_cache = (center, slope, _center_prior(center, slope))
        return cached[2]

    def values_of(self, scope: str) -> FloatArray:
        """The multipliers of `scope` as an array in component order (1 where it has none); not to be written."""
        values = self.values.get(scope)
        if values is None:
            values = self.values[scope] = np.ones(_K)
            for name, held in self.multipliers.get(scope, {}).items():
                values[_COMPONENT_INDEX[name] - _FIRST_COMPONENT] = held.value
        return values

    def step(
        self,
        scope: str,
        name: str,
        target: float,
        session: int,
        *,
        step_cap: float,
        params: LearningParams,
        session_cap: float | None = None,
    ) -> tuple[float, float]:
        """BoundedMultiplier.step_toward on `name`'s multiplier in `scope` (made at 1 if it has none), its value
        in `values_of` moved with it; the value before and after."""
        by_component = self.multipliers.setdefault(scope, {})
        multiplier = by_component.get(name)
        if multiplier is None:
            multiplier = by_component[name] = BoundedMultiplier()
        old = multiplier.value
        new = multiplier.step_toward(target, session, step_cap, params, session_cap)
        self.values_of(scope)[_COMPONENT_INDEX[name] - _FIRST_COMPONENT] = new
        return old, new


class EntryModel:
    """Learns entry-component multipliers per strategy, strategy-wide, per regime and (optionally) per ticker.

    Credit is a regression: y = a + b * score + sum_j d_j * x_j, where x_j is component j's logged contribution
    (base weight x signal, so toxicity_penalty's is <= 0), score = sum_j x_j and y the P&L percent clipped to
    +-pnl_clip_pct, each trade weighted by its closed fraction. Component j's effect per unit contribution is
    b + d_j. The d_j share one prior at 0 ("the base weights are right"), `ridge_prior_trades` trades of the
    average component each, and a and b are nearly free: so b is the average component's effect, not the score's
    slope, which the dominant component would set. The prior is a Student-t (`robust_prior_dof`), fitted by
    expectation-maximisation at each session close: a component far from the rest (a strong edge, or one that has
    just turned) gets a looser prior and stops pulling b, so "the average component" is the bulk of them and one
    component's drift does not move every other multiplier. The target multiplier of j is 1 + d_j / b.

    A component logged off the contribution scale (its root mean square per unit of base weight `off_scale_ratio`
    times the median component's, or less by as much: the bot logged it raw) is learned, scored and reported
    standardized: its values divided down to the median component's scale.

    The sums decay by half every `half_life_sessions` sessions of event time, strategy-wide, per regime and per
    ticker. A change detector watches each component strategy-wide: a two-sided CUSUM of the trade's standardized
    residual times the component's standardized contribution (the score of its coefficient), in event order. At
    an alarm the component forgets its old evidence in every scope of the strategy, the rest of the regression
    untouched, and may move faster for a while; the others keep all theirs. Strategy-wide, an edge that fades or
    turns forgets only what came before the run of the statistic that raised the alarm (where the detector dates
    the change) and keeps the trades since.

    Gates, each at z_threshold: nothing moves until the strategy has `min_effective_samples` effective trades and
    its score shows an edge there (the slope of P&L on the trade's score: the bot's `entry_score` where the row
    carries it, else the sum of the learned-scale contributions); a component must be in the trade and in
    `min_component_samples` of the scope's. Then a multiplier moves when the evidence on its own effect lies
    z_threshold standard deviations from what the multiplier stands for, or when the components' effects as a
    whole are z_threshold from equal (a Wald test: the base weights' proportions are wrong) and its own evidence
    is still `joint_component_z` from where it stands. It moves toward the nearest multiplier the evidence does
    not reject at `interval_z` (the near edge of its credible interval), never further: a component whose
    evidence is consistent with where its multiplier stands stays there. Moves are capped per trade (times the
    trade's weight) and per session (`change_step_per_session` for `change_boost_sessions` after a change alarm;
    strategy-wide `change_confirmed_step_per_session` while the trades since the alarm, scored against the effect
    before it, confirm the change at `change_confirm_z`), bounded to [min_multiplier, max_multiplier].

    A regime (ticker) is pooled: its prior is the strategy-wide posterior widened by a deviation variance worth
    `regime_prior_trades` (`ticker_prior_trades`) trades, centered for a regime on the robust center of the
    regimes' own targets (a weighted median, refreshed at session closes), so an edge of one regime does not
    reach the others through the strategy-wide figure. Its multipliers move toward their own pooled target by the
    same rules, under the strategy's gate. `score` uses the trade's regime.
    """

    def __init__(self, params: LearningParams) -> None:
        self.params = params
        self._strategies: dict[str, _StrategyState] = {}
        # (strategy, scope, component) -> the session of its last stability decay.
        # How far (in sessions, fractional where a step was capped) each idle multiplier's decay has gone.
        self._decayed_at: dict[tuple[str, str, str], float] = {}

    def learn(self, trade: TradeOutcome, session: int) -> list[MultiplierChange]:
        """Fold one closed (or partially closed) trade into the model; the multipliers it moved.

        `session` is the trading-session index of `trade.event_us`, non-decreasing along the stream.
        """
        if not trade.weight > 0.0:
            raise ValueError(f"trade {trade.key!r} has weight {trade.weight!r}; outcomes weigh more than 0")
        params = self.params
        features, present = _features(trade.components)
        y = clip(trade.pnl_pct, -params.pnl_clip_pct, params.pnl_clip_pct)
        strategy = self._strategies.get(trade.strategy)
        if strategy is None:
            # Not setdefault: a _StrategyState built for every trade, to be dropped, costs a dozen arrays.
            strategy = self._strategies[trade.strategy] = _StrategyState()
        # The score the gate tests: the bot's own where the row carries it, else the learned-scale sum.
        score = trade.entry_score
        if score is None:
            score = float(features[_SLOPE] if strategy.scale is None else strategy.scale @ features[_COMPONENTS])
        score = _gate_score(score, strategy.scopes.get(GLOBAL_SCOPE))
        scopes = [GLOBAL_SCOPE, regime_scope(trade.regime)]
        if params.per_ticker:
            scopes.append(ticker_scope(trade.symbol))
        row = _Row.of(features, y, trade.pnl_pct, trade.weight, present, score=score)
        for scope in scopes:
            stats = strategy.scopes.get(scope)
            if stats is None:
                stats = strategy.scopes[scope] = _Stats()
            stats.advance(session, params.half_life_sessions)
            stats.add(row)

        global_stats = strategy.scopes[GLOBAL_SCOPE]
        global_frame = strategy.frame(global_stats)
        global_posterior = _global_posterior(global_stats, global_frame, strategy.reference, params)
        global_gate = _Gate.of(global_stats, global_posterior, params)
        moved = [name for name, contribution in trade.components if contribution != 0.0]
        step_cap = params.max_step_per_trade * trade.weight
        origin = _Origin(trade.event_us, trade.strategy, step_cap, step_cap * _boost_ratio(params), "")
        changes = self._move(
            origin,
            session,
            strategy=strategy,
            scope=GLOBAL_SCOPE,
            stats=global_stats,
            posterior=global_posterior,
            gate=global_gate,
            components=moved,
        )
        if global_gate.is_open:
            for scope in scopes[1:]:
                stats = strategy.scopes[scope]
                if scope in strategy.multipliers and not _may_move(stats, moved, params):
                    # _move would change nothing (its multipliers exist, none of the trade's components has the
                    # samples to move): the pooled posterior, a 23x23 solve, would go unread.
                    continue
                posterior = self._scope_posterior(strategy, scope, global_frame, global_posterior)
                changes += self._move(
                    origin,
                    session,
                    strategy=strategy,
                    scope=scope,
                    stats=stats,
                    posterior=posterior,
                    gate=global_gate,
                    components=moved,
                )
        if global_stats.weight >= params.min_effective_samples:
            self._watch_changes(strategy, global_posterior, features, y, weight=trade.weight, session=session)
        return changes

    def settle_session(self, session: int, event_us: int) -> list[MultiplierChange]:
        """The daily (medium-term) update, once per session, at its close. First what the session closes keep up
        to date, from the evidence at the day's end: each strategy's off-scale factors, its reference effect and
        its regimes' center. Then every strategy-wide multiplier whose evidence passes the same gates moves toward
        its target by what the day's trades left of the session's budget: rare components that the per-trade cap
        held back catch up here; nothing moves further than the session cap within the session. A function of the
        ledger and the session boundary only."""
        params = self.params
        changes: list[MultiplierChange] = []
        # How the bot logs a component is the bot's, not a strategy's: every strategy's trades tell the scale.
        wide = [state.scopes[GLOBAL_SCOPE] for _, state in sorted(self._strategies.items())]
        scale = _off_scale_factors(
            np.sum([stats.squares for stats in wide], axis=0), np.sum([stats.present for stats in wide], axis=0), params
        )
        for name in sorted(self._strategies):
            strategy = self._strategies[name]
            stats = strategy.scopes[GLOBAL_SCOPE]
            _, posterior = self._refresh(strategy, session, scale)
            gate = _Gate.of(stats, posterior, params)
            origin = _Origin(event_us, name, params.max_step_per_session, _boosted_session_cap(params), "daily_settle ")
            changes += self._move(
                origin,
                session,
                strategy=strategy,
                scope=GLOBAL_SCOPE,
                stats=stats,
                posterior=posterior,
                gate=gate,
                components=list(ENTRY_COMPONENTS),
            )
            if gate.is_open:
                changes += self._creep(origin, session, strategy, stats, posterior)
        return changes

    def _creep(
        self, origin: _Origin, session: int, strategy: _StrategyState, stats: _Stats, posterior: _Posterior
    ) -> list[MultiplierChange]:
        """Moved strategy-wide multipliers that the evidence holds inside their interval creep toward the best
        estimate, by at most `creep_per_session` a session and never across 1: where a move stopped is where the
        evidence stood then, and a move later evidence does not bear out is undone, slowly."""
        params = self.params
        changes: list[MultiplierChange] = []
        multipliers = strategy.multipliers.get(GLOBAL_SCOPE, {})
        for name in sorted(multipliers):
            multiplier = multipliers[name]
            index = _COMPONENT_INDEX[name]
            if multiplier.value == 1.0 or stats.present[index - _FIRST_COMPONENT] < params.min_component_samples:
                continue
            interval = posterior.interval(index, params.interval_z)
            if interval is None:
                continue
            if abs(posterior.z_against(index, multiplier.value)) > params.interval_z:
                continue
            if interval[0] <= 1.0 <= interval[1]:
                # The evidence no longer bears the move out: back toward 1.
                target = 1.0
            elif abs(posterior.z_against(index, 1.0)) >= params.z_threshold:
                # A clear edge: toward its best estimate, never across 1.
                target = posterior.target(index)
                if (target - 1.0) * (multiplier.value - 1.0) <= 0.0:
                    continue
            else:
                continue
            old, new = strategy.step(
                GLOBAL_SCOPE,
                name,
                target,
                session,
                step_cap=params.creep_per_session,
                params=params,
                session_cap=params.creep_per_session,
            )
            if new != old:
                reason = f"creep component_z={posterior.z(index):+.2f} interval=[{interval[0]:.3f}, {interval[1]:.3f}]"
                samples = float(stats.present[index - _FIRST_COMPONENT])
                changes.append(origin.change(name, GLOBAL_SCOPE, old=old, new=new, reason=reason, samples=samples))
        return changes

    def decay_stale(
        self, session: int, event_us: int, last_evidence: dict[tuple[str, str, str], int], *, idle_sessions: int
    ) -> list[MultiplierChange]:
        """The weekly stability decay: a multiplier whose component has had no fresh evidence in its scope for
        `idle_sessions` sessions drifts back toward 1 with the evidence half-life, counted from the last evidence
        (applying it every week never compounds), within the session's step budget."""
        params = self.params
        changes: list[MultiplierChange] = []
        for name in sorted(self._strategies):
            strategy = self._strategies[name]
            for scope in sorted(strategy.multipliers):
                for component in sorted(strategy.multipliers[scope]):
                    multiplier = strategy.multipliers[scope][component]
                    last = last_evidence.get((name, component, scope))
                    if last is None or session - last < idle_sessions or multiplier.value == 1.0:
                        continue
                    # Decay since the later of the last evidence and the point the decay so far reached: successive
                    # weekly runs multiply to exactly the half-life decay since the evidence, never compounding it.
                    key = (name, scope, component)
                    since = max(last, self._decayed_at.get(key, -1))
                    kept = decay_factor(params.half_life_sessions, session - since)
                    target = 1.0 + (multiplier.value - 1.0) * kept
                    old, new = strategy.step(
                        scope, component, target, session, step_cap=params.max_step_per_session, params=params
                    )
                    self._decayed_at[key] = _decayed_to(
                        since, session, old, new, target=target, half_life=params.half_life_sessions
                    )
                    if new != old:
                        changes.append(
                            MultiplierChange(
                                event_us=event_us,
                                strategy=name,
                                model=MODEL,
                                component=component,
                                regime=scope,
                                old=old,
                                new=new,
                                reason=f"stale_decay idle_sessions={session - last} kept={kept:.3f}",
                                samples=0.0,
                            )
                        )
        return changes

    def multiplier(self, strategy: str, component: str, regime: str | None = None) -> float:
        """The current multiplier, strategy-wide or of a regime (`ticker:SYM` for a ticker); a regime never seen
        falls back to the strategy-wide multiplier, a seen one has its own (1.0 until its evidence moves it)."""
        state = self._strategies.get(strategy)
        if state is None:
            return 1.0
        if regime is not None and regime in state.scopes:
            scoped = state.multipliers.get(regime, {}).get(component)
            return 1.0 if scoped is None else scoped.value
        found = state.multipliers.get(GLOBAL_SCOPE, {}).get(component)
        return 1.0 if found is None else found.value

    def score(self, trade: TradeOutcome) -> float:
        """The trade's entry score re-weighted by the multipliers of its strategy and regime, each contribution on
        the learned scale (an off-scale component standardized)."""
        state = self._strategies.get(trade.strategy)
        scale = state.scale if state is not None else None
        regime = regime_scope(trade.regime)
        return math.fsum(
            self.multiplier(trade.strategy, name, regime)
            * (
                contribution
                if scale is None
                else contribution * float(scale[_COMPONENT_INDEX[name] - _FIRST_COMPONENT])
            )
            for name, contribution in trade.components
        )

    def strategies(self) -> list[str]:
        """Strategies seen, sorted."""
        return sorted(self._strategies)

    def scale_factors(self, strategy: str) -> dict[str, float]:
        """The components of `strategy` learned on a standardized scale (logged off the contribution scale), with
        the factor their logged values are learned at; empty when every component is on scale."""
        state = self._strategies.get(strategy)
        if state is None or state.scale is None:
            return {}
        return {name: float(state.scale[i]) for i, name in enumerate(ENTRY_COMPONENTS) if state.scale[i] != 1.0}

    def scopes(self, strategy: str) -> list[str]:
        """The scopes a strategy has learned in besides strategy-wide: its regimes, and `ticker:SYM` scopes."""
        state = self._strategies.get(strategy)
        return sorted(scope for scope in state.scopes if scope != GLOBAL_SCOPE) if state is not None else []

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view: {strategy: {component: {multiplier, samples, z, target, interval, effect, score_z,
        joint_z, wins, losses, total_pnl, scale_factor, standardized, change_alarms, last_change_session,
        by_regime: {regime: {...the scope's keys...}}, by_ticker: {symbol: {...}}}}}."""
        return {name: self.strategy_snapshot(name) for name in sorted(self._strategies)}

    def strategy_snapshot(self, strategy_name: str) -> dict[str, Any]:
        """snapshot()'s view of one strategy: a function of that strategy's state (and the parameters) alone."""
        params = self.params
        state = self._strategies[strategy_name]
        global_stats = state.scopes[GLOBAL_SCOPE]
        global_frame = state.frame(global_stats)
        global_posterior = _global_posterior(global_stats, global_frame, state.reference, params)
        views: dict[str, dict[str, dict[str, Any]]] = {
            GLOBAL_SCOPE: _scope_view(state, GLOBAL_SCOPE, global_stats, global_posterior, params)
        }
        for scope in sorted(state.scopes):
            if scope == GLOBAL_SCOPE:
                continue
            posterior = self._scope_posterior(state, scope, global_frame, global_posterior)
            stats = state.scopes[scope]
            # A scope's sums stand as of its last trade: its counts are shown decayed to the strategy's session, as
            # the strategy-wide ones are (a regime idle for 120 sessions showed four times the samples it holds).
            idle = 0 if stats.session is None or global_stats.session is None else global_stats.session - stats.session
            views[scope] = _scope_view(
                state, scope, stats, posterior, params, kept=decay_factor(params.half_life_sessions, idle)
            )
        scale = state.scale_factors()
        components: dict[str, Any] = {}
        for name, index in _COMPONENT_INDEX.items():
            component = index - _FIRST_COMPONENT
            entry = dict(views[GLOBAL_SCOPE][name])
            entry["scale_factor"] = float(scale[component])
            entry["standardized"] = bool(scale[component] != 1.0)
            entry["change_alarms"] = state.changes.alarms[component]
            last = state.changes.last_alarm[component]
            entry["last_change_session"] = last if last >= 0 else None
            entry["by_regime"] = {
                scope: view[name]
                for scope, view in views.items()
                if scope != GLOBAL_SCOPE and not scope.startswith(TICKER_SCOPE_PREFIX)
            }
            if params.per_ticker:
                entry["by_ticker"] = {
                    scope.removeprefix(TICKER_SCOPE_PREFIX): view[name]
                    for scope, view in views.items()
                    if scope.startswith(TICKER_SCOPE_PREFIX)
                }
            components[name] = entry
        return components

    def to_state(self) -> dict[str, Any]:
        """Everything the model knows, JSON-able with floats kept exact; `from_state` restores it bit for bit."""
        return {
            "version": STATE_VERSION,
            "model": MODEL,
            "strategies": {
                name: {
                    "scopes": {scope: stats.to_state() for scope, stats in state.scopes.items()},
                    "multipliers": {
                        scope: {component: multiplier.to_state() for component, multiplier in by_component.items()}
                        for scope, by_component in state.multipliers.items()
                    },
                    "changes": state.changes.to_state(),
                    # What the session closes keep, once they have it (absent, not null: null in a state means a
                    # number that was not finite).
                    **({"scale": state.scale.tolist()} if state.scale is not None else {}),
                    **({"reference": list(state.reference)} if state.reference is not None else {}),
                    **({"center": state.center.tolist()} if state.center is not None else {}),
                }
                for name, state in self._strategies.items()
            },
            "decayed_at": sorted([*key, session] for key, session in self._decayed_at.items()),
        }

    @classmethod
    def from_state(cls, params: LearningParams, state: dict[str, Any]) -> EntryModel:
        """A model that continues exactly where the one that wrote `state` stopped; StateError when unusable (a
        state of another model or version included: the shell relearns those from the ledger)."""
        if state.get("model") != MODEL or state.get("version") != STATE_VERSION:
            raise StateError(
                f"entry model state is {state.get('model')!r} version {state.get('version')!r}, "
                f"expected {MODEL!r} version {STATE_VERSION}"
            )
        model = cls(params)
        strategies = state.get("strategies")
        if not isinstance(strategies, dict):
            raise StateError("entry model state has no strategies object")
        for name, raw in strategies.items():
            if not isinstance(raw, dict) or not isinstance(raw.get("scopes"), dict):
                raise StateError(f"entry model state for strategy {name!r} is malformed")
            strategy = _StrategyState()
            strategy.scopes = {scope: _Stats.from_state(stats) for scope, stats in raw["scopes"].items()}
            if GLOBAL_SCOPE not in strategy.scopes:
                raise StateError(f"entry model state for strategy {name!r} lacks its strategy-wide scope")
            multipliers = raw.get("multipliers", {})
            if not isinstance(multipliers, dict) or not all(isinstance(value, dict) for value in multipliers.values()):
                raise StateError(f"entry model state for strategy {name!r} has malformed multipliers")
            strategy.multipliers = {
                scope: {component: BoundedMultiplier.from_state(value) for component, value in by_component.items()}
                for scope, by_component in multipliers.items()
            }
            try:
                strategy.rescale(_array(raw["scale"], (_K,)) if "scale" in raw else None)
                reference = raw.get("reference")
                strategy.reference = None if reference is None else (float(reference[0]), float(reference[1]))
                strategy.center = _array(raw["center"], (3, _K)) if "center" in raw else None
            except (IndexError, TypeError, ValueError) as error:
                raise StateError(f"entry model state for strategy {name!r} is malformed: {error!r}") from error
            strategy.changes = _Changes.from_state(raw.get("changes", {}))
            model._strategies[name] = strategy
        model._decayed_at = {
            (str(strategy), str(scope), str(component)): float(session)
            for strategy, scope, component, session in state.get("decayed_at", [])
        }
        return model

    def _scope_posterior(
        self, strategy: _StrategyState, scope: str, global_frame: _Frame, global_posterior: _Posterior
    ) -> _Posterior:
        """A regime's (ticker's) pooled posterior; a regime is pooled toward the regimes' robust center."""
        stats = strategy.scopes[scope]
        if scope.startswith(TICKER_SCOPE_PREFIX):
            prior_trades, centered = self.params.ticker_prior_trades, None
        else:
            prior_trades = self.params.regime_prior_trades
            centered = strategy.center_prior(global_posterior.mean[_SLOPE])
        return _pooled_posterior(
            strategy.moments(stats),
            stats,
            global_frame,
            global_posterior,
            prior_trades=prior_trades,
            centered=centered,
            params=self.params,
        )

    def _refresh(self, strategy: _StrategyState, session: int, scale: FloatArray | None) -> tuple[_Frame, _Posterior]:
        """What a session close keeps up to date for one strategy, from its evidence at the close: the off-scale
        factors, the reference effect (the average component's), the regimes' center (every
        `_CENTER_EVERY_SESSIONS` sessions: it moves slowly and costs a fit per regime) and the change detector's
        standardization. The strategy-wide frame and posterior after it."""
        params = self.params
        stats = strategy.scopes[GLOBAL_SCOPE]
        strategy.rescale(scale)
        frame = strategy.frame(stats)
        reference = _reference(stats, frame, strategy.reference, params)
        if reference is not None and strategy.reference is not None:
            # Smoothed over sessions: the median steps when components trade places around it.
            kept = decay_factor(params.reference_half_life_sessions, 1)
            reference = (kept * strategy.reference[0] + (1.0 - kept) * reference[0], reference[1])
        strategy.reference = reference
        posterior = _global_posterior(stats, frame, strategy.reference, params)
        if strategy.center is None or session % _CENTER_EVERY_SESSIONS == 0:
            strategy.center = _regime_center(strategy, posterior, params)
        strategy.changes.standardize(stats, params)
        return frame, posterior

    def _watch_changes(
        self,
        strategy: _StrategyState,
        posterior: _Posterior,
        features: FloatArray,
        y: float,
        *,
        weight: float,
        session: int,
    ) -> None:
        """Feed the change detector one trade. At an alarm the component's old evidence is forgotten in every scope
        of the strategy (its prior and the trades to come decide its effect from then on; strategy-wide, for an
        edge that fades or turns, only the evidence from before the alarming statistic's run, so the trades since
        the change stay) and its moves are boosted for `change_boost_sessions` sessions, while the trades that
        follow put the alarm to the test (_confirm_changes)."""
        params = self.params
        changes = strategy.changes
        learned = features if strategy.transform is None else strategy.transform @ features
        residual = (y - float(posterior.mean @ learned)) / math.sqrt(posterior.noise_var)
        # The score of each component's coefficient: the residual times its contribution, both standardized.
        # np.clip's floats through two ufuncs, without its dispatch.
        score = np.minimum(
            np.maximum((residual * changes.scale) * (features[_COMPONENTS] - changes.mean), -_CHANGE_CLIP),
            _CHANGE_CLIP,
        )
        if max(changes.boost_until) >= session:
            self._confirm_changes(strategy, posterior, residual, features, weight=weight, session=session)
        allowance = changes.allowance(params.change_allowance)
        changes.up = np.maximum(0.0, changes.up + weight * (score - allowance))
        changes.down = np.maximum(0.0, changes.down - weight * (score + allowance))
        threshold = params.change_threshold
        wide = strategy.scopes[GLOBAL_SCOPE]
        # The statistics as Python floats, kept in step with the arrays below. Most trades raise no alarm, which
        # the largest of each tells (max returns a NaN it starts from, never one after a number: no value above
        # the threshold is missed, and a NaN is above none).
        up, down = changes.up.tolist(), changes.down.tolist()
        if max(up) <= threshold and max(down) <= threshold:
            alarmed = []
        else:
            alarmed = [component for component in range(_K) if up[component] > threshold or down[component] > threshold]
        # How far each multiplier stands from 1; a run is marked (its alarm may keep it) only where the evidence
        # puts the component z_threshold from the average as the run begins: a multiplier moved on modest
        # evidence is no clear edge, and a false alarm's run could carry it past 1.
        edges = (strategy.values_of(GLOBAL_SCOPE) - 1.0).tolist()
        for order, component in enumerate(alarmed):
            # The marks hold the sums before this trade's first alarm forgot anything: a second alarm on the same
            # trade forgets all its evidence.
            start = changes.run_start(component) if order == 0 else None
            rising = up[component] >= down[component]
            # Only an edge that fades or turns keeps its run's trades: they are what the alarm selected, so on a
            # false alarm they look like a change; toward the average that costs a little of an edge, where away
            # from it, it would make one.
            fading = edges[component] * (1.0 if rising else -1.0) < 0.0
            for scope, scope_stats in strategy.scopes.items():
                if scope == GLOBAL_SCOPE and start is not None and fading:
                    scope_stats.forget(
                        _FIRST_COMPONENT + component, start.decayed_to(wide.session, params.half_life_sessions)
                    )
                else:
                    scope_stats.forget(_FIRST_COMPONENT + component)
            changes.before[component] = posterior.mean[_SLOPE] + posterior.mean[_FIRST_COMPONENT + component]
            changes.direction[component] = 1.0 if rising else -1.0
            changes.confirmation[component] = changes.confirmation_weight[component] = 0.0
            changes.up[component] = changes.down[component] = up[component] = down[component] = 0.0
            changes.alarms[component] += 1
            changes.last_alarm[component] = session
            changes.boost_until[component] = session + params.change_boost_sessions
        if posterior.has_reference() and any(edges):
            columns = posterior.columns()
            # mark reads a component's edge only where its statistic toward 1 (up for an edge below 1, down for one
            # above) starts a run (at 0, or every one after an alarm): the z is computed there alone.
            clear = [
                edge
                if edge != 0.0
                and (alarmed or (up[component] if edge < 0.0 else down[component]) == 0.0)
                and abs(_z_against(columns, _FIRST_COMPONENT + component, 1.0)) >= params.z_threshold
                else 0.0
                for component, edge in enumerate(edges)
            ]
        else:
            clear = [0.0] * _K
        changes.mark(wide, clear, restart=bool(alarmed))

    def _confirm_changes(
        self,
        strategy: _StrategyState,
        posterior: _Posterior,
        residual: float,
        features: FloatArray,
        *,
        weight: float,
        session: int,
    ) -> None:
        """Score one trade against each boosted component's effect as it stood before its alarm (the detector's
        score, with the residual the old effect would have left, the rest of the fit as it is now) and add it, the
        alarm's way, to the component's confirmation."""
        changes = strategy.changes
        directions = changes.direction.tolist()
        active = [
            component
            for component, until in enumerate(changes.boost_until)
            if until >= session and directions[component] != 0.0
        ]
        if not active:
            return
        # Component by component in Python floats, the operations of the same formula on arrays: a few components
        # are boosted at a time, and a component that is not keeps its sums as they were.
        deviation = math.sqrt(posterior.noise_var)
        slope = float(posterior.mean[_SLOPE])
        scale = None if strategy.scale is None else strategy.scale.tolist()
        for component in active:
            index = _FIRST_COMPONENT + component
            # The fit's intercept moves with a component's effect (forget keeps the fit at the mean contribution),
            # so the old effect changes the prediction by its difference times the contribution about its mean.
            centered = float(features[index]) - float(changes.mean[component])
            shift = float(changes.before[component]) - slope - float(posterior.mean[index])
            if scale is not None:
                shift *= scale[component]
            old_residual = residual - shift * centered / deviation
            score = min(max(old_residual * float(changes.scale[component]) * centered, -_CHANGE_CLIP), _CHANGE_CLIP)
            changes.confirmation[component] += weight * (score * directions[component])
            changes.confirmation_weight[component] += weight

    def _move(
        self,
        origin: _Origin,
        session: int,
        *,
        strategy: _StrategyState,
        scope: str,
        stats: _Stats,
        posterior: _Posterior,
        gate: _Gate,
        components: list[str],
    ) -> list[MultiplierChange]:
        """Step the multipliers of `scope` (a regime or ticker under its strategy's gate) toward the near edge of
        their credible intervals, where the evidence rejects where they stand."""
        if not gate.is_open or not posterior.has_reference():
            return []
        params = self.params
        multipliers = strategy.multipliers.setdefault(scope, {})
        changes: list[MultiplierChange] = []
        # Where every multiplier stood before this move (one component's move leaves the others' unchanged), and the
        # posterior's columns that z_against reads, as Python floats: a few components of a trade are tested, each
        # in a few float operations, cheaper than the array of all of them.
        currents = strategy.values_of(scope).tolist()
        columns = posterior.columns()
        present = stats.present.tolist()
        min_samples, interval_z, own_z = params.min_component_samples, params.interval_z, gate.own_z
        licensed_z = params.joint_component_z if scope == GLOBAL_SCOPE else params.z_threshold
        for name in components:
            index = _COMPONENT_INDEX[name]
            component = index - _FIRST_COMPONENT
            samples = present[component]
            if samples < min_samples:
                continue
            # At 1 this is the component's own z; for a moved multiplier, whether the evidence rejects where it
            # stands, so a move that later evidence no longer supports is undone.
            z_current = _z_against(columns, index, currents[component])
            size = abs(z_current)
            if size <= interval_z:
                continue
            # The comparison before the license, which reads the strategy's multipliers and center.
            if size < own_z and not (size >= licensed_z and _is_licensed(strategy, scope, name, gate, params)):
                continue
            multiplier = multipliers.get(name)
            current = 1.0 if multiplier is None else multiplier.value
            boosted = session <= strategy.changes.boost_until[component]
            confirmed = False
            interval = posterior.interval(index, _stop_z(scope, z_current, gate, params, is_boosted=boosted))
            if interval is None:
                continue
            target = interval[1] if current > interval[1] else interval[0]
            if boosted:
                # Strategy-wide, while the trades since the alarm confirm it: the confirmed caps, as many times the
                # boosted ones as the session caps are.
                confirmed = scope == GLOBAL_SCOPE and strategy.changes.is_confirmed(component, params)
                cap = _confirmed_session_cap(params) if confirmed else _boosted_session_cap(params)
                old, new = strategy.step(
                    scope,
                    name,
                    target,
                    session,
                    step_cap=origin.boosted_step_cap * (cap / _boosted_session_cap(params)),
                    params=params,
                    session_cap=cap,
                )
            else:
                old, new = strategy.step(scope, name, target, session, step_cap=origin.step_cap, params=params)
            if new != old:
                reason = (
                    f"{origin.reason}{'change_confirmed ' if confirmed else 'change_boost ' if boosted else ''}"
                    f"component_z={posterior.z(index):+.2f} z_vs_current={z_current:+.2f} "
                    f"joint_z={gate.joint_z:+.2f} score_z={gate.score_z:+.2f} "
                    f"target={posterior.target(index):.3f} interval=[{interval[0]:.3f}, {interval[1]:.3f}]"
                )
                changes.append(origin.change(name, scope, old=old, new=new, reason=reason, samples=samples))
        return changes


@dataclass(slots=True)
class _Origin:
    """What prompts a move: its event time, strategy, step caps (usual, and after a change alarm) and a reason
    prefix (a trade, a session close)."""

    event_us: int
    strategy: str
    step_cap: float
    boosted_step_cap: float
    reason: str

    def change(
        self, component: str, scope: str, *, old: float, new: float, reason: str, samples: float
    ) -> MultiplierChange:
        """The record of one multiplier's move that this prompted."""
        return MultiplierChange(
            event_us=self.event_us,
            strategy=self.strategy,
            model=MODEL,
            component=component,
            regime=scope,
            old=old,
            new=new,
            reason=reason,
            samples=samples,
        )


def regime_scope(regime: str) -> str:
    """The scope a regime label learns under: the label itself, unless it mimics `*` or a `ticker:` scope."""
    if regime == GLOBAL_SCOPE or regime.startswith(TICKER_SCOPE_PREFIX):
        return f"regime:{regime}"
    return regime


def _is_licensed(strategy: _StrategyState, scope: str, name: str, gate: _Gate, params: LearningParams) -> bool:
    """Whether a multiplier may move on modest evidence of its own (joint_component_z) rather than on the gate's
    corrected own_z: strategy-wide, when the joint test says the components' weighting is wrong; in a regime (or
    ticker), when the strategy-wide multiplier of that component has moved (the regime refines an edge the
    strategy has) or its regimes' own data differ (the center's spread z at z_threshold)."""
    if scope == GLOBAL_SCOPE:
        return gate.is_reweighting
    component = _COMPONENT_INDEX[name] - _FIRST_COMPONENT
    if strategy.center is not None and strategy.center[2, component] >= params.z_threshold:
        return True
    wide = strategy.multipliers.get(GLOBAL_SCOPE, {}).get(name)
    return wide is not None and wide.value != 1.0


def _stop_z(scope: str, z_current: float, gate: _Gate, params: LearningParams, *, is_boosted: bool) -> float:
    """The z of the credible interval whose near edge a move stops at: `interval_z`; for a strategy-wide move that
    only the joint test licenses (its evidence against where it stands short of the gate's own_z, and no change
    alarm of its own boosting it), `joint_component_z` where larger, the level that licensed it. The joint test
    licenses every component at once: stopping at the interval_z edge, a few average components moved more than
    0.1 on noise (4 of 14 at 500 trades on one seed in 16)."""
    if scope == GLOBAL_SCOPE and abs(z_current) < gate.own_z and not is_boosted:
        return max(params.interval_z, params.joint_component_z)
    return params.interval_z


def _may_move(stats: _Stats, components: list[str], params: LearningParams) -> bool:
    """Whether any of `components` has the samples in `stats` that _move needs to consider moving it (exactly
    the negation of its test, so a NaN count counts as it does there)."""
    present = stats.present.tolist()
    return any(
        not present[_COMPONENT_INDEX[name] - _FIRST_COMPONENT] < params.min_component_samples for name in components
    )


def _boosted_session_cap(params: LearningParams) -> float:
    return max(params.change_step_per_session, params.max_step_per_session)


def _confirmed_session_cap(params: LearningParams) -> float:
    return max(params.change_confirmed_step_per_session, _boosted_session_cap(params))


def _boost_ratio(params: LearningParams) -> float:
    return _boosted_session_cap(params) / params.max_step_per_session


def _features(components: tuple[tuple[str, float], ...]) -> tuple[FloatArray, FloatArray]:
    """Regression row (1, score, x_1..x_K) in logged units and the 0/1 presence of each component."""
    # Built as Python floats (the same additions an array's elements would take), made arrays once.
    features = [0.0] * _DIM
    present = [0.0] * _K
    features[_INTERCEPT] = 1.0
    for name, contribution in components:
        index = _COMPONENT_INDEX.get(name)
        if index is None:
            raise ValueError(f"{name!r} is not a canonical entry component")
        features[index] += contribution
        if contribution != 0.0:
            present[index - _FIRST_COMPONENT] = 1.0
    features[_SLOPE] = math.fsum(contribution for _, contribution in components)
    return np.array(features), np.array(present)


def _transform(scale: FloatArray) -> FloatArray:
    """The linear map from a logged regression row (1, score, x) to the learned one (1, sum_j s_j x_j, s * x)."""
    transform = np.eye(_DIM)
    transform[_SLOPE, _SLOPE] = 0.0
    transform[_SLOPE, _COMPONENTS] = scale
    transform[_COMPONENTS, _COMPONENTS] = np.diag(scale)
    return transform


def _global_posterior(
    stats: _Stats, frame: _Frame, reference: tuple[float, float] | None, params: LearningParams
) -> _Posterior:
    """Strategy-wide posterior (normal / inverse-gamma): a prior at 0 on each d_j worth `ridge_prior_trades` trades
    of the average component (one strength for all), `coefficient_prior_trades` on a; the noise variance comes from
    the fit's residuals. b, the average component's effect, is the `reference` (its value and variance) once there
    is one, so the d_j are each component's distance from the median component and shrink toward it; before
    that, b is fitted with the rest, nearly free."""
    mean_squares = frame.mean_squares
    prior = np.empty(_DIM)
    prior[_INTERCEPT] = params.coefficient_prior_trades * mean_squares[_INTERCEPT]
    prior[_SLOPE] = params.coefficient_prior_trades * mean_squares[_SLOPE]
    prior[_COMPONENTS] = params.ridge_prior_trades * _common_mean_square(mean_squares)
    if reference is None:
        # Prior precisions in units of 1 / noise variance make the posterior mean independent of the noise level.
        unscaled_inverse = _symmetric_inverse(frame.xtx + np.diag(prior))
        mean = unscaled_inverse @ frame.xty
        # y'Wy - mean'X'Wy is the residual plus the prior penalty at the posterior mean.
        residual = max(0.0, stats.y2_sum - float(mean @ frame.xty))
        degrees = max(0.0, stats.weight - _DIM)
        noise_var = _noise_var(residual, degrees, params)
        return _Posterior(mean, unscaled_inverse * noise_var, noise_var)
    # b fixed at the reference: regress y - b * score on the intercept and the components.
    effect, effect_var = reference
    moment = frame.xty - effect * frame.xtx[:, _SLOPE]
    y2_sum = stats.y2_sum - 2.0 * effect * float(frame.xty[_SLOPE]) + effect * effect * float(frame.xtx[_SLOPE, _SLOPE])
    free = _FREE_COEFFICIENTS
    information = frame.xtx.take(_FREE_CELLS).reshape(_DIM - 1, _DIM - 1)
    _add_to_diagonal(information, prior[free])
    unscaled_inverse = _symmetric_inverse(information)
    free_moment = moment[free]
    fitted = unscaled_inverse @ free_moment
    residual = max(0.0, y2_sum - float(fitted @ free_moment))
    noise_var = _noise_var(residual, max(0.0, stats.weight - _DIM + 1), params)
    mean = np.empty(_DIM)
    mean[free] = fitted
    mean[_SLOPE] = effect
    cov = np.zeros((_DIM, _DIM))
    cov.put(_FREE_CELLS, unscaled_inverse * noise_var)
    cov[_SLOPE, _SLOPE] = effect_var
    return _Posterior(mean, cov, noise_var, free_information=information)


def _noise_var(residual: float, degrees: float, params: LearningParams) -> float:
    return (residual + params.noise_prior_trades * params.noise_prior_var) / (degrees + params.noise_prior_trades)


def _reference(
    stats: _Stats, frame: _Frame, previous: tuple[float, float] | None, params: LearningParams
) -> tuple[float, float] | None:
    """The average component's effect per unit contribution, and its variance: the weighted median of the seen
    components' own estimates (the data alone, each component's weight 1 / (its variance + the prior's), so none
    counts for more than one), leaving out the components whose estimates lie _REFERENCE_EDGE_Z standard
    deviations from the `previous` reference (or a first median): a clear edge is no average component. So one
    component that turns, a strong edge before and after, never moves it, and every other multiplier stays where
    its own evidence puts it. None without three components seen or when the median effect is not positive."""
    seen = stats.present >= params.min_component_samples
    if int(seen.sum()) < _MIN_SCALE_COMPONENTS:
        return None
    estimates, variances, noise_var = _own_effects(stats, frame, params)
    prior_var = noise_var / (params.ridge_prior_trades * _common_mean_square(frame.mean_squares))
    weights = np.where(seen, 1.0 / (variances + prior_var), 0.0)
    center = previous[0] if previous is not None else _weighted_median(estimates[seen], weights[seen])
    average = seen & (np.abs(estimates - center) <= _REFERENCE_EDGE_Z * np.sqrt(variances))
    if int(average.sum()) >= _MIN_SCALE_COMPONENTS:
        weights = np.where(average, weights, 0.0)
        seen = average
    effect = _weighted_median(estimates[seen], weights[seen])
    if not effect > 0.0:
        return None
    # The median's sampling variance is about pi / 2 times the weighted mean's, whose variance comes from the
    # estimates' noise alone (the median of these components, not of a population of components).
    total = float(weights.sum())
    return effect, 0.5 * math.pi * float((weights * weights * variances).sum()) / (total * total)


def _own_effects(stats: _Stats, frame: _Frame, params: LearningParams) -> tuple[FloatArray, FloatArray, float]:
    """Each component's effect per unit contribution as the scope's data alone say it (no prior but a whisper of
    ridge, which keeps a forgotten or unseen component's column from making the system singular), its variance,
    and the noise variance."""
    free = _FREE_COEFFICIENTS
    information = frame.xtx[_FREE_BLOCK]
    information[_FREE_DIAGONAL, _FREE_DIAGONAL] += _DATA_RIDGE * frame.mean_squares[free]
    inverse = _symmetric_inverse(information)
    fitted = inverse @ frame.xty[free]
    residual = max(0.0, stats.y2_sum - float(fitted @ frame.xty[free]))
    noise_var = _noise_var(residual, max(0.0, stats.weight - _DIM + 1), params)
    return fitted[1:], np.diagonal(inverse)[1:] * noise_var, noise_var


def _gate_score(score: float, stats: _Stats | None) -> float:
    """`score` held within _GATE_CLIP_RMS root-mean-squares of the scores the strategy's trades had so far (once it
    has _GATE_CLIP_MIN_WEIGHT of them): one absurd score (a contribution that lost its decimal point) would
    otherwise set the gate's slope alone, and shut the gate for as long as its weight lasts."""
    if stats is None or stats.weight < _GATE_CLIP_MIN_WEIGHT:
        return score
    bound = _GATE_CLIP_RMS * math.sqrt(float(stats.gate[1]) / stats.weight)
    return clip(score, -bound, bound)


def _score_z(stats: _Stats, params: LearningParams) -> float:
    """How many standard errors the slope of P&L on the trade's score (the bot's entry_score where rows carry it)
    lies above 0 in this scope's own trades."""
    if stats.weight <= 0.0:
        return 0.0
    g_sum, g2_sum, gy_sum, y2_sum = stats.gate.tolist()
    # A tiny ridge keeps a scope whose scores never varied invertible; it reads as no edge.
    weight = stats.weight + _MIN_MEAN_SQUARE
    g2_sum += _MIN_MEAN_SQUARE
    determinant = weight * g2_sum - g_sum * g_sum
    if not determinant > 0.0:
        return 0.0
    slope = (weight * gy_sum - g_sum * stats.y_sum) / determinant
    intercept = (g2_sum * stats.y_sum - g_sum * gy_sum) / determinant
    residual = max(0.0, y2_sum - intercept * stats.y_sum - slope * gy_sum)
    noise_var = _noise_var(residual, max(0.0, stats.weight - _FIRST_COMPONENT), params)
    return float(slope / math.sqrt(weight / determinant * noise_var))


def _decayed_to(since: float, session: int, old: float, new: float, *, target: float, half_life: float) -> float:
    """The session the stale decay has reached once a step took a multiplier from `old` to `new` on its way to
    `target` (the decay from `since` to `session`): `session` when it got there, else the point whose decay the step
    did make (a step the session cap held back is caught up at the next run, not lost)."""
    if new == target:
        return float(session)
    kept = (new - 1.0) / (old - 1.0)
    if not 0.0 < kept < 1.0:
        return since
    return min(float(session), since + half_life * math.log2(1.0 / kept))


def _common_mean_square(mean_squares: FloatArray) -> float:
    """The average component's mean squared contribution, over the components seen."""
    components = mean_squares[_COMPONENTS]
    seen = components[components > _MIN_MEAN_SQUARE]
    # The sum over the count is the float ndarray.mean() returns, without its dispatch (np.add.reduce is what
    # ndarray.sum calls).
    return float(np.add.reduce(seen) / seen.size) if seen.size else _MIN_MEAN_SQUARE


def _pooled_posterior(
    moments: tuple[FloatArray, FloatArray],
    stats: _Stats,
    global_frame: _Frame,
    global_posterior: _Posterior,
    *,
    prior_trades: float,
    centered: _CenterPrior | None,
    params: LearningParams,
) -> _Posterior:
    """A regime's (ticker's) posterior: its prior is the strategy-wide posterior widened by a deviation variance
    worth `prior_trades` trades, so it follows the strategy until its own evidence outweighs that. Its own
    evidence is its learned-scale `moments` (X'WX, X'Wy). `centered` (_center_prior of the regimes' center at the
    strategy-wide slope) moves the prior's component effects there."""
    xtx, xty = moments
    prior_mean = global_posterior.mean
    prior_cov = global_posterior.cov
    if centered is not None:
        effects, widening = centered
        prior_mean = prior_mean.copy()
        prior_mean[_COMPONENTS] = effects
        prior_cov = prior_cov.copy()
        _add_to_diagonal(prior_cov, widening, _FIRST_COMPONENT)
    # Residuals about the prior: no circularity, and a regime that differs looks noisier (cautious).
    residual = max(
        0.0,
        stats.y2_sum - 2.0 * float(prior_mean @ xty) + float(prior_mean @ (xtx @ prior_mean)),
    )
    noise_var = (residual + params.noise_prior_trades * global_posterior.noise_var) / (
        stats.weight + params.noise_prior_trades
    )
    # A component's deviation is worth `prior_trades` trades carrying it (its own mean square): a component with
    # a small base weight can show a regime's edge as readily as a large one, on as many trades.
    deviation_var = noise_var / (prior_trades * global_frame.mean_squares)
    widened = prior_cov.copy() if centered is None else prior_cov
    _add_to_diagonal(widened, deviation_var)
    # With the prior's covariance C and the data's information X: cov = (X + C^-1)^-1 = (I + C X)^-1 C and
    # mean = (I + C X)^-1 (C X'y + prior mean), one solve for both, no inverse of C.
    system = widened @ (xtx / noise_var)
    _add_to_diagonal(system, 1.0)
    right = np.empty((_DIM, _DIM + 1))
    right[:, :_DIM] = widened
    right[:, _DIM] = widened @ (xty / noise_var) + prior_mean
    solved = _solve(system, right)
    cov = solved[:, :_DIM]
    return _Posterior(solved[:, _DIM], (cov + cov.T) * 0.5, noise_var)


# A regime's prior moved to the regimes' center: its component effects, and the variance added to them.
_CenterPrior = tuple[FloatArray, FloatArray]


def _center_prior(center: FloatArray, slope: float) -> _CenterPrior:
    """What a regime's prior takes from the regimes' `center` (target multipliers and their variances, _regime_center)
    at the strategy-wide effect `slope`: the component effects the targets stand for and, since the center is known
    less well than the strategy-wide fit, its variance on their scale, which widens the prior."""
    return (center[0] - 1.0) * slope, center[1] * slope**2


def _off_scale_factors(squares: FloatArray, present: FloatArray, params: LearningParams) -> FloatArray | None:
    """Per component, the factor its logged values are learned at, from the sums of their squares and the number
    of trades that carried them: 1 on the contribution scale; for a component whose root mean square per unit of
    base weight lies off_scale_ratio times above the median component's (logged raw: it would dominate the score),
    the factor that brings it to the median. None when every component is on scale. A component logged smaller
    than its weight implies is left as it is: it cannot dominate the score, and the bot caps some (etf_flow,
    squeeze_score), so its multiplier must keep meaning what the bot applies it to."""
    # A raw component is tens of times off scale: a few trades tell, long before its effect can be learned.
    seen = present >= _MIN_SCALE_SAMPLES
    if int(seen.sum()) < _MIN_SCALE_COMPONENTS:
        return None
    ratios = np.sqrt(np.where(seen, squares, 0.0) / np.where(seen, present, 1.0)) / _BASE_WEIGHTS
    usual = float(np.sort(ratios[seen])[int(seen.sum()) // 2])
    if not usual > 0.0:
        return None
    off = seen & (ratios > usual * params.off_scale_ratio)
    if not off.any():
        return None
    return np.where(off, usual / np.where(off, ratios, 1.0), 1.0)


def _regime_center(strategy: _StrategyState, posterior: _Posterior, params: LearningParams) -> FloatArray | None:
    """Per component (rows): the precision-weighted median of the regimes' own targets (each regime fitted on its
    own trades), what a regime is pooled toward, so one regime's edge does not pull the others; its variance; and
    how far the regimes' own data spread about their weighted mean (a chi-square on regimes - 1 degrees of freedom,
    as a normal z): whether the component's effect differs between regimes at all. None without a reference or
    three regimes fed; a component that too few regimes carry takes the strategy-wide target and no spread."""
    if strategy.reference is None or not posterior.has_reference():
        return None
    effect = strategy.reference[0]
    targets: list[FloatArray] = []
    precisions: list[FloatArray] = []
    data_targets: list[FloatArray] = []
    data_precisions: list[FloatArray] = []
    # In name order: sums over regimes must not depend on the order their scopes were first seen or restored in.
    for scope, stats in sorted(strategy.scopes.items()):
        if (
            scope == GLOBAL_SCOPE
            or scope.startswith(TICKER_SCOPE_PREFIX)
            or stats.weight < params.min_effective_samples
        ):
            continue
        frame = strategy.frame(stats)
        own = _global_posterior(stats, frame, None, params)
        if not own.has_reference():
            continue
        seen = stats.present >= params.min_component_samples
        targets.append(own.targets())
        precisions.append(np.where(seen, 1.0 / own.target_variances(), 0.0))
        estimates, variances, _ = _own_effects(stats, frame, params)
        data_targets.append(estimates / effect)
        data_precisions.append(np.where(seen, effect * effect / variances, 0.0))
    if len(targets) < _MIN_SCALE_COMPONENTS:
        return None
    weights = np.array(precisions)
    counts = np.count_nonzero(weights, axis=0)
    enough = counts >= _MIN_SCALE_COMPONENTS
    medians = _column_weighted_medians(np.array(targets), weights)
    # The median's sampling variance is about pi / 2 times the weighted mean's.
    variances = 0.5 * math.pi / np.where(enough, weights.sum(axis=0), 1.0)
    values, weights = np.array(data_targets), np.array(data_precisions)
    means = (weights * values).sum(axis=0) / np.where(enough, weights.sum(axis=0), 1.0)
    chi2 = (weights * (values - means) ** 2).sum(axis=0)
    degrees = np.maximum(counts - 1, 1)
    spread = 2.0 / (9.0 * degrees)
    split = np.where(enough, (np.cbrt(chi2 / degrees) - (1.0 - spread)) / np.sqrt(spread), 0.0)
    return np.array(
        [
            np.where(enough, medians, posterior.targets()),
            np.where(enough, variances, posterior.target_variances()),
            split,
        ]
    )


def _weighted_median(values: FloatArray, weights: FloatArray) -> float:
    """The value at which the weights, taken in the values' order, reach half their total (the lower one on a tie)."""
    return float(_column_weighted_medians(values[:, np.newaxis], weights[:, np.newaxis])[0])


def _column_weighted_medians(values: FloatArray, weights: FloatArray) -> FloatArray:
    """`_weighted_median` of each column."""
    order = np.argsort(values, axis=0, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(weights, order, axis=0), axis=0)
    first = np.argmax(cumulative >= 0.5 * cumulative[-1], axis=0)
    medians: FloatArray = np.take_along_axis(np.take_along_axis(values, order, axis=0), first[np.newaxis, :], axis=0)[0]
    return medians


def _add_to_diagonal(matrix: FloatArray, values: FloatArray | float, start: int = 0) -> None:
    """matrix[i, i] += values[i - start] for i from `start`, in place, `matrix` C-contiguous (every caller's is made
    so): through a strided view of it flattened, where fancy indexing builds index arrays and the flat iterator
    copies."""
    if not matrix.flags.c_contiguous:
        raise ValueError("_add_to_diagonal needs a C-contiguous matrix")
    size = matrix.shape[0]
    diagonal = matrix.reshape(-1)[start * (size + 1) :: size + 1]
    diagonal += values


def _symmetric_inverse(matrix: FloatArray) -> FloatArray:
    inverse = _inverse(matrix)
    return (inverse + inverse.T) * 0.5


# numpy.linalg's inv and solve call a LAPACK gufunc under this error state (a singular matrix raises LinAlgError),
# behind checks and conversions of their arguments that a float64 square matrix needs none of: _inverse and _solve
# call the gufunc as they do (about 2% of the entry learner's instructions per trade on the bot's logs).
def _raise_singular(error: str, flag: int) -> None:
    raise LinAlgError("Singular matrix")


# As a decorator, np.errstate sets its state around each call without building a context manager every time.
_linalg_errstate: Final = np.errstate(
    call=_raise_singular, invalid="call", over="ignore", divide="ignore", under="ignore"
)


@_linalg_errstate
def _inverse(matrix: FloatArray) -> FloatArray:
    """np.linalg.inv of a float64 square `matrix`: the same floats, the same LinAlgError when it is singular."""
    inverse: FloatArray = _umath_linalg.inv(matrix, signature="d->d")
    return inverse


@_linalg_errstate
def _solve(matrix: FloatArray, right: FloatArray) -> FloatArray:
    """np.linalg.solve of a float64 square `matrix` and float64 `right` (a vector or a matrix of columns): the same
    floats, the same LinAlgError when `matrix` is singular."""
    gufunc = _umath_linalg.solve1 if right.ndim == 1 else _umath_linalg.solve
    solved: FloatArray = gufunc(matrix, right, signature="dd->d")
    return solved


def _scope_view(
    state: _StrategyState,
    scope: str,
    stats: _Stats,
    posterior: _Posterior,
    params: LearningParams,
    *,
    kept: float = 1.0,
) -> dict[str, dict[str, Any]]:
    """The scope's view per component; its counts (samples, wins, losses, P&L) times `kept`, the share of them
    left at the strategy's session."""
    multipliers = state.multipliers.get(scope, {})
    has_slope = posterior.has_reference()
    edge_z = _score_z(stats, params)
    joint_z = posterior.joint_z(stats.present >= params.min_component_samples)
    view: dict[str, dict[str, Any]] = {}
    for name, index in _COMPONENT_INDEX.items():
        component = index - _FIRST_COMPONENT
        found = multipliers.get(name)
        interval = posterior.interval(index, params.interval_z) if has_slope else None
        view[name] = {
            "multiplier": 1.0 if found is None else found.value,
            "samples": float(stats.present[component]) * kept,
            "z": posterior.z(index),
            "target": posterior.target(index) if has_slope else None,
            "interval": list(interval) if interval is not None else None,
            "effect": float(posterior.mean[index]),
            "score_z": edge_z,
            "joint_z": joint_z,
            "wins": float(stats.wins[component]) * kept,
            "losses": float(stats.losses[component]) * kept,
            "total_pnl": float(stats.pnl_sum[component]) * kept,
        }
    return view


def _array(value: object, shape: tuple[int, ...]) -> FloatArray:
    array = np.array(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"expected shape {shape}, got {array.shape}")
    return array
