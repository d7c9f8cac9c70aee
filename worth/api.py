"""The public entry points: :func:`select` a subset, :func:`score` a subset, the :class:`Selection` result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ._array import from_numpy, namespace, to_numpy
from .gains import SpectralState, resolve_method
from .objectives import get_objective, snap_eigenvalues
from .optimizers import OPTIMIZERS
from .validation import check_indices, check_k, prepare_rows


@dataclass
class Selection:
    """Result of :func:`select`.

    Attributes
    ----------
    indices : array of int64
        Chosen rows in pick order (the caller's array type and device).
    gains : array of float64
        Marginal gain of each pick, as computed by the method at the time of the pick.
    values : array of float64
        Objective value after each pick (exact, from the eigendecomposition of the updated state).
    objective : str
    params : dict
        Objective parameters, defaults filled in.
    optimizer : str
    method : str
        The concrete gain method used (``"auto"`` resolved).
    timings : dict
        ``total``, ``gains`` and ``update`` seconds, and ``evaluations`` (gain queries).
    diagnostics : dict
        What the gain method reports about its own accuracy: for ``quadrature`` / ``sherman-morrison`` the
        nodes of the rule, its fit error, the largest error bound of a pick's change of ``Σ φ(λ)`` (relative,
        ``error_bound``; absolute for ``t log t`` objectives, ``error_bound_abs``), steps that fell back to
        exact roots, Sherman–Morrison steps and their measured drift.
    """

    indices: Any
    gains: Any
    values: Any
    objective: str
    params: dict
    optimizer: str
    method: str
    timings: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)

    @property
    def value(self) -> float:
        """Objective value of the whole selection."""
        v = to_numpy(self.values)
        return float(v[-1]) if v.size else 0.0

    def __len__(self) -> int:
        return int(to_numpy(self.indices).size)


def select(
    X,
    k: int,
    objective: str = "vendi",
    optimizer: str = "greedy",
    method: str = "auto",
    *,
    normalize: bool = True,
    seed: int | None = None,
    epsilon: float = 0.01,
    force: bool = False,
    batch_size: int = 1024,
    rtol: float = 1e-8,
    progress: Callable[[int, int], None] | None = None,
    **params: Any,
) -> Selection:
    """Greedily select ``k`` rows of ``X`` that maximise a matrix spectral objective.

    Parameters
    ----------
    X : array, shape (n, m)
        Embeddings, one row per item (NumPy, CuPy, torch or any array-API array). Computation happens in
        float64 in the same namespace; the result comes back in it.
    k : int
        Number of items to select, ``1 <= k <= n``.
    objective : str
        A name from :func:`worth.objectives` (``vendi``, ``vendi-pool``, ``entropy``, ``logdet``, ``power``,
        ``hybrid``); its parameters go in ``**params`` (e.g. ``q=2``, ``sigma2=0.5``, ``alpha=0.3``).
    optimizer : {"greedy", "lazy", "stochastic"}
        ``lazy`` is exact only for submodular objectives and is refused for the others unless ``force=True``.
    method : {"auto", "oracle", "secular", "secular-portable", "closed-form", "quadrature", "sherman-morrison"}
        How marginal gains are computed (see :mod:`worth.gains`): the root methods are exact to rounding,
        the quadrature routes to ``rtol``. ``auto``: closed form for ``logdet``, Sherman–Morrison where the
        quadrature rule represents the objective, exact roots otherwise.
    normalize : bool
        L2-normalise rows first (so ``k(x, x) = 1``), as the Vendi Score assumes.
    seed : int, optional
        Seed of the ``stochastic`` optimiser.
    epsilon : float
        Accuracy parameter of ``stochastic`` (sample size ``(n/k)·log(1/ε)``).
    force : bool
        Allow ``lazy`` on an objective that is not submodular (its result may differ from greedy).
    batch_size : int
        Candidates per gain batch (memory bound of the gain temporaries).
    rtol : float
        Accuracy the ``quadrature`` and ``sherman-morrison`` gains must reach (relative to each gain); the
        achieved bound is reported in ``Selection.diagnostics``.
    progress : callable, optional
        ``progress(step, k)`` after each pick (the CLI draws its progress bar with it).

    Returns
    -------
    Selection
    """
    obj = get_objective(objective, **params)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is unknown; pass one of {sorted(OPTIMIZERS)}.")
    if optimizer == "lazy" and not obj.properties.submodular and not force:
        raise ValueError(
            f"optimizer='lazy' is exact only for submodular objectives and {objective!r} is not "
            "(stale gains are not upper bounds, so it can silently diverge from greedy); "
            "pass optimizer='greedy', or force=True to run it anyway."
        )
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer, e.g. batch_size=1024.")
    xp = namespace(X)
    X64 = prepare_rows(X, xp, normalize=normalize)
    n = X64.shape[0]
    k = check_k(k, n)
    resolved = resolve_method(method, obj, xp, optimizer)
    t0 = time.perf_counter()
    if not (isinstance(rtol, float) and 0 < rtol < 1):
        raise ValueError(f"rtol={rtol!r} must be a float in (0, 1), e.g. rtol=1e-8.")
    state = SpectralState(X64, obj, resolved, xp, batch_size=int(batch_size), rtol=rtol)
    trace = OPTIMIZERS[optimizer](state, k, progress=progress, epsilon=epsilon, seed=seed)
    total = time.perf_counter() - t0
    like = X64
    return Selection(
        indices=from_numpy(np.asarray(trace.indices, dtype=np.int64), xp, like),
        gains=from_numpy(np.asarray(trace.gains, dtype=np.float64), xp, like),
        values=from_numpy(np.asarray(trace.values, dtype=np.float64), xp, like),
        objective=obj.name,
        params=dict(obj.params),
        optimizer=optimizer,
        method=resolved,
        timings={
            "total": total,
            "gains": trace.seconds_gains,
            "update": trace.seconds_update,
            "evaluations": trace.evaluations,
        },
        diagnostics=dict(state.info) if resolved in ("quadrature", "sherman-morrison") else {},
    )


def score(X, indices, objective: str = "vendi", *, normalize: bool = True, **params: Any) -> float:
    """Exact value of ``objective`` on the subset ``indices`` of ``X`` (one eigendecomposition).

    Uses the smaller of the Gram matrix ``X_S X_Sᵀ`` and ``C_S = X_Sᵀ X_S``: they share their non-zero
    eigenvalues. ``indices`` may repeat an item (it then counts twice, as in ``C_S``).
    """
    obj = get_objective(objective, **params)
    xp = namespace(X)
    X64 = prepare_rows(X, xp, normalize=normalize)
    n, m = X64.shape
    idx = check_indices(indices, n, name="indices", allow_repeats=True)
    if idx.size == 0:
        return obj.value_from_eigenvalues(None, 0, n, xp)
    rows = xp.take(X64, from_numpy(idx, xp, X64), axis=0)
    gram = rows @ rows.T if idx.size <= m else rows.T @ rows
    eig = snap_eigenvalues(xp.linalg.eigvalsh(gram), gram.shape[0], xp)
    return float(obj.value_from_eigenvalues(eig, int(idx.size), n, xp))
