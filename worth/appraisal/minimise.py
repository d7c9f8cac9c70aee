"""Greedy *minimisers*: the most redundant subsets an objective admits, to span its score range at fixed size.

Why: a study made only of maximisers and random subsets sees two clusters — the random ones are tightly
concentrated — and a rank correlation between two clusters says little. Greedy minimisation adds, at each
step, the candidate with the *smallest* marginal gain (for diversity objectives: a near-duplicate of what is
already chosen), giving subsets of the same size and class balance as the maximiser but at the bottom of the
score range; mixtures of the two (:mod:`worth.appraisal.design`) fill the range in between.

Exact evaluation, two routes, both checked against :func:`worth.score` by the tests:

- spectral objectives: the value of ``S ∪ {v}`` for a batch of candidates from one batched ``eigvalsh`` of
  the smaller of the ``(s+1)×(s+1)`` Gram matrices and the ``m×m`` matrices ``C_S + x_v x_vᵀ``, turned into
  values by the objective's own ``phi`` and ``combine`` (what :func:`worth.score` does for one subset);
- the others (facility location, the scaling law): the objective's own greedy state (``make_state``), whose
  ``gains`` are exact for any candidate; facility location's are asked only for the candidates its list lower
  bounds cannot place above the step's minimum (:class:`_LeastFirst`: few, on a pool whose rows a minimiser
  leaves unsettled).

Cost: the spectral route is ``O(c · min(s, m)³)`` per step for ``c`` candidates, far above the secular
gains of :func:`worth.select`. ``sample=`` evaluates a seeded random sample of that many candidates per step
instead of all (a stochastic greedy minimiser, as ``optimizer="stochastic"`` does for maximisers), which is
what makes minimisers affordable on pools of thousands of rows.

Ties (every unit row scores the same alone under a spectral objective) are broken by a seeded random
order, so different seeds give different, equally greedy, minimisers.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any

import numpy as np

import worth

_BATCH_ELEMENTS = 1 << 24  # floats in one batch of candidate matrices (128 MB in float64)


_UNIT: list[list] = []  # [the pool, its unit rows or None] per open unit_rows_kept(pool)


@contextlib.contextmanager
def unit_rows_kept(X):
    """Context in which every minimiser over ``X`` (this very array, not modified meanwhile) shares one copy of
    its L2-normalised rows: a study runs hundreds of minimisers and mixture completions over one pool, and each
    would normalise all of it again (0.5 s at 60,000 × 784)."""
    entry = [X, None]
    _UNIT.append(entry)
    try:
        yield
    finally:
        _UNIT[:] = [e for e in _UNIT if e is not entry]


def _unit_rows(X) -> np.ndarray:
    for entry in list(_UNIT):
        if entry[0] is X:
            if entry[1] is None:
                entry[1] = _normalised(X)
            return entry[1]
    return _normalised(X)


def _normalised(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-D array (n_items, n_features); got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError("X has NaN or inf values; drop or impute those rows first.")
    norms = np.linalg.norm(X, axis=1)
    if (norms == 0).any():
        raise ValueError(f"X has all-zero rows (e.g. row {int(np.flatnonzero(norms == 0)[0])}), which cannot be "
                         "L2-normalised; drop them, or pass normalize=False.")
    return X / norms[:, None]


def _snap(eig: np.ndarray, dim: int) -> np.ndarray:
    """Zero eigh's rounding noise of a rank-deficient PSD matrix (the threshold :func:`worth.score` uses)."""
    top = eig.max(axis=-1, keepdims=True)
    tol = 64 * dim * np.finfo(np.float64).eps * np.where(top > 0, top, 1.0)
    return np.where(eig > tol, eig, 0.0)


