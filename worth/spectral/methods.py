"""The gain methods: each computes the change of ``Σ φ(λ)`` for a batch of candidates from a state's spectrum.

:class:`~worth.spectral.state.SpectralState` keeps ``C_S``, its eigenpairs (merged into poles) and their update
after a pick; a :class:`GainMethod` turns that spectrum into gains and keeps whatever it needs of its own (the
quadrature rule, the Sherman–Morrison table). The state asks it for :meth:`GainMethod.delta` and tells it
about each pick (:meth:`GainMethod.before_add`, :meth:`GainMethod.after_add`); nothing else crosses. Which
methods serve an objective is declared on the objective
(:meth:`~worth.objectives.SpectralObjective.gain_methods`); :func:`resolve_method` is the one place where
``"auto"`` becomes a method. The math of every route: ``docs/gains.md``.

``"oracle"``
    ``eigvalsh(C_S + x xᵀ)`` for every candidate: O(m³) each. The slow reference, kept on purpose (its state
    keeps a fresh ``eigh`` after every pick, for the same reason).
``"secular"``
    Roots of the secular equation (:mod:`worth.spectral.secular`): O(m r) to project, O(r²) for the roots.
    Compiled (numba, with ``φ`` fused in where the objective declares a kernel family) on NumPy input, a CUDA
    kernel on CuPy (:mod:`worth.spectral.cuda`), the array-API implementation otherwise.
``"secular-portable"``
    The array-API implementation on any input (NumPy included): what runs on CuPy and torch.
``"closed-form"``
    ``logdet``: ``log(1 + Σ_j z_j²/(σ²+λ_j) + w₀/σ²)`` — the matrix determinant lemma, O(m r); ``hybrid`` at
    ``α = 1``: ``c·xᵀM²x/(1 + xᵀMx)`` with ``M = (cI + C)⁻¹`` (Sherman–Morrison on ``tr M``).
``"closed-form-table"``
    The same closed forms, their ``xᵀMx`` (and ``xᵀM²x``) kept for every row and updated after each pick
    (O(m) per candidate and step, exact recomputation every ``refresh`` steps, the step's contenders recomputed
    by projection): greedy's route for these objectives.
``"quadrature"``
    Shifted log-det quadrature (:mod:`worth.spectral.quadrature`): O(m r + r Q) per candidate, the
    zero-cluster root solved exactly; exact to ``rtol`` (a fitted rule whose error is estimated), falling back
    to the exact roots on a step where no rule reaches ``rtol``.
``"sherman-morrison"``
    Quadrature without projections: ``A[i, q] = x_iᵀ(C + s_q I)⁻¹x_i`` kept for every candidate and updated
    after each pick by the Sherman–Morrison formula (O(m Q) per candidate and step). Used once ``C`` has full
    rank (before that the zero-cluster root needs the projection, so it runs as ``"quadrature"``); float64
    only; ``A`` is recomputed exactly every ``refresh`` steps and the drift recorded.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np

from .._array import is_cupy, is_numpy, to_numpy
from ..objectives import SpectralObjective, snap_eigenvalues
from .eigupdate import zero_weight_floor
from .quadrature import covers_zero, fit_rule, target_error
from .table import update_table
from .secular import secular_moved_sum, secular_roots_compiled, secular_roots_portable, zero_cluster_root

_EPS = float(np.finfo(np.float64).eps)


class GainMethod(Protocol):
    """What :class:`~worth.spectral.state.SpectralState` needs from a gain method.

    A method is built once per state (``METHODS[name](state)``, the state being a
    :class:`~worth.spectral.state.SpectralState`, which imports this module) and reads the state's spectrum
    (``lam``, ``U``, ``poles``, ``group``, ``stat``) and its weights whenever it is asked.
    """

    name: ClassVar[str]
    eig_update: ClassVar[bool]
    """Whether the state may update its eigenpairs by the rank-one merge (``False``: a fresh ``eigh``)."""

    batched: ClassVar[bool]
    """Whether the state asks for gains in batches of its ``batch_size`` (``False``: all at once)."""

    def delta(self, idx: np.ndarray):
        """Change of ``Σ φ(λ)`` for each of the rows ``idx`` (host ints), in the state's namespace."""

    def before_add(self, index: int, x) -> None:
        """Row ``index`` (``x``) is about to be added; the spectrum is still that of the old set."""

    def kept_statistic(self) -> float | None:
        """The statistic after the pick, where the method kept the state current itself (then the state skips
        its eigen-update); ``None``: the state updates its eigenpairs."""

    def after_add(self) -> None:
        """The row was added and the spectrum updated."""

    def reset(self) -> None:
        """The state was set to another set at once: drop what was kept for the old one."""

    @classmethod
    def refusal(cls, objective: SpectralObjective) -> str:
        """The error message when this method does not serve ``objective``: why, and what to pass instead."""


