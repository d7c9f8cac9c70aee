"""Selection given what is already chosen (``init=``) and selection for a target (``target=``).

Conditioning
    A nightly curation run already holds last night's set ``A``. What a new item is worth is its gain *given*
    ``A``: ``f(S | A) = f(S ∪ A) − f(A)``. That is the plain greedy started from the state of ``A``
    (``C_A`` for a spectral objective, the running maximum over ``A`` for facility location, the counts of
    ``A`` for the scaling law): :class:`Conditioned` starts the state there and reports gains and values
    relative to ``f(A)``. ``f(· | A)`` is monotone/submodular whenever ``f`` is.
Mutual information
    Target-aware selection (COBRA-style retrieval of pool items relevant to a few target examples ``Q``,
    without redundancy) maximises ``I(S; Q) = f(S) + f(Q) − f(S ∪ Q)``. :class:`MutualInformation` keeps
    two states of the same objective, one of ``S`` and one of ``S ∪ Q``, and a gain is the difference of
    their gains: ``I(S + j; Q) − I(S; Q) = f(j | S) − f(j | S ∪ Q)``. ``Q`` is either rows of ``X`` (they are
    then not candidates) or embeddings of its own, appended to ``X`` (for facility location they join the
    ground set, so covering the targets themselves counts). With ``init=A`` as well it is the conditional
    ``I(S; Q | A)``. For facility location ``I(S; Q) = Σ_i min(max_{j∈S} s_ij, max_{q∈Q} s_iq)``: facility
    location on truncated similarities, so monotone submodular; for spectral objectives it is monotone for
    log-det (information never hurts) but not submodular in general, so lazy greedy is refused there.
"""

from __future__ import annotations

import numpy as np

from ._array import from_numpy, to_numpy
from .optimizers import GainModel, State
from .validation import check_indices, prepare_rows


def check_init(init, n: int) -> np.ndarray:
    """Conditioning rows: in range and each once."""
    idx = check_indices(init, n, name="init")
    return idx


def prepare_target(target, X64, xp, *, normalize: bool):
    """``target`` as either pool rows (host int64 indices) or extra embeddings (prepared like ``X``).

    Returns ``(indices or None, rows or None)``.
    """
    n, m = X64.shape
    shape = tuple(target.shape) if hasattr(target, "shape") else np.shape(np.asarray(target, dtype=object))
    if len(shape) == 2:
        if shape[1] != m:
            raise ValueError(
                f"target has {shape[1]} features per row but X has {m}; pass target embeddings from the same "
                f"encoder as X (shape (n_targets, {m})), or target row indices into X."
            )
        host = np.asarray(to_numpy(target) if hasattr(target, "shape") else target)
        if host.dtype.kind not in "biuf":
            raise ValueError(f"target must hold real numbers; got dtype {host.dtype}.")
        rows = from_numpy(host.astype(np.float64), xp, X64)
        return None, prepare_rows(rows, xp, normalize=normalize, name="target")
    if len(shape) == 1:
        idx = check_indices(target, n, name="target")
        if idx.size == 0:
            raise ValueError("target is empty; pass at least one target row index or embedding.")
        return idx, None
    raise ValueError(
        f"target has shape {shape}; pass row indices into X (1-D) or target embeddings (2-D, {m} columns)."
    )


class Conditioned(GainModel):
    """A state started from ``init``; gains unchanged, value reported as ``f(S ∪ A) − f(A)``."""

    def __init__(self, state: State, init: np.ndarray) -> None:
        self.state = state
        self.n = state.n
        if init.size:
            state.start_from(init)
        self.base = float(state.value)
        self.lazy_batch = state.lazy_batch
        self.scale = getattr(state, "scale", 1.0)
        self.value_in_gain_units = getattr(state, "value_in_gain_units", True)

    @property
    def value(self) -> float:
        return float(self.state.value) - self.base

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        return self.state.gains(candidates)

    def gain_bounds(self, candidates: np.ndarray):
        bounds = getattr(self.state, "gain_bounds", None)
        return None if bounds is None else bounds(candidates)

    def add(self, index: int) -> None:
        self.state.add(index)


class MutualInformation(GainModel):
    """``I(S; Q | A)`` from two states of one objective over the same rows (``S ∪ A`` and ``S ∪ Q ∪ A``).

    Parameters
    ----------
    make : callable
        ``make()`` returns a fresh, empty state over the (possibly extended) rows.
    n : int
        Number of candidate rows (the pool; extra target rows lie beyond it).
    target_rows : array of int
        Rows of the target set in the state's indexing.
    init : array of int
        Conditioning rows (may be empty).
    """

    def __init__(self, make, n: int, target_rows: np.ndarray, init: np.ndarray) -> None:
        self.n = n
        self.S = make()
        self.SQ = make()
        if init.size:
            self.S.start_from(init)
        self.SQ.start_from(np.unique(np.concatenate([init, target_rows])))
        self.base_S = float(self.S.value)
        self.base_SQ = float(self.SQ.value)
        self.lazy_batch = self.S.lazy_batch
        self.scale = max(getattr(self.S, "scale", 1.0), getattr(self.SQ, "scale", 1.0))

    @property
    def value(self) -> float:
        return (float(self.S.value) - self.base_S) - (float(self.SQ.value) - self.base_SQ)

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        return np.asarray(self.S.gains(candidates)) - np.asarray(self.SQ.gains(candidates))

    def add(self, index: int) -> None:
        self.S.add(index)
        self.SQ.add(index)


def stack_rows(X64, extra, xp):
    """``X`` with the target embeddings appended (same namespace and dtype)."""
    if extra is None:
        return X64
    return xp.concat([X64, xp.astype(extra, X64.dtype)], axis=0)
