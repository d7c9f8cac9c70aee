"""Objective values against definitions and peers; properties (monotone, submodular) checked as data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import worth
from tests.helpers import make_instance


def _normalised(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("q", [1.0, 2.0, 0.5])
def test_vendi_equals_vendi_score_package(q):
    from vendi_score import vendi

    # n < m keeps K full rank: vendi-score counts eigh's ±1e-17 noise as mass, which matters for q < 1.
    X = make_instance("gaussian", n=30, m=40, seed=1)
    K = X @ X.T
    assert worth.score(X, np.arange(30), "vendi", q=q) == pytest.approx(vendi.score_K(K, q=q), rel=1e-9)
    if q == 1.0:  # n > m through its dual form (the m×m covariance)
        Y = make_instance("gaussian", n=50, m=8, seed=2)
        assert worth.score(Y, np.arange(50), "vendi") == pytest.approx(vendi.score_dual(Y), rel=1e-9)


def test_logdet_equals_slogdet():
    X = make_instance("gaussian", n=30, m=10, seed=2)
    S = [1, 4, 9, 16, 25]
    for sigma2 in (1.0, 0.3):
        sign, ld = np.linalg.slogdet(np.eye(len(S)) + X[S] @ X[S].T / sigma2)
        assert sign == 1
        assert worth.score(X, S, "logdet", sigma2=sigma2) == pytest.approx(ld, rel=1e-12)


@pytest.mark.parametrize("name,phi", [
    ("entropy", lambda t: -t * np.log(t)),
    ("power", lambda t: np.sqrt(t)),
    ("hybrid", lambda t: 1 - 1 / (1 + t)),
])
def test_spectral_sums_match_definition(name, phi):
    X = make_instance("gaussian", n=20, m=6, seed=3)
    S = [0, 2, 5, 7, 11, 13, 17, 19]  # |S| > m
    lam = np.linalg.eigvalsh(X[S].T @ X[S])
    assert worth.score(X, S, name) == pytest.approx(np.sum(phi(lam[lam > 1e-12])), rel=1e-10)


def test_empty_set_scores_zero_everywhere():
    X = make_instance("gaussian", n=5, m=3)
    assert all(worth.score(X, [], name) == 0.0 for name in worth.objectives())


def test_vendi_pool_is_pool_normalised_entropy():
    X = make_instance("gaussian", n=25, m=5, seed=4)
    S = [3, 1, 4, 15, 9, 2]
    H = worth.score(X, S, "entropy")
    assert worth.score(X, S, "vendi-pool") == pytest.approx((H + len(S) * np.log(25)) / 25, rel=1e-12)


# -- properties as data, checked on random instances ---------------------------------------------------

def _triple(data, n, m):
    """A ⊆ B ⊆ V and v ∉ B over a random pool of n rows in R^m."""
    seed = data.draw(st.integers(0, 2**32 - 1))
    X = _normalised(np.random.default_rng(seed).normal(size=(n, m)))
    order = data.draw(st.permutations(range(n)))
    b = data.draw(st.integers(1, n - 2))
    a = data.draw(st.integers(0, b))
    return X, list(order[:a]), list(order[:b]), order[b]


def _gain(X, S, v, name):
    return worth.score(X, S + [v], name) - worth.score(X, S, name)


@pytest.mark.parametrize("name", [n for n, p in worth.objectives().items() if p.submodular])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_diminishing_returns(name, data):
    X, A, B, v = _triple(data, n=9, m=4)
    assert _gain(X, A, v, name) >= _gain(X, B, v, name) - 1e-9


@pytest.mark.parametrize("name", [n for n, p in worth.objectives().items() if p.monotone])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_monotone(name, data):
    X, _, B, v = _triple(data, n=9, m=4)
    assert _gain(X, B, v, name) >= -1e-10


@pytest.mark.parametrize("name", ["vendi"])
def test_vendi_violates_diminishing_returns(name):
    """The Vendi Score is not submodular (docs/objectives.md): a seeded search finds a violation."""
    rng = np.random.default_rng(0)
    violations = 0
    for _ in range(300):
        X = _normalised(rng.normal(size=(8, 6)))
        order = rng.permutation(8)
        b = int(rng.integers(1, 7))
        a = int(rng.integers(0, b + 1))
        A, B, v = list(order[:a]), list(order[:b]), int(order[b])
        violations += _gain(X, A, v, name) < _gain(X, B, v, name) - 1e-9
    assert violations > 0
    assert not worth.objectives()[name].submodular


def test_registry_properties():
    props = worth.objectives()
    assert set(props) >= {"vendi", "entropy", "logdet", "power", "hybrid"}
    assert props["hybrid"].weakly_submodular and not props["hybrid"].submodular
    assert props["logdet"].monotone and props["logdet"].submodular
    assert not props["vendi"].submodular and not props["entropy"].monotone
    assert all(props[n].spectral for n in ("vendi", "vendi-pool", "entropy", "logdet", "power", "hybrid"))