class _Method:
    """The do-nothing parts of :class:`GainMethod`; concrete methods define ``delta``."""

    name: ClassVar[str] = ""
    eig_update: ClassVar[bool] = True
    batched: ClassVar[bool] = True  # a call's temporaries grow with its candidates' rows (B × m)

    def __init__(self, state) -> None:
        self.state = state

    def before_add(self, index: int, x) -> None:
        pass

    def kept_statistic(self) -> float | None:
        """The statistic ``Σ φ(λ)`` after the pick :meth:`before_add` was just told of, where the method keeps
        what its gains need by its own means (:class:`ClosedFormTable`'s inverse): the state then skips its
        eigen-update and recomputes the spectrum only when it is next read. ``None``: the state updates it."""
        return None

    def after_add(self) -> None:
        pass

    def reset(self) -> None:
        """The state was set to another set at once (:meth:`~worth.spectral.state.SpectralState.start_from`):
        drop what was kept for the old one."""

    @classmethod
    def refusal(cls, objective: SpectralObjective) -> str:
        return (f"method={cls.name!r} does not serve objective {objective.name!r}; pass one of "
                f"{list(objective.gain_methods())} or method='auto'.")


class Oracle(_Method):
    """``eigvalsh(C + x xᵀ)`` per candidate."""

    name = "oracle"
    eig_update = False  # the reference keeps eigh after every pick too

    def delta(self, idx):
        st = self.state
        xp = st.xp
        rows, _ = st._rows(idx)
        Cs = st.C[None, :, :] + rows[:, :, None] * rows[:, None, :]
        mu = snap_eigenvalues(xp.linalg.eigvalsh(Cs), st.m, xp)
        return xp.sum(st.objective.phi(mu, xp), axis=1) - st.stat


class Secular(_Method):
    """Roots of the secular equation: compiled on NumPy, CUDA on CuPy, array-API elsewhere."""

    name = "secular"

    def __init__(self, state) -> None:
        super().__init__(state)
        self.compiled = is_numpy(state.xp)
        self.cuda = is_cupy(state.xp)

    def delta(self, idx):
        st = self.state
        xp, obj = st.xp, st.objective
        rows, norms = st._rows(idx)
        w0, wl = st._weights(rows, norms)
        W = xp.concat([xp.reshape(w0, (-1, 1)), wl], axis=1)
        family = obj.kernel_family() if self.compiled else None
        if family is not None:
            return secular_moved_sum(st.poles_np, W, family)
        if self.compiled:
            origin, tau = secular_roots_compiled(st.poles_np, W)
            origin, tau = np.asarray(origin), np.asarray(tau)
        elif self.cuda:
            from .cuda import secular_roots_cupy

            origin, tau = secular_roots_cupy(st.poles, W)
        else:
            origin, tau = secular_roots_portable(st.poles, W, xp)
        d = xp.reshape(st.poles, (1, -1))
        moved = obj.dphi(origin, tau, xp) + (obj.phi(origin, xp) - obj.phi(d + xp.zeros_like(origin), xp))
        return xp.sum(moved, axis=1)


class SecularPortable(Secular):
    """The array-API roots on any input."""

    name = "secular-portable"

    def __init__(self, state) -> None:
        super().__init__(state)
        self.compiled = self.cuda = False


