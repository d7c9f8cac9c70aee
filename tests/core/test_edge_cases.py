"""The library's edge cases (issue 15): each reproduction from the issue, refused clearly or handled exactly."""

from __future__ import annotations

import numpy as np
import pytest

import worth
from tests.helpers import make_instance
from worth._array import to_numpy

ZERO_SAFE = ["logdet", "entropy", "vendi-pool", "power", "hybrid", "facility-location"]


@pytest.mark.parametrize("evaluation", ["auto", "full"])
@pytest.mark.parametrize("name", ZERO_SAFE)
def test_all_zero_rows_without_normalisation(name, evaluation):
    """``select(np.zeros((10, 4)), 3, "logdet", normalize=False)`` raised IndexError in the eigen-update."""
    sel = worth.select(np.zeros((10, 4)), 3, name, normalize=False, evaluation=evaluation)
    np.testing.assert_array_equal(sel.indices, [0, 1, 2])  # all gains equal: ties to the lowest index
    assert sel.value == pytest.approx(worth.score(np.zeros((10, 4)), sel.indices, name, normalize=False), abs=1e-12)


@pytest.mark.parametrize("method", ["secular", "oracle", "auto"])
@pytest.mark.parametrize("name", ["entropy", "vendi-pool", "power", "logdet"])
def test_zero_rows_picked_once_the_greedy_must(name, method):
    """Rows of norm 3 (``−t log t`` gains negative) beside zero rows: entropy picks the zero rows first, so a
    zero row is added to an empty spectrum (it crashed), then more; every k up to n runs and matches score."""
    X = 3.0 * make_instance("gaussian", n=12, m=4, seed=1)
    X[[2, 5, 7]] = 0.0
    sel = worth.select(X, 12, name, method=method, normalize=False)
    full = worth.select(X, 12, name, method=method, normalize=False, evaluation="full")
    np.testing.assert_array_equal(sel.indices, full.indices)
    assert sorted(to_numpy(sel.indices).tolist()) == list(range(12))
    assert sel.value == pytest.approx(worth.score(X, sel.indices, name, normalize=False), rel=1e-9, abs=1e-10)
    gains = dict(zip(to_numpy(sel.indices).tolist(), to_numpy(sel.gains).tolist()))
    zero_gain = np.log(12) / 12 if name == "vendi-pool" else 0.0  # vendi-pool's modular term |S|·log N / N
    for row in (2, 5, 7):
        assert gains[row] == pytest.approx(zero_gain, abs=1e-12)


def test_distributed_greedy_with_a_quota_for_a_class_some_parts_lack():
    """A rare class (3 rows of 200) split at random: parts without it failed with "quota for class 3"."""
    X = np.random.default_rng(1).normal(size=(200, 5))
    labels = np.zeros(200, dtype=int)
    labels[:3] = 3
    quotas = {3: 1, 0: 9}
    got = worth.distributed_greedy(X, 10, parts=4, objective="logdet", labels=labels, quotas=quotas)
    ref = worth.select(X, 10, "logdet", labels=labels, quotas=quotas)
    counts = np.bincount(labels[to_numpy(got.indices)], minlength=4)
    assert counts[3] <= 1 and counts[0] <= 9 and counts.sum() == 10
    assert got.info["class_counts"] == ref.info["class_counts"] == {0: 9, 3: 1}
    assert got.value >= 0.95 * ref.value


def test_distributed_greedy_checks_quotas_before_the_parts():
    X = np.random.default_rng(1).normal(size=(40, 3))
    with pytest.raises(ValueError, match="quota for class 7, which is not in labels"):
        worth.distributed_greedy(X, 4, parts=2, objective="logdet", labels=np.zeros(40, int), quotas={7: 1})


def test_dask_arrays_refused_with_what_to_do():
    da = pytest.importorskip("dask.array")
    X = da.from_array(make_instance("gaussian", n=40, m=4), chunks=10)
    for call in (lambda: worth.select(X, 3, "logdet"), lambda: worth.score(X, [0, 1], "logdet"),
                 lambda: worth.distributed_greedy(X, 3, parts=2, objective="logdet")):
        with pytest.raises(ValueError, match=r"X is a Dask array.*call X\.compute\(\).*select flow"):
            call()


@pytest.mark.parametrize("wrap,match", [
    (np.matrix, r"X is an np\.matrix; pass a plain array: np\.asarray\(X\)"),
    (lambda a: np.ma.masked_array(a, mask=a > 1.5), r"X is a masked array, and the mask would be ignored"),
])
def test_matrix_and_masked_arrays_refused(wrap, match):
    X = np.random.default_rng(0).normal(size=(20, 4))
    for call in (lambda: worth.select(wrap(X), 3, "logdet"), lambda: worth.score(wrap(X), [1, 2], "logdet")):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("init,match", [
    (3, r"init=3 is not a sequence of row numbers.*e\.g\. init=\[3\]"),
    (2.5, r"init=2\.5 is not a sequence of row numbers"),
    ("abc", r"init='abc' is not a sequence of row numbers"),
])
def test_scalar_init_refused(init, match):
    with pytest.raises(ValueError, match=match):
        worth.select(make_instance("gaussian", n=20, m=4), 3, "logdet", init=init)


def test_vendi_on_raw_rows_refused():
    """``--no-normalize`` Vendi on raw rows: every value 0, picks 0, 1, 2, … and no warning."""
    X = 10.0 * np.random.default_rng(0).normal(size=(30, 4))
    match = r"objective='vendi' is defined on a kernel with unit diagonal.*pass normalize=True"
    with pytest.raises(ValueError, match=match):
        worth.select(X, 3, "vendi", normalize=False)
    with pytest.raises(ValueError, match=match):
        worth.score(X, [0, 1], "vendi", normalize=False)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)  # rows already unit: normalize=False is fine
    sel = worth.select(unit.astype(np.float32), 3, "vendi", normalize=False)
    assert sel.value > 1.0


@pytest.mark.parametrize("name", ["power", "entropy", "vendi", "logdet"])
def test_values_agree_with_score_near_rank_exhaustion(name):
    """20 centres + 1e-6 noise, m = 32, k = 60 (scaled down): the noise eigenvalues straddle the floor.
    ``values[-1]`` and ``score`` use one floor, and the reported bound covers what remains."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 32))[rng.integers(0, 20, 400)] + 1e-6 * rng.normal(size=(400, 32))
    sel = worth.select(X, 60, name)
    exact = worth.score(X, sel.indices, name)
    bound = sel.diagnostics["floor_bound_abs"]
    assert abs(sel.value - exact) <= 2 * bound + 1e-12 * abs(exact)  # each within the bound of the exact value
    if name in ("power", "entropy", "vendi"):  # φ' unbounded at 0: the floor matters, and the bound says so
        assert bound > sel.diagnostics.get("error_bound", 0.0) * abs(exact)
    else:  # log-det: φ' bounded at 0, the floor costs rounding only
        assert bound < 1e-9 * abs(exact)


def test_floor_bound_is_rounding_sized_in_general_position():
    X = make_instance("gaussian", n=200, m=16, seed=2)
    sel = worth.select(X, 40, "power")
    assert sel.diagnostics["floor_bound_abs"] < 1e-10 * sel.value
