"""The greedy state of a spectral objective: ``C_S``, its eigenpairs, and their update after each pick.

:class:`SpectralState` is one side of the seam between objectives and optimisers: an optimiser asks it for
the gains of a batch of candidates (:meth:`SpectralState.gains`) and tells it which one was chosen
(:meth:`SpectralState.add`). Nothing else crosses.

The state keeps ``C_S = Σ_{i∈S} x_i x_iᵀ`` and its eigenpairs for the non-zero part (``U_r``, ``λ``),
with equal eigenvalues merged into one pole, and the per-pole weights of a candidate (its squared
projections). After a pick the eigenpairs are updated by the rank-one merge of :mod:`worth.spectral.eigupdate`
(NumPy input; a fresh ``eigh`` every ``eig_refresh`` updates, and always for the oracle and other
namespaces). The gains themselves come from its gain method (:mod:`worth.spectral.methods`: oracle, secular
roots, closed form, quadrature, Sherman–Morrison), which reads the spectrum kept here.
"""

from __future__ import annotations

import time

import numpy as np

from .._array import is_numpy, row_norms2, to_numpy
from ..objectives import SpectralObjective, snap_eigenvalues
from ..optimizers import State
from .eigupdate import rank_one_update, zero_weight_floor
from .methods import METHODS, check_method

_EPS = float(np.finfo(np.float64).eps)

#: What :meth:`SpectralState._set_spectrum` sets: the eigenpairs of ``C`` and the poles made of them.
_SPECTRUM = ("lam", "U", "poles", "poles_np", "group")