class ClosedForm(_Method):
    """The objective's closed form (:meth:`~worth.objectives.SpectralObjective.resolvent`) from the weights:
    ``a = w₀/c + Σ_j w_j/(c + λ_j)`` and ``b = w₀/c² + Σ_j w_j/(c + λ_j)²`` (``logdet``: the determinant lemma;
    ``hybrid`` at ``α = 1``), O(m r) a candidate for the projection."""

    name = "closed-form"

    def delta(self, idx):
        st = self.state
        xp = st.xp
        rows, norms = st._rows(idx)
        w0, wl = st._weights(rows, norms)
        a, b = self.terms(w0, wl)
        return st.objective.resolvent_gain(a, b, xp)

    def terms(self, w0, wl):
        """``(a, b)`` from the weights (``b`` is ``None`` where the objective's gain needs only ``a``)."""
        xp = self.state.xp
        c, squared = self.state.objective.resolvent()
        inv = 1.0 / (c + xp.reshape(self.state.poles[1:], (1, -1)))
        a = w0 / c + xp.sum(wl * inv, axis=1)
        b = w0 / (c * c) + xp.sum((wl * inv) * inv, axis=1) if squared else None
        return a, b

    @classmethod
    def refusal(cls, objective: SpectralObjective) -> str:
        return (f"method={cls.name!r} exists only for objective='logdet' and objective='hybrid' with alpha=1 "
                f"(got {objective.name!r} {objective.params}); pass method='secular' or method='auto'.")


