"""The closed-form table's one-pass update (:func:`worth.spectral.table.update_table`) against its formula."""

from __future__ import annotations

import numpy as np
import pytest

from worth.spectral.table import _SPLIT_ROWS, update_table
from worth.threads import run_threads


def _case(n, m, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m)).astype(dtype)
    u, w = rng.standard_normal(m).astype(dtype), rng.standard_normal(m).astype(dtype)
    a, b = rng.random(n) + 1.0, rng.random(n) + 2.0
    return X, u, w, 1.7, a, b


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-4)])
@pytest.mark.parametrize("squared", [True, False])
def test_update_table_is_sherman_morrisons_formula(dtype, rtol, squared):
    X, u, w, d, a, b = _case(3000, 37, dtype)
    p, q = X.astype(np.float64) @ u.astype(np.float64), X.astype(np.float64) @ w.astype(np.float64)
    r = p / d
    uu = float(np.dot(u.astype(np.float64), u.astype(np.float64)))
    want_a = a - p * r
    want_b = b - 2.0 * q * r + r * r * uu
    got_a, got_b = a.copy(), b.copy()
    update_table(X, u, w if squared else None, d, uu, got_a, got_b if squared else None)
    np.testing.assert_allclose(got_a, want_a, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(got_b, want_b if squared else b, rtol=rtol, atol=rtol)


def test_update_table_bits_do_not_depend_on_the_threads():
    X, u, w, d, a, b = _case(2 * _SPLIT_ROWS + 5, 16, np.float64, seed=1)
    out = {}
    for t in (1, 2, 3):
        got_a, got_b = a.copy(), b.copy()
        with run_threads(t):
            update_table(X, u, w, d, float(np.dot(u, u)), got_a, got_b)
        out[t] = (got_a, got_b)
    for t in (2, 3):
        assert np.array_equal(out[t][0], out[1][0]) and np.array_equal(out[t][1], out[1][1])
    assert not np.array_equal(out[1][0], a)
