"""Herding and k-center greedy: the geometric coreset baselines of the DeepCore benchmark, as selectors.

Users who curate data pick these instead of a data-value objective, so the study compares against them and
:func:`worth.select` offers them (``objective="herding"``, ``objective="k-center"``). Neither is a marginal-gain
greedy on a submodular function: each is a *recurrence* whose step criterion the optimisers maximise through
the same :class:`~worth.optimizers.GainModel` seam (they ask for "gains" and say what was chosen). What
that means, declared on the class and in the registry:

- ``submodular=False``: stale criteria are not upper bounds of fresh ones (herding's ``⟨w_t, x⟩`` can grow
  with ``t``; k-center's first criterion is not a distance to a chosen row), so ``optimizer="lazy"`` is
  refused and ``greedy`` evaluates every candidate at every step — which costs ``O(1)`` per candidate here:
  the state keeps the criterion of every row, and a pick updates it with one matrix–vector product.
- :attr:`Objective.marginal_gains` is ``False``: the criterion is not ``f(S + j) − f(S)``, so mutual
  information with a ``target=`` (a difference of two states' gains) means nothing and is refused;
  ``Selection.gains`` reports the differences of the values (as for the statistic key), not the criterion.
- ``monotone=False``: neither value below is monotone from the empty set (see each).

Herding (Welling 2009; Chen, Welling & Smola 2010, the mean-embedding form DeepCore uses)
    ``μ`` the pool mean, ``w_0 = μ``; step ``t`` picks ``x_t = argmax_{x ∉ S} ⟨w_t, x⟩`` and sets
    ``w_{t+1} = w_t + μ − x_t``. The mean of the picks approaches ``μ`` at rate ``O(1/t)`` where random picks
    give ``O(1/√t)``. Value: ``‖μ‖ − ‖μ − x̄_S‖`` (``x̄_∅ = 0``, so ``f(∅) = 0``): higher means a closer mean
    embedding, ``‖μ‖`` is a perfect match. ``init=A`` continues the recurrence after the rows of ``A``.
K-center greedy (Gonzalez 1985; Sener & Savarese 2018, "core-set" active learning)
    Farthest-first traversal: each step picks the row farthest (Euclidean) from the rows chosen so far; the
    first pick, with nothing chosen, is the row nearest the pool mean (deterministic; DeepCore draws it at
    random). The covering radius ``r(S) = max_i min_{j∈S} ‖x_i − x_j‖`` is within ``2×`` of the optimal
    ``k``-center radius whatever the first pick (without quotas). Value: ``−r(S)`` (``f(∅) = 0``).
    ``init=A`` starts from the distances to ``A`` (DeepCore's ``already_selected``).

Distances come from ``‖x‖² − 2xᵀy + ‖y‖²`` (one GEMV per pick, clamped at 0): absolute error about
``ε·max‖x‖²`` in ``d²``, so rows within ``~1e-8`` of each other are not told apart (exact duplicates are at
distance ``≤ 1e-8``, not 0). Rows are L2-normalised first by :func:`worth.select` unless ``normalize=False``.
Quotas and budgets apply as to every objective (the constraint prunes candidates before each step).
"""

from __future__ import annotations

import math

import numpy as np

from ._array import from_numpy, row_norms2, to_numpy
from .objectives import Objective
from .optimizers import State


def _row(X, i: int, xp):
    return xp.take(X, from_numpy(np.asarray([int(i)], dtype=np.int64), xp, X), axis=0)[0, :]


def _rows(X, idx, xp):
    return xp.take(X, from_numpy(np.asarray(idx, dtype=np.int64), xp, X), axis=0)


class _Recurrence(Objective):
    """What herding and k-center share: a step criterion, not a marginal gain (see the module docstring)."""

    marginal_gains = False

    def make_state(self, X, xp, *, labels=None) -> State:
        return self.state_class(X, xp)

    def value(self, X, indices, xp, *, labels=None) -> float:
        state = self.state_class(X, xp)
        state.start_from(np.asarray(indices, dtype=np.int64))
        return float(state.value)


