"""Bad input gets a ValueError that names the argument and says what to do."""

from __future__ import annotations

import numpy as np
import pytest

import worth

GOOD = np.random.default_rng(0).normal(size=(10, 4))


def _with(row, value):
    X = GOOD.copy()
    X[row] = value
    return X


@pytest.mark.parametrize("X,kwargs,match", [
    (_with(3, np.nan), {}, r"X has non-finite values \(NaN or inf\) in rows 3"),
    (_with(5, np.inf), {}, r"X has non-finite values .* rows 5"),
    (_with(2, 0.0), {}, r"X has all-zero rows 2.*normalize=False"),
    (GOOD[:, 0], {}, r"X must be a 2-D array.*reshape"),
    (GOOD, {"k": 11}, r"k=11 exceeds the number of items \(n_samples=10\)"),
    (GOOD, {"k": 0}, r"k=0 must be a positive integer"),
    (GOOD, {"k": -3}, r"k=-3 must be a positive integer"),
    (GOOD, {"k": 2.5}, r"k=2.5 must be an integer"),
    (GOOD, {"objective": "vendy"}, r"objective='vendy' is unknown; pass one of"),
    (GOOD, {"objective": "logdet", "sigma2": -1.0}, r"sigma2=-1.0 is out of range.*positive"),
    (GOOD, {"objective": "power", "alpha": 1.5}, r"alpha=1.5 is out of range.*\(0, 1\]"),
    (GOOD, {"objective": "hybrid", "c": 0}, r"c=0 is out of range"),
    (GOOD, {"objective": "vendi", "q": -1}, r"q=-1 is out of range"),
    (GOOD, {"objective": "logdet", "alpha": 0.5}, r"parameter 'alpha' is not a parameter of objective 'logdet'"),
    (GOOD, {"optimizer": "lazzy"}, r"optimizer='lazzy' is unknown"),
    (GOOD, {"method": "fast"}, r"method='fast' is unknown"),
    (GOOD, {"method": "closed-form"}, r"method='closed-form' exists only for objective='logdet'"),
    (GOOD, {"optimizer": "stochastic", "epsilon": 2.0}, r"epsilon=2.0 must lie in \(0, 1\)"),
    (GOOD, {"batch_size": 0}, r"batch_size=0 must be a positive integer"),
    (np.zeros((0, 4)), {}, r"X is empty"),
    (np.array([["a", "b"]]), {}, r"X must hold real numbers"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_select_rejects_bad_input(X, kwargs, match):
    args = {"k": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        worth.select(X, **args)


def test_zero_rows_allowed_without_normalisation():
    sel = worth.select(_with(2, 0.0), 3, "logdet", normalize=False)
    assert 2 not in np.asarray(sel.indices).tolist()  # a zero row adds nothing


@pytest.mark.parametrize("indices,match", [
    ([0, 10], r"indices holds \[10\], out of range for n=10"),
    ([-1], r"out of range"),
    (np.array([0.5, 1.0]), r"integer row numbers"),
])
def test_score_rejects_bad_indices(indices, match):
    with pytest.raises(ValueError, match=match):
        worth.score(GOOD, indices)


def test_failed_call_leaves_input_untouched():
    X = _with(4, np.nan)
    before = X.copy()
    with pytest.raises(ValueError):
        worth.select(X, 3)
    np.testing.assert_array_equal(X, before)