class ClosedFormTable(ClosedForm):
    """The closed form's ``a_i = x_iᵀMx_i`` and ``b_i = x_iᵀM²x_i`` (``M = (cI + C)⁻¹``) kept for every row and
    updated after each pick by Sherman–Morrison — for greedy, which asks every candidate at every step.

    A pick ``v`` (``u = Mv``, ``d = 1 + vᵀu``) makes ``M' = M − uuᵀ/d``, so with ``p = Xu`` and ``q = XMu``:
    ``a' = a − p²/d`` and ``b' = b − 2pq/d + p²‖u‖²/d²`` — one n × m × 2 pass a pick (on NumPy one read of the
    rows, :func:`worth.spectral.table.update_table`), where the projection costs n × m × r and a quadrature
    table n × m × Q. ``M`` itself is kept (O(m²) a pick) and so is the statistic (the pick's own gain,
    ``c‖u‖²/d`` or ``log d``), so the state needs no eigen-update between two of the table's exact
    recomputations, every ``refresh`` picks (from a fresh ``eigh``; the largest relative change the table had
    drifted by then is ``info["table_drift"]``): the rotation of the eigenvectors, O(m·r²) a pick, was a third
    of the hybrid maximiser's time past full rank. The candidates whose table gain is within
    :data:`TABLE_BAND` of the step's best are recomputed from ``M`` (``xᵀMx``, ``‖Mx‖²``), so the optimiser
    compares exact gains where it decides.
    """

    name = "closed-form-table"
    batched = False  # a step's gains are two gathers of the table (its recomputation batches itself)

    def __init__(self, state) -> None:
        super().__init__(state)
        self.a = self.b = self.M = None
        self.since = 0
        self._stat = None
        state.info.update({"table_drift": 0.0, "table_refined": 0})

    def reset(self) -> None:
        self.a = self.b = self.M = None
        self.since = 0

    def delta(self, idx):
        st = self.state
        xp = st.xp
        if self.a is None or self.since >= st.refresh:
            self._exact()
        where = idx if is_numpy(xp) else xp.asarray(idx)
        a = self.a[where] if is_numpy(xp) else xp.take(self.a, where, axis=0)
        b = None if self.b is None else (self.b[where] if is_numpy(xp) else xp.take(self.b, where, axis=0))
        return st.objective.resolvent_gain(a, b, xp)

    def refine(self, candidates, deltas: np.ndarray) -> np.ndarray:
        """The step's contenders (table gain within :data:`TABLE_BAND` of the best) from ``M`` itself."""
        st = self.state
        if deltas.size == 0 or self.since == 0:  # a table just recomputed is the projection's numbers
            return deltas
        best = float(np.max(deltas))
        close = np.flatnonzero(deltas >= best - TABLE_BAND * max(abs(best), np.finfo(np.float64).tiny))
        out = deltas.copy()
        for start in range(0, close.size, st.batch_size):
            part = np.asarray(candidates)[close[start:start + st.batch_size]]
            out[close[start:start + st.batch_size]] = to_numpy(self._from_inverse(part))
        st.info["table_refined"] += int(close.size)
        return out

    def _from_inverse(self, idx):
        """Gains of the rows ``idx`` from the kept ``M``: ``a = xᵀMx``, ``b = ‖Mx‖²``."""
        st = self.state
        xp = st.xp
        rows, _ = st._rows(idx)
        Y = rows @ self.M
        a = xp.sum(Y * rows, axis=1)
        b = xp.sum(Y * Y, axis=1) if st.objective.resolvent()[1] else None
        return st.objective.resolvent_gain(a, b, xp)

    def _exact(self) -> None:
        """``a``, ``b`` of every row by projection on the current eigenbasis (fresh where the kept ``M`` stood in
        for it), ``M`` from it; the drift of the updated table."""
        st = self.state
        xp = st.xp
        step = st.batch_size * 8
        ends = [(start, min(start + step, st.n)) for start in range(0, st.n, step)]  # in bounds: array API
        parts = [self.terms(*st._weights(st.X[lo:hi, :], st.norms2[lo:hi])) for lo, hi in ends]
        a = xp.concat([pa for pa, _ in parts], axis=0)
        b = xp.concat([pb for _, pb in parts], axis=0) if st.objective.resolvent()[1] else None
        if self.a is not None and self.since:
            tiny = float(np.finfo(np.float64).tiny)
            drift = float(to_numpy(xp.max(xp.abs(self.a - a) / xp.maximum(xp.abs(a), tiny))))
            if b is not None:
                drift = max(drift, float(to_numpy(xp.max(xp.abs(self.b - b) / xp.maximum(xp.abs(b), tiny)))))
            st.info["table_drift"] = max(st.info["table_drift"], drift)
        c, _ = st.objective.resolvent()
        U, lam = st.U, st.lam  # M = U diag(1/(c+λ)) Uᵀ + (I − UUᵀ)/c
        self.M = (U * xp.reshape(1.0 / (c + lam) - 1.0 / c, (1, -1))) @ U.T + xp.eye(st.m, dtype=st.X.dtype) / c
        self.a, self.b, self.since = a, b, 0

    def before_add(self, index: int, x) -> None:
        self._stat = None
        if self.a is None:
            return  # the first query computes the table (and M) from the spectrum then
        st = self.state
        xp = st.xp
        c, squared = st.objective.resolvent()
        M = self.M
        u = M @ x  # M v
        a_v = xp.sum(x * u)
        d = 1.0 + a_v
        uu = xp.sum(u * u)
        # r = p/d first: p², pq and d each reach the square of the rows' magnitude (1e300 at 1e150)
        w = M @ u if squared else None  # M² v
        if is_numpy(xp) and st.X.flags.c_contiguous and self.a.flags.c_contiguous:
            update_table(st.X, u, w, float(d), float(uu), self.a, self.b)  # one pass over the rows, in place
        else:
            if squared:
                PQ = st.X @ xp.stack([u, w], axis=1)
                p, q = PQ[:, 0], PQ[:, 1]
                r = p / d
                self.b = self.b - 2.0 * q * r + (r * r) * uu
            else:
                p = st.X @ u
                r = p / d
            self.a = self.a - p * r
        self.M = M - xp.reshape(u, (-1, 1)) * xp.reshape(u / d, (1, -1))
        gain = st.objective.resolvent_gain(a_v, uu if squared else None, xp)
        self._stat = st.stat + float(to_numpy(gain))
        self.since += 1

    def kept_statistic(self) -> float | None:
        stat, self._stat = self._stat, None
        return stat


#: Relative band below the table's best gain whose candidates :meth:`ClosedFormTable.refine` recomputes exactly.
TABLE_BAND = 1e-6

