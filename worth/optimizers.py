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

    def gain_bounds(self, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Bounds ``(lo, hi)`` on the gains of ``candidates``, cheaper than the gains, or ``None`` (the default:
        none this step). :func:`lazy` then evaluates exactly only the candidates whose upper bound reaches the
        best lower bound, and keeps the others' upper bounds as their (stale) bounds: the same picks."""
        return None


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


class _Run:
    """A greedy run that can be stepped and forked: the state of :func:`greedy`/:func:`stochastic`
    (:class:`_EachStepRun`) or :func:`lazy` (:class:`_LazyRun`) between two picks.

    :meth:`step` makes one pick (``None`` once no feasible candidate is left). :meth:`fork` continues the run
    from here with another model and constraint — a copy of this run's model taken now
    (:func:`worth.appraisal.branches.fork_model`), and a constraint that has seen the same picks: the fork's
    picks are then those of a run started with that constraint, as long as the constraint did not bind
    before the fork (every step until here saw the same candidates). The lazy run carries its bounds over,
    so a fork refreshes only what a run started afresh would refresh at this step.
    """

    def __init__(self, model: GainModel, available: np.ndarray | None, constraint: Constraint | None) -> None:
        self.model = model
        self.trace = Trace()
        self.available, self.constraint = _start(model, available, constraint)
        self.scale = float(getattr(model, "scale", 1.0))
        self.steps = 0

    def fork(self, model: GainModel, constraint: Constraint) -> "_Run":
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.model, new.constraint = model, constraint
        new.trace = Trace(list(self.trace.indices), list(self.trace.gains), list(self.trace.values),
                          self.trace.evaluations, self.trace.seconds_gains, self.trace.seconds_update)
        new.available = self.available.copy()
        new._copy_arrays()
        return new

    def _copy_arrays(self) -> None:
        pass

    def step(self) -> int | None:
        raise NotImplementedError


class _EachStepRun(_Run):
    """The step loop of greedy and stochastic greedy: ``draw`` picks the candidates queried at each step."""

    def __init__(self, model, draw: Callable[[np.ndarray], np.ndarray], available, constraint) -> None:
        super().__init__(model, available, constraint)
        self.draw = draw
        # A state whose value is in other units than its gains (herding: a norm, its criterion a squared norm)
        # keeps the value out of the tie rule, which would otherwise tie every gain on tiny rows (issue 21 §5).
        self.value_ties = bool(getattr(model, "value_in_gain_units", True))

    def step(self) -> int | None:
        model, constraint, available = self.model, self.constraint, self.available
        constraint.prune(available)
        remaining = np.flatnonzero(available)
        if remaining.size == 0:
            return None
        cand = self.draw(remaining)
        g = _timed_gains(model, self.trace, cand)
        pos = _pick_pos(constraint.criterion(cand, g), model.value if self.value_ties else 0.0, constraint.unit,
                        self.scale)
        i = int(cand[pos])
        available[i] = False
        constraint.commit(i)
        _commit(model, self.trace, i, float(g[pos]))
        self.steps += 1
        return i


def _run_for(run: _Run, k: int, progress: Progress | None) -> Trace:
    for step in range(k):
        if run.step() is None:
            break
        if progress:
            progress(step + 1, k)
    return run.trace


def _each_step(model: GainModel, k: int, draw: Callable[[np.ndarray], np.ndarray], progress: Progress | None,
               available: np.ndarray | None, constraint: Constraint | None) -> Trace:
    """The step loop of greedy and stochastic greedy: ``draw`` picks the candidates queried at each step."""
    return _run_for(_EachStepRun(model, draw, available, constraint), k, progress)


def greedy(model: GainModel, k: int, *, progress: Progress | None = None, available: np.ndarray | None = None,
           constraint: Constraint | None = None, **_: object) -> Trace:
    """Naive greedy: every feasible candidate's gain at every step (batched inside the model)."""
    return _each_step(model, k, lambda remaining: remaining, progress, available, constraint)


class _LazyRun(_Run):
    """The state of :func:`lazy` between two picks: gains, their bounds, the feasible rows."""

    def __init__(self, model, refresh: int | None, available, constraint) -> None:
        super().__init__(model, available, constraint)
        n = model.n
        self.refresh = int(refresh or model.lazy_batch)
        self.gains = np.zeros(n)
        self.bounds = np.full(n, -np.inf)
        self.fresh = np.zeros(n, dtype=bool)

    def _copy_arrays(self) -> None:
        self.gains, self.bounds, self.fresh = self.gains.copy(), self.bounds.copy(), self.fresh.copy()

    def _screen(self, contenders: np.ndarray, best: float, tol_value: float) -> np.ndarray:
        """The contenders to evaluate exactly, where the model bounds their gains (:meth:`GainModel.gain_bounds`):
        those whose upper bound reaches the best lower bound (or the best fresh criterion) less the tie
        tolerance. The others get their upper bound as their stale bound: below the step's best less its
        tolerance, so they are neither picked nor tied with this step, and bound their gains ever after
        (submodularity), as an exact gain would."""
        screen = getattr(self.model, "gain_bounds", None)
        if screen is None or contenders.size < 2:
            return contenders
        got = screen(contenders)
        if got is None:
            return contenders
        constraint = self.constraint
        lo, hi = constraint.criterion(contenders, got[0]), constraint.criterion(contenders, got[1])
        top = max(best, float(np.max(lo)))
        keep = ~(hi < top - _tie_tol(top, tol_value, self.scale / constraint.unit))  # NaN: evaluated
        keep[int(np.argmax(lo))] = True  # (valid bounds keep it anyway; any bounds: each pass evaluates one)
        skip = contenders[~keep]
        self.bounds[skip] = np.minimum(self.bounds[skip], hi[~keep])
        return contenders[keep]

    def step(self) -> int | None:
        model, constraint, available = self.model, self.constraint, self.available
        gains, bounds, fresh, scale = self.gains, self.bounds, self.fresh, self.scale
        constraint.prune(available)
        if not available.any():
            return None
        value = model.value
        tol_value = value / constraint.unit
        fresh[:] = False
        best = -math.inf
        if self.steps == 0:  # every bound is +inf: evaluate them all at once
            cand = np.flatnonzero(available)
            gains[cand] = _timed_gains(model, self.trace, cand)
            bounds[cand] = constraint.criterion(cand, gains[cand])
            fresh[cand] = True
            best = float(np.max(bounds[cand]))
        batch = self.refresh
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
            contenders = self._screen(contenders, best, tol_value)
            if contenders.size:  # (all screened out: their new bounds fall below the best, the loop goes on)
                gains[contenders] = _timed_gains(model, self.trace, contenders)
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
        _commit(model, self.trace, i, float(gains[i]))
        self.steps += 1
        return i


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
    return _run_for(_LazyRun(model, refresh, available, constraint), k, progress)


def start_run(optimizer: str, model: GainModel, *, available: np.ndarray | None = None,
              constraint: Constraint | None = None) -> _Run:
    """A steppable, forkable run of ``optimizer`` (``"greedy"`` or ``"lazy"``): what :func:`greedy` and
    :func:`lazy` drive to ``k`` picks."""
    if optimizer == "lazy":
        return _LazyRun(model, None, available, constraint)
    if optimizer == "greedy":
        return _EachStepRun(model, lambda remaining: remaining, available, constraint)
    raise ValueError(f"optimizer={optimizer!r} cannot be stepped; pass 'greedy' or 'lazy'.")


def check_epsilon(epsilon) -> None:
    """``epsilon`` of :func:`stochastic`: a number in ``(0, 1)``."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < 1:
        raise ValueError(f"epsilon={epsilon!r} must lie in (0, 1); pass e.g. epsilon=0.01.")


def stochastic(model: GainModel, k: int, *, progress: Progress | None = None, epsilon: float = 0.01,
               seed: int | None = None, available: np.ndarray | None = None,
               constraint: Constraint | None = None, population: int | None = None, **_: object) -> Trace:
    """Stochastic greedy (Mirzasoleiman et al. 2015): ``(n/k)·log(1/ε)`` random candidates per step.

    Within ``1 − 1/e − ε`` of the optimum in expectation for monotone submodular objectives (under a
    cardinality constraint; with others it is a heuristic). Samples are drawn from the feasible rows; ``n`` is
    the model's rows, or ``population`` when they are only part of a pool (``worth.select``'s ``pool_size``:
    the sample is the one the whole pool's run draws).
    """
    check_epsilon(epsilon)
    rng = np.random.default_rng(seed)
    sample = max(1, math.ceil((model.n if population is None else population) / k * math.log(1 / epsilon)))

    def draw(remaining: np.ndarray) -> np.ndarray:
        return np.sort(rng.choice(remaining, size=min(sample, remaining.size), replace=False))

    return _each_step(model, k, draw, progress, available, constraint)


OPTIMIZERS: dict[str, Callable[..., Trace]] = {"greedy": greedy, "lazy": lazy, "stochastic": stochastic}
