"""The regime of one selection run: which rows are candidates, what state the greedy starts from, what limits it.

:func:`worth.select` validates its regime arguments here (``labels``, ``quotas``, ``costs``, ``budget``,
``init``, ``target``) and gets back the pieces the optimisers take: a gain model (the objective's state,
conditioned on ``init`` and/or composed into mutual information with ``target``), the mask of candidate
rows and the constraint. :func:`value` is the matching exact evaluation for :func:`worth.score`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._array import device, from_numpy, row_norms2, to_numpy
from .conditional import Conditioned, MutualInformation, check_init, prepare_target, stack_rows
from .constraints import Feasibility, check_labels
from .objectives import Objective, SpectralObjective, snap_eigenvalues
from .optimizers import GainModel, State
from .spectral.state import SpectralState
from .validation import check_count, check_indices


def is_submodular(obj: Objective, target) -> bool:
    """Whether lazy greedy is exact on the run: ``f(· | A)`` keeps submodularity; ``I(·; Q)`` only where the
    objective declares it (:attr:`~worth.objectives.Objective.target_keeps_submodularity`: facility location)."""
    if target is None:
        return obj.properties.submodular
    return obj.target_keeps_submodularity


def check_target_objective(obj: Objective) -> None:
    """``target=`` (mutual information, a difference of two states' gains) needs marginal gains of the
    items' content: refuse count-only objectives and the recurrences of :mod:`worth.coreset`."""
    if not obj.content_aware:
        raise ValueError(
            f"target= needs an objective of the items' content; {obj.name!r} depends on counts only. "
            "Pass objective='facility-location' or a spectral objective such as 'logdet'."
        )
    if not obj.marginal_gains:
        raise ValueError(
            f"target= selects by mutual information, a difference of marginal gains, and {obj.name!r} is a "
            "recurrence without them; drop target=, or pass objective='facility-location' or 'logdet'."
        )


class Regime:
    """Validated regime arguments of one run over ``n`` pool rows (see :func:`worth.select`).

    Attributes
    ----------
    k : int
        Count limit of the run.
    init : ndarray of int64
        Conditioning rows (possibly empty).
    target_idx, target_rows
        Target as pool rows, or as extra prepared embeddings (at most one is set).
    rows : array
        ``X`` with any target embeddings appended: what the states are built over.
    available : ndarray of bool
        Candidate rows (the pool without ``init`` and target rows).
    constraint : Feasibility or None
    labels : ndarray or None
    """

    def __init__(self, X64, xp, k, obj: Objective, *, normalize: bool, labels=None, quotas=None, costs=None,
                 budget=None, init=None, target=None, candidates=None) -> None:
        n = X64.shape[0]
        self.n = n
        self.xp = xp
        self.obj = obj
        self.labels = None if labels is None else check_labels(labels, n)
        self.init = np.zeros(0, dtype=np.int64) if init is None else check_init(init, n)
        self.target_idx, self.target_rows = (None, None)
        if target is not None:
            check_target_objective(obj)
            self.target_idx, self.target_rows = prepare_target(target, X64, xp, normalize=normalize)
        self.rows = stack_rows(X64, self.target_rows, xp)
        self.available = np.ones(n, dtype=bool)
        self.available[self.init] = False
        if self.target_idx is not None:
            self.available[self.target_idx] = False
        if candidates is not None:
            allowed = np.zeros(n, dtype=bool)
            allowed[check_indices(candidates, n, name="candidates")] = True
            self.available &= allowed
        n_cand = int(self.available.sum())
        if n_cand == 0:
            raise ValueError("no candidate rows are left to select (init=, target= and candidates= exclude them all).")
        constrained = quotas is not None or costs is not None or budget is not None
        if constrained:
            self.constraint = Feasibility(n, k, labels=self.labels, quotas=quotas, costs=costs, budget=budget)
            self.k = min(self.constraint.k, n_cand) if (costs is not None or k is None) else self.constraint.k
            check_count(self.k, "k", maximum=n_cand, what=" number of items",
                        limit=f"the {n_cand} rows left as candidates after init=/target=")
        else:
            self.constraint = None
            if k is None:
                raise ValueError(
                    "k=None means 'no count limit', which needs a budget= (with costs=) or quotas for every "
                    "class; pass k, the number of items to select."
                )
            limit = (f"the number of items (n_samples={n})" if n_cand == n else
                     f"the {n_cand} rows left as candidates (rows in init=/target=, or outside candidates=, "
                     "are not candidates)")
            self.k = check_count(k, "k", maximum=n_cand, what=" number of items", limit=limit)
        self.like = xp.empty((0,), dtype=X64.dtype, device=device(X64))  # the output's namespace and device

    @property
    def target_state_rows(self) -> np.ndarray | None:
        """Target rows in the indexing of :attr:`rows`."""
        if self.target_idx is not None:
            return self.target_idx
        if self.target_rows is not None:
            return np.arange(self.n, self.rows.shape[0], dtype=np.int64)
        return None

    def model(self, make: Callable[[Any], State]) -> tuple[GainModel, State]:
        """The gain model: ``make(rows)`` builds an empty state of the objective over ``rows``.

        Returns ``(model, state)`` where ``state`` is the (first) underlying objective state. The prepared
        rows (n·m·8 bytes: 205 MB at n = 100,000, m = 256) are released here unless mutual information still
        needs them: each state holds what it needs (facility location: its own float32 copy and the norms).
        """
        q = self.target_state_rows
        if q is None:
            state = make(self.rows)
            self.rows = None
            return Conditioned(state, self.init), state
        mi = MutualInformation(lambda: make(self.rows), self.n, q, self.init)
        return mi, mi.S

    def row_norms2(self) -> np.ndarray:
        """Squared norms of the pool rows (host), before :meth:`model` releases them."""
        return to_numpy(row_norms2(self.rows, self.xp))[:self.n]


def state_factory(obj: Objective, xp, *, method: str, pool: int, batch_size: int, rtol: float,
                  labels=None) -> Callable[[Any], State]:
    """How a run builds an empty state of ``obj`` over some rows: the one place that knows each kind of state.

    Spectral objectives share :class:`~worth.spectral.state.SpectralState` (with the resolved gain
    ``method``); the others build their own (``obj.make_state``: facility location, the scaling law).
    """
    if isinstance(obj, SpectralObjective):
        return lambda rows: SpectralState(rows, obj, method, xp, pool=pool, batch_size=batch_size, rtol=rtol)
    return lambda rows: obj.make_state(rows, xp, labels=labels)


def spectral_value(obj: SpectralObjective, X64, idx: np.ndarray, xp, pool: int) -> float:
    """Exact spectral value of the rows ``idx`` (repeats count twice): the smaller of ``K_S`` and ``C_S``."""
    return float(obj.value_from_eigenvalues(subset_eigenvalues(X64, idx, xp), int(idx.size), pool, xp))


def subset_eigenvalues(X64, idx: np.ndarray, xp):
    """The snapped eigenvalues of the smaller of ``K_S`` and ``C_S`` (``None`` for the empty set): what every
    spectral value of the subset is made of, so one decomposition serves them all
    (:func:`worth.appraisal.scoring.score_subsets`)."""
    if idx.size == 0:
        return None
    m = X64.shape[1]
    rows = xp.take(X64, from_numpy(idx, xp, X64), axis=0)
    gram = rows @ rows.T if idx.size <= m else rows.T @ rows
    return snap_eigenvalues(xp.linalg.eigvalsh(gram), m, xp)  # the greedy state's floor (m, whichever Gram)


def floor_bound(obj: SpectralObjective, eigenvalues, m: int, size: int, trace: float, pool: int) -> float:
    """How far a value computed from ``eigenvalues`` may lie from the exact one because of the eigenvalue floor.

    Eigenvalues of ``C_S`` are resolved only to ``τ = 64·m·ε·λ_max`` (the backward error of ``eigh``; the
    rank-one updates between two refreshes accumulate less), and below it ``select`` and ``score`` alike set
    them to 0 (:func:`~worth.objectives.snap_eigenvalues`). So each of the ``min(|S|, m)`` eigenvalues that
    may be non-zero is known within ``τ``, and ``Σ φ(λ)`` within ``Σ_j max(|φ(λ_j − τ) − φ(λ_j)|,
    |φ(λ_j + τ) − φ(λ_j)|)`` (``λ_j − τ`` clipped at 0; the largest change over the interval is at an end
    because every registered ``φ`` is concave or convex), mapped through the objective's ``combine``. Where
    ``φ'`` is bounded at 0 (log-det, hybrid) this is rounding-sized; where it is not (``t^α``, ``t log t``)
    eigenvalues near the floor make it up to ``min(|S|, m)·φ(τ)``: that is where exactness ends (see
    docs/exactness.md).
    """
    lam = np.maximum(np.asarray(to_numpy(eigenvalues), dtype=np.float64), 0.0)
    if size == 0 or lam.size == 0 or lam.max() == 0:
        return 0.0
    tau = 64 * m * float(np.finfo(np.float64).eps) * float(lam.max())
    lam = np.concatenate([np.zeros(max(0, min(size, m) - lam.size)), lam])
    phi = obj.phi(lam, np)
    change = np.maximum(np.abs(obj.phi(np.maximum(lam - tau, 0.0), np) - phi), np.abs(obj.phi(lam + tau, np) - phi))
    bound = float(np.sum(change))
    s = float(np.sum(obj.phi(snap_eigenvalues(lam, m, np), np)))
    now = float(obj.combine(s, size, trace, pool))
    return max(abs(float(obj.combine(s + d, size, trace, pool)) - now) for d in (-bound, bound))


def value(obj: Objective, rows, idx: np.ndarray, xp, *, pool: int, labels=None) -> float:
    """Exact ``f`` of the rows ``idx`` of ``rows`` for any registered objective."""
    if isinstance(obj, SpectralObjective):
        return spectral_value(obj, rows, idx, xp, pool)
    return float(obj.value(rows, idx, xp, labels=labels))


def conditional_value(obj: Objective, X64, idx: np.ndarray, xp, *, normalize: bool, labels=None, init=None,
                      target=None, pool: int | None = None) -> float:
    """``f(S | A)``, or ``I(S; Q | A)`` with a target, by the definitions (what :func:`worth.score` returns);
    ``pool``: the pool's size when ``X64`` holds only some of its rows (default: its own)."""
    n = X64.shape[0]
    size = n if pool is None else int(pool)
    lab = None if labels is None else check_labels(labels, n)
    A = np.zeros(0, dtype=np.int64) if init is None else check_init(init, n)
    if target is None:
        f = lambda S: value(obj, X64, S, xp, pool=size, labels=lab)  # noqa: E731
        return f(np.concatenate([idx, A])) - (f(A) if A.size else 0.0)
    check_target_objective(obj)
    t_idx, t_rows = prepare_target(target, X64, xp, normalize=normalize)
    rows = stack_rows(X64, t_rows, xp)
    Q = t_idx if t_idx is not None else np.arange(n, rows.shape[0], dtype=np.int64)
    f = lambda S: value(obj, rows, S, xp, pool=size)  # noqa: E731
    cat = np.concatenate
    return f(cat([idx, A])) + f(cat([Q, A])) - f(cat([idx, Q, A])) - (f(A) if A.size else 0.0)