def spectral_values(obj, X: np.ndarray, chosen: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``f(S ∪ {v})`` for every candidate ``v`` of a spectral objective (``S`` = rows ``chosen`` of ``X``)."""
    n, m = X.shape
    A = X[chosen]
    s = A.shape[0]
    d = s + 1
    out = np.empty(candidates.size, dtype=np.float64)
    step = max(1, _BATCH_ELEMENTS // (min(d, m) ** 2))
    if d <= m:
        gram = A @ A.T
    else:
        cov = A.T @ A
    for start in range(0, candidates.size, step):
        Xc = X[candidates[start:start + step]]
        if d <= m:  # Gram matrices [[K_S, X_S x], [xᵀ X_S, xᵀx]]
            batch = np.empty((Xc.shape[0], d, d))
            batch[:, :s, :s] = gram
            cross = Xc @ A.T
            batch[:, s, :s] = cross
            batch[:, :s, s] = cross
            batch[:, s, s] = np.einsum("ij,ij->i", Xc, Xc)
        else:  # C_S + x xᵀ
            batch = cov[None] + Xc[:, :, None] * Xc[:, None, :]
        eig = _snap(np.linalg.eigvalsh(batch), batch.shape[-1])
        sums = np.sum(obj.phi(eig, np), axis=1)
        traces = eig.sum(axis=1)
        out[start:start + Xc.shape[0]] = [float(obj.combine(float(a), d, float(t), n)) for a, t in zip(sums, traces)]
    return out


def _quota_table(labels, quotas, k: int) -> tuple[np.ndarray | None, dict | None]:
    if quotas is None:
        return (None if labels is None else np.asarray(labels)), None
    if labels is None:
        raise ValueError("quotas= needs labels= (the class of every row).")
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if isinstance(quotas, str):
        if quotas != "balanced":
            raise ValueError(f"quotas={quotas!r} is unknown; pass 'balanced' or a dict class → most picks.")
        q = math.ceil(k / classes.size)
        return labels, {c.item(): q for c in classes}
    return labels, {c.item(): int(quotas.get(c.item(), 0)) for c in classes}


EVALUATIONS = ("state", "recompute")


class _Recompute:
    """The reference evaluation: ``f(S ∪ {v})`` by one ``eigvalsh`` per candidate (spectral objectives), the
    objective's own state otherwise."""

    def __init__(self, obj, Xn: np.ndarray, labels, chosen: np.ndarray) -> None:
        self.obj, self.Xn, self.chosen = obj, Xn, chosen
        self.spectral = obj.properties.spectral
        if not self.spectral:
            self.state = obj.make_state(Xn, np, labels=labels)
            if chosen.size:
                self.state.start_from(chosen)

    def values(self, cands: np.ndarray) -> np.ndarray:
        if self.spectral:
            return spectral_values(self.obj, self.Xn, self.chosen, cands)
        return self.state.gains(cands)

    def add(self, pick: int) -> None:
        self.chosen = np.append(self.chosen, pick)
        if not self.spectral:
            self.state.add(pick)


class _LeastFirst(_Recompute):
    """Facility location's evaluation for a minimiser: exact gains only for the candidates that can be the
    step's minimum or tie with it.

    Why: with few rows settled (a minimiser covers little of the pool, and pixel similarities are all high) an
    exact gain is a GEMM row against nearly every row — 64 of them a step were ≈ 0.2 s at 60,000 × 784. The
    state's lower bounds (:meth:`worth.facility.objective.FacilityState.gain_lower_bounds`, ``O(K)`` a
    candidate) are ≈ 0 for a near-duplicate of a pick, the kind a minimiser takes, and large elsewhere. The
    candidates are evaluated in increasing order of bound, in batches of 8, 16, 32, …, until every candidate
    left has ``lb − slack`` above the smallest exact gain plus the tie tolerance (with margin): such a
    candidate's exact gain is above it too, so it is neither the minimum nor a tie, and its value is reported
    as ``inf``. The evaluated gains are the state's own (:meth:`gains`), so the picks are the full
    evaluation's (``evaluation="recompute"``, which the tests compare with).
    """

    def __init__(self, obj, Xn: np.ndarray, labels, chosen: np.ndarray) -> None:
        super().__init__(obj, Xn, labels, chosen)
        self.screened = self.solved = self.batches = 0  # candidates seen, evaluated, gain calls (diagnostics)

    def values(self, cands: np.ndarray) -> np.ndarray:
        bounds = self.state.gain_lower_bounds(cands)
        if bounds is None:  # gains are look-ups (or no lists): nothing to save
            return self.state.gains(cands)
        lb, slack = bounds
        order = np.argsort(lb, kind="stable")
        out = np.full(cands.size, np.inf)
        best = np.inf
        done, batch = 0, _LEAST_BATCH
        while done < cands.size:
            size = batch
            if np.isfinite(best):
                bound = best + 1.5e-9 * max(1.0, abs(best)) + slack
                size = min(batch, int(np.count_nonzero(lb[order[done:]] <= bound)))
                if not size:  # lb is sorted: every candidate left is above the bound
                    break
            # Whole groups of rows: the GEMM then sums every gain in the order of the full evaluation's.
            size = min(cands.size - done, -(-size // _LEAST_ROWS) * _LEAST_ROWS)
            take = order[done:done + size]
            out[take] = self.state.gains(cands[take])
            self.batches += 1
            best = min(best, float(out[take].min()))
            done += take.size
            batch *= 2
        self.screened += cands.size
        self.solved += done
        return out


_LEAST_BATCH = 8  # first batch of exact gains: a few GEMM rows cost about one read of the unsettled rows
# Exact gains are asked for in multiples of this many candidates. Why: a GEMM of a few rows against the
# unsettled rows (split over the engine's threads) leaves an odd row to OpenBLAS's edge kernel or to a GEMV,
# which sum in another order (≈ 2e-16 relative, measured); in groups of 8 every gain is the very number the
# full evaluation's batch of 64 gives, so even a tie decided at the tolerance's edge is decided alike.
_LEAST_ROWS = 8


class _Incremental:
    """The fast evaluation: a spectral objective's greedy state (:class:`worth.spectral.state.SpectralState`,
    eigenpairs kept by rank-one updates) gives ``f(S ∪ {v})`` for a batch of candidates in ``O(c·m·r)`` plus
    the gain method's work, and costs one ``O(m·r²)`` update per pick, instead of a batch of ``eigvalsh``.

    Values are exact to rounding: ``logdet`` (the determinant lemma) and ``hybrid`` at ``α = 1`` by their closed
    form, the others by the
    secular roots — evaluated only for the candidates that can be the step's minimum or tie with it. Where the
    quadrature rule represents the objective it screens the batch first (``O(r·Q)`` a candidate against
    ``O(r²)`` for the roots): a candidate whose rule value, less :data:`~worth.spectral.methods.SCREEN_MARGIN` times the rule's error
    bound, lies above the smallest upper bound (plus the tie tolerance) can be neither, and is not solved.
    """

    def __init__(self, obj, Xn: np.ndarray, chosen: np.ndarray) -> None:
        from ..objectives import SpectralObjective
        from ..spectral.state import SpectralState

        declared = obj.gain_methods()
        method = "closed-form" if "closed-form" in declared else "quadrature" if "quadrature" in declared \
            else "secular"
        self.obj = obj
        self.state = SpectralState(Xn, obj, method, np, pool=Xn.shape[0])
        self.screen = method == "quadrature"
        if self.screen:
            self.state.gain = _Screen(self.state)
        if chosen.size:
            self.state.start_from(chosen)
            if self.screen:
                self.state.gain.update_rule()
        self.plain = type(obj).combine is SpectralObjective.combine  # the value is the statistic Σ φ(λ)
        self.screened = self.solved = 0  # candidates seen by the rule, and solved exactly (diagnostics)

    def _values(self, delta: np.ndarray, cands: np.ndarray) -> np.ndarray:
        st = self.state
        stat = st.stat + delta
        if self.plain:
            return stat
        return np.asarray(self.obj.combine(stat, st.size + 1, st.trace + st.norms2[cands], st.pool), dtype=np.float64)

    def values(self, cands: np.ndarray) -> np.ndarray:
        st = self.state
        gain = st.gain
        bounds = gain.delta_bounds(cands) if self.screen else None
        if bounds is None:
            return self._values(st.deltas(cands), cands)
        a, b = self._values(bounds[0], cands), self._values(bounds[1], cands)
        lower, upper = np.minimum(a, b), np.maximum(a, b)
        top = float(upper.min())
        bound = top + 1e-9 * max(1.0, abs(top), abs(float(lower.min()))) * 1.5
        need = np.flatnonzero(~(lower > bound))  # NaN-safe: a candidate the rule cannot place is solved
        out = np.full(cands.size, np.inf)
        exact = np.asarray(gain.roots.delta(cands[need]), dtype=np.float64)
        out[need] = self._values(exact, cands[need])
        self.screened += cands.size
        self.solved += need.size
        return out

    def add(self, pick: int) -> None:
        self.state.add(pick)


def _screen_class():
    from ..spectral.methods import Quadrature

    class Screen(Quadrature):
        """The projected quadrature whenever a rule is fitted, whatever its error: a screen states its own bound
        (the rule's error), so it needs no target accuracy; the roots decide."""

        screens_always = True

        @property
        def use_rule(self) -> bool:
            return self.state.size > 0 and self.rule is not None

    return Screen


def _Screen(state):
    global _SCREEN_CLASS
    if _SCREEN_CLASS is None:
        _SCREEN_CLASS = _screen_class()
    return _SCREEN_CLASS(state)


_SCREEN_CLASS = None


def greedy_minimise(
    X,
    k: int,
    objective: str = "vendi",
    *,
    normalize: bool = True,
    labels: Any = None,
    quotas: dict | str | None = None,
    init: Any = None,
    sample: int | None = None,
    seed: int = 0,
    evaluation: str = "state",
    **params: Any,
) -> np.ndarray:
    """Greedily pick ``k`` rows of ``X`` that each add the *least* to ``objective``.

    Parameters
    ----------
    X : array (n, m)
    k : int
        Rows to pick (besides ``init``).
    objective, **params
        A registered objective and its parameters (checked by :func:`worth.get_objective`).
    normalize : bool
        L2-normalise rows first, as :func:`worth.select` and :func:`worth.score` do by default.
    labels, quotas
        Class of every row, and at most ``quotas[c]`` picks of class ``c`` (``"balanced"``:
        ``ceil(k / n_classes)`` per class, the rule of :func:`worth.select`).
    init : indices, optional
        Rows already chosen: the minimiser continues from them (a mixture keeps a maximiser's prefix and
        completes it with the least valuable additions). They are not returned.
    sample : int, optional
        Candidates evaluated per step (a seeded uniform sample of the allowed ones); ``None``: all of them,
        the exact greedy minimiser.
    seed : int
        Seeds the tie-break order and the candidate samples.
    evaluation : {"state", "recompute"}
        How a candidate's value is found (the picks are the same, up to rounding far inside the tie rule):
        ``"state"`` (default) by the objective's incremental greedy state (facility location: exact gains
        only for the candidates its list lower bounds cannot rule out, :class:`_LeastFirst`), ``"recompute"``
        by one ``eigvalsh`` of every ``S ∪ {v}`` (spectral objectives; facility location: the state's gain of
        every candidate) — the reference the tests compare with.

    Returns
    -------
    ndarray of int64
        The ``k`` picks in order.
    """
    obj = worth.get_objective(objective, **params)
    if evaluation not in EVALUATIONS:
        raise ValueError(f"evaluation={evaluation!r} is unknown; pass one of {list(EVALUATIONS)}.")
    Xn = _unit_rows(X) if normalize else np.asarray(X, dtype=np.float64)
    n = Xn.shape[0]
    chosen = np.asarray([] if init is None else init, dtype=np.int64).ravel()
    if chosen.size and (chosen.min() < 0 or chosen.max() >= n or np.unique(chosen).size != chosen.size):
        raise ValueError(f"init= must hold distinct row positions in [0, {n}); got {chosen.tolist()[:10]}.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n - chosen.size:
        raise ValueError(f"k={k!r} must be an integer in [1, {n - chosen.size}] (rows not already in init=).")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 1):
        raise ValueError(f"sample={sample!r} must be None (every candidate) or a positive integer, e.g. 64.")
    labels, quota = _quota_table(labels, quotas, k)
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must hold one class per row of X ({n}); got shape {labels.shape}.")
    if quota is not None and sum(max(0, v) for v in quota.values()) < k:
        raise ValueError(f"quotas allow {sum(max(0, v) for v in quota.values())} picks but k={k}; raise the "
                         "quotas or lower k.")
    run = _MinRun(obj, Xn, labels, quota, chosen, sample, seed, evaluation)
    with _pick_threads(evaluation, obj):
        picks = [run.step() for _ in range(k)]
    return np.asarray(picks, dtype=np.int64)


class _MinRun:
    """A greedy minimiser between two picks: its draws, tie-break order, feasible rows, quotas and evaluator.
    :meth:`step` makes one pick; :meth:`fork` continues from here under quotas (see
    :func:`minimiser_family`)."""

    def __init__(self, obj, Xn, labels, quota: dict | None, chosen: np.ndarray, sample, seed, evaluation) -> None:
        n = Xn.shape[0]
        self.labels, self.sample = labels, sample
        self.rng = np.random.default_rng(seed)
        self.rank = self.rng.permutation(n)  # tie-break order
        self.available = np.ones(n, dtype=bool)
        self.available[chosen] = False
        self._set_quota(quota)
        if evaluation == "state" and obj.name == "facility-location":
            self.evaluator = _LeastFirst(obj, Xn, labels, chosen)
        elif evaluation == "recompute" or not obj.properties.spectral:
            self.evaluator = _Recompute(obj, Xn, labels, chosen)
        else:
            self.evaluator = _Incremental(obj, Xn, chosen)

    def _set_quota(self, quota: dict | None) -> None:
        self.left = self.is_open = self.codes = self.where = None
        if quota is not None:
            self.left = dict(quota)
            classes, codes = np.unique(self.labels, return_inverse=True)
            keys = [c.item() for c in classes]
            self.codes = codes.reshape(-1)
            self.is_open = np.array([self.left[c] > 0 for c in keys])
            self.where = {c: i for i, c in enumerate(keys)}

    def step(self) -> int:
        available, is_open = self.available, self.is_open
        cands = np.flatnonzero(available if is_open is None else available & is_open[self.codes])
        if not cands.size:
            raise ValueError("no candidate is left under the quotas; raise the quotas or lower k.")
        if self.sample is not None and cands.size > self.sample:
            cands = np.sort(self.rng.choice(cands, size=self.sample, replace=False))
        values = self.evaluator.values(cands)
        low = values.min()
        ties = cands[values <= low + 1e-9 * max(1.0, abs(low))]
        pick = int(ties[np.argmin(self.rank[ties])])
        available[pick] = False
        if self.left is not None:
            c = self.labels[pick].item()
            self.left[c] -= 1
            is_open[self.where[c]] = self.left[c] > 0
        self.evaluator.add(pick)
        return pick

    def fork(self, quota: dict) -> "_MinRun":
        """This run continued under ``quota`` (class → picks left), from a copy of its state and draws."""
        from .branches import fork_model

        new = object.__new__(_MinRun)
        new.labels, new.sample, new.rank = self.labels, self.sample, self.rank
        new.rng = copy.deepcopy(self.rng)
        new.available = self.available.copy()
        new._set_quota(quota)
        new.evaluator = fork_model(self.evaluator)
        return new


def minimiser_family(X, labels, objective: str = "vendi", params: dict | None = None, *, seed: int = 0,
                     sample: int | None = None, unconstrained: int | None = None, balanced=(),
                     evaluation: str = "state") -> dict:
    """The greedy minimisers of one objective, seed and sample — unconstrained (``unconstrained`` picks,
    ``None``: not asked) and class-balanced at each k of ``balanced`` — in one branching run, each equal to
    its own :func:`greedy_minimise` call.

    A balanced run draws from, and picks among, the same candidates as the unconstrained run until a class
    reaches its quota ``ceil(k/C)``: one trunk runs unconstrained, and each balanced run leaves it there from
    a copy of its state and of its generator (see :mod:`worth.appraisal.branches` for the maximisers).

    Returns ``{None: picks}`` and ``{k: picks}`` (int64 arrays in pick order).
    """
    obj = worth.get_objective(objective, **(params or {}))
    Xn = _unit_rows(X)
    labels = np.asarray(labels)
    classes, group = np.unique(labels, return_inverse=True)
    group = group.reshape(-1)
    keys = [c.item() for c in classes]
    ks = sorted({int(k) for k in balanced})
    quota = {k: math.ceil(k / classes.size) for k in ks}
    out: dict = {}
    counts = np.zeros(classes.size, dtype=np.int64)
    with _pick_threads(evaluation, obj):
        trunk = _MinRun(obj, Xn, labels, None, np.zeros(0, dtype=np.int64), sample, seed, evaluation)
        picks: list[int] = []
        pending = list(ks)
        while pending or (unconstrained is not None and len(picks) < unconstrained):
            i = trunk.step()
            picks.append(i)
            counts[group[i]] += 1
            t = len(picks)
            for k in list(pending):
                if t == k and counts.max() <= quota[k]:
                    out[k] = np.asarray(picks, dtype=np.int64)
                    pending.remove(k)
                elif counts.max() >= quota[k]:
                    branch = trunk.fork({c: quota[k] - int(counts[j]) for j, c in enumerate(keys)})
                    out[k] = np.asarray(picks + [branch.step() for _ in range(k - t)], dtype=np.int64)
                    pending.remove(k)
        if unconstrained is not None:
            out[None] = np.asarray(picks[:unconstrained], dtype=np.int64)
    return out


def _pick_threads(evaluation: str, obj):
    """BLAS on one thread while a spectral state picks (numba's kernels and the row-split rotation use the
    cores, as in :func:`worth.select`); the reference and the other states keep BLAS as configured."""
    import contextlib

    from ..threads import pick_phase

    if evaluation == "state" and obj.properties.spectral:
        return pick_phase()
    return contextlib.nullcontext()
