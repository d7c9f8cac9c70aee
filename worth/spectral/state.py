"""The greedy state of a spectral objective and its marginal gains, by several exact methods.

:class:`SpectralState` is one side of the seam between objectives and optimisers: an optimiser asks it for
the gains of a batch of candidates (:meth:`SpectralState.gains`) and tells it which one was chosen
(:meth:`SpectralState.add`). Nothing else crosses.

The state keeps ``C_S = Σ_{i∈S} x_i x_iᵀ`` and its eigenpairs for the non-zero part (``U_r``, ``λ``),
with equal eigenvalues merged into one pole. After a pick the eigenpairs are updated by the rank-one merge of
:mod:`worth.eigupdate` (NumPy input; a fresh ``eigh`` every ``eig_refresh`` updates, and always for the
oracle and other namespaces). Methods:

``"oracle"``
    ``eigvalsh(C_S + x xᵀ)`` for every candidate: O(m³) each. The slow reference, kept on purpose.
``"secular"``
    Roots of the secular equation (:mod:`worth.secular`): O(m r) to project, O(r²) for the roots.
    Compiled (numba) on NumPy input, a CUDA kernel on CuPy (:mod:`worth.gpu_kernels`), the array-API
    implementation otherwise.
``"secular-portable"``
    The array-API implementation on any input (NumPy included): what runs on CuPy and torch.
``"closed-form"``
    ``logdet`` only: ``log(1 + Σ_j z_j²/(σ²+λ_j) + w₀/σ²)`` — the matrix determinant lemma, O(m r).
``"quadrature"``
    Shifted log-det quadrature (:mod:`worth.quadrature`): O(m r + r Q) per candidate, the zero-cluster
    root solved exactly; exact to ``rtol`` (a fitted rule whose error is estimated), falling back to
    ``"secular"`` on a step where no rule reaches ``rtol``.
``"sherman-morrison"``
    Quadrature without projections: ``A[i, q] = x_iᵀ(C + s_q I)⁻¹x_i`` kept for every candidate and updated
    after each pick by the Sherman–Morrison formula (O(m Q) per candidate and step). Used once ``C`` has full
    rank (before that the zero-cluster root needs the projection, so it runs as ``"quadrature"``); float64
    only; ``A`` is recomputed exactly every ``refresh`` steps and the drift recorded.
``"auto"``
    The fastest exact method for the objective and the array type.
"""

from __future__ import annotations

import time

import numpy as np

from .._array import is_cupy, is_numpy, row_norms2, to_numpy
from ..optimizers import State
from .eigupdate import rank_one_update, zero_weight_floor
from ..objectives import Entropy, Hybrid, LogDet, Power, SpectralObjective, Vendi, VendiPool, snap_eigenvalues
from .quadrature import fit_rule, phi_prime, target_error
from .secular import (HYBRID, LOG1P, POWER, XLOGX, secular_moved_sum, secular_roots_compiled,
                      secular_roots_portable, zero_cluster_root)

METHODS = ("auto", "oracle", "secular", "secular-portable", "closed-form", "quadrature", "sherman-morrison")
_EPS = float(np.finfo(np.float64).eps)


def kernel_family(objective: SpectralObjective):
    """``(kind, sign, a, c)`` of the fused compiled kernel for ``φ``, or ``None`` (then roots + NumPy ``φ``)."""
    p = objective.params
    if isinstance(objective, Vendi):
        return (XLOGX, 1.0, 0.0, 0.0) if p["q"] == 1.0 else (POWER, 1.0, p["q"], 0.0)
    if isinstance(objective, (Entropy, VendiPool)):
        return (XLOGX, -1.0, 0.0, 0.0)
    if isinstance(objective, LogDet):
        return (LOG1P, 1.0, p["sigma2"], 0.0)
    if isinstance(objective, Power):
        return (POWER, 1.0, p["alpha"], 0.0)
    if isinstance(objective, Hybrid):
        return (HYBRID, 1.0, p["alpha"], p["c"])
    return None