# The quadrature screen (Quadrature.delta_bounds).
SCREEN_USELESS = 1e-3  # a rule this rough screens nothing out: solve every candidate
SCREEN_MARGIN = 100.0  # times the rule's fitted error bound: how far a rule value may be from the exact one
SCREEN_FLOOR = 1e-12  # and at least this, relative to the statistic (rounding of the rule's own sums)


class Quadrature(_Method):
    """Shifted log-det quadrature on projections, the exact roots on steps where no rule reaches ``rtol``.

    Attributes
    ----------
    rule : Rule or None
        The rule fitted to ``φ'`` on the interval the eigenvalues move in (refitted when they leave it).
    """

    name = "quadrature"

    def __init__(self, state) -> None:
        super().__init__(state)
        xp = state.xp
        self.compiled = is_numpy(xp)
        # The fallback: compiled roots on NumPy, the array-API roots elsewhere (CuPy included).
        self.roots = (Secular if self.compiled else SecularPortable)(state)
        self.rule = None
        self.R = None  # R[j, q] = 1/(λ_j + s_q)
        self.max_norm2 = float(to_numpy(xp.max(state.norms2))) if state.n else 0.0
        self.zero = covers_zero(state.objective)  # rules on [0, hi]: no root solved (quadrature.py)
        state.info.update({"refits": 0, "nodes": 0, "fit_error": 0.0, "error_bound": 0.0,
                           "fallback_steps": 0, "sm_steps": 0, "sm_drift": 0.0})

    @classmethod
    def refusal(cls, objective: SpectralObjective) -> str:
        return (f"method={cls.name!r} cannot represent objective {objective.name!r} with these parameters "
                f"({objective.params}); pass method='secular' (exact roots) or method='auto'.")

    @property
    def use_rule(self) -> bool:
        """Whether this step's gains come from the rule (else from the exact roots)."""
        st = self.state
        return st.size > 0 and self.rule is not None and self.rule.error <= target_error(self.rule, st.rtol)

    def delta(self, idx):
        if not self.use_rule:
            return self.roots.delta(idx)
        rows, norms = self.state._rows(idx)
        return self._projected(rows, norms)

    def before_add(self, index: int, x) -> None:
        if self.use_rule:
            self._record_bound(index)

    def after_add(self) -> None:
        self.update_rule()

    def update_rule(self) -> None:
        """Refit the rule when the spectrum (plus one more row) leaves its interval; keep ``R``."""
        st = self.state
        xp = st.xp
        positive = st.poles_np[1:]
        if positive.size == 0:
            return
        lo_need, hi_need = float(positive[0]), float(positive[-1]) + self.max_norm2
        rule = self.rule
        if rule is None or (lo_need < rule.lo and not rule.zero) or hi_need > rule.hi:
            rule = fit_rule(st.objective, lo_need / 4, hi_need * 4, st.rtol, zero=self.zero)
            if rule is not None and rule.zero and rule.error > target_error(rule, st.rtol):
                alt = fit_rule(st.objective, lo_need / 4, hi_need * 4, st.rtol)  # the interval's fit, roots at 0
                if alt.error <= target_error(alt, st.rtol):  # else the zero rule: bounded, its table stands
                    rule = alt
            self.rule = rule
            self._refitted()
            st.info["refits"] += 1
            st.info["nodes"] = int(rule.s.size)
            st.info["fit_error"] = max(st.info["fit_error"], rule.error)
        serves = self.use_rule or self.bounded
        if not serves:
            st.info["fallback_steps"] += 1
            if rule.error > SCREEN_USELESS:
                self.R = None  # no screen either (delta_bounds): the roots serve every candidate
                return
        lam = xp.reshape(st.lam, (-1, 1))
        s_q = xp.asarray(rule.s, dtype=st.X.dtype) if not is_numpy(xp) else rule.s
        self.s = s_q
        self.w = xp.asarray(rule.w, dtype=st.X.dtype) if not is_numpy(xp) else rule.w
        self.R = 1.0 / (lam + xp.reshape(s_q, (1, -1)))
        if serves:
            self._rule_ready()

    #: Whether :meth:`delta_bounds` screens on steps where the rule serves too (a screen's own ``use_rule``).
    screens_always: ClassVar[bool] = False

    def delta_bounds(self, idx):
        """Bounds ``(lo, hi)`` on the change of ``Σ φ(λ)`` of the rows ``idx``, from the fitted rule whatever
        its error (a screen: :data:`SCREEN_MARGIN` times its estimated error, at least :data:`SCREEN_FLOOR`
        of the statistic), on the steps where the rule does not serve the gains itself; ``None`` where it does,
        where no rule is fitted, or where it is too rough to screen anything out (:data:`SCREEN_USELESS`).
        Lazy greedy's fallback steps (:meth:`worth.optimizers.GainModel.gain_bounds`) and the greedy
        minimiser (:mod:`worth.appraisal.minimise`) solve the roots only where these leave a candidate in play."""
        st = self.state
        rule = self.rule
        if st.size == 0 or rule is None or self.R is None or rule.error > SCREEN_USELESS:
            return None
        if self.use_rule and not self.screens_always:
            return None  # the rule's own deltas are exact to rtol: no screen needed
        xp = st.xp
        rows, norms = st._rows(idx)
        est = self._projected(rows, norms)
        err = rule.error * (xp.abs(est) if rule.relative else rule.scale * norms)
        err = SCREEN_MARGIN * err + SCREEN_FLOOR * max(1.0, abs(st.stat))
        return est - err, est + err

    @property
    def bounded(self) -> bool:
        """Whether the rule, too coarse to serve gains itself, still bounds them for :meth:`refine`."""
        return False

    def _refitted(self) -> None:
        """A new rule was fitted (its nodes changed)."""

    def _rule_ready(self) -> None:
        """The rule serves this step and ``R`` is that of the new spectrum."""

    def _projected(self, rows, norms):
        """``c₀‖x‖² + Σ_q ω_q log(1 + xᵀ(C + s_q I)⁻¹x)``, plus the exact zero-cluster root's correction."""
        st = self.state
        xp = st.xp
        obj, rule = st.objective, self.rule
        if self.compiled and st.group is None:
            # NumPy: the same numbers as below, written in place into the weights the zero root needs.
            W = np.empty((rows.shape[0], st.U.shape[1] + 1))
            Z2 = W[:, 1:]
            np.square(rows @ st.U, out=Z2)
            w0 = norms - Z2.sum(axis=1)
            w0[w0 <= zero_weight_floor(st.m) * norms] = 0.0  # as the state's _zero_weight / _pole_weights
            a = Z2 @ self.R
            a += w0[:, None] / self.s[None, :]
            quad = rule.c0 * norms + np.log1p(a, out=a) @ self.w
            if not rule.zero and np.any(w0 > 0):
                Z2[Z2 <= zero_weight_floor(st.m) * _EPS * norms[:, None]] = 0.0
                W[:, 0] = w0
                mu0 = zero_cluster_root(st.poles_np, W, None)
                corr = np.where(mu0 > 0, obj.phi(mu0, np) - rule.phi_tilde(mu0), 0.0)
                quad = quad + corr
            return quad
        Z = rows @ st.U
        Z2 = Z * Z
        w0 = st._zero_weight(Z2, norms)
        a = Z2 @ self.R + xp.reshape(w0, (-1, 1)) / xp.reshape(self.s, (1, -1))
        quad = rule.c0 * norms + xp.log1p(a) @ self.w
        if not rule.zero and bool(xp.any(w0 > 0)):
            quad = quad + self._zero_root_correction(w0, Z2, norms)
        return quad

    def _zero_root_correction(self, w0, Z2, norms):
        """``φ(μ₀) − φ̃(μ₀)`` for the root that leaves the zero cluster (solved exactly), 0 where none does."""
        st = self.state
        xp, obj, rule = st.xp, st.objective, self.rule
        W = xp.concat([xp.reshape(w0, (-1, 1)), st._pole_weights(Z2, norms)], axis=1)
        mu0 = zero_cluster_root(st.poles_np if self.compiled else st.poles,
                                to_numpy(W) if self.compiled else W, None if self.compiled else xp)
        mu0_np = to_numpy(mu0)
        corr = to_numpy(obj.phi(xp.asarray(mu0_np) if not is_numpy(xp) else mu0_np, xp)) - rule.phi_tilde(mu0_np)
        corr = np.where(mu0_np > 0, corr, 0.0)
        return xp.asarray(corr, dtype=Z2.dtype) if not is_numpy(xp) else corr

    def _record_bound(self, index: int) -> None:
        """Error bound of the pick's change of ``Σ φ(λ)`` (max over picks) into ``info``.

        ``error_bound``: relative to that change (rules for ``φ' > 0``); ``error_bound_abs``: absolute, for
        ``t log t`` rules, whose change can cross zero.
        """
        st, rule = self.state, self.rule
        norm2 = float(st.norms2[index])
        if rule.relative:
            st.info["error_bound"] = max(st.info["error_bound"], rule.error)
        else:
            st.info["error_bound_abs"] = max(st.info.get("error_bound_abs", 0.0), rule.error * rule.scale * norm2)


