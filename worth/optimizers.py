"""Greedy optimisers. They see an objective only through the :class:`GainModel` seam.

An optimiser asks for the gains of candidates and tells the model what it chose — nothing else (as in
apricot's ``optimizers.py``). Ties go to the lowest index: gains within a relative ``1e-9`` of the best
count as equal, so exact methods that differ by rounding pick the same items. "Relative" means relative to
the run's own magnitudes only — the best gain, the current value and the model's gain scale
(:func:`_tie_tol`) — never to an absolute ``1``: rows scaled by ``1e-10`` have gains near ``1e-20``, and an
absolute floor made every candidate tie (picks 0, 1, 2, …, issue 21).

Constraints enter through a second, equally small seam (:class:`Constraint`): before each step it removes
the candidates that can no longer be added (a full class, an item over the remaining budget), it turns
gains into the criterion the step maximises (gain per cost for a knapsack), and it is told each pick. A
run stops early when no feasible candidate is left. ``available`` excludes rows from the start (the
conditioning set of ``init=``, the target rows of ``target=``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Protocol

import numpy as np

TIE_RTOL = 1e-9


class GainModel(Protocol):
    """What an optimiser needs from an objective's state (or from a model composed of states).

    Implementations subclass it to inherit the defaults of the members that have one.
    """

    n: int
    """Number of rows a candidate index may refer to."""

    lazy_batch: int = 16
    """Stale candidates :func:`lazy` refreshes first per step (a model whose gain calls carry a fixed cost,
    such as facility location's GEMM against unsettled rows, asks for more per call)."""

    scale: float = 1.0
    """Magnitude of a gain on this model's data (the tie rule's floor, :func:`_tie_tol`): models whose gains
    scale with the rows (spectral objectives, facility location on raw rows) derive it from the rows, so that
    the rule is relative to the data; ``1`` for gains of fixed units (counts, similarities in [0, 1])."""

    base: float | None = None
    """Value of the set the run starts from (``init=``), which ``value`` is relative to; ``None`` where it is
    not one objective value (mutual information)."""

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        """Marginal gains of ``candidates`` (host int64 array) given the current set."""

    def add(self, index: int) -> None:
        """Commit ``index`` to the set."""

    @property
    def value(self) -> float:
        """Objective value of the current set."""


class State(GainModel, Protocol):
    """An objective's own greedy state, as :func:`worth.regime.state_factory` builds it: a gain model that can
    be set to a given set at once and reports diagnostics about its gains."""

    info: Mapping[str, object] = MappingProxyType({})
    """What the gain method reports about its accuracy and cost (``Selection.diagnostics``)."""

    def start_from(self, indices: np.ndarray) -> None:
        """Set the state to the set ``indices`` (one pass, not one :meth:`add` per row where avoidable)."""


@dataclass
class Trace:
    """What every run returns: pick order, gain of each pick, value after each pick, timings."""

    indices: list[int] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    evaluations: int = 0
    seconds_gains: float = 0.0
    seconds_update: float = 0.0


Progress = Callable[[int, int], None]


class Constraint(Protocol):
    """What an optimiser needs from a constraint (see :mod:`worth.constraints`)."""

    unit: float
    """Scale of the criterion relative to gains (``1``; the cheapest cost for gain-per-cost)."""

    def prune(self, available: np.ndarray) -> None:
        """Clear, in place, the candidates that can no longer be added to the current set."""

    def criterion(self, candidates: np.ndarray, gains: np.ndarray) -> np.ndarray:
        """What a step maximises (an upper bound stays one: lazy greedy may keep stale criteria)."""

    def commit(self, index: int) -> None:
        """Record a pick."""


class Unconstrained:
    """Cardinality only: every remaining row is feasible and the criterion is the gain."""

    unit = 1.0

    def prune(self, available: np.ndarray) -> None:
        return None

    def criterion(self, candidates: np.ndarray, gains: np.ndarray) -> np.ndarray:
        return gains

    def commit(self, index: int) -> None:
        return None


def _tie_tol(best: float, value: float, scale: float) -> float:
    """How far below ``best`` a criterion still ties with it: ``TIE_RTOL`` times the run's magnitude.

    ``scale`` is the model's :attr:`GainModel.scale` (in criterion units), the size of a gain on this data;
    with ``|best|`` and ``|value|`` (differences of values carry the value's rounding) it makes the rule
    invariant when every gain is multiplied by a constant — rows scaled by ``c`` for an objective homogeneous
    in ``X`` — where an absolute floor of ``1`` tied every candidate below it. It is not the first step's
    largest gain: on unit rows every entropy singleton is worth exactly 0, and the first step's gains are
    rounding noise, which must tie.
    """
    return TIE_RTOL * max(scale, abs(best), abs(value))


def _pick_pos(crit: np.ndarray, value: float, unit: float = 1.0, scale: float = 1.0) -> int:
    """Position of the best criterion, ties (within tolerance) to the lowest; candidates ascending."""
    best = float(np.max(crit))
    return int(np.flatnonzero(crit >= best - _tie_tol(best, value / unit, scale / unit))[0])


def _start(model: GainModel, available: np.ndarray | None, constraint: Constraint | None):
    avail = np.ones(model.n, dtype=bool) if available is None else np.array(available, dtype=bool)
    return avail, (constraint if constraint is not None else Unconstrained())


def _commit(model: GainModel, trace: Trace, i: int, gain: float) -> None:
    t0 = time.perf_counter()
    model.add(i)
    trace.seconds_update += time.perf_counter() - t0
    trace.indices.append(i)
    trace.gains.append(gain)
    trace.values.append(model.value)


def _timed_gains(model: GainModel, trace: Trace, candidates: np.ndarray) -> np.ndarray:
    t0 = time.perf_counter()
    g = np.asarray(model.gains(candidates), dtype=np.float64)
    trace.seconds_gains += time.perf_counter() - t0
    trace.evaluations += len(candidates)
    return g


def _each_step(model: GainModel, k: int, draw: Callable[[np.ndarray], np.ndarray], progress: Progress | None,
               available: np.ndarray | None, constraint: Constraint | None) -> Trace:
    """The step loop of greedy and stochastic greedy: ``draw`` picks the candidates queried at each step."""
    trace = Trace()
    available, constraint = _start(model, available, constraint)
    scale = float(getattr(model, "scale", 1.0))
    # A state whose value is in other units than its gains (herding: a norm, its criterion a squared norm) keeps
    # the value out of the tie rule, which would otherwise tie every gain on tiny rows (issue 21 §5).
    value_ties = bool(getattr(model, "value_in_gain_units", True))
    for step in range(k):
        constraint.prune(available)
        remaining = np.flatnonzero(available)
        if remaining.size == 0:
            break
        cand = draw(remaining)
        g = _timed_gains(model, trace, cand)
        pos = _pick_pos(constraint.criterion(cand, g), model.value if value_ties else 0.0, constraint.unit, scale)
        i = int(cand[pos])
        available[i] = False
        constraint.commit(i)
        _commit(model, trace, i, float(g[pos]))
        if progress:
            progress(step + 1, k)
    return trace


def greedy(model: GainModel, k: int, *, progress: Progress | None = None, available: np.ndarray | None = None,
           constraint: Constraint | None = None, **_: object) -> Trace:
    """Naive greedy: every feasible candidate's gain at every step (batched inside the model)."""
    return _each_step(model, k, lambda remaining: remaining, progress, available, constraint)


def lazy(model: GainModel, k: int, *, progress: Progress | None = None, refresh: int | None = None,
         available: np.ndarray | None = None, constraint: Constraint | None = None, **_: object) -> Trace:
    """Lazy (accelerated) greedy: stale gains are upper bounds for a submodular objective.

    The first step evaluates every candidate in one call (the model batches it as it likes). Each later
    step refreshes the stale candidates with the highest bounds in batches — ``refresh`` first (default: the
    model's ``lazy_batch``, else 16), doubling with each batch of the step, so that a step which must
    refresh thousands (spectral objectives in the full-rank regime) makes a few large calls and a few
    vectorised passes over the bounds, not thousands — until no stale bound could still beat, or tie with,
    the best fresh one; then it picks exactly as :func:`greedy` would (ties within tolerance to the lowest
    index). Exact only for submodular objectives (the caller refuses others unless forced). Under a
    constraint the bounds are on its criterion (gain per cost stays an upper bound).
    """
    trace = Trace()
    n = model.n
    refresh = int(refresh or model.lazy_batch)
    available, constraint = _start(model, available, constraint)
    gains = np.zeros(n)
    bounds = np.full(n, -np.inf)
    fresh = np.zeros(n, dtype=bool)
    scale = float(getattr(model, "scale", 1.0))
    for step in range(k):
        constraint.prune(available)
        if not available.any():
            break
        value = model.value
        tol_value = value / constraint.unit
        fresh[:] = False
        best = -math.inf
        if step == 0:  # every bound is +inf: evaluate them all at once
            cand = np.flatnonzero(available)
            gains[cand] = _timed_gains(model, trace, cand)
            bounds[cand] = constraint.criterion(cand, gains[cand])
            fresh[cand] = True
            best = float(np.max(bounds[cand]))
        batch = refresh
        while True:
            # Stale candidates that could beat or tie the best fresh criterion (ties go to the lowest index,
            # so a tying stale bound must be refreshed too); all of them while nothing is fresh yet.
            stale = available & ~fresh
            if best > -math.inf:
                stale &= bounds >= best - _tie_tol(best, tol_value, scale / constraint.unit)
            contenders = np.flatnonzero(stale)
            if contenders.size == 0:
                break
            if contenders.size > batch:  # the `batch` highest bounds, ties to the lowest index
                b = bounds[contenders]
                kth = np.partition(b, b.size - batch)[b.size - batch]
                above = contenders[b > kth]
                contenders = np.concatenate([above, contenders[b == kth][:batch - above.size]])
                contenders.sort()
            gains[contenders] = _timed_gains(model, trace, contenders)
            bounds[contenders] = constraint.criterion(contenders, gains[contenders])
            fresh[contenders] = True
            best = max(best, float(np.max(bounds[contenders])))
            batch *= 2
        cand = np.flatnonzero(fresh & available)
        pos = _pick_pos(bounds[cand], value, constraint.unit, scale)
        i = int(cand[pos])
        available[i] = False
        bounds[i] = -np.inf
        constraint.commit(i)
        _commit(model, trace, i, float(gains[i]))
        if progress:
            progress(step + 1, k)
    return trace


def check_epsilon(epsilon) -> None:
    """``epsilon`` of :func:`stochastic`: a number in ``(0, 1)``."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < 1:
        raise ValueError(f"epsilon={epsilon!r} must lie in (0, 1); pass e.g. epsilon=0.01.")


def stochastic(model: GainModel, k: int, *, progress: Progress | None = None, epsilon: float = 0.01,
               seed: int | None = None, available: np.ndarray | None = None,
               constraint: Constraint | None = None, **_: object) -> Trace:
    """Stochastic greedy (Mirzasoleiman et al. 2015): ``(n/k)·log(1/ε)`` random candidates per step.

    Within ``1 − 1/e − ε`` of the optimum in expectation for monotone submodular objectives (under a
    cardinality constraint; with others it is a heuristic). Samples are drawn from the feasible rows.
    """
    check_epsilon(epsilon)
    rng = np.random.default_rng(seed)
    sample = max(1, math.ceil(model.n / k * math.log(1 / epsilon)))

    def draw(remaining: np.ndarray) -> np.ndarray:
        return np.sort(rng.choice(remaining, size=min(sample, remaining.size), replace=False))

    return _each_step(model, k, draw, progress, available, constraint)


OPTIMIZERS: dict[str, Callable[..., Trace]] = {"greedy": greedy, "lazy": lazy, "stochastic": stochastic}
