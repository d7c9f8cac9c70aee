"""Adding a spectral objective is one class plus one registry entry.

Two toys, registered here and nowhere else (``select`` builds them from the registry; the gain methods come
from what each declares):

* the saturation ``Σ_j 1 − e^(−λ_j/c)``: monotone (``φ`` increases, and every eigenvalue moves up when a row
  is added) but *not* submodular: ``φ' = e^(−t/c)/c`` is completely monotone yet not operator-monotone
  decreasing (``−e^(−z)`` leaves the upper half-plane), and diminishing returns fail on small sets (measured
  below, so the declaration is checked, not assumed). Nor is ``φ'`` a Stieltjes function, and the shifted
  log-det rule cannot fit it (a relative fit error of 1e-4 at best with 96 nodes): the toy declares no
  ``φ'``, so it gets the root methods only;
* the shifted square root ``Σ_j √(1 + λ_j) − 1``: ``φ' = ½(1 + t)^(−1/2)`` is operator-monotone decreasing
  (monotone submodular) and Stieltjes, so the toy declares ``φ'`` and gets the quadrature routes too.
"""

from __future__ import annotations

import numpy as np
import pytest

import worth
from tests.helpers import make_instance
from worth.objectives import Properties, SpectralObjective
from worth.registry import ObjectiveSpec, entries, register, unregister



class Saturation(SpectralObjective):
    """``Σ 1 − e^(−λ/c)``: each direction of the spectrum saturates at 1."""

    name = "toy-saturation"

    def phi(self, t, xp):
        return -xp.expm1(-t / self.params["c"])

    def dphi(self, d, tau, xp):
        # e^(−d/c) − e^(−(d+τ)/c) = e^(−d/c)·(1 − e^(−τ/c)): no cancellation for small τ
        c = self.params["c"]
        return xp.exp(-d / c) * -xp.expm1(-tau / c)


class ShiftedSqrt(SpectralObjective):
    """``Σ √(c + λ) − √c``."""

    name = "toy-sqrt"

    def phi(self, t, xp):
        c = self.params["c"]
        return xp.sqrt(c + t) - c ** 0.5

    def dphi(self, d, tau, xp):
        c = self.params["c"]
        return tau / (xp.sqrt(c + d + tau) + xp.sqrt(c + d))

    def phi_prime(self):
        c = self.params["c"]
        return (lambda t: 0.5 / np.sqrt(c + t)), True


def _spec(cls, submodular: bool) -> ObjectiveSpec:
    return ObjectiveSpec(
        cls.name,
        Properties(monotone=True, submodular=submodular, weakly_submodular=False, spectral=True,
                   summary=f"{cls.__doc__} (tests only)"),
        {"c": 1.0},
        cls,
        {"c": (lambda v: isinstance(v, (int, float)) and v > 0, "a positive scale, e.g. c=1.0")},
    )


SPECS = {"toy-saturation": _spec(Saturation, submodular=False), "toy-sqrt": _spec(ShiftedSqrt, submodular=True)}
ROOTS = ("oracle", "secular", "secular-portable")


@pytest.fixture(params=sorted(SPECS))
def toy(request):
    spec = register(SPECS[request.param])
    try:
        yield spec
    finally:
        unregister(spec.name)
    assert spec.name not in entries()


def test_it_is_registered_like_any_objective(toy):
    name = toy.name
    assert worth.objectives()[name] == toy.properties
    obj = worth.get_objective(name, c=2.0)
    assert type(obj) is toy.build and obj.params == {"c": 2.0} and obj.properties == toy.properties
    quadrature = ("quadrature", "sherman-morrison") if name == "toy-sqrt" else ()
    assert obj.gain_methods() == ROOTS + quadrature
    with pytest.raises(ValueError, match=rf"c=-1.0 is out of range for objective '{name}'; pass a positive"):
        worth.get_objective(name, c=-1.0)
    with pytest.raises(ValueError, match="already registered"):
        register(toy)


@pytest.mark.parametrize("kind", ["gaussian", "clustered", "lowrank"])
@pytest.mark.parametrize("c", [0.5, 2.0])
def test_greedy_with_every_declared_method_matches_the_oracle(toy, kind, c):
    """|S| past full rank (m = 8, k = 14), every method the objective declares: same picks, values to 1e-9."""
    X = make_instance(kind, n=60, m=8, seed=3)
    ref = worth.select(X, 14, toy.name, "greedy", method="oracle", c=c)
    np.testing.assert_allclose(ref.value, worth.score(X, ref.indices, toy.name, c=c), rtol=1e-12)
    for method in worth.get_objective(toy.name, c=c).gain_methods():
        sel = worth.select(X, 14, toy.name, "greedy", method=method, c=c)
        assert sel.method == method
        np.testing.assert_array_equal(sel.indices, ref.indices, err_msg=method)
        np.testing.assert_allclose(sel.values, ref.values, rtol=1e-9, atol=1e-12, err_msg=method)
        np.testing.assert_allclose(sel.gains, ref.gains, rtol=1e-7, atol=1e-12, err_msg=method)
        if method in ("quadrature", "sherman-morrison"):
            assert sel.diagnostics["fallback_steps"] == 0 and sel.diagnostics["error_bound"] <= 1e-8, sel.diagnostics
        if method == "sherman-morrison" and kind != "lowrank":  # low rank: C never has full rank, no table
            assert sel.diagnostics["sm_steps"] > 0, sel.diagnostics


def test_auto_and_the_refusals_follow_the_declarations(toy):
    X = make_instance("gaussian", n=40, m=6, seed=4)
    # default greedy on a submodular objective evaluates lazily, so auto takes the lazy route's method; evaluating
    # every candidate makes keeping the whole Sherman–Morrison table pay
    fast = "quadrature" if toy.name == "toy-sqrt" else "secular"
    assert worth.select(X, 5, toy.name).method == fast
    if toy.properties.submodular:
        assert worth.select(X, 5, toy.name, evaluation="full").method == "sherman-morrison"
    with pytest.raises(ValueError, match="exists only for objective='logdet'"):
        worth.select(X, 5, toy.name, method="closed-form")
    if toy.properties.submodular:
        assert worth.select(X, 5, toy.name, "stochastic", seed=0).method == "quadrature"
        np.testing.assert_array_equal(worth.select(X, 5, toy.name, "lazy").indices, worth.select(X, 5, toy.name).indices)
    else:
        with pytest.raises(ValueError, match="cannot represent objective 'toy-saturation'.*method='secular'"):
            worth.select(X, 5, toy.name, method="quadrature")
        with pytest.raises(ValueError, match="optimizer='lazy' is exact only for submodular objectives"):
            worth.select(X, 5, toy.name, "lazy")


def test_the_declared_submodularity_is_what_the_data_show(toy):
    """γ < 1 is a measured violation of diminishing returns: found for the saturation, never for the root."""
    X = make_instance("gaussian", n=30, m=4, seed=5) * 2.0
    gamma = worth.submodularity_ratio(X, toy.name, normalize=False, samples=300)
    assert (gamma >= 1.0 - 1e-9) == toy.properties.submodular, gamma