#: The coarsest relative rule whose table still serves, bounded, in the greedy route (:meth:`ShermanMorrison.refine`).
BOUNDED_MAX = 1e-4


class ShermanMorrison(Quadrature):
    """Quadrature from a table ``A[i, q] = x_iᵀ(C + s_q I)⁻¹x_i`` of every row, updated after each pick.

    Attributes
    ----------
    table : array (n, Q) or None
        Kept once ``C`` has full rank; ``None`` before (then the projected quadrature serves) and after a refit.
    """

    name = "sherman-morrison"

    def __init__(self, state) -> None:
        super().__init__(state)
        self.table = None

    @property
    def bounded(self) -> bool:
        """A relative rule short of the target (large spectra: the hybrid's ``φ' ∝ t^(−α−1)`` over many
        decades) but within :data:`BOUNDED_MAX`: its table's gains carry the bound ``error·|Δ|``, and
        :meth:`refine` turns that into the exact argmax."""
        rule = self.rule
        return (self.state.size > 0 and rule is not None and rule.relative and not self.use_rule
                and rule.error <= BOUNDED_MAX)

    def refine(self, candidates, deltas: np.ndarray) -> np.ndarray:
        """The greedy step's ``deltas`` of every candidate with those that could reach the best (within the
        rule's bound, and the tie band) computed exactly by the roots: the optimiser then picks what the exact
        gains pick. A no-op when the rule serves (``use_rule``) or no table stands behind the deltas."""
        if self.table is None or self.use_rule or not self.bounded or deltas.size == 0:
            return deltas
        st = self.state
        bound = 2.0 * self.rule.error * np.abs(deltas)  # |Δ − Δ̃| ≤ e·|Δ| ≤ e·|Δ̃|/(1 − e)
        floor = float(np.max(deltas - bound))
        band = 1e-8 * max(abs(floor), abs(st.stat), np.finfo(np.float64).tiny)  # the optimiser's ties, 10× over
        close = np.flatnonzero(deltas + bound >= floor - band)
        out = deltas.copy()
        for start in range(0, close.size, st.batch_size):
            part = close[start:start + st.batch_size]
            out[part] = to_numpy(self.roots.delta(np.asarray(candidates)[part]))
        st.info["bounded_steps"] = st.info.get("bounded_steps", 0) + 1
        st.info["refined"] = st.info.get("refined", 0) + int(close.size)
        return out

    def delta(self, idx):
        if self.table is None or not (self.use_rule or self.bounded):
            return super().delta(idx)
        st = self.state
        xp = st.xp
        norms = st._norms(idx)  # the table holds the rows' part: gathering the rows (n·m a step) is not needed
        a = self.table[idx] if is_numpy(xp) else xp.take(self.table, xp.asarray(idx), axis=0)
        return self.rule.c0 * norms + xp.log1p(a) @ self.w

    def before_add(self, index: int, x) -> None:
        super().before_add(index, x)
        if self.table is not None:
            self.sherman_morrison(x)

    def _refitted(self) -> None:
        self.table = None

    def _rule_ready(self) -> None:
        st = self.state
        xp = st.xp
        # Full rank, or a rule that holds down to 0 (then the zero eigenspace's part ``w₀/s`` is in the table)
        if (st.U.shape[1] == st.m or self.rule.zero) and (self.table is None or st.size % st.refresh == 0):
            exact = self._exact_table()
            if self.table is not None:
                drift = float(to_numpy(xp.max(xp.abs(self.table - exact) / exact)))
                st.info["sm_drift"] = max(st.info["sm_drift"], drift)
            self.table = exact

    def _exact_table(self):
        """``A[i, q] = x_iᵀ(C + s_q I)⁻¹x_i = Σ_j z_ij²/(λ_j + s_q) + w₀ᵢ/s_q`` for all rows, by projection
        (the zero eigenspace's part ``w₀`` only while ``C`` lacks full rank)."""
        st = self.state
        xp = st.xp
        out = []
        step = st.batch_size * 8
        deficient = st.U.shape[1] < st.m
        for start in range(0, st.n, step):
            stop = min(start + step, st.n)
            Z = st.X[start:stop, :] @ st.U
            Z2 = Z * Z
            a = Z2 @ self.R
            if deficient:
                w0 = st._zero_weight(Z2, st.norms2[start:stop])
                a = a + xp.reshape(w0, (-1, 1)) / xp.reshape(self.s, (1, -1))
            out.append(a)
        return xp.concat(out, axis=0)

    def sherman_morrison(self, v) -> None:
        """Rank-one update of the table for ``C → C + v vᵀ``: ``(C + sI)⁻¹ = U D Uᵀ + (I − U Uᵀ)/s``."""
        st = self.state
        xp = st.xp
        y = st.U.T @ v
        P = st.U @ (xp.reshape(y, (-1, 1)) * self.R)  # (m, Q): (C + s_q I)⁻¹ v
        if st.U.shape[1] < st.m:  # the part of v outside range(C)
            P = P + xp.reshape(v - st.U @ y, (-1, 1)) / xp.reshape(self.s, (1, -1))
        denom = 1.0 + xp.sum(xp.reshape(v, (-1, 1)) * P, axis=0)
        B = st.X @ P
        self.table = self.table - (B * B) / xp.reshape(denom, (1, -1))
        st.info["sm_steps"] += 1


