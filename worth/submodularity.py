"""An estimate of the submodularity ratio γ of an objective on given data.

For a weakly submodular objective (``hybrid``: ``φ'`` is not operator-monotone decreasing, ``docs/gains.md``)
greedy is within ``1 − e^(−γ)`` of the optimum, where (Das & Kempe 2011)

``γ = min over disjoint L, S of  Σ_{j∈S} f(j | L) / f(S | L)``.

The minimum is over exponentially many pairs, so this samples pairs and returns the smallest ratio seen:
**an estimate, and an optimistic one** — the true γ can only be lower. Submodular objectives have γ ≥ 1 on
every pair; a value below 1 is a measured violation of diminishing returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._array import namespace
from .registry import get_objective
from .regime import value
from .validation import check_count, prepare_rows


def submodularity_ratio(X, objective: str, *, samples: int = 200, max_size: int = 4, seed: int | None = 0,
                        normalize: bool = True, labels: Any = None, **params: Any) -> float:
    """Smallest ``Σ_{j∈S} f(j|L) / f(S|L)`` over ``samples`` random disjoint pairs ``(L, S)`` of rows of ``X``.

    Parameters
    ----------
    X : array, shape (n, m)
    objective : str
        A registered objective; ``**params`` are its parameters.
    samples : int
        Pairs drawn. Pairs with ``f(S|L) <= 0`` (no gain to share) are skipped.
    max_size : int
        ``|L|`` is drawn from ``0..max_size`` and ``|S|`` from ``2..max_size`` (small sets: where greedy
        works and where violations were seen).
    seed : int or None

    Returns
    -------
    float
        The estimate of γ (``inf`` if no pair had a positive joint gain). Greedy's bound ``1 − e^(−γ)`` with
        this γ is an optimistic estimate of the bound, not a guarantee.
    """
    obj = get_objective(objective, **params)
    check_count(samples, "samples", what=" number of sampled pairs", example=200)
    check_count(max_size, "max_size", minimum=2, what=" (S needs two items to compare)", example=8)
    xp = namespace(X)
    X64 = prepare_rows(X, xp, normalize=normalize)
    n = X64.shape[0]
    if n < 2:
        raise ValueError("X needs at least 2 rows to sample a pair of sets.")
    lab = None if labels is None else np.asarray(labels)
    rng = np.random.default_rng(seed)

    def f(rows) -> float:
        return value(obj, X64, np.asarray(rows, dtype=np.int64), xp, pool=n, labels=lab)

    best = np.inf
    for _ in range(int(samples)):
        s_size = int(rng.integers(2, min(max_size, n) + 1))
        l_size = int(rng.integers(0, min(max_size, n - s_size) + 1))
        perm = rng.permutation(n)[: l_size + s_size]
        L, S = perm[:l_size], perm[l_size:]
        fL = f(L)
        joint = f(np.concatenate([L, S])) - fL
        if joint <= 1e-12 * max(1.0, abs(fL)):
            continue
        singles = sum(f(np.append(L, j)) - fL for j in S)
        best = min(best, singles / joint)
    return float(best)
