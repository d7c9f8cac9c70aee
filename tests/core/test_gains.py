"""Every fast gain method against the oracle (``eigvalsh`` of ``C_S + x xᵀ`` per candidate)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import make_instance
from worth._array import to_numpy
from worth.spectral.state import SpectralState
from worth.registry import get_objective, objectives

OBJECTIVES = [
    ("vendi", {}), ("vendi", {"q": 2.0}), ("vendi", {"q": 0.5}), ("vendi-pool", {}), ("entropy", {}),
    ("logdet", {}), ("logdet", {"sigma2": 0.1}), ("power", {}), ("power", {"alpha": 0.2}),
    ("hybrid", {}), ("hybrid", {"alpha": 0.5, "c": 3.0}),
]
KINDS = ["gaussian", "duplicates", "clustered", "lowrank"]


def _walk(X, name, params, methods, steps, seed=1):
    """Add random rows (|S| from 0 past m) and compare every method's gains with the oracle's at each step."""
    obj = get_objective(name, **params)
    states = {meth: SpectralState(X, obj, meth, np) for meth in ("oracle", *methods)}
    rng = np.random.default_rng(seed)
    cand = np.arange(X.shape[0])
    worst = {meth: 0.0 for meth in methods}
    for _ in range(steps):
        ref = states["oracle"].gains(cand)
        scale = max(1.0, abs(states["oracle"].value))
        for meth in methods:
            got = states[meth].gains(cand)
            np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-10 * scale,
                                       err_msg=f"{meth} vs oracle, {name}{params}, |S|={states[meth].size}")
            worst[meth] = max(worst[meth], float(np.max(np.abs(got - ref))) / scale)
        i = int(rng.integers(X.shape[0]))
        for s in states.values():
            s.add(i)
    return worst


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=[f"{n}{p or ''}" for n, p in OBJECTIVES])
def test_secular_matches_oracle(kind, name, params):
    X = make_instance(kind, n=40, m=8)
    _walk(X, name, params, ["secular", "secular-portable"], steps=14)  # |S| < m, then |S| > m


WELL_CONDITIONED = [("vendi", {"q": 2.0}), ("logdet", {}), ("hybrid", {})]


@pytest.mark.parametrize("name,params", WELL_CONDITIONED, ids=[f"{n}{p or ''}" for n, p in WELL_CONDITIONED])
def test_secular_matches_oracle_near_degenerate(name, params):
    """Eigenvalues down to 1e-9: exact to 1e-8 wherever φ' is bounded at 0 (see make_instance)."""
    X = make_instance("near-degenerate", n=40, m=8)
    _walk(X, name, params, ["secular", "secular-portable"], steps=14)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sigma2", [1.0, 0.05])
def test_logdet_closed_form_matches_oracle(kind, sigma2):
    X = make_instance(kind, n=40, m=8, seed=3)
    _walk(X, "logdet", {"sigma2": sigma2}, ["closed-form"], steps=14)


RESOLVENT = [("logdet", {}), ("logdet", {"sigma2": 0.1}), ("hybrid", {}), ("hybrid", {"c": 3.0})]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name,params", RESOLVENT, ids=[f"{n}{p or ''}" for n, p in RESOLVENT])
def test_closed_forms_and_their_table_match_oracle(kind, name, params):
    """The closed form by projection and its Sherman–Morrison table, every candidate, |S| from 0 to 3m."""
    X = make_instance(kind, n=40, m=8, seed=3)
    _walk(X, name, params, ["closed-form", "closed-form-table"], steps=24)


@pytest.mark.parametrize("refresh", [1, 3, 200])
def test_the_table_recomputed_or_not_gives_the_oracles_gains_and_records_its_drift(refresh):
    X = make_instance("clustered", n=60, m=10, seed=4)
    obj = get_objective("hybrid")
    table = SpectralState(X, obj, "closed-form-table", np, refresh=refresh)
    ref = SpectralState(X, obj, "oracle", np)
    cand = np.arange(60)
    for i in np.random.default_rng(2).permutation(60)[:25]:
        np.testing.assert_allclose(table.gains(cand), ref.gains(cand), rtol=1e-8, atol=1e-12)
        table.add(int(i))
        ref.add(int(i))
    assert 0.0 <= table.info["table_drift"] < 1e-9
    assert (table.info["table_drift"] > 0) == (refresh < 25)  # measured at each recomputation after updates


def test_hybrid_has_a_closed_form_only_at_alpha_one():
    assert {"closed-form", "closed-form-table"} <= set(get_objective("hybrid").gain_methods())
    assert "closed-form" not in get_objective("hybrid", alpha=0.5).gain_methods()
    with pytest.raises(ValueError, match=r"method='closed-form-table' exists only for objective='logdet'"):
        SpectralState(make_instance("gaussian", n=10, m=4), get_objective("hybrid", alpha=0.5),
                      "closed-form-table", np)


def test_secular_matches_oracle_at_larger_m():
    X = make_instance("gaussian", n=30, m=48, seed=5)
    _walk(X, "vendi", {}, ["secular", "secular-portable"], steps=60)