METHODS: dict[str, type[_Method]] = {
    cls.name: cls for cls in (Oracle, Secular, SecularPortable, ClosedForm, ClosedFormTable, Quadrature,
                              ShermanMorrison)
}
"""Every gain method by name (``"auto"`` is not one: :func:`resolve_method` turns it into one)."""


def check_method(method: str, objective: SpectralObjective) -> None:
    """Raise unless ``method`` is a gain method that serves ``objective`` (as the objective declares)."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method={method!r} is unknown; pass one of {['auto', *METHODS]}.")
    if method not in objective.gain_methods():
        raise ValueError(METHODS[method].refusal(objective))


def resolve_method(method: str, objective: SpectralObjective, xp, optimizer: str = "greedy") -> str:
    """Turn ``method`` (possibly ``"auto"``) into the concrete method used, validating it.

    ``auto``, from what the objective declares: its closed form where it has one (``logdet``); where the
    quadrature rule represents it, Sherman–Morrison for ``greedy`` (it queries every candidate at every step,
    so keeping the whole table pays) and the projected quadrature for ``lazy``/``stochastic`` (few queries per
    step); exact secular roots otherwise. Every method serves every namespace ``xp`` (NumPy, CuPy, torch,
    array-API), each with its own implementation there, so the choice does not depend on it today.
    """
    if method == "auto":
        declared = objective.gain_methods()
        if "closed-form" in declared:  # greedy asks every candidate every step: the kept table pays
            return "closed-form-table" if optimizer == "greedy" and "closed-form-table" in declared else "closed-form"
        if "sherman-morrison" not in declared:
            return "secular"
        return "sherman-morrison" if optimizer == "greedy" else "quadrature"
    check_method(method, objective)
    return method
