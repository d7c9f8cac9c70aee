"""A scikit-learn-style selector over :func:`worth.select`."""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from .api import select


class Selector(BaseEstimator):
    """Select a subset of rows by greedy maximisation of a spectral objective.

    Parameters
    ----------
    k : int or float, default=0.1
        Items to select: an int count, or a float in (0, 1] for a fraction of the rows (rounded up).
    objective : str, default="vendi"
        Objective name (see :func:`worth.objectives`).
    optimizer : str, default="greedy"
    method : str, default="auto"
    normalize : bool, default=True
        L2-normalise rows first.
    seed : int or None, default=None
        Seed of the stochastic optimiser.
    params : dict or None, default=None
        Objective parameters, e.g. ``{"q": 2}``.

    Attributes
    ----------
    ranking_ : ndarray of int64
        Selected rows in pick order.
    subset_indices_ : ndarray of int64
        Selected rows, sorted.
    gains_ : ndarray of float64
        Marginal gain of each pick (aligned with ``ranking_``).
    values_ : ndarray of float64
        Objective value after each pick.
    selection_ : worth.Selection
        The full result (timings, resolved method).
    """

    def __init__(self, k=0.1, objective="vendi", optimizer="greedy", method="auto", normalize=True,
                 seed=None, params=None):
        self.k = k
        self.objective = objective
        self.optimizer = optimizer
        self.method = method
        self.normalize = normalize
        self.seed = seed
        self.params = params

    def _count(self, n: int) -> int:
        k = self.k
        if isinstance(k, float) and not isinstance(k, bool):
            if not 0 < k <= 1:
                raise ValueError(f"k={k!r}: a float k is a fraction of the rows and must lie in (0, 1].")
            return max(1, math.ceil(k * n))
        return k

    def fit(self, X, y=None):
        """Run the selection on ``X`` (``y`` is ignored; present for pipeline compatibility)."""
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=1)
        sel = select(X, self._count(X.shape[0]), self.objective, self.optimizer, self.method,
                     normalize=self.normalize, seed=self.seed, **(self.params or {}))
        self.selection_ = sel
        self.ranking_ = np.asarray(sel.indices, dtype=np.int64)
        self.subset_indices_ = np.sort(self.ranking_)
        self.gains_ = np.asarray(sel.gains)
        self.values_ = np.asarray(sel.values)
        self.n_samples_fit_ = X.shape[0]
        return self

    def get_support(self) -> np.ndarray:
        """Boolean mask over the fitted rows, True for the selected ones."""
        check_is_fitted(self)
        mask = np.zeros(self.n_samples_fit_, dtype=bool)
        mask[self.subset_indices_] = True
        return mask