class HerdingState(State):
    """Herding's weight vector ``w_t`` and the criterion ``⟨w_t, x⟩`` of every row (host float64)."""

    #: the value (``‖μ‖ − ‖μ − x̄_S‖``, a norm) is not in the criterion's units (a squared norm)
    value_in_gain_units = False

    def __init__(self, X, xp) -> None:
        self.X, self.xp = X, xp
        self.n, self.m = int(X.shape[0]), int(X.shape[1])
        self.mu = xp.mean(X, axis=0)
        self.mu_norm = float(to_numpy(xp.linalg.vector_norm(self.mu)))
        #: the size of a criterion on this data (⟨w, x⟩ ~ ‖x‖²): the tie rule is relative to it (issue 21 §5)
        self.scale = max(float(to_numpy(xp.max(row_norms2(X, xp)))), np.finfo(np.float64).tiny)
        self._reset()

    def _reset(self) -> None:
        self.w = self.mu
        self.total = self.xp.zeros_like(self.mu)
        self.size = 0
        self.scores = np.asarray(to_numpy(self.X @ self.w), dtype=np.float64)

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        return self.scores[np.asarray(candidates, dtype=np.int64)]

    def add(self, index: int) -> None:
        x = _row(self.X, index, self.xp)
        self.w = self.w + self.mu - x
        self.total = self.total + x
        self.size += 1
        self.scores = np.asarray(to_numpy(self.X @ self.w), dtype=np.float64)

    def start_from(self, indices) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        self._reset()
        if idx.size:
            s = self.xp.sum(_rows(self.X, idx, self.xp), axis=0)
            self.w = self.mu * (1 + idx.size) - s  # the recurrence run over the rows of ``indices``
            self.total, self.size = s, int(idx.size)
            self.scores = np.asarray(to_numpy(self.X @ self.w), dtype=np.float64)

    def error(self) -> float:
        """``‖μ − x̄_S‖`` (``‖μ‖`` for the empty set): the mean-embedding error herding drives down."""
        mean = self.total / self.size if self.size else self.xp.zeros_like(self.mu)
        return float(to_numpy(self.xp.linalg.vector_norm(self.mu - mean)))

    @property
    def value(self) -> float:
        return self.mu_norm - self.error() if self.size else 0.0


class KCenterState(State):
    """Each row's distance to the nearest chosen row (host float64); before the first pick, to the mean."""

    def __init__(self, X, xp) -> None:
        self.X, self.xp = X, xp
        self.n = int(X.shape[0])
        self.norms2 = row_norms2(X, xp)
        #: the size of a criterion on this data (a distance ~ ‖x‖): the tie rule is relative to it (issue 21 §5)
        self.scale = max(math.sqrt(float(to_numpy(xp.max(self.norms2)))), np.finfo(np.float64).tiny)
        mu = xp.mean(X, axis=0)
        self.to_mean = self._distances(mu)
        self.nearest = np.full(self.n, np.inf)
        self.size = 0

    def _distances(self, y) -> np.ndarray:
        xp = self.xp
        d2 = self.norms2 - 2.0 * (self.X @ y) + xp.sum(y * y)
        return np.sqrt(np.maximum(np.asarray(to_numpy(d2), dtype=np.float64), 0.0))

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        c = np.asarray(candidates, dtype=np.int64)
        return -self.to_mean[c] if self.size == 0 else self.nearest[c]

    def add(self, index: int) -> None:
        np.minimum(self.nearest, self._distances(_row(self.X, index, self.xp)), out=self.nearest)
        self.nearest[int(index)] = 0.0
        self.size += 1

    def start_from(self, indices) -> None:
        self.nearest = np.full(self.n, np.inf)
        self.size = 0
        for i in np.asarray(indices, dtype=np.int64):
            self.add(int(i))

    @property
    def radius(self) -> float:
        """Covering radius ``max_i min_{j∈S} ‖x_i − x_j‖`` (``inf`` for the empty set)."""
        return float(self.nearest.max())

    @property
    def value(self) -> float:
        return -self.radius if self.size else 0.0


class Herding(_Recurrence):
    """Herding on the mean embedding (see the module docstring)."""

    name = "herding"
    method = "recurrence"
    state_class = HerdingState


class KCenter(_Recurrence):
    """K-center greedy, farthest-first traversal (see the module docstring)."""

    name = "k-center"
    method = "farthest-first"
    state_class = KCenterState
