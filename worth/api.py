"""The public entry points: :func:`select` a subset, :func:`score` a subset, the :class:`Selection` result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ._array import from_numpy, namespace, to_numpy
from .conditional import MutualInformation
from .constraints import run_constrained
from .objectives import SpectralObjective
from .optimizers import OPTIMIZERS, check_epsilon
from .regime import Regime, check_target_objective, conditional_value, floor_bound, is_submodular, state_factory
from .registry import get_objective
from .spectral.methods import resolve_method
from .spectral.statkey import StatisticKey, key_sign
from .threads import pick_phase, run_threads
from .validation import (check_count, check_in_memory, check_indices, check_unit_norms,
                         prepare_rows, working_dtype)

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
        Objective value after each pick (exact to rounding: from the updated state's eigenpairs, or where the
        closed-form table keeps its own inverse, from the pick's gain, re-anchored at each recomputation).
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
        exact roots, Sherman–Morrison steps and their measured drift; for dense facility location on NumPy
        the cost drivers of its maintained gains (``list_length``, ``unsettled_rows``, ``pairs_on_demand``
        against ``pairs_first_pass``; see :mod:`worth.facility.lists`). Spectral objectives: ``floor_bound_abs``,
        how far the last value may lie from the exact one because eigenvalues below
        ``64·m·ε·λ_max`` count as 0 (``select`` and ``score`` share that floor; large where ``φ'`` is
        unbounded at 0 and ``C_S`` has eigenvalues near it; :func:`worth.regime.floor_bound`).
    info : dict
        The regime: ``init`` (rows conditioned on) and ``init_value`` (``f(A)``; ``values`` and ``gains`` are
        relative to it); with constraints ``class_counts``, ``budget``, ``spent`` and ``singleton`` (True
        when the best single affordable item beat the cost-benefit greedy and was returned instead).
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
    info: dict = field(default_factory=dict)

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
    labels: Any = None,
    quotas: dict | str | None = None,
    costs: Any = None,
    budget: float | None = None,
    init: Any = None,
    target: Any = None,
    candidates: Any = None,
    pool_size: int | None = None,
    evaluation: str = "auto",
    threads: int | None = None,
    **params: Any,
) -> Selection:
    """Greedily select ``k`` rows of ``X`` that maximise an objective, under the regime's constraints.

    Parameters
    ----------
    X : array, shape (n, m)
        Embeddings, one row per item (NumPy, CuPy, torch or any array-API array). Computation happens in
        float64 in the same namespace; the result comes back in it.
    k : int or None
        Number of items to select, ``1 <= k <= n``. With ``budget=`` an upper bound on the count (``None``:
        no count limit — the greedy adds affordable items until nothing fits); with ``quotas`` for every class
        ``None`` means their total.
    objective : str
        A name from :func:`worth.objectives` (``vendi``, ``vendi-pool``, ``entropy``, ``logdet``, ``power``,
        ``hybrid``, ``facility-location``, ``scaling-law``, and the coreset baselines ``herding`` and
        ``k-center`` of :mod:`worth.coreset`); its parameters go in ``**params`` (e.g. ``q=2``,
        ``sigma2=0.5``, ``alpha=0.3``; facility location: ``similarity=``, ``gamma=``, ``neighbors=``,
        ``block_size=``, ``precision=``; scaling law: ``b=``, ``alpha=``, ``offset=``, ``per_class=``).
    optimizer : {"greedy", "lazy", "stochastic"}
        ``lazy`` is exact only for submodular objectives and is refused for the others unless ``force=True``.
        ``greedy`` makes the picks of naive greedy, but evaluates lazily wherever that is exact (see
        ``evaluation``).
    method : {"auto", "oracle", "secular", "secular-portable", "closed-form", "quadrature", "sherman-morrison"}
        How marginal gains are computed (see :mod:`worth.spectral.state`): the root methods are exact to rounding,
        the quadrature routes to ``rtol``. ``auto``: closed form for ``logdet``, Sherman–Morrison where the
        quadrature rule represents the objective, exact roots otherwise. Spectral objectives only: facility
        location reports ``"dense"`` or ``"knn"`` (set by ``neighbors=``), the scaling law ``"counts"``.
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
    labels : array, optional
        Class of every row: for ``quotas=`` and for ``scaling-law`` with ``per_class=True``.
    quotas : dict or "balanced", optional
        At most ``quotas[c]`` picks of class ``c`` (a partition matroid, see :mod:`worth.constraints`);
        ``"balanced"``: ``ceil(k / n_classes)`` per class.
    costs, budget : array and float, optional
        A knapsack: the picks' costs sum to at most ``budget`` (cost-benefit greedy with the best-singleton
        fix). ``Selection.info`` reports the spend and whether the singleton won.
    init : indices, optional
        Rows already chosen: the selection is conditioned on them (gains and values are ``f(S ∪ A) − f(A)``;
        see :mod:`worth.conditional`). They are not candidates and spend no quota or budget.
    target : indices or array (n_targets, m), optional
        Select by mutual information with the target set, ``I(S; Q) = f(S) + f(Q) − f(S ∪ Q)``.
    candidates : indices, optional
        Only these rows may be picked; the objective is still that of the whole pool (facility location
        covers every row). GreeDi's final round (:func:`worth.distributed_greedy`) runs this way.
    pool_size : int, optional
        ``X`` holds only some rows of a pool of ``pool_size`` rows (default: ``X`` is the pool). Only for an
        objective whose value needs nothing but the chosen rows (``Objective.chosen_rows_only``: the spectral
        ones), where the pool enters through its size alone (``vendi-pool`` divides by it): the picks and
        values are those of the whole pool with ``candidates=`` these rows. GreeDi's final round runs on the
        parts' picks this way (:func:`worth.distributed.merge_parts`).
    evaluation : {"auto", "full"}
        How ``optimizer="greedy"`` evaluates gains. ``"auto"``: lazily wherever that makes naive greedy's
        picks — on every objective whose registry entry is submodular (conditioned on ``init=`` too, and the
        mutual information of facility location with ``target=``; not the mutual information of a spectral
        objective, which is not submodular in general), and on ``vendi`` (``q ≤ 1``) over rows of equal norm
        through the entropy key (:mod:`worth.spectral.statkey`; not under a knapsack); every candidate at
        every step otherwise. ``"full"``: every feasible candidate at every step (the reference the tests
        compare with). ``Selection.info["evaluation"]`` says which ran: ``"lazy"``, ``"lazy-key"``,
        ``"full"``, ``"lazy-forced"`` (``optimizer="lazy", force=True`` on a non-submodular objective: not
        exact) or ``"sampled"`` (stochastic). ``method="auto"`` resolves for the evaluation that runs
        (projected quadrature when lazy, Sherman–Morrison when full), so near-ties within ``rtol`` may be
        broken differently than by ``"full"``; with an exact method the picks are identical.
    threads : int, optional
        ``None``: the greedy steps run BLAS on one thread (numba's gain kernels and facility location's task
        pool use the cores; BLAS threads beside them cost more than they give: see :mod:`worth.threads`), the
        setup keeps BLAS's own count. ``t``: the whole run uses at most ``t`` threads (numba, BLAS and the
        task pool) — what a Dask task sets to its worker's share of the cores.
    Returns
    -------
    Selection
    """
    # Every input check first: nothing is built before the last one passed.
    obj = check_options(objective, optimizer, method, evaluation=evaluation, target=target, force=force,
                        batch_size=batch_size, rtol=rtol, epsilon=epsilon, threads=threads, **params)
    check_in_memory(X)
    check_pool_size(pool_size, X, obj)
    xp = namespace(X)
    # (no local name for the prepared rows: the regime lets go of them once the states hold what they need)
    regime = Regime(prepare_rows(X, xp, normalize=normalize, dtype=working_dtype(X, xp, obj.float32_rows)), xp, k,
                    obj, normalize=normalize, labels=labels,
                    quotas=quotas, costs=costs, budget=budget, init=init, target=target, candidates=candidates)
    if not normalize and obj.unit_diagonal:
        check_unit_norms(regime.rows, xp, obj.name)
    evaluation, sign = _evaluation(evaluation, optimizer, obj, target, costs, regime)
    resolved = _resolve_method(method, obj, xp, "lazy" if evaluation.startswith("lazy") else optimizer)

    with run_threads(threads):
        t0 = time.perf_counter()
        make = state_factory(obj, xp, method=resolved, pool=regime.n if pool_size is None else int(pool_size),
                             batch_size=int(batch_size), rtol=rtol,
                             labels=regime.labels)
        model, state = regime.model(make)  # the regime releases its rows once the states hold what they need
        start, base = _floor(obj, model), model.base
        if sign is not None:
            model = StatisticKey(model, state, sign)
        with pick_phase():
            trace, singleton = run_constrained(OPTIMIZERS["lazy" if evaluation.startswith("lazy") else optimizer],
                                               model, regime.k, available=regime.available,
                                               constraint=regime.constraint, progress=progress, epsilon=epsilon,
                                               seed=seed, population=pool_size)
        total = time.perf_counter() - t0
    info = {"init_value": base, "init": int(regime.init.size), "evaluation": evaluation}
    if isinstance(model, StatisticKey) or not obj.marginal_gains:
        # The optimiser saw keys or a recurrence's criterion; report the objective's own gains (differences
        # of its values, f(∅) = 0).
        trace.gains = list(np.diff(np.asarray(trace.values, dtype=np.float64), prepend=0.0))
    if regime.constraint is not None:
        info.update(regime.constraint.summary(trace.indices), singleton=singleton)
    diagnostics = dict(state.info) if resolved in ("quadrature", "sherman-morrison", "dense") else {}
    if isinstance(obj, SpectralObjective):
        diagnostics["floor_bound_abs"] = start + _floor(obj, model)
    like = regime.like
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
        diagnostics=diagnostics,
        info=info,
    )


def check_options(objective: str = "vendi", optimizer: str = "greedy", method: str = "auto", *,
                  evaluation: str = "auto", target: Any = None, force: bool = False, batch_size: int = 1024,
                  rtol: float = 1e-8, epsilon: float = 0.01, threads: int | None = None, **params: Any):
    """Every check :func:`select` makes of its options before it touches an array — the objective and its
    parameters, the optimizer, the gain method, the evaluation and the numbers — so a caller that runs the
    selection elsewhere (a flow's job on a worker) refuses bad options up front, with :func:`select`'s own
    messages (``target``: anything but None means a target is given). Returns the objective; raises
    ``ValueError`` naming the option and the fix."""
    obj = get_objective(objective, **params)
    _check_options(obj, optimizer, evaluation, target, force, batch_size, rtol, epsilon, threads)
    if target is not None:  # mutual information needs gains of the items' content
        check_target_objective(obj)
    # the method checked as select resolves it (the resolution does not depend on the array namespace)
    _resolve_method(method, obj, np, optimizer)
    return obj


def _check_options(obj, optimizer, evaluation, target, force, batch_size, rtol, epsilon, threads) -> None:
    """The scalar options of :func:`select`, checked before any array is touched."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is unknown; pass one of {sorted(OPTIMIZERS)}.")
    if optimizer == "lazy" and not is_submodular(obj, target) and not force:
        what = f"{obj.name!r}" if target is None else f"the mutual information of {obj.name!r} with target="
        raise ValueError(
            f"optimizer='lazy' is exact only for submodular objectives and {what} is not "
            "(stale gains are not upper bounds, so it can silently diverge from greedy); "
            "pass optimizer='greedy', or force=True to run it anyway."
        )
    if evaluation not in EVALUATIONS:
        raise ValueError(
            f"evaluation={evaluation!r} is unknown; pass 'auto' (lazy wherever it gives greedy's picks) or "
            "'full' (every candidate at every step)."
        )
    if evaluation == "full" and optimizer != "greedy":
        raise ValueError(f"evaluation='full' applies to optimizer='greedy', not {optimizer!r}; drop evaluation=.")
    if optimizer == "stochastic":
        check_epsilon(epsilon)
    check_count(batch_size, "batch_size", what=" number of candidates per batch", example=1024)
    if not (isinstance(rtol, float) and 0 < rtol < 1):
        raise ValueError(f"rtol={rtol!r} must be a float in (0, 1), e.g. rtol=1e-8.")
    if threads is not None:
        check_count(threads, "threads", what=" number of threads (None: BLAS on one thread per pick)", example=1)