class SpectralState(State):
    """Greedy state for a spectral objective over the rows of ``X``.

    Parameters
    ----------
    X : array, shape (n, m)
        Candidate rows (float64, already validated and normalised), in the caller's namespace.
    objective : SpectralObjective
    method : str
        A concrete gain method (a name in :data:`worth.spectral.methods.METHODS`; resolve ``"auto"`` first
        with :func:`worth.spectral.methods.resolve_method`).
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
        Update the eigenpairs by the rank-one merge of :mod:`worth.spectral.eigupdate` after each pick (NumPy input,
        every method but ``oracle``) instead of a fresh ``eigh``: O(m·K²) against ≈9m³.
    eig_refresh : int
        A fresh ``eigh`` after this many updates, which bounds their accumulated rounding (the drift
        ``max|UᵀU − I|`` measured then is reported as ``info["eig_orth_drift"]``). The drift grows slowly:
        measured from a full-rank state at m = 128 without any refresh, ``max|UᵀU − I|`` and the eigenvalue
        error (relative to ``λ_max``) stayed ≤ 1.5e-14 after 128 updates and ≤ 3.3e-14 after 1,024 (gaussian,
        near-degenerate and clustered rows), so 128 costs nothing in accuracy; at m = 512 the ``eigh`` (≈ 9m³)
        amortised over 32 updates cost ≈ 40 % of a pick's GEMM floor, over 128 about 10 %.
    """

    def __init__(self, X, objective: SpectralObjective, method: str, xp, *, pool: int | None = None,
                 batch_size: int = 1024, rtol: float = 1e-8, refresh: int = 200, eig_update: bool = True,
                 eig_refresh: int = 128) -> None:
        check_method(method, objective)
        self.X = X
        self.xp = xp
        self.objective = objective
        self.method = method
        self.n, self.m = X.shape
        self.pool = self.n if pool is None else pool
        self.batch_size = batch_size
        self.norms2 = row_norms2(X, xp)
        self.scale = objective.gain_scale(to_numpy(self.norms2), self.pool)  # the tie rule's floor
        self.info: dict = {}
        self._C = xp.zeros((self.m, self.m), dtype=X.dtype)
        self._pending: list[int] = []  # picks not yet added to C (NumPy: added by one GEMM when C is read)
        self._spare = None  # NumPy: the buffer the next update writes its eigenvectors into
        self.size = 0
        self.trace = 0.0
        self.stat = 0.0
        self.rtol = rtol
        self.refresh = refresh
        self.gain = METHODS[method](self)
        # Rank-one eigen-updates on the compiled (NumPy) path; the oracle keeps eigh, as a reference.
        self._eig_update = eig_update and is_numpy(xp) and self.gain.eig_update
        self.eig_refresh = int(eig_refresh)
        self._updates = 0
        self._eigen()

    def __getattr__(self, name):
        # Only reached for a missing attribute: the spectrum, dropped after a pick whose gain method kept the
        # state current by its own means (GainMethod.kept_statistic), is recomputed from C when first read.
        if name in _SPECTRUM and "_C" in self.__dict__:
            self._eigen()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- state -------------------------------------------------------------------------------------
    @property
    def C(self):
        """``C_S = Σ_{i∈S} x_i x_iᵀ``. On NumPy the rows picked since it was last read are added here, in one
        GEMM: only the refresh's ``eigh`` and the oracle read it, so a pick costs no m×m pass for it."""
        if self._pending:
            rows = self.X[np.asarray(self._pending, dtype=np.int64)]
            self._pending = []
            self._C += rows.T @ rows
        return self._C

    @C.setter
    def C(self, value) -> None:
        self._C = value
        self._pending = []

    def start_from(self, indices) -> None:
        """Set the state to the set ``indices`` at once (one ``C`` product and one eigendecomposition)."""
        xp = self.xp
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.X[idx] if is_numpy(xp) else xp.take(self.X, xp.asarray(idx), axis=0)
        self.C = rows.T @ rows
        self._pending = []
        self.size = int(idx.size)
        self.trace = float(np.sum(to_numpy(self.norms2)[idx]))
        self._eigen()
        self.gain.reset()

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
        """Eigenpairs after adding row ``x``: the rank-one update (:mod:`worth.spectral.eigupdate`), or ``eigh``.

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
        old = self.U
        lam, U = rank_one_update(self.lam, old, x, out=self._spare)
        self.info["eig_update_seconds"] = self.info.get("eig_update_seconds", 0.0) + time.perf_counter() - t0
        self._updates += 1
        self._spare = old if old.flags.owndata else None  # the old basis is the next update's output
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
        is_start = np.diff(lam_np, prepend=-np.inf) > tol
        starts = np.flatnonzero(is_start)
        poles = np.concatenate([[0.0], lam_np[starts]])
        self.poles_np = poles
        self.poles = xp.asarray(poles, dtype=self.X.dtype) if not is_numpy(xp) else poles
        if starts.size == lam_np.size:  # no two eigenvalues merged: the grouping is the identity
            self.group = None
        else:
            group = np.zeros((lam_np.size, starts.size))
            group[np.arange(lam_np.size), np.cumsum(is_start) - 1] = 1.0
            self.group = xp.asarray(group, dtype=self.X.dtype) if not is_numpy(xp) else group

    @property
    def value(self) -> float:
        """Objective value of the current set."""
        return float(self.objective.combine(self.stat, self.size, self.trace, self.pool))

    def add(self, index: int) -> None:
        """Commit candidate ``index`` to the set (update ``C`` and its eigenpairs)."""
        x = self.X[index, :]
        self.gain.before_add(index, x)
        if is_numpy(self.xp):
            self._pending.append(int(index))
        else:
            self._C = self._C + x[:, None] * x[None, :]
        self.size += 1
        self.trace += float(self.norms2[index])
        kept = self.gain.kept_statistic()
        if kept is not None:  # the method keeps its own inverse: the eigenpairs are recomputed when next read
            for name in _SPECTRUM:
                self.__dict__.pop(name, None)
            self.stat = kept
        elif "lam" not in self.__dict__:  # dropped at an earlier pick: a fresh eigh (C holds this pick already)
            self._eigen()
        else:
            self._update_eigen(x)
        self.gain.after_add()

    # -- gains -------------------------------------------------------------------------------------
    def gains(self, candidates: np.ndarray) -> np.ndarray:
        """Marginal gains ``f(S + x) − f(S)`` of the rows ``candidates`` (host int array) → host floats."""
        return self._gain_from_delta(self.deltas(candidates), candidates)

    def deltas(self, candidates: np.ndarray) -> np.ndarray:
        """Change of the statistic ``Σ φ(λ)`` for each of the rows ``candidates`` → host floats."""
        out = np.empty(len(candidates), dtype=np.float64)
        step = self.batch_size if self.gain.batched else max(1, len(candidates))
        for start in range(0, len(candidates), step):
            idx = candidates[start:start + step]
            out[start:start + len(idx)] = to_numpy(self._delta_stat(idx))
        refine = getattr(self.gain, "refine", None)  # bounded gains: the contenders for the best made exact
        return out if refine is None else refine(candidates, out)

    def delta_bounds(self, candidates: np.ndarray):
        """Bounds ``(lo, hi)`` on the change of ``Σ φ(λ)`` of ``candidates`` (host floats), cheaper than the
        changes, where the gain method has them (:meth:`~worth.spectral.methods.Quadrature.delta_bounds`, on
        its fallback steps); else ``None``."""
        bounds = getattr(self.gain, "delta_bounds", None)
        if bounds is None:
            return None
        lo = np.empty(len(candidates), dtype=np.float64)
        hi = np.empty(len(candidates), dtype=np.float64)
        for start in range(0, len(candidates), self.batch_size):
            idx = candidates[start:start + self.batch_size]
            got = bounds(idx)
            if got is None:
                return None
            lo[start:start + len(idx)], hi[start:start + len(idx)] = to_numpy(got[0]), to_numpy(got[1])
        return lo, hi

    def gain_bounds(self, candidates: np.ndarray):
        """Bounds ``(lo, hi)`` on the gains of ``candidates`` (:meth:`delta_bounds` through the value's
        ``combine``, monotone in the statistic) or ``None``: :func:`worth.optimizers.lazy` evaluates exactly
        only the candidates they leave in play."""
        got = self.delta_bounds(candidates)
        if got is None or type(self.objective).combine is SpectralObjective.combine:
            return got
        a, b = self._gain_from_delta(got[0], candidates), self._gain_from_delta(got[1], candidates)
        return np.minimum(a, b), np.maximum(a, b)

    def _rows(self, idx):
        xp = self.xp
        if is_numpy(xp):
            return self.X[idx], self.norms2[idx]
        where = xp.asarray(idx)
        return xp.take(self.X, where, axis=0), xp.take(self.norms2, where, axis=0)

    def _norms(self, idx):
        """``‖x_i‖²`` of the rows ``idx`` without gathering the rows (a gain read off a table needs no row)."""
        xp = self.xp
        if is_numpy(xp):
            return self.norms2[idx]
        return xp.take(self.norms2, xp.asarray(idx), axis=0)

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
        """Change of ``Σ φ(λ)`` for each candidate in ``idx``, by the state's gain method."""
        return self.gain.delta(idx)
