"""A study's maximisers of one objective, unconstrained and class-balanced at every k, as one branching run.

A class-balanced greedy run at ``k`` (``quotas="balanced"``: at most ``q = ceil(k/C)`` picks per class) sees
exactly the candidates the unconstrained run sees until some class reaches ``q``: until then the two runs
compute the same gains, in the same order, and make the same picks. So the study's maximisers of an objective
— the unconstrained path and one balanced path per ``k`` (the study's k, the coreset table's shares of the
pool) — form a tree: one unconstrained *trunk*, and for each balanced ``k`` a *branch* that leaves it at the
step ``t_q`` where a class first reaches ``q`` (or none, when the trunk reaches ``k`` picks first: the
balanced path is then the trunk's prefix). :func:`maximiser_family` runs the trunk once and each branch from
a copy of the trunk's state taken at ``t_q`` (:func:`fork_model`) — the greedy state (eigenpairs, facility
location's running maximum and maintained gains), the lazy bounds, the feasible rows — with a constraint that
has seen the trunk's picks. Every branch makes the very computations its own run from scratch would make, so
its picks are :func:`worth.select`'s, bit for bit (``tests/appraisal/test_branches.py``).

What it saves: the picks before ``t_q`` of every balanced path, which for facility location are the
expensive ones (its lazy bounds are loose in the first few dozen picks, where a run spends most of its time).
"""

from __future__ import annotations

import copy
import math
import types
from typing import Any

import numpy as np

from .._array import namespace
from ..api import _evaluation, _resolve_method
from ..constraints import Feasibility
from ..optimizers import start_run
from ..regime import Regime, state_factory
from ..registry import get_objective
from ..spectral.statkey import StatisticKey
from ..threads import pick_phase
from ..validation import prepare_rows, working_dtype

#: Attributes of the states (and of what they hold) that no pick changes in place: a fork shares them. Every
#: other array is copied (the spectral state's ``C`` and eigenvector buffers, facility location's running max
#: and maintained gains are updated in place).
SHARED = frozenset({"X", "XT", "_XT_full", "norms2", "top_val", "top_idx", "count", "tau", "rev_ptr", "rev_pos",
                    "u_XT", "u_norms", "_zero_g0", "graph", "scale"})


def _shared_arrays(obj, memo: dict, seen: set) -> None:
    if id(obj) in seen or isinstance(obj, (np.ndarray, str, bytes, int, float, bool, type(None))):
        return
    seen.add(id(obj))
    attrs = getattr(obj, "__dict__", None)
    if attrs is None:
        return
    for name, value in attrs.items():
        if isinstance(value, np.ndarray):
            if name in SHARED:
                memo[id(value)] = value
        elif isinstance(value, types.ModuleType):  # an array namespace
            memo[id(value)] = value
        elif type(value).__module__.startswith("worth."):
            _shared_arrays(value, memo, seen)


def fork_model(model):
    """A copy of a gain model (and the states under it) that picks independently of the original: the arrays
    no pick changes in place are shared (:data:`SHARED`), everything else is copied."""
    memo: dict[int, Any] = {}
    _shared_arrays(model, memo, set())
    return copy.deepcopy(model, memo)


def _setup(X, labels, objective: str, params: dict, k: int):
    """What :func:`worth.select` builds before its optimiser runs (``optimizer="greedy"``, the defaults):
    the unconstrained regime, the model (with the statistic key where greedy runs lazily on it) and the
    optimiser that runs."""
    obj = get_objective(objective, **params)
    xp = namespace(X)
    regime = Regime(prepare_rows(X, xp, normalize=True, dtype=working_dtype(X, xp, obj.float32_rows)), xp, k, obj,
                    normalize=True, labels=labels)
    evaluation, sign = _evaluation("auto", "greedy", obj, None, None, regime)
    lazy = evaluation.startswith("lazy")
    resolved = _resolve_method("auto", obj, xp, "lazy" if lazy else "greedy")
    make = state_factory(obj, xp, method=resolved, pool=regime.n, batch_size=1024, rtol=1e-8, labels=regime.labels)
    model, state = regime.model(make)
    if sign is not None:
        model = StatisticKey(model, state, sign)
    return regime, model, "lazy" if lazy else "greedy"


def maximiser_family(X, labels, objective: str, params: dict | None = None, *, unconstrained: int | None = None,
                     balanced: list[int] = ()) -> dict:
    """The greedy maximisers of ``objective`` (what :func:`worth.select` returns with the defaults): the
    unconstrained one of ``unconstrained`` picks (``None``: not asked) and the class-balanced one at each k
    of ``balanced``, in one branching run (see the module docstring).

    Returns
    -------
    dict
        ``{None: picks}`` for the unconstrained path (if asked), ``{k: picks}`` for each balanced ``k``
        (int64 arrays in pick order).
    """
    params = dict(params or {})
    labels = np.asarray(labels)
    n = labels.shape[0]
    ks = sorted({int(k) for k in balanced})
    classes, group = np.unique(labels, return_inverse=True)
    quota = {k: math.ceil(k / classes.size) for k in ks}
    trunk_k = max([unconstrained or 0, *ks, 1])
    regime, model, optimizer = _setup(X, labels, objective, params, min(trunk_k, n))
    out: dict = {}
    counts = np.zeros(classes.size, dtype=np.int64)
    pending = list(ks)  # balanced k not yet decided, smallest quota first
    with pick_phase():
        trunk = start_run(optimizer, model, available=regime.available)
        picks: list[int] = []
        while pending or (unconstrained is not None and len(picks) < unconstrained):
            i = trunk.step()
            if i is None:
                break
            picks.append(i)
            counts[group[i]] += 1
            t = len(picks)
            for k in list(pending):
                if t == k and counts.max() <= quota[k]:  # k picks, no class beyond its quota: the trunk's prefix
                    out[k] = np.asarray(picks, dtype=np.int64)
                    pending.remove(k)
                elif counts.max() >= quota[k]:  # a class is full: the balanced run leaves the trunk here
                    out[k] = _branch(trunk, picks, labels, k)
                    pending.remove(k)
        if unconstrained is not None:
            out[None] = np.asarray(picks[:unconstrained], dtype=np.int64)
    return out


def _branch(trunk, picks: list[int], labels, k: int) -> np.ndarray:
    """The balanced run at ``k`` from the trunk's state after ``picks`` (a class has just reached its quota)."""
    n = labels.shape[0]
    constraint = Feasibility(n, k, labels=labels, quotas="balanced")
    for i in picks:
        constraint.commit(i)
    run = trunk.fork(fork_model(trunk.model), constraint)
    got = list(picks)
    while len(got) < k:
        i = run.step()
        if i is None:
            break
        got.append(i)
    return np.asarray(got, dtype=np.int64)
