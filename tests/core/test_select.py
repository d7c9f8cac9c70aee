"""Greedy optimisers: identical picks across exact methods, lazy == greedy, brute-force bounds, array types."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import worth
from tests.helpers import make_instance
from worth._array import to_numpy

SPECTRAL = ["vendi", "vendi-pool", "entropy", "logdet", "power", "hybrid"]
SUBMODULAR = [name for name, p in worth.objectives().items() if p.submodular]


def _methods(name):
    extra = {"logdet": ["closed-form"]}.get(name, ["quadrature", "sherman-morrison"])
    return ["oracle", "secular", "secular-portable", *extra]


@pytest.mark.parametrize("kind", ["gaussian", "duplicates", "clustered", "lowrank"])
@pytest.mark.parametrize("name", SPECTRAL)
def test_greedy_picks_identical_across_methods(name, kind):
    X = make_instance(kind, n=30, m=6, seed=4)
    runs = {meth: worth.select(X, 10, name, method=meth) for meth in _methods(name)}  # k > m
    ref = runs["oracle"]
    for meth, sel in runs.items():
        assert sel.method == meth
        np.testing.assert_array_equal(sel.indices, ref.indices, err_msg=meth)
        np.testing.assert_allclose(sel.values, ref.values, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sel.gains, ref.gains, rtol=1e-8, atol=1e-10 * max(1, ref.value))


@pytest.mark.parametrize("kind", ["gaussian", "duplicates", "clustered"])
@pytest.mark.parametrize("name", SUBMODULAR)
def test_lazy_equals_greedy_on_submodular(name, kind):
    X = make_instance(kind, n=60, m=8, seed=6)
    greedy = worth.select(X, 20, name, "greedy", evaluation="full")
    lazy = worth.select(X, 20, name, "lazy")
    np.testing.assert_array_equal(lazy.indices, greedy.indices)
    np.testing.assert_allclose(lazy.values, greedy.values, rtol=1e-12)
    if name != "scaling-law":  # a count-only gain drops for every item at every pick: nothing to skip
        assert lazy.timings["evaluations"] < greedy.timings["evaluations"]


@pytest.mark.parametrize("name", [n for n in SPECTRAL if n not in SUBMODULAR])
def test_lazy_refused_unless_forced(name):
    X = make_instance("gaussian", n=20, m=4)
    with pytest.raises(ValueError, match="optimizer='lazy'.*force=True"):
        worth.select(X, 5, name, "lazy")
    sel = worth.select(X, 5, name, "lazy", force=True)
    assert len(set(to_numpy(sel.indices).tolist())) == 5


@pytest.mark.parametrize("name", SPECTRAL)
@pytest.mark.parametrize("optimizer", ["greedy", "stochastic"])
def test_score_of_selection_equals_last_value(name, optimizer):
    X = make_instance("gaussian", n=50, m=7, seed=8)
    sel = worth.select(X, 12, name, optimizer, seed=0)
    assert worth.score(X, sel.indices, name) == pytest.approx(sel.value, rel=1e-10, abs=1e-12)
    # the gains add up to the trajectory
    np.testing.assert_allclose(np.cumsum(sel.gains), sel.values, rtol=1e-8, atol=1e-10)


def _brute_force(X, k, name):
    return max(worth.score(X, list(S), name) for S in itertools.combinations(range(X.shape[0]), k))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", SPECTRAL)
def test_brute_force_optimum_bounds_greedy(name, seed):
    X = make_instance("gaussian", n=10, m=4, seed=seed)
    k = 3
    best = _brute_force(X, k, name)
    got = worth.select(X, k, name).value
    assert got <= best + 1e-10
    props = worth.objectives()[name]
    if props.monotone and props.submodular:  # Nemhauser–Wolsey–Fisher: (1 − 1/e) of the optimum
        assert got >= (1 - 1 / math.e) * best - 1e-10


def test_stochastic_is_seeded_and_close_to_greedy():
    X = make_instance("gaussian", n=400, m=16, seed=9)
    a = worth.select(X, 40, "logdet", "stochastic", seed=3, epsilon=0.05)
    b = worth.select(X, 40, "logdet", "stochastic", seed=3, epsilon=0.05)
    c = worth.select(X, 40, "logdet", "stochastic", seed=4, epsilon=0.05)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    greedy = worth.select(X, 40, "logdet", evaluation="full")
    assert a.value <= greedy.value + 1e-9
    assert a.value >= 0.9 * greedy.value
    assert a.timings["evaluations"] < greedy.timings["evaluations"]


def test_ties_go_to_lowest_index():
    X = np.tile(np.eye(3), (3, 1))  # rows 0..2 repeated: equal gains everywhere
    sel = worth.select(X, 3, "logdet")
    np.testing.assert_array_equal(sel.indices, [0, 1, 2])


@pytest.mark.parametrize("name", ["vendi", "logdet", "power"])
def test_same_selection_on_every_namespace(xp, name):
    """Array type in equals array type out; the picks equal the NumPy ones."""
    X = make_instance("clustered", n=30, m=6, seed=10)
    ref = worth.select(X, 9, name)
    Xx = xp.asarray(X)
    sel = worth.select(Xx, 9, name)
    assert type(sel.indices) is type(Xx)
    assert sel.indices.dtype == xp.int64
    # greedy runs lazily (power: submodular; vendi: on the entropy key, worth.spectral.statkey), so auto
    # picks the lazy method
    assert sel.method == {"vendi": "quadrature", "power": "quadrature", "logdet": "closed-form"}[name]
    np.testing.assert_array_equal(to_numpy(sel.indices), to_numpy(ref.indices))
    np.testing.assert_allclose(to_numpy(sel.values), to_numpy(ref.values), rtol=1e-10)
    assert worth.score(Xx, sel.indices, name) == pytest.approx(ref.value, rel=1e-10)


@pytest.mark.gpu
def test_cupy_selection_matches_numpy():
    cupy = pytest.importorskip("cupy")
    X = make_instance("gaussian", n=200, m=32, seed=11)
    ref = worth.select(X, 40, "vendi")
    sel = worth.select(cupy.asarray(X), 40, "vendi")
    assert isinstance(sel.indices, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(sel.indices), ref.indices)


def test_progress_callback_sees_every_step():
    seen = []
    worth.select(make_instance("gaussian", 20, 4), 5, "logdet", progress=lambda s, k: seen.append((s, k)))
    assert seen == [(i, 5) for i in range(1, 6)]
