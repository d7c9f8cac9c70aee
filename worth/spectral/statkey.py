"""Exact greedy with lazy evaluations for objectives that are increasing functions of a submodular statistic.

The Vendi Score is not submodular, so lazy greedy is refused on it — yet naive greedy on it costs a gain for
every candidate at every step. On rows of equal norm (the default: ``normalize=True``) every candidate
raises ``tr C`` by the same amount, so the Vendi gain of a candidate is a *strictly monotone function of one
number*, the change ``Δ`` of the statistic ``s = Σ φ(λ)``, the same function for all candidates of a step:

* ``q = 1``: ``V = exp((T log|S| − s)/|S|)`` with ``s = Σ λ log λ`` — decreasing in ``Δ``; and ``−Δ`` is
  the gain of the von Neumann entropy ``−Σ λ log λ``, which is submodular (``−t log t`` has a Stieltjes
  representation with a non-negative measure, so ``−Δ = c‖x‖² + ∫ log(1 + xᵀ(C + s)⁻¹x) dω(s)`` and each
  term shrinks as ``C`` grows);
* ``q < 1``: ``V = (s/|S|^q)^{1/(1−q)}`` with ``s = Σ λ^q`` — increasing in ``Δ``, the gain of the power
  trace ``Σ λ^q``, submodular for ``0 < q ≤ 1``.

So the candidate with the largest Vendi gain is the one with the largest *key* (``∓Δ``), and keys never
grow from one step to the next: lazy greedy on the keys makes exactly naive greedy's picks. The values
(and so the gains, their differences) are the Vendi Score's own. :class:`StatisticKey` is the
:class:`~worth.optimizers.GainModel` that exposes the keys.
"""

from __future__ import annotations

import numpy as np

from .._array import to_numpy

from ..objectives import SpectralObjective

_EQUAL_NORMS_RTOL = 1e-12


def key_sign(objective, norms2) -> int | None:
    """``±1`` when greedy on ``objective`` may run lazily on the statistic's key, else ``None``.

    ``+1``: the key is ``Δ``; ``−1``: the key is ``−Δ``. Requires an objective that declares a key
    (:meth:`~worth.objectives.SpectralObjective.statistic_key_sign`: the Vendi Score with ``q ≤ 1``) and rows
    of equal norm (then every candidate moves ``tr C`` by the same amount).
    """
    sign = objective.statistic_key_sign() if isinstance(objective, SpectralObjective) else None
    if sign is None:
        return None
    norms2 = np.asarray(norms2, dtype=np.float64)
    if norms2.size == 0 or np.ptp(norms2) > _EQUAL_NORMS_RTOL * float(np.max(norms2)):
        return None
    return sign


class StatisticKey:
    """A :class:`~worth.optimizers.GainModel` whose gains are the keys ``sign·Δ`` of a spectral state.

    Parameters
    ----------
    model : GainModel
        The model the optimiser would have driven (e.g. conditioned on ``init=``): its ``value`` and ``add``
        are used, so the trace records the objective's own values.
    state : SpectralState
        The spectral state under ``model``: it supplies ``Δ`` (:meth:`~worth.spectral.state.SpectralState.deltas`).
    sign : int
        From :func:`key_sign`.
    """

    def __init__(self, model, state, sign: int) -> None:
        self.model = model
        self.state = state
        self.sign = float(sign)
        self.n = model.n
        self.lazy_batch = model.lazy_batch
        # The keys are changes of Σ φ(λ): the tie rule's floor in those units.
        self.scale = state.objective.gain_scale(to_numpy(state.norms2), state.pool, statistic=True)

    @property
    def value(self) -> float:
        return self.model.value

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        return self.sign * self.state.deltas(candidates)

    def gain_bounds(self, candidates: np.ndarray):
        """Bounds on the keys, from the state's bounds on ``Δ`` (``None`` where it has none)."""
        got = self.state.delta_bounds(candidates)
        if got is None:
            return None
        lo, hi = got
        return (lo, hi) if self.sign > 0 else (-hi, -lo)

    def add(self, index: int) -> None:
        self.model.add(index)