def _resolve_method(method: str, obj, xp, optimizer: str) -> str:
    """The concrete gain method: spectral objectives resolve ``auto`` for the evaluation that runs; the
    others have their own (facility location ``dense``/``knn``, the scaling law ``counts``)."""
    if isinstance(obj, SpectralObjective):
        return resolve_method(method, obj, xp, optimizer)
    if method != "auto":
        raise ValueError(
            f"method={method!r} applies to spectral objectives; {obj.name!r} has its own "
            "(facility location: neighbors= picks dense or kNN). Pass method='auto'."
        )
    return obj.method


def _floor(obj, model) -> float:
    """Eigenvalue-floor bound of the model's current value (:func:`worth.regime.floor_bound`), 0 for the
    objectives that are not spectral; mutual information adds the bounds of its two states."""
    if not isinstance(obj, SpectralObjective):
        return 0.0
    inner = model.model if isinstance(model, StatisticKey) else model
    states = [inner.S, inner.SQ] if isinstance(inner, MutualInformation) else [inner.state]
    return sum(floor_bound(obj, st.lam, st.m, st.size, st.trace, st.pool) for st in states)


EVALUATIONS = ("auto", "full")


def _evaluation(evaluation: str, optimizer: str, obj, target, costs, regime: Regime) -> tuple[str, int | None]:
    """The evaluation the run uses (see :func:`select`'s ``evaluation``) and the statistic key's sign, if any.

    Lazy evaluation makes naive greedy's picks when stale gains are upper bounds of fresh ones: on a
    submodular objective (a knapsack's gain per cost stays one), or on keys that order the candidates like
    the gains and never grow (:mod:`worth.spectral.statkey`). The tie rule is the same in both optimisers.
    """
    if optimizer == "stochastic":
        return "sampled", None
    exact = is_submodular(obj, target)
    if optimizer == "lazy":
        return ("lazy" if exact else "lazy-forced"), None
    if evaluation == "full":
        return "full", None
    if exact:
        return "lazy", None
    if target is None and costs is None:  # cost ratios are not invariant under a monotone map of the gains
        sign = key_sign(obj, regime.row_norms2())
        if sign is not None:
            return "lazy-key", sign
    return "full", None


