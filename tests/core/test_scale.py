"""Exact at any scale of the input (issue 21 §5): picks that do not depend on a common factor of the rows.

With ``normalize=False``, rows scaled by ``1e-10`` made ``power`` and ``logdet`` pick rows 0, 1, 2, … with
every method, the oracle included (the tie rule had an absolute floor of 1), and rows of norm ``1e150`` made
the hybrid objective's quadrature fit fail with a raw LAPACK error. The property below runs every registered
objective with every gain method it declares, at magnitudes from ``1e-150`` to ``1e150``:

* objectives homogeneous in ``X`` (their gains all scale by one factor) pick what they pick at scale 1;
* the others (``logdet``/``hybrid`` with a fixed ``sigma2``/``c``, ``vendi-pool``'s modular ``log N``
  term) give a clean result: ``k`` distinct rows, finite values, no floating-point warning;
* the Vendi Score (defined on a unit-diagonal kernel) refuses rows off unit norm, by name;

and beyond what float64 carries (squared norms near ``1e±306``) the input is refused with the fix.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import worth
from tests.helpers import make_instance
from worth._array import to_numpy
from worth.registry import entries, get_objective

SCALES = [1e-150, 1e-10, 1e10, 1e150]

# How each registered objective behaves when every row is multiplied by c (rows of equal norm):
# "same picks" where all gains scale by one factor (entropy: c·g − c·log c·‖x‖², the second term equal for
# every candidate); "clean" where the value is not scale-equivariant; "refused" off unit norm.
BEHAVIOUR = {
    "power": "same picks",
    "entropy": "same picks",
    "facility-location": "same picks",
    "scaling-law": "same picks",
    "logdet": "clean",
    "hybrid": "clean",
    "vendi-pool": "clean",
    "vendi": "refused",
    "herding": "same picks",  # worth.coreset: argmax ⟨w, x⟩ with w linear in the rows — every score scales by c²
    "k-center": "same picks",  # distances scale by c: the farthest row stays the farthest
}


def _methods(name):
    obj = get_objective(name)
    return list(obj.gain_methods()) if hasattr(obj, "gain_methods") else ["auto"]


CASES = [(name, method) for name in entries() for method in _methods(name)]


def test_every_registered_objective_is_classified():
    assert set(entries()) == set(BEHAVIOUR), "classify a new objective's behaviour under scaling in BEHAVIOUR"


@pytest.fixture(scope="module")
def rows():
    return make_instance("gaussian", n=40, m=8, seed=0)  # unit rows: every norm equal


def _select(X, name, method, evaluation):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a raw numpy overflow/invalid warning is a failure too
        return worth.select(X, 6, name, method=method, normalize=False, evaluation=evaluation)


@pytest.mark.parametrize("evaluation", ["auto", "full"])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name,method", CASES)
def test_picks_at_any_magnitude(rows, name, method, scale, evaluation):
    kind = BEHAVIOUR[name]
    if kind == "refused":
        with pytest.raises(ValueError, match="unit diagonal.*normalize=True"):
            _select(rows * scale, name, method, evaluation)
        return
    sel = _select(rows * scale, name, method, evaluation)
    picks = to_numpy(sel.indices).tolist()
    assert len(picks) == 6 and len(set(picks)) == 6
    assert np.all(np.isfinite(to_numpy(sel.values)))
    if kind == "same picks":
        assert picks == to_numpy(_select(rows, name, method, evaluation).indices).tolist()


@pytest.mark.parametrize("scale", [1e-10, 1e10])
@pytest.mark.parametrize("name", ["power", "facility-location"])
def test_rows_of_unequal_norms_keep_their_picks(name, scale):
    """The issue's reproduction: raw rows (norms 0.5–2) scaled by 1e-10 picked 0, 1, 2, … with the oracle too."""
    X = make_instance("gaussian", n=40, m=8, seed=3) * np.random.default_rng(3).uniform(0.5, 2.0, (40, 1))
    methods = _methods(name)
    ref = to_numpy(worth.select(X, 6, name, method=methods[0], normalize=False).indices).tolist()
    assert ref != list(range(6))
    for method in methods:
        got = worth.select(X * scale, 6, name, method=method, normalize=False)
        assert to_numpy(got.indices).tolist() == ref, method


def test_power_at_1e_minus_10_is_not_worse_than_the_right_picks():
    """The issue's figure: the picks at 1e-10 were worth 40 % less than the right ones."""
    X = make_instance("gaussian", n=40, m=8, seed=3) * np.random.default_rng(3).uniform(0.5, 2.0, (40, 1))
    small = worth.select(X * 1e-10, 6, "power", method="oracle", normalize=False)
    right = worth.select(X, 6, "power", method="oracle", normalize=False)
    assert worth.score(X, small.indices, "power", normalize=False) == pytest.approx(right.value, rel=1e-9)


@pytest.mark.parametrize("scale,word", [(1e153, "too large"), (1e-153, "too small"), (1e-170, "too small"),
                                        (1e170, "too large")])
@pytest.mark.parametrize("call", ["select", "score"])
def test_magnitudes_float64_cannot_carry_are_refused(rows, scale, word, call):
    with pytest.raises(ValueError, match=rf"X is {word} for float64.*normalize=False.*{'divide' if word == 'too large' else 'multiply'} X by a constant"):
        if call == "select":
            worth.select(rows * scale, 3, "power", normalize=False)
        else:
            worth.score(rows * scale, [0, 1], "power", normalize=False)


@pytest.mark.parametrize("scale", [1e-170, 1e170])
def test_normalisation_survives_rows_whose_squared_norm_over_or_underflows(rows, scale):
    """``normalize=True`` divided by ``‖x‖`` = inf or 0: all rows became 0 (or were called all-zero)."""
    ref = worth.select(rows, 5, "logdet")
    got = worth.select(rows * scale, 5, "logdet")
    np.testing.assert_array_equal(got.indices, ref.indices)
    assert got.value == pytest.approx(ref.value, rel=1e-12)


def test_quadrature_fit_where_phi_prime_underflows_falls_back_to_roots():
    """Hybrid's φ' underflows to 0 on eigenvalues near 1e300: the fit refuses itself instead of LAPACK failing."""
    from worth.spectral.quadrature import fit_rule

    rule = fit_rule(get_objective("hybrid"), 1e299, 1e301, 1e-8)
    assert rule is not None and rule.error == float("inf")
