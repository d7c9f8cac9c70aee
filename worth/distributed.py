"""GreeDi: distributed greedy as a pure function (the Dask version runs the same steps as flow tasks).

Split the pool into ``parts`` random parts, run the greedy on each part, run it again over the union of the
part solutions, and return the better of that and the best part solution (Mirzasoleiman et al., "Distributed
Submodular Maximization", NeurIPS 2013 / JMLR 2016).

Guarantee, for a monotone submodular objective under a cardinality constraint: with an arbitrary partition
GreeDi is within ``(1 − 1/e)² / min(parts, k)`` of the optimum; with a uniformly random partition (what this
function does) it is within ``(1 − 1/e)/2`` in expectation (Barbosa, Ene, Nguyen & Ward, ICML 2015), and in
practice it is close to the centralised greedy. For objectives that are not submodular there is no
guarantee. With ``parts=1`` it is the centralised greedy.

Facility location is evaluated, in every round, over the whole pool as ground set (only the candidates are
restricted), so the final round optimises the true objective. A spectral objective's value needs only the
chosen rows, so its final round runs on the rows the parts picked (:func:`merge_needs_pool`): same picks.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ._array import from_numpy, namespace, to_numpy
from .api import Selection, score, select
from .constraints import Feasibility, check_costs, check_labels
from .registry import entries, get_objective
from .validation import check_count, check_in_memory, prepare_rows


def partition(n: int, parts: int, seed: int | None = 0) -> list[np.ndarray]:
    """GreeDi's random partition of ``range(n)`` into ``parts`` parts (sorted row indices each).

    A seeded permutation split into near-equal parts: the same ``(n, parts, seed)`` gives the same parts on any
    machine, which is how a distributed run (one task per part) reproduces :func:`distributed_greedy`.
    """
    if isinstance(parts, bool) or not isinstance(parts, (int, np.integer)) or parts < 1:
        raise ValueError(f"parts={parts!r} must be a positive integer number of parts, e.g. parts=8.")
    if parts > n:
        raise ValueError(f"parts={parts} exceeds the number of rows ({n}); pass parts <= {n}.")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(c) for c in np.array_split(order, parts)]


def merge_needs_pool(objective: str = "vendi", params: dict | None = None, *, quotas: Any = None, costs: Any = None,
                     budget: float | None = None, init: Any = None, target: Any = None) -> bool:
    """Whether GreeDi's final round needs the whole pool's rows, or only the rows the parts picked.

    The round picks only among the parts' picks; for an objective whose value needs nothing but the chosen rows
    (``Objective.chosen_rows_only``: the spectral ones, where the pool enters through its size alone) the rows
    left out never enter a gain or a value, so the round runs on the union of the parts' picks — at ImageNet
    size 102,496 rows instead of 1,281,167, and no float64 copy of the pool. Facility location, herding and
    k-center need the pool; so does a regime whose feasibility is the pool's (``quotas``, ``costs``/``budget``)
    or that conditions on other rows (``init``, ``target``). ``params``: the objective's parameters.
    """
    spec = entries().get(objective)
    kept = {key: v for key, v in (params or {}).items() if spec is not None and key in spec.defaults}
    if spec is None or not get_objective(objective, **kept).chosen_rows_only:
        return True
    return any(v is not None for v in (quotas, costs, budget, init, target))


def merge_parts(X, k: int, part_solutions: list, *, objective: str = "vendi", optimizer: str = "greedy",
                seed: int | None = 0, normalize: bool = True, labels: Any = None, pool_size: int | None = None,
                **options: Any) -> Selection:
    """GreeDi's final round over the parts' solutions (indices into ``X``, one array per part).

    The greedy over the union of the part solutions, with the whole pool as ground set (only the candidates
    are restricted); when some part's own solution is worth more, the greedy over that part's picks instead.
    Where the pool's other rows cannot matter (:func:`merge_needs_pool` is false) the round runs on the rows of
    the union alone, with the pool's size — the same picks and values, without the pool's O(n) work per step;
    ``X`` may then hold just those rows, with ``pool_size`` the pool's size (what a worker that reads rows from
    a store passes). ``info`` gets ``parts``, ``round`` (``"union"`` or ``"part"``), ``part_values`` and
    ``ground`` (``"pool"`` or ``"picks"``: which rows the round ran on). Other arguments as in
    :func:`distributed_greedy`.
    """
    xp = namespace(X)
    spec = entries().get(objective)
    params = {key: v for key, v in options.items() if spec is not None and key in spec.defaults}
    costs = options.pop("costs", None)
    needs_pool = merge_needs_pool(objective, params, quotas=options.get("quotas"), costs=costs,
                                  budget=options.get("budget"), init=options.get("init"), target=options.get("target"))
    if pool_size is not None and needs_pool:
        raise ValueError(
            f"pool_size={pool_size}: GreeDi's final round with objective {objective!r} under this regime needs "
            "the whole pool's rows; pass the pool as X and leave pool_size out.")
    X64 = prepare_rows(X, xp, normalize=normalize)
    host_labels = None if labels is None else (to_numpy(labels) if hasattr(labels, "shape") else np.asarray(labels))
    host_costs = None if costs is None else (to_numpy(costs) if hasattr(costs, "shape") else np.asarray(costs))
    solutions = [np.asarray(p, dtype=np.int64) for p in part_solutions]
    rows = None  # the rows of X the round runs on (None: all of them)
    if not needs_pool and pool_size is None:
        pool_size = int(X64.shape[0])
        rows = np.unique(np.concatenate(solutions)) if solutions else np.zeros(0, dtype=np.int64)
        X64 = xp.take(X64, from_numpy(rows, xp, X64), axis=0)
        host_labels = None if host_labels is None else host_labels[rows]
        solutions = [np.searchsorted(rows, p) for p in solutions]
    sizes = {} if pool_size is None else {"pool_size": pool_size}

    def on_pool(cands: np.ndarray) -> Selection:
        """The greedy over ``cands`` with the whole pool as ground set (true gains and values)."""
        kk = None if k is None else min(k, cands.size)
        return select(X64, kk, objective, optimizer, normalize=False, seed=seed, labels=host_labels,
                      costs=host_costs, candidates=np.sort(cands), **sizes, **options)

    result = on_pool(np.concatenate(solutions) if solutions else np.zeros(0, dtype=np.int64))
    winner, part_values = "union", []
    if len(solutions) > 1:
        part_values = [score(X64, p, objective, normalize=False, labels=host_labels, **sizes, **params)
                       for p in solutions]
        best = int(np.argmax(part_values))
        if part_values[best] > result.value + 1e-12 * abs(result.value):  # relative: rows may be tiny
            result, winner = on_pool(solutions[best]), "part"
    if rows is not None:  # back to rows of X
        result.indices = from_numpy(rows[to_numpy(result.indices).astype(np.int64)], xp, result.indices)
    result.info.update(parts=len(solutions), round=winner, part_values=part_values,
                       ground="pool" if needs_pool else "picks")
    return result


def distributed_greedy(X, k: int, *, parts: int, objective: str = "vendi", optimizer: str = "greedy",
                       seed: int | None = 0, normalize: bool = True, labels: Any = None, **options: Any) -> Selection:
    """Select ``k`` rows of ``X`` by GreeDi over ``parts`` random parts (see the module docstring).

    Parameters
    ----------
    X : array, shape (n, m)
    k : int
    parts : int
        Number of parts (``1 <= parts <= n``); each must hold at least one row.
    objective, optimizer, normalize, labels, **options
        As in :func:`worth.select` (objective parameters, ``quotas``, ``costs``/``budget``, ``method``, ...).
        ``init=`` and ``target=`` are not supported here yet.
    seed : int or None
        Seed of the random partition (:func:`partition`) and of the ``stochastic`` optimiser.

    Returns
    -------
    Selection
        Indices into ``X``; ``info`` adds ``parts``, ``round`` (``"union"`` or ``"part"``: which solution
        won) and ``part_values`` (see :func:`merge_parts`).
    """
    for bad in ("init", "target"):
        if options.get(bad) is not None:
            raise ValueError(f"{bad}= is not supported by distributed_greedy yet; use worth.select for it.")
    check_count(parts, "parts", what=" number of parts", example=8)
    check_in_memory(X)
    xp = namespace(X)
    X64 = prepare_rows(X, xp, normalize=normalize)
    n = X64.shape[0]
    check_count(parts, "parts", maximum=n, limit=f"the number of rows ({n})")
    if k is not None:
        check_count(k, "k", maximum=n, what=" number of items", limit=f"the number of items (n_samples={n})")
    costs = options.pop("costs", None)
    quotas = options.pop("quotas", None)
    host_labels = None if labels is None else check_labels(labels, n)
    host_costs = None if costs is None else check_costs(costs, n)
    if quotas is not None or costs is not None or options.get("budget") is not None:  # the pool's regime, up front
        Feasibility(n, k, labels=host_labels, quotas=quotas, costs=host_costs, budget=options.get("budget"))
    pool_classes = 0 if host_labels is None else int(np.unique(host_labels).size)
    t0 = time.perf_counter()
    chunks = partition(n, parts, seed)

    def run(rows: np.ndarray, kk) -> np.ndarray:
        """The part's picks (pool rows); quotas for classes the part lacks are dropped, ``k`` capped to fit."""
        part_labels = None if host_labels is None else host_labels[rows]
        part_quotas, kk = _part_quotas(quotas, part_labels, kk, pool_classes)
        if kk == 0:
            return np.zeros(0, dtype=np.int64)
        sub = xp.take(X64, from_numpy(rows, xp, X64), axis=0)
        sel = select(sub, kk, objective, optimizer, normalize=False, seed=seed, labels=part_labels,
                     quotas=part_quotas, costs=None if host_costs is None else host_costs[rows], **options)
        return rows[to_numpy(sel.indices).astype(np.int64)]

    part_solutions = []
    for rows in chunks:
        part_solutions.append(run(rows, None if k is None else min(k, rows.size)))
    result = merge_parts(X64, k, part_solutions, objective=objective, optimizer=optimizer, seed=seed,
                         normalize=False, labels=host_labels, quotas=quotas, costs=host_costs, **options)
    result.timings["total"] = time.perf_counter() - t0
    return result


def _part_quotas(quotas, labels, k, pool_classes: int):
    """Quotas and count limit for one part: a part may lack a class that has a quota (a rare class, split at
    random), and its classes may hold fewer rows than the quotas allow; the pool's quotas still bind the
    final round.

    Returns ``(quotas, k)``: a quota dict restricted to the classes present, and ``k`` capped at what the
    part can hold under them.
    """
    if quotas is None:
        return None, k
    classes, sizes = np.unique(labels, return_counts=True)
    present = classes.tolist()
    if isinstance(quotas, dict):
        quotas = {c: q for c, q in quotas.items() if (c.item() if hasattr(c, "item") else c) in present}
    else:  # "balanced": the pool's per-class limit, for the classes present (a part may have fewer classes)
        quotas = {c: -(-k // pool_classes) for c in present}
    limits = np.array([quotas.get(c, size) for c, size in zip(present, sizes)], dtype=np.int64)
    capacity = int(np.sum(np.minimum(limits, sizes)))
    return quotas, None if k is None else min(k, capacity)