def resolve_method(method: str, objective: SpectralObjective, xp, optimizer: str = "greedy") -> str:
    """Turn ``method`` (possibly ``"auto"``) into the concrete method used, validating it.

    ``auto``: the closed form for ``logdet``; where the quadrature rule represents the objective,
    Sherman–Morrison for ``greedy`` (it queries every candidate at every step, so keeping the whole table
    pays) and the projected quadrature for ``lazy``/``stochastic`` (few queries per step); exact secular
    roots otherwise.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown; pass one of {list(METHODS)}.")
    if method == "closed-form" and not isinstance(objective, LogDet):
        raise ValueError(
            f"method='closed-form' exists only for objective='logdet' (got {objective.name!r}); "
            "pass method='secular' or method='auto'."
        )
    if method == "auto":
        if isinstance(objective, LogDet):
            return "closed-form"
        if phi_prime(objective) is None:
            return "secular"
        return "sherman-morrison" if optimizer == "greedy" else "quadrature"
    return method


class SpectralState(State):
    """Greedy state for a spectral objective over the rows of ``X``.

    Parameters
    ----------
    X : array, shape (n, m)
        Candidate rows (float64, already validated and normalised), in the caller's namespace.
    objective : SpectralObjective
    method : str
        A concrete method (see module docstring; resolve ``"auto"`` first).
    xp : namespace
    pool : int
        Pool size ``N`` (used by pool-normalised objectives).
    batch_size : int
        Candidates per gain batch (bounds the ``B×K`` and oracle ``B×m×m`` temporaries).
    rtol : float
        Accuracy of the quadrature routes.
    refresh : int
        Sherman–Morrison: exact table every ``refresh`` steps.
    eig_update : bool
        Update the eigenpairs by the rank-one merge of :mod:`worth.eigupdate` after each pick (NumPy input,
        every method but ``oracle``) instead of a fresh ``eigh``: O(m·K²) against ≈9m³.
    eig_refresh : int
        A fresh ``eigh`` after this many updates, which bounds their accumulated rounding (the drift
        ``max|UᵀU − I|`` measured then is reported as ``info["eig_orth_drift"]``).
    """

    def __init__(self, X, objective: SpectralObjective, method: str, xp, *, pool: int | None = None,
                 batch_size: int = 1024, rtol: float = 1e-8, refresh: int = 200, eig_update: bool = True,
                 eig_refresh: int = 32) -> None:
        self.X = X
        self.xp = xp
        self.objective = objective
        self.method = method
        self.n, self.m = X.shape
        self.pool = self.n if pool is None else pool
        self.batch_size = batch_size
        self.norms2 = row_norms2(X, xp)
        self.info: dict = {}
        self.C = xp.zeros((self.m, self.m), dtype=X.dtype)
        self.size = 0
        self.trace = 0.0
        self.stat = 0.0
        self._compiled = method in ("secular", "quadrature", "sherman-morrison") and is_numpy(xp)
        self.rtol = rtol
        self.refresh = refresh
        self.rule = None
        self._R = None
        self._A = None  # Sherman–Morrison table, (n, Q)
        self._max_norm2 = float(to_numpy(xp.max(self.norms2))) if self.n else 0.0
        self.info.update({"refits": 0, "nodes": 0, "fit_error": 0.0, "error_bound": 0.0,
                          "fallback_steps": 0, "sm_steps": 0, "sm_drift": 0.0})
        # Rank-one eigen-updates on the compiled (NumPy) path; the oracle keeps eigh, as a reference.
        self._eig_update = eig_update and is_numpy(xp) and method != "oracle"
        self.eig_refresh = int(eig_refresh)
        self._updates = 0
        if method in ("quadrature", "sherman-morrison") and phi_prime(objective) is None:
            raise ValueError(
                f"method={method!r} cannot represent objective {objective.name!r} with these parameters "
                f"({objective.params}); pass method='secular' (exact roots) or method='auto'."
            )
        self._eigen()

    # -- state -------------------------------------------------------------------------------------
    def start_from(self, indices) -> None:
        """Set the state to the set ``indices`` at once (one ``C`` product and one eigendecomposition)."""
        xp = self.xp
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.X[idx] if is_numpy(xp) else xp.take(self.X, xp.asarray(idx), axis=0)
        self.C = rows.T @ rows
        self.size = int(idx.size)
        self.trace = float(np.sum(to_numpy(self.norms2)[idx]))
        self._eigen()

    def _eigen(self) -> None:
        """Eigenpairs of ``C`` for the non-zero part, equal eigenvalues merged into single poles."""
        xp = self.xp
        t0 = time.perf_counter()
        if self.size == 0:
            lam = xp.zeros((0,), dtype=self.X.dtype)
            U = xp.zeros((self.m, 0), dtype=self.X.dtype)
        else:
            evals, evecs = xp.linalg.eigh(self.C)
            evals = snap_eigenvalues(evals, self.m, xp)
            keep = to_numpy(evals) > 0
            pos = xp.asarray(np.nonzero(keep)[0]) if not is_numpy(xp) else np.nonzero(keep)[0]
            lam = xp.take(evals, pos, axis=0)
            U = xp.take(evecs, pos, axis=1)
        self.info["eigh_seconds"] = self.info.get("eigh_seconds", 0.0) + time.perf_counter() - t0
        self._updates = 0
        self._set_spectrum(lam, U)

    def _update_eigen(self, x) -> None:
        """Eigenpairs after adding row ``x``: the rank-one update (:mod:`worth.eigupdate`), or ``eigh``.

        ``eigh`` every ``eig_refresh`` updates bounds the rounding the updates accumulate; before it, the
        drift ``max|UᵀU − I|`` of the updated basis is measured into ``info["eig_orth_drift"]``.
        """
        if not self._eig_update or self.size <= 1 or self._updates >= self.eig_refresh:
            if self._eig_update and self._updates:
                U = self.U
                drift = float(np.max(np.abs(U.T @ U - np.eye(U.shape[1])))) if U.shape[1] else 0.0
                self.info["eig_orth_drift"] = max(self.info.get("eig_orth_drift", 0.0), drift)
            self._eigen()
            return
        t0 = time.perf_counter()
        lam, U = rank_one_update(self.lam, self.U, x)
        self.info["eig_update_seconds"] = self.info.get("eig_update_seconds", 0.0) + time.perf_counter() - t0
        self._updates += 1
        self._set_spectrum(lam, U)

    def _set_spectrum(self, lam, U) -> None:
        """Adopt the eigenpairs ``(lam, U)`` of ``C``: the statistic, the poles and their grouping."""
        xp = self.xp
        self.lam, self.U = lam, U
        # The value's eigenvalue floor is score()'s (snap_eigenvalues with m): updated eigenvalues below it
        # stay poles of the gains, but add no mass to the value (see worth.regime.floor_bound).
        self.stat = float(xp.sum(self.objective.phi(snap_eigenvalues(lam, self.m, xp), xp))) if self.size else 0.0
        # Merge (numerically) equal eigenvalues: one pole per cluster, weights summed by a 0/1 matrix.
        lam_np = to_numpy(lam)
        tol = 64 * self.m * _EPS * (lam_np.max() if lam_np.size else 1.0)
        starts = np.flatnonzero(np.diff(lam_np, prepend=-np.inf) > tol) if lam_np.size else np.zeros(0, int)
        group = np.zeros((lam_np.size, starts.size))
        for g, (a, b) in enumerate(zip(starts, list(starts[1:]) + [lam_np.size])):
            group[a:b, g] = 1.0
        poles = np.concatenate([[0.0], lam_np[starts] if lam_np.size else []])
        self.poles_np = poles
        self.poles = xp.asarray(poles, dtype=self.X.dtype) if not is_numpy(xp) else poles
        if starts.size == lam_np.size:  # no two eigenvalues merged: the grouping is the identity
            self.group = None
        else:
            self.group = xp.asarray(group, dtype=self.X.dtype) if not is_numpy(xp) else group

    @property
    def value(self) -> float:
        """Objective value of the current set."""
        return float(self.objective.combine(self.stat, self.size, self.trace, self.pool))

    def add(self, index: int) -> None:
        """Commit candidate ``index`` to the set (update ``C`` and its eigenpairs)."""
        xp = self.xp
        x = self.X[index, :]
        if self.method in ("quadrature", "sherman-morrison") and self._use_rule:
            self._record_bound(index)
        if self._A is not None:
            self._sherman_morrison(x)
        self.C = self.C + x[:, None] * x[None, :]
        self.size += 1
        self.trace += float(self.norms2[index])
        self._update_eigen(x)
        if self.method in ("quadrature", "sherman-morrison"):
            self._update_rule()

    # -- gains -------------------------------------------------------------------------------------
    def gains(self, candidates: np.ndarray) -> np.ndarray:
        """Marginal gains ``f(S + x) − f(S)`` of the rows ``candidates`` (host int array) → host floats."""
        return self._gain_from_delta(self.deltas(candidates), candidates)

    def deltas(self, candidates: np.ndarray) -> np.ndarray:
        """Change of the statistic ``Σ φ(λ)`` for each of the rows ``candidates`` → host floats."""
        out = np.empty(len(candidates), dtype=np.float64)
        for start in range(0, len(candidates), self.batch_size):
            idx = candidates[start:start + self.batch_size]
            out[start:start + len(idx)] = to_numpy(self._delta_stat(idx))
        return out

    def _rows(self, idx):
        xp = self.xp
        if is_numpy(xp):
            return self.X[idx], self.norms2[idx]
        where = xp.asarray(idx)
        return xp.take(self.X, where, axis=0), xp.take(self.norms2, where, axis=0)

    def _gain_from_delta(self, delta: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Objective gain from the change of ``Σ φ(λ)``; exact subtraction-free for plain sums."""
        obj = self.objective
        if type(obj).combine is SpectralObjective.combine:
            return delta
        norms = to_numpy(self.norms2)[candidates]
        new = obj.combine(self.stat + delta, self.size + 1, self.trace + norms, self.pool)
        return np.asarray(new, dtype=np.float64) - self.value

    def _weights(self, rows, norms):
        """Per-pole weights ``w`` (B, K): ``w₀ = ‖x‖² − ‖z‖²`` on the zero pole, ``z²`` summed per cluster."""
        Z = rows @ self.U
        Z2 = Z * Z
        return self._zero_weight(Z2, norms), self._pole_weights(Z2, norms)

    def _zero_weight(self, Z2, norms):
        """``w₀ = ‖x‖² − ‖z‖²`` from the squared projections, ``0`` where it is rounding (``x`` in range(C))."""
        xp = self.xp
        w0 = norms - xp.sum(Z2, axis=1)
        return xp.where(w0 > zero_weight_floor(self.m) * norms, w0, xp.zeros_like(w0))

    def _pole_weights(self, Z2, norms):
        """``z²`` summed per pole (cluster of equal eigenvalues), ``0`` where it is rounding (deflated)."""
        xp = self.xp
        wl = Z2 if self.group is None else Z2 @ self.group
        floor = zero_weight_floor(self.m) * _EPS * xp.reshape(norms, (-1, 1))
        return xp.where(wl > floor, wl, xp.zeros_like(wl))

    def _delta_stat(self, idx):
        """Change of ``Σ φ(λ)`` for each candidate in ``idx``, by the configured method."""
        xp = self.xp
        obj = self.objective
        rows, norms = self._rows(idx)
        if self.method == "oracle":
            Cs = self.C[None, :, :] + rows[:, :, None] * rows[:, None, :]
            mu = snap_eigenvalues(xp.linalg.eigvalsh(Cs), self.m, xp)
            return xp.sum(obj.phi(mu, xp), axis=1) - self.stat
        if self.method in ("quadrature", "sherman-morrison") and self._use_rule:
            return self._delta_quadrature(idx, rows, norms)
        w0, wl = self._weights(rows, norms)
        if self.method == "closed-form":
            sigma2 = obj.params["sigma2"]
            lam = xp.reshape(self.poles[1:], (1, -1))
            return xp.log1p(w0 / sigma2 + xp.sum(wl / (sigma2 + lam), axis=1))
        W = xp.concat([xp.reshape(w0, (-1, 1)), wl], axis=1)
        family = kernel_family(obj) if self._compiled else None
        if family is not None:
            return secular_moved_sum(self.poles_np, W, family)
        if self._compiled:
            origin, tau = secular_roots_compiled(self.poles_np, W)
            origin, tau = np.asarray(origin), np.asarray(tau)
        elif self.method == "secular" and is_cupy(xp):
            from .cuda import secular_roots_cupy

            origin, tau = secular_roots_cupy(self.poles, W)
        else:
            origin, tau = secular_roots_portable(self.poles, W, xp)
        d = xp.reshape(self.poles, (1, -1))
        moved = obj.dphi(origin, tau, xp) + (obj.phi(origin, xp) - obj.phi(d + xp.zeros_like(origin), xp))
        return xp.sum(moved, axis=1)

    # -- quadrature and Sherman–Morrison -----------------------------------------------------------
    @property
    def _use_rule(self) -> bool:
        return self.size > 0 and self.rule is not None and self.rule.error <= target_error(self.rule, self.rtol)

    def _update_rule(self) -> None:
        """Refit the rule when the spectrum (plus one more row) leaves its interval; keep ``R`` and ``A``."""
        xp = self.xp
        positive = self.poles_np[1:]
        if positive.size == 0:
            return
        lo_need, hi_need = float(positive[0]), float(positive[-1]) + self._max_norm2
        rule = self.rule
        if rule is None or lo_need < rule.lo or hi_need > rule.hi:
            rule = fit_rule(self.objective, lo_need / 4, hi_need * 4, self.rtol)
            self.rule = rule
            self._A = None
            self.info["refits"] += 1
            self.info["nodes"] = int(rule.s.size)
            self.info["fit_error"] = max(self.info["fit_error"], rule.error)
        if not self._use_rule:
            self.info["fallback_steps"] += 1
            return
        lam = xp.reshape(self.lam, (-1, 1))
        s_q = xp.asarray(rule.s, dtype=self.X.dtype) if not is_numpy(xp) else rule.s
        self._s = s_q
        self._w = xp.asarray(rule.w, dtype=self.X.dtype) if not is_numpy(xp) else rule.w
        self._R = 1.0 / (lam + xp.reshape(s_q, (1, -1)))
        full_rank = self.U.shape[1] == self.m
        if self.method == "sherman-morrison" and full_rank:
            if self._A is None or self.size % self.refresh == 0:
                exact = self._exact_table()
                if self._A is not None:
                    drift = float(to_numpy(xp.max(xp.abs(self._A - exact) / exact)))
                    self.info["sm_drift"] = max(self.info["sm_drift"], drift)
                self._A = exact

    def _exact_table(self):
        """``A[i, q] = x_iᵀ(C + s_q I)⁻¹x_i`` for all rows, by projection (full rank: no zero part)."""
        xp = self.xp
        out = []
        step = self.batch_size * 8
        for start in range(0, self.n, step):
            Z = self.X[start:min(start + step, self.n), :] @ self.U
            out.append((Z * Z) @ self._R)
        return xp.concat(out, axis=0)

    def _sherman_morrison(self, v) -> None:
        """Rank-one update of ``A`` for ``C → C + v vᵀ`` (``C`` full rank, so ``(C + sI)⁻¹ = U D U ᵀ``)."""
        xp = self.xp
        y = self.U.T @ v
        P = self.U @ (xp.reshape(y, (-1, 1)) * self._R)  # (m, Q): (C + s_q I)⁻¹ v
        denom = 1.0 + xp.sum(xp.reshape(v, (-1, 1)) * P, axis=0)
        B = self.X @ P
        self._A = self._A - (B * B) / xp.reshape(denom, (1, -1))
        self.info["sm_steps"] += 1

    def _delta_quadrature(self, idx, rows, norms):
        """``c₀‖x‖² + Σ_q ω_q log(1 + xᵀ(C + s_q I)⁻¹x)``, plus the exact zero-cluster root's correction."""
        xp = self.xp
        obj, rule = self.objective, self.rule
        if self._A is not None:
            a = self._A[idx] if is_numpy(xp) else xp.take(self._A, xp.asarray(idx), axis=0)
            quad = rule.c0 * norms + xp.log1p(a) @ self._w
            w0 = None
        elif self._compiled and self.group is None:
            # NumPy: the same numbers as below, written in place into the weights the zero root needs.
            W = np.empty((rows.shape[0], self.U.shape[1] + 1))
            Z2 = W[:, 1:]
            np.square(rows @ self.U, out=Z2)
            w0 = norms - Z2.sum(axis=1)
            w0[w0 <= zero_weight_floor(self.m) * norms] = 0.0  # as _zero_weight / _pole_weights, in place
            a = Z2 @ self._R
            a += w0[:, None] / self._s[None, :]
            quad = rule.c0 * norms + np.log1p(a, out=a) @ self._w
            if np.any(w0 > 0):
                Z2[Z2 <= zero_weight_floor(self.m) * _EPS * norms[:, None]] = 0.0
                W[:, 0] = w0
                mu0 = zero_cluster_root(self.poles_np, W, None)
                corr = np.where(mu0 > 0, obj.phi(mu0, np) - rule.phi_tilde(mu0), 0.0)
                quad = quad + corr
            return quad
        else:
            Z = rows @ self.U
            Z2 = Z * Z
            w0 = self._zero_weight(Z2, norms)
            a = Z2 @ self._R + xp.reshape(w0, (-1, 1)) / xp.reshape(self._s, (1, -1))
            quad = rule.c0 * norms + xp.log1p(a) @ self._w
        if w0 is not None and bool(xp.any(w0 > 0)):
            W = xp.concat([xp.reshape(w0, (-1, 1)), self._pole_weights(Z2, norms)], axis=1)
            mu0 = zero_cluster_root(self.poles_np if self._compiled else self.poles,
                                    to_numpy(W) if self._compiled else W, None if self._compiled else xp)
            mu0_np = to_numpy(mu0)
            corr = to_numpy(obj.phi(xp.asarray(mu0_np) if not is_numpy(xp) else mu0_np, xp)) - rule.phi_tilde(mu0_np)
            corr = np.where(mu0_np > 0, corr, 0.0)
            quad = quad + (xp.asarray(corr, dtype=quad.dtype) if not is_numpy(xp) else corr)
        return quad

    def _record_bound(self, index: int) -> None:
        """Error bound of the pick's change of ``Σ φ(λ)`` (max over picks) into ``info``.

        ``error_bound``: relative to that change (rules for ``φ' > 0``); ``error_bound_abs``: absolute, for
        ``t log t`` rules, whose change can cross zero.
        """
        rule = self.rule
        norm2 = float(self.norms2[index])
        if rule.relative:
            self.info["error_bound"] = max(self.info["error_bound"], rule.error)
        else:
            self.info["error_bound_abs"] = max(self.info.get("error_bound_abs", 0.0), rule.error * rule.scale * norm2)
