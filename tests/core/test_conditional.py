"""Conditioning on rows already chosen (``init=``) and selection by mutual information with a target."""

from __future__ import annotations

import numpy as np
import pytest

import worth
from tests.helpers import make_instance
from worth._array import to_numpy


def reference_greedy(X, k, objective, *, forced=(), target=None, **params):
    """Plain greedy written with ``score``: ``forced`` rows first, then argmax of the (MI) gain, ties lowest."""
    A = list(forced)
    n = X.shape[0]
    excluded = set(A) | (set(np.asarray(target).tolist()) if target is not None and np.ndim(target) == 1 else set())

    def f(S):
        return worth.score(X, S, objective, target=target, **params)

    S, values = [], []
    base = f(A) if target is None else 0.0
    for _ in range(k):
        cur = f(A + S)
        gains = {j: f(A + S + [j]) - cur for j in range(n) if j not in excluded and j not in S}
        best = max(gains.values())
        tol = 1e-9 * max(1.0, abs(best), abs(cur - base))
        j = min(j for j, g in gains.items() if g >= best - tol)
        S.append(j)
        values.append(f(A + S) - base)
    return S, values


@pytest.mark.parametrize("objective", ["logdet", "vendi", "facility-location", "power"])
@pytest.mark.parametrize("A", [[3], [0, 7, 11, 2]])
def test_conditioning_equals_greedy_with_init_forced_first(objective, A):
    X = make_instance("gaussian", n=16, m=4, seed=2)
    sel = worth.select(X, 5, objective, init=A)
    picks, values = reference_greedy(X, 5, objective, forced=A)
    np.testing.assert_array_equal(sel.indices, picks)
    np.testing.assert_allclose(sel.values, values, rtol=1e-9, atol=1e-12)
    assert sel.info["init_value"] == pytest.approx(worth.score(X, A, objective), rel=1e-10)
    assert worth.score(X, sel.indices, objective, init=A) == pytest.approx(sel.value, rel=1e-10)
    assert not set(to_numpy(sel.indices).tolist()) & set(A)


def test_conditioning_lazy_and_scaling_law():
    X = make_instance("clustered", n=60, m=6, seed=1)
    A = [1, 5, 9]
    g = worth.select(X, 10, "facility-location", "greedy", init=A)
    lz = worth.select(X, 10, "facility-location", "lazy", init=A)
    np.testing.assert_array_equal(lz.indices, g.indices)
    y = np.repeat([0, 1, 2], 20)
    sel = worth.select(X, 3, "scaling-law", labels=y, per_class=True, init=[0, 1, 20])  # class 2 is empty
    assert y[to_numpy(sel.indices)][0] == 2


@pytest.mark.parametrize("objective", ["facility-location", "logdet", "power"])
@pytest.mark.parametrize("as_rows", [True, False])
def test_mutual_information_gains_match_the_definition(objective, as_rows):
    X = make_instance("gaussian", n=18, m=4, seed=4)
    if as_rows:
        target = np.array([2, 9])
    else:
        target = make_instance("gaussian", n=3, m=4, seed=9)
    sel = worth.select(X, 5, objective, target=target)
    idx = to_numpy(sel.indices).tolist()
    # each gain and value by the definition I(S;Q) = f(S) + f(Q) − f(S ∪ Q), through score
    mi = [worth.score(X, idx[:t], objective, target=target) for t in range(6)]
    np.testing.assert_allclose(sel.gains, np.diff(mi), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sel.values, mi[1:], rtol=1e-8, atol=1e-10)
    picks, _ = reference_greedy(X, 5, objective, target=target)
    np.testing.assert_array_equal(idx, picks)


def test_mutual_information_definition_for_facility_location():
    """For facility location I(S; Q) = Σ_i min(max_S s_i, max_Q s_i) over the pool and the targets."""
    X = make_instance("gaussian", n=20, m=4, seed=6)
    Q = make_instance("gaussian", n=2, m=4, seed=7)
    Z = np.vstack([X, Q])
    S = np.maximum(Z @ Z.T, 0)
    sub = [1, 4, 8]
    expected = np.minimum(S[:, sub].max(1), S[:, 20:].max(1)).sum()
    assert worth.score(X, sub, "facility-location", target=Q) == pytest.approx(expected, rel=1e-12)


def test_mutual_information_lazy_refused_for_spectral():
    X = make_instance("gaussian", n=20, m=4)
    with pytest.raises(ValueError, match="mutual information of 'logdet' with target="):
        worth.select(X, 3, "logdet", "lazy", target=[0])
    lazy = worth.select(X, 4, "facility-location", "lazy", target=[0, 1])
    greedy = worth.select(X, 4, "facility-location", "greedy", target=[0, 1])
    np.testing.assert_array_equal(lazy.indices, greedy.indices)


@pytest.mark.parametrize("kwargs,match", [
    ({"init": [0, 25]}, r"init holds \[25\], out of range for n=20"),
    ({"init": [-1]}, r"init holds \[-1\], out of range"),
    ({"init": [3, 3]}, "init holds duplicate entries"),
    ({"target": np.ones((2, 5))}, "target has 5 features per row but X has 4"),
    ({"target": [30]}, r"target holds \[30\], out of range"),
    ({"target": [1], "objective": "scaling-law"}, "target= needs an objective of the items' content"),
])
def test_bad_init_and_target(kwargs, match):
    X = make_instance("gaussian", n=20, m=4)
    objective = kwargs.pop("objective", "logdet")
    with pytest.raises(ValueError, match=match):
        worth.select(X, 3, objective, **kwargs)
