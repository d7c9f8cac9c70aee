"""float32 input kept float32 where the state allows it (issue 19): prepare_rows by chunk, the no-copy rule, and
picks against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import worth
from worth import validation
from worth.validation import normalize_rows_inplace, prepare_rows, unit_tolerance, working_dtype


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data.astype(np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _naive(X, normalize):
    """What prepare_rows computes, on the whole array at once: one float64 copy, each row divided by its largest
    entry (issue 21: squared norms of rows near 1e±160 would over- or underflow), then by its norm (einsum)."""
    X64 = X.astype(np.float64)
    if not normalize:
        return X64
    X64 = X64 / np.abs(X64).max(axis=1)[:, None]
    return X64 / np.sqrt(np.einsum("ij,ij->i", X64, X64))[:, None]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int64])
@pytest.mark.parametrize("normalize", [True, False])
def test_prepare_rows_by_chunk_is_the_whole_array_computation(rng, monkeypatch, dtype, normalize):
    """Chunks of 7 rows give bit for bit what one float64 pass over the whole array gives."""
    monkeypatch.setattr(validation, "CHUNK_ELEMENTS", 7 * 6)
    X = (rng.standard_normal((50, 6)) * 4).astype(dtype) + (dtype == np.int64)
    got = prepare_rows(X, np, normalize=normalize)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, _naive(X, normalize) if normalize else X.astype(np.float64))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_float32_result_is_the_float64_normalised_rows_rounded_once(rng, monkeypatch, dtype):
    monkeypatch.setattr(validation, "CHUNK_ELEMENTS", 5 * 8)
    X = rng.standard_normal((33, 8)).astype(dtype)
    got = prepare_rows(X, np, normalize=True, dtype=np.float32)
    assert got.dtype == np.float32 and got is not X
    np.testing.assert_array_equal(got, _naive(X, True).astype(np.float32))
    assert np.abs(np.einsum("ij,ij->i", got.astype(np.float64), got.astype(np.float64)) - 1).max() \
        <= unit_tolerance(8, np.float32)


def test_unit_float32_rows_are_used_without_a_copy_and_the_caller_keeps_its_array(rng):
    X = rng.standard_normal((40, 16)).astype(np.float32)
    before = X.copy()
    assert prepare_rows(X, np, normalize=True, dtype=np.float32) is not X  # not unit: a normalised copy
    np.testing.assert_array_equal(X, before)  # the caller's rows are never touched
    normalize_rows_inplace(X)
    np.testing.assert_allclose(np.linalg.norm(X.astype(np.float64), axis=1), 1.0, atol=1e-6)
    assert prepare_rows(X, np, normalize=True, dtype=np.float32) is X
    assert prepare_rows(X, np, normalize=False, dtype=np.float32) is X


@pytest.mark.parametrize("bad,match", [(np.nan, "non-finite values"), (0.0, "all-zero rows")])
def test_bad_rows_still_named_on_the_float32_path(rng, bad, match):
    X = rng.standard_normal((10, 4)).astype(np.float32)
    X[3] = bad
    normalize_rows_inplace(X)  # leaves them for prepare_rows to name
    with pytest.raises(ValueError, match=f"{match} .*3"):
        prepare_rows(X, np, normalize=True, dtype=np.float32)


def test_working_dtype_follows_the_objective():
    fl, vendi = worth.get_objective("facility-location"), worth.get_objective("vendi")
    assert fl.float32_rows and not vendi.float32_rows
    x16, x32, x64 = (np.zeros((1, 1), dtype=d) for d in ("float16", "float32", "float64"))
    assert [working_dtype(x, np, True) for x in (x16, x32, x64)] == [np.float32, np.float32, np.float64]
    assert working_dtype(x32, np, False) == np.float64 and working_dtype([[1.0]], np, True) == np.float64


@pytest.mark.parametrize("params", [{}, {"neighbors": 10}, {"neighbors": 10, "similarity": "rbf", "gamma": 0.5}])
def test_facility_location_on_float32_rows_picks_as_the_float64_reference(digits, params):
    """float32 rows differ from the float64-normalised ones by one rounding (relative 2^-24 a coordinate); the
    similarities of kept pairs are computed in float64 from them, so each differs by at most ≈ m·2^-24 ≈ 4e-6
    here. Digits have no near-tie that close: the picks are identical, the values agree within that bound × n."""
    X32 = digits.astype(np.float32)
    ref = worth.select(digits, 30, "facility-location", "lazy", **params)
    got = worth.select(X32, 30, "facility-location", "lazy", **params)
    assert np.array_equal(got.indices, ref.indices)
    bound = digits.shape[1] * np.finfo(np.float32).eps * digits.shape[0]
    np.testing.assert_allclose(got.values, ref.values, rtol=0, atol=bound)


def test_spectral_objectives_still_get_float64_rows(digits):
    """Vendi's state keeps its covariance in X.dtype, so float32 input is converted to float64 (picks identical)."""
    ref = worth.select(digits, 20, "vendi")
    got = worth.select(digits.astype(np.float32), 20, "vendi")
    ref32 = worth.select(digits.astype(np.float32).astype(np.float64), 20, "vendi")
    assert np.array_equal(got.indices, ref32.indices)
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-5)
