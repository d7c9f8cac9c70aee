"""Constraints of the selection regimes: class quotas (a partition matroid) and a training budget (a knapsack).

Both plug into the optimisers through :class:`worth.optimizers.Constraint`: before each step the constraint
removes what can no longer be added, and it says what the step maximises.

Partition matroid (``labels=`` + ``quotas=``)
    At most ``quota[c]`` picks of class ``c``; classes without a quota are limited by ``k`` only.
    ``quotas="balanced"`` gives every class ``ceil(k / n_classes)`` — ``k`` in all, the greedy decides which
    classes take the remainder. Greedy under a matroid and a monotone submodular objective is within ``1/2``
    of the optimum (Fisher, Nemhauser & Wolsey 1978).
Knapsack (``costs=`` + ``budget=``)
    Total cost of the picks at most ``budget`` (tokens, pixels, training steps). Each step maximises
    ``gain / cost`` among the items that still fit, until none does; then the best affordable single item
    is returned instead if it is worth more ("best-singleton fix"). The better of the two is within
    ``½(1 − 1/e)`` of the optimum for monotone submodular objectives (Leskovec et al. 2007; Khuller, Moss &
    Naor 1999 prove ``1 − 1/√e`` for coverage). With a budget ``k`` is only an upper bound on the count
    (``k=None``: no count limit).

Constraints apply to the new picks: rows given as ``init=`` are already chosen and spend neither quota nor
budget.
"""

from __future__ import annotations

import math

import numpy as np

from ._array import to_numpy
from .optimizers import Trace, Unconstrained
from .validation import check_count


def check_labels(labels, n: int) -> np.ndarray:
    """One label per row, as a host 1-D array."""
    y = to_numpy(labels) if hasattr(labels, "shape") else np.asarray(list(labels))
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(
            f"labels has shape {tuple(y.shape)} but X has {n} rows; pass one label per row of X "
            f"(a 1-D array of length {n})."
        )
    return y


def check_costs(costs, n: int) -> np.ndarray:
    """Positive finite costs, one per row, as host float64."""
    c = to_numpy(costs) if hasattr(costs, "shape") else np.asarray(list(costs))
    if c.ndim != 1 or c.shape[0] != n:
        raise ValueError(f"costs has shape {tuple(c.shape)} but X has {n} rows; pass one cost per row of X.")
    if c.dtype.kind not in "biuf":
        raise ValueError(f"costs must be numbers (tokens, pixels, training steps); got dtype {c.dtype}.")
    c = c.astype(np.float64)
    if not np.isfinite(c).all():
        raise ValueError("costs has NaN or inf entries; give every row a finite positive cost.")
    if (c < 0).any():
        rows = np.flatnonzero(c < 0)[:5].tolist()
        raise ValueError(f"costs has negative entries (rows {rows}); costs must be positive, e.g. token counts.")
    if (c == 0).any():
        rows = np.flatnonzero(c == 0)[:5].tolist()
        raise ValueError(
            f"costs has zero entries (rows {rows}); costs must be positive — give free items a small cost, "
            "or select them separately and pass them as init=."
        )
    return c


