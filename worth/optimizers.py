"""Greedy optimisers. They see an objective only through the :class:`GainModel` seam.

An optimiser asks for the gains of candidates and tells the model what it chose — nothing else (as in
apricot's ``optimizers.py``). Ties go to the lowest index: gains within a relative ``1e-9`` of the best
count as equal, so exact methods that differ by rounding pick the same items.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

TIE_RTOL = 1e-9


class GainModel(Protocol):
    """What an optimiser needs from an objective's state."""

    n: int

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        """Marginal gains of ``candidates`` (host int64 array) given the current set."""

    def add(self, index: int) -> None:
        """Commit ``index`` to the set."""

    @property
    def value(self) -> float:
        """Objective value of the current set."""


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


def _tie_tol(best: float, value: float) -> float:
    return TIE_RTOL * max(1.0, abs(best), abs(value))


def _pick(candidates: np.ndarray, gains: np.ndarray, value: float) -> tuple[int, float]:
    """Best candidate, ties (within tolerance) to the lowest index; ``candidates`` must be ascending."""
    best = float(np.max(gains))
    pos = int(np.flatnonzero(gains >= best - _tie_tol(best, value))[0])
    return int(candidates[pos]), float(gains[pos])


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


def greedy(model: GainModel, k: int, *, progress: Progress | None = None, **_: object) -> Trace:
    """Naive greedy: every remaining candidate's gain at every step (batched inside the model)."""
    trace = Trace()
    available = np.ones(model.n, dtype=bool)
    for step in range(k):
        cand = np.flatnonzero(available)
        g = _timed_gains(model, trace, cand)
        i, gain = _pick(cand, g, model.value)
        available[i] = False
        _commit(model, trace, i, gain)
        if progress:
            progress(step + 1, k)
    return trace


def lazy(model: GainModel, k: int, *, progress: Progress | None = None, refresh: int = 16, **_: object) -> Trace:
    """Lazy (accelerated) greedy: stale gains are upper bounds for a submodular objective.

    Each step refreshes the ``refresh`` stale candidates with the highest bounds until no stale bound
    could still beat — or tie with — the best fresh gain; then it picks exactly as :func:`greedy` would.
    Exact only for submodular objectives (the caller refuses others unless forced).
    """
    trace = Trace()
    n = model.n
    bounds = np.full(n, np.inf)
    available = np.ones(n, dtype=bool)
    for step in range(k):
        fresh = np.zeros(n, dtype=bool)
        value = model.value
        while True:
            stale = available & ~fresh
            best_fresh = float(np.max(bounds[fresh])) if fresh.any() else -np.inf
            if stale.any():
                stale_idx = np.flatnonzero(stale)
                threshold = best_fresh - _tie_tol(best_fresh, value) if np.isfinite(best_fresh) else -np.inf
                contenders = stale_idx[bounds[stale_idx] >= threshold]
            else:
                contenders = np.zeros(0, dtype=np.int64)
            if contenders.size == 0:
                break
            if contenders.size > refresh:
                top = np.argpartition(-bounds[contenders], refresh - 1)[:refresh]
                contenders = np.sort(contenders[top])
            bounds[contenders] = _timed_gains(model, trace, contenders)
            fresh[contenders] = True
        cand = np.flatnonzero(fresh & available)
        i, gain = _pick(cand, bounds[cand], value)
        available[i] = False
        bounds[i] = -np.inf
        _commit(model, trace, i, gain)
        if progress:
            progress(step + 1, k)
    return trace


def stochastic(model: GainModel, k: int, *, progress: Progress | None = None, epsilon: float = 0.01,
               seed: int | None = None, **_: object) -> Trace:
    """Stochastic greedy (Mirzasoleiman et al. 2015): ``(n/k)·log(1/ε)`` random candidates per step.

    Within ``1 − 1/e − ε`` of the optimum in expectation for monotone submodular objectives.
    """
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon={epsilon!r} must lie in (0, 1); pass e.g. epsilon=0.01.")
    rng = np.random.default_rng(seed)
    trace = Trace()
    available = np.ones(model.n, dtype=bool)
    sample = max(1, math.ceil(model.n / k * math.log(1 / epsilon)))
    for step in range(k):
        remaining = np.flatnonzero(available)
        cand = np.sort(rng.choice(remaining, size=min(sample, remaining.size), replace=False))
        g = _timed_gains(model, trace, cand)
        i, gain = _pick(cand, g, model.value)
        available[i] = False
        _commit(model, trace, i, gain)
        if progress:
            progress(step + 1, k)
    return trace


OPTIMIZERS: dict[str, Callable[..., Trace]] = {"greedy": greedy, "lazy": lazy, "stochastic": stochastic}