def test_every_registered_objective_is_covered():
    assert {name for name, _ in OBJECTIVES} == {name for name, p in objectives().items() if p.spectral}


@pytest.mark.parametrize("name", ["vendi", "power", "hybrid", "logdet"])
def test_portable_gains_on_other_namespaces(xp, name):
    """The array-API path gives the NumPy oracle's gains on torch and array-api-strict arrays, in their type."""
    X = make_instance("clustered", n=24, m=6, seed=2)
    obj = get_objective(name)
    ref = SpectralState(X, obj, "oracle", np)
    Xx = xp.asarray(X)
    state = SpectralState(Xx, obj, "secular-portable", xp)
    cand = np.arange(24)
    for i in [3, 7, 3, 11, 0, 19, 5, 8, 21]:  # 9 adds with a repeat: past m=6, duplicate row
        np.testing.assert_allclose(state.gains(cand), ref.gains(cand), rtol=1e-8, atol=1e-10 * max(1, ref.value))
        state.add(i)
        ref.add(i)
    assert type(state.C) is type(Xx)
    assert abs(state.value - ref.value) <= 1e-10 * max(1.0, abs(ref.value))


def test_secular_roots_interlace_and_match_eigvalsh():
    """The roots themselves: the eigenvalues of C + x xᵀ, interlacing the old ones."""
    from worth.spectral.secular import secular_roots_compiled

    rng = np.random.default_rng(7)
    poles = np.concatenate([[0.0], np.sort(rng.uniform(0.1, 5.0, size=9))])
    weights = rng.uniform(0, 1, size=(50, 10)) ** 3
    weights[:, 4] = 0.0  # a deflated pole
    origin, tau = secular_roots_compiled(poles, weights)
    roots = origin + tau
    for b in range(50):
        C = np.diag(poles)
        v = np.sqrt(weights[b])
        expected = np.linalg.eigvalsh(C + np.outer(v, v))
        np.testing.assert_allclose(np.sort(roots[b]), expected, rtol=1e-12, atol=1e-13)
        assert roots[b, 4] == poles[4]
        assert np.all(roots[b] >= poles) and np.all(roots[b, :-1] <= poles[1:] + 1e-15)


@pytest.mark.parametrize("name,params", RESOLVENT, ids=[f"{n}{p or ''}" for n, p in RESOLVENT])
@pytest.mark.parametrize("refresh", [1, 5, 200])
def test_the_table_keeps_the_value_and_the_spectrum_without_eigen_updates(name, params, refresh):
    """Between two recomputations the table's state keeps ``M`` and the statistic itself (no eigen-update);
    its value after each pick is the oracle's, and its spectrum, recomputed when read, is ``C``'s."""
    X = make_instance("clustered", n=50, m=8, seed=6)
    obj = get_objective(name, **params)
    table = SpectralState(X, obj, "closed-form-table", np, refresh=refresh)
    ref = SpectralState(X, obj, "oracle", np)
    cand = np.arange(50)
    for i in np.random.default_rng(3).permutation(50)[:20]:  # |S| from 0 past m = 8
        np.testing.assert_allclose(table.gains(cand), ref.gains(cand), rtol=1e-8, atol=1e-12)
        table.add(int(i))
        ref.add(int(i))
        np.testing.assert_allclose(table.value, ref.value, rtol=1e-11)
    assert "eig_update_seconds" not in table.info  # every pick after the first query kept by the table
    np.testing.assert_allclose(table.lam, ref.lam, rtol=1e-10, atol=1e-12 * float(ref.lam.max()))


def test_the_table_starts_again_after_start_from():
    X = make_instance("gaussian", n=40, m=6, seed=2)
    obj = get_objective("hybrid")
    table = SpectralState(X, obj, "closed-form-table", np)
    cand = np.arange(40)
    table.gains(cand)
    for i in (3, 9, 4):
        table.add(i)
    table.start_from(np.array([1, 2, 30, 31, 7, 8, 11]))
    ref = SpectralState(X, obj, "oracle", np)
    ref.start_from(np.array([1, 2, 30, 31, 7, 8, 11]))
    np.testing.assert_allclose(table.gains(cand), ref.gains(cand), rtol=1e-8, atol=1e-12)
    table.add(5)
    ref.add(5)
    np.testing.assert_allclose(table.gains(cand), ref.gains(cand), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", ["hybrid", "logdet"])
def test_the_table_on_other_namespaces(xp, name):
    """The table's kept inverse on torch and array-api-strict arrays: the NumPy oracle's gains and values."""
    X = make_instance("clustered", n=24, m=6, seed=2)
    obj = get_objective(name)
    ref = SpectralState(X, obj, "oracle", np)
    state = SpectralState(xp.asarray(X), obj, "closed-form-table", xp, refresh=4)
    cand = np.arange(24)
    for i in [3, 7, 3, 11, 0, 19, 5, 8, 21]:
        np.testing.assert_allclose(state.gains(cand), ref.gains(cand), rtol=1e-8, atol=1e-12)
        state.add(i)
        ref.add(i)
        np.testing.assert_allclose(state.value, ref.value, rtol=1e-11)