class Feasibility:
    """Partition-matroid quotas and/or a knapsack budget over the rows (see the module docstring).

    Parameters
    ----------
    n : int
        Number of candidate rows.
    k : int or None
        Requested count (``None`` allowed with a budget, or with quotas for every class).
    labels, quotas, costs, budget
        As in :func:`worth.select`.

    Attributes
    ----------
    k : int
        The count limit the optimiser runs with.
    """

    def __init__(self, n: int, k, *, labels=None, quotas=None, costs=None, budget=None) -> None:
        self.n = n
        self.group = None
        self.costs = None
        self.unit = 1.0
        count_limit = None
        if quotas is not None:
            count_limit = self._set_quotas(labels, quotas, k)
        if (costs is None) != (budget is None):
            missing = "budget" if budget is None else "costs"
            raise ValueError(
                f"costs= and budget= go together; pass {missing}= too (a knapsack needs a cost per row "
                "and a total budget)."
            )
        if costs is not None:
            self._set_budget(costs, budget)
            count_limit = n if count_limit is None else count_limit
        if k is None:
            if count_limit is None:
                raise ValueError(
                    "k=None means 'no count limit', which needs a budget= (with costs=) or quotas for every "
                    "class; pass k, the number of items to select."
                )
            k = count_limit
        check_count(k, "k", maximum=n, what=" number of items", limit=f"the number of candidate rows ({n})")
        if self.group is not None and k > self.capacity and budget is None:
            raise ValueError(
                f"k={k} exceeds what the quotas allow ({self.capacity} items: min(quota, class size) summed); "
                "lower k or raise the quotas."
            )
        self.k = int(k)

    # -- setup ---------------------------------------------------------------------------------------
    def _set_quotas(self, labels, quotas, k) -> int | None:
        if labels is None:
            raise ValueError("quotas= needs labels=: pass the class of every row (labels=y).")
        y = check_labels(labels, self.n)
        classes, group = np.unique(y, return_inverse=True)
        group = group.reshape(-1)
        sizes = np.bincount(group, minlength=classes.size)
        limit = np.full(classes.size, np.iinfo(np.int64).max, dtype=np.int64)
        if isinstance(quotas, str):
            if quotas != "balanced":
                raise ValueError(f"quotas={quotas!r} is unknown; pass 'balanced' or a dict {{class: quota}}.")
            if k is None:
                raise ValueError("quotas='balanced' splits k among the classes; pass k.")
            limit[:] = math.ceil(int(k) / classes.size)
            bounded = True
        elif isinstance(quotas, dict):
            known = {c.item() if hasattr(c, "item") else c for c in classes}
            for c, q in quotas.items():
                key = c.item() if hasattr(c, "item") else c
                if key not in known:
                    shown = sorted(known, key=str)[:10]
                    raise ValueError(
                        f"quotas has a quota for class {c!r}, which is not in labels (classes: {shown}); "
                        "use the label values exactly as they appear in labels."
                    )
                check_count(q, f"quotas[{c!r}]", minimum=0, what=" count", example=10)
                limit[int(np.searchsorted(classes, np.asarray(key, dtype=classes.dtype)))] = int(q)
            bounded = len(quotas) == classes.size
        else:
            raise ValueError(f"quotas={quotas!r} must be a dict {{class: max count}} or 'balanced'.")
        self.classes, self.group, self.limit = classes, group, limit
        self.taken = np.zeros(classes.size, dtype=np.int64)
        self.capacity = int(np.sum(np.minimum(limit, sizes)))
        return self.capacity if bounded else None

    def _set_budget(self, costs, budget) -> None:
        c = check_costs(costs, self.n)
        if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)) \
                or not math.isfinite(budget) or budget <= 0:
            raise ValueError(f"budget={budget!r} must be a positive finite number in the units of costs.")
        if budget < c.min():
            raise ValueError(
                f"budget={budget} is below every item's cost (the cheapest costs {c.min():g}), so nothing "
                f"fits; raise the budget to at least {c.min():g}."
            )
        self.costs, self.budget, self.spent = c, float(budget), 0.0
        self.unit = float(c.min())

    # -- Constraint ----------------------------------------------------------------------------------
    def prune(self, available: np.ndarray) -> None:
        if self.group is not None:
            full = self.taken >= self.limit
            if full.any():
                available &= ~full[self.group]
        if self.costs is not None:
            available &= self.costs <= (self.budget - self.spent) + 1e-12 * self.budget

    def criterion(self, candidates: np.ndarray, gains: np.ndarray) -> np.ndarray:
        return gains if self.costs is None else gains / self.costs[candidates]

    def commit(self, index: int) -> None:
        if self.group is not None:
            self.taken[self.group[index]] += 1
        if self.costs is not None:
            self.spent += float(self.costs[index])

    def summary(self, indices) -> dict:
        """What the picks used: per-class counts and spent budget."""
        idx = np.asarray(indices, dtype=np.int64)
        out: dict = {}
        if self.group is not None:
            counts = np.bincount(self.group[idx], minlength=self.classes.size)
            out["class_counts"] = {c.item() if hasattr(c, "item") else c: int(v)
                                   for c, v in zip(self.classes, counts)}
        if self.costs is not None:
            out["budget"] = self.budget
            out["spent"] = float(math.fsum(self.costs[idx]))
        return out


def run_constrained(optimizer, model, k: int, *, available: np.ndarray, constraint: Feasibility | None,
                    **options) -> tuple[Trace, bool]:
    """Run ``optimizer`` under ``constraint``; with a knapsack, apply the best-singleton fix.

    Returns the trace and whether the best single item replaced the greedy set.
    """
    if constraint is None or constraint.costs is None:
        return optimizer(model, k, available=available, constraint=constraint or Unconstrained(), **options), False
    feasible = available.copy()
    constraint.prune(feasible)
    single_cand = np.flatnonzero(feasible)
    base = model.value
    singles = np.asarray(model.gains(single_cand), dtype=np.float64)
    trace = optimizer(model, k, available=available, constraint=constraint, **options)
    trace.evaluations += single_cand.size
    j = int(np.argmax(singles))  # ties: lowest index
    greedy_gain = (trace.values[-1] - base) if trace.values else 0.0
    if singles[j] > greedy_gain + 1e-12 * max(1.0, abs(greedy_gain)):
        best = Trace(indices=[int(single_cand[j])], gains=[float(singles[j])], values=[base + float(singles[j])],
                     evaluations=trace.evaluations, seconds_gains=trace.seconds_gains,
                     seconds_update=trace.seconds_update)
        return best, True
    return trace, False