def score(X, indices, objective: str = "vendi", *, normalize: bool = True, labels: Any = None, init: Any = None,
          target: Any = None, pool_size: int | None = None, **params: Any) -> float:
    """Exact value of ``objective`` on the subset ``indices`` of ``X``.

    Spectral objectives: one eigendecomposition, of the smaller of the Gram matrix ``X_S X_Sᵀ`` and
    ``C_S = X_Sᵀ X_S`` (they share their non-zero eigenvalues); ``indices`` may repeat an item (it then counts
    twice, as in ``C_S``). Facility location: the running maximum over the subset, in blocks.

    With ``init=A`` the conditional value ``f(S ∪ A) − f(A)``; with ``target=Q`` the mutual information
    ``f(S) + f(Q) − f(S ∪ Q)`` (conditioned on ``A`` if both) — by the definitions, from plain values: what
    :func:`select` reports is checked against this. ``pool_size``: as in :func:`select` (``X`` holds only
    some rows of the pool, for an objective whose value needs only the chosen rows).
    """
    obj = get_objective(objective, **params)
    check_pool_size(pool_size, X, obj)
    xp = namespace(X)
    X64 = prepare_rows(X, xp, normalize=normalize)
    idx = check_indices(indices, X64.shape[0], name="indices", allow_repeats=True)
    if not normalize and obj.unit_diagonal:
        check_unit_norms(X64, xp, obj.name)
    return conditional_value(obj, X64, idx, xp, normalize=normalize, labels=labels, init=init, target=target,
                             pool=pool_size)


def check_pool_size(pool_size, X, obj) -> None:
    """``pool_size=`` of :func:`select` and :func:`score`: a whole number no smaller than ``X``'s rows, and only
    for an objective whose value needs nothing but the chosen rows (elsewhere the rows left out count)."""
    if pool_size is None:
        return
    n = int(X.shape[0])
    check_count(pool_size, "pool_size", minimum=n, what=" (the size of the pool X's rows were taken from)",
                example=max(n, 1))
    if not obj.chosen_rows_only:
        raise ValueError(
            f"pool_size={pool_size} applies to objectives whose value needs only the chosen rows (the spectral "
            f"ones); {obj.name!r} depends on every row of the pool: pass the whole pool as X instead.")
