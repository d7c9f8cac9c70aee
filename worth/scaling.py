"""The neural scaling law as a subset objective: value from size alone (or from per-class sizes).

A fitted scaling law predicts held-out performance from the number of training items, ``a − b·n^(−α)``.
As a set function it is ``g(|S|)`` with ``g`` concave and increasing, hence monotone submodular; the
per-class sum ``Σ_c g(|S ∩ V_c|)`` (``per_class=True``) is a sum of such functions of disjoint parts, so it
is too, and greedy on it balances the classes. It is the baseline the reference study compares the
content-aware objectives with: "size (and balance) alone".

Normalisation: every objective in ``worth`` has ``f(∅) = 0`` (the greedy trajectory starts there and the
gains add up to it), and ``n^(−α)`` is infinite at ``n = 0``. So the law is evaluated at ``n = |S| + offset``
and reported relative to the empty set:

``f(S) = b·(offset^(−α) − (|S| + offset)^(−α))``  (per class: summed over the classes of ``labels``).

The constant ``a`` cancels; add ``a − b·offset^(−α)`` to read the value as the law itself. Neither changes a
selection or a rank correlation.
"""

from __future__ import annotations

import numpy as np

from .objectives import Objective
from .optimizers import State


class ScalingLaw(Objective):
    """``b·(offset^(−α) − (|S| + offset)^(−α))``, or its sum over classes with ``per_class=True``."""

    name = "scaling-law"
    content_aware = False  # a function of counts: a target= of content means nothing to it
    method = "counts"

    def curve(self, counts):
        """``f`` of one group of each size in ``counts`` (array or scalar)."""
        b, alpha, off = self.params["b"], self.params["alpha"], self.params["offset"]
        return b * (off ** -alpha - (np.asarray(counts, dtype=np.float64) + off) ** -alpha)

    def groups(self, n: int, labels) -> np.ndarray:
        """Group id of each row: the class index with ``per_class``, else one group."""
        if not self.params["per_class"]:
            return np.zeros(n, dtype=np.int64)
        if labels is None:
            raise ValueError(
                "objective='scaling-law' with per_class=True needs the class of every row; "
                "pass labels=y (one label per row of X), or per_class=False."
            )
        return np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1).astype(np.int64)

    def make_state(self, X, xp, *, labels=None) -> "ScalingState":
        return ScalingState(self, self.groups(X.shape[0], labels))

    def value(self, X, indices, xp, *, labels=None) -> float:
        groups = self.groups(X.shape[0], labels)
        idx = np.asarray(indices, dtype=np.int64)
        counts = np.bincount(groups[idx], minlength=int(groups.max()) + 1 if groups.size else 1)
        return float(np.sum(self.curve(counts)))


class ScalingState(State):
    """Greedy state: the count of selected rows per group. Gains depend on the group only."""

    def __init__(self, objective: ScalingLaw, groups: np.ndarray) -> None:
        self.objective = objective
        self.groups = groups
        self.n = int(groups.size)
        self.counts = np.zeros(int(groups.max()) + 1 if groups.size else 1, dtype=np.int64)
        self.size = 0

    @property
    def value(self) -> float:
        return float(np.sum(self.objective.curve(self.counts)))

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        c = self.counts[self.groups[np.asarray(candidates, dtype=np.int64)]]
        return self.objective.curve(c + 1) - self.objective.curve(c)

    def add(self, index: int) -> None:
        self.counts[self.groups[int(index)]] += 1
        self.size += 1

    def start_from(self, indices) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        self.counts = np.bincount(self.groups[idx], minlength=self.counts.size).astype(np.int64)
        self.size = int(idx.size)
