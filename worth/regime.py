"""The regime of one selection run: which rows are candidates, what state the greedy starts from, what limits it.

:func:`worth.select` validates its regime arguments here (``labels``, ``quotas``, ``costs``, ``budget``,
``init``, ``target``) and gets back the pieces the optimisers take: a gain model (the objective's state,
conditioned on ``init`` and/or composed into mutual information with ``target``), the mask of candidate
rows and the constraint. :func:`value` is the matching exact evaluation for :func:`worth.score`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._array import from_numpy
from .conditional import Conditioned, MutualInformation, check_init, prepare_target, stack_rows
from .constraints import Feasibility, check_labels
from .objectives import Objective, SpectralObjective, snap_eigenvalues
from .validation import check_indices, check_k


def is_submodular(obj: Objective, target) -> bool:
    """Whether lazy greedy is exact on the run: ``f(· | A)`` keeps submodularity; ``I(·; Q)`` only where the
    objective declares it (:attr:`~worth.objectives.Objective.target_keeps_submodularity`: facility location)."""
    if target is None:
        return obj.properties.submodular
    return obj.target_keeps_submodularity


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
        self.obj = obj
        self.labels = None if labels is None else check_labels(labels, n)
        self.init = np.zeros(0, dtype=np.int64) if init is None else check_init(init, n)
        self.target_idx, self.target_rows = (None, None)
        if target is not None:
            if not obj.content_aware:
                raise ValueError(
                    f"target= needs an objective of the items' content; {obj.name!r} depends on counts only. "
                    "Pass objective='facility-location' or a spectral objective such as 'logdet'."
                )
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
            if self.k > n_cand:
                raise ValueError(
                    f"k={self.k} exceeds the {n_cand} rows left as candidates after init=/target=; "
                    f"pass k <= {n_cand}."
                )
        else:
            self.constraint = None
            if k is None:
                raise ValueError(
                    "k=None means 'no count limit', which needs a budget= (with costs=) or quotas for every "
                    "class; pass k, the number of items to select."
                )
            self.k = check_k(k, n_cand) if n_cand == n else self._check_k_left(k, n_cand)

    @staticmethod
    def _check_k_left(k, n_cand: int) -> int:
        try:
            return check_k(k, n_cand)
        except ValueError as err:
            raise ValueError(f"{err} (rows in init=/target=, or outside candidates=, are not candidates)") from None

    @property
    def target_state_rows(self) -> np.ndarray | None:
        """Target rows in the indexing of :attr:`rows`."""
        if self.target_idx is not None:
            return self.target_idx
        if self.target_rows is not None:
            return np.arange(self.n, self.rows.shape[0], dtype=np.int64)
        return None

    def model(self, make: Callable[[Any], Any]):
        """The gain model: ``make(rows)`` builds an empty state of the objective over ``rows``.

        Returns ``(model, state)`` where ``state`` is the (first) underlying objective state.
        """
        q = self.target_state_rows
        if q is None:
            state = make(self.rows)
            return Conditioned(state, self.init), state
        mi = MutualInformation(lambda: make(self.rows), self.n, q, self.init)
        return mi, mi.S


def spectral_value(obj: SpectralObjective, X64, idx: np.ndarray, xp, pool: int) -> float:
    """Exact spectral value of the rows ``idx`` (repeats count twice): the smaller of ``K_S`` and ``C_S``."""
    if idx.size == 0:
        return float(obj.value_from_eigenvalues(None, 0, pool, xp))
    m = X64.shape[1]
    rows = xp.take(X64, from_numpy(idx, xp, X64), axis=0)
    gram = rows @ rows.T if idx.size <= m else rows.T @ rows
    eig = snap_eigenvalues(xp.linalg.eigvalsh(gram), gram.shape[0], xp)
    return float(obj.value_from_eigenvalues(eig, int(idx.size), pool, xp))


def value(obj: Objective, rows, idx: np.ndarray, xp, *, pool: int, labels=None) -> float:
    """Exact ``f`` of the rows ``idx`` of ``rows`` for any registered objective."""
    if isinstance(obj, SpectralObjective):
        return spectral_value(obj, rows, idx, xp, pool)
    return float(obj.value(rows, idx, xp, labels=labels))


def conditional_value(obj: Objective, X64, idx: np.ndarray, xp, *, normalize: bool, labels=None, init=None,
                      target=None) -> float:
    """``f(S | A)``, or ``I(S; Q | A)`` with a target, by the definitions (what :func:`worth.score` returns)."""
    n = X64.shape[0]
    lab = None if labels is None else check_labels(labels, n)
    A = np.zeros(0, dtype=np.int64) if init is None else check_init(init, n)
    if target is None:
        f = lambda S: value(obj, X64, S, xp, pool=n, labels=lab)  # noqa: E731
        return f(np.concatenate([idx, A])) - (f(A) if A.size else 0.0)
    if not obj.content_aware:
        raise ValueError(f"target= needs an objective of the items' content; {obj.name!r} depends on counts only.")
    t_idx, t_rows = prepare_target(target, X64, xp, normalize=normalize)
    rows = stack_rows(X64, t_rows, xp)
    Q = t_idx if t_idx is not None else np.arange(n, rows.shape[0], dtype=np.int64)
    f = lambda S: value(obj, rows, S, xp, pool=n)  # noqa: E731
    cat = np.concatenate
    return f(cat([idx, A])) + f(cat([Q, A])) - f(cat([idx, Q, A])) - (f(A) if A.size else 0.0)
