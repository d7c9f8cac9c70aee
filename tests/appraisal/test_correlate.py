"""Correlations, intervals, moderate range, spreads and paths on synthetic results with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from worth.appraisal import correlation_table, path_table, rank_correlation, spread_table
from worth.appraisal.correlate import _spearman, _tau_b, moderate_range, stops_paying


@pytest.mark.parametrize("transform", [np.exp, lambda x: x**3, lambda x: -1 / (1 + np.exp(-x))])
def test_monotone_relation_gives_perfect_rank_correlation(transform):
    x = np.random.default_rng(0).normal(size=30)
    sign = 1 if transform(np.array([1.0]))[0] < transform(np.array([2.0]))[0] else -1
    r = rank_correlation(x, transform(x), n_boot=200)
    assert r["spearman"] == pytest.approx(sign) and r["kendall"] == pytest.approx(sign)
    assert r["spearman_lo"] == pytest.approx(sign) and r["spearman_hi"] == pytest.approx(sign)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_contains_the_estimate_and_is_seeded(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    r = rank_correlation(x, y, n_boot=500, seed=seed)
    for stat in ("spearman", "kendall"):
        assert r[f"{stat}_lo"] <= r[stat] <= r[f"{stat}_hi"]
        assert r[f"{stat}_hi"] - r[f"{stat}_lo"] > 0.05
    assert r == rank_correlation(x, y, n_boot=500, seed=seed)


def test_vectorised_statistics_equal_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(4, 25)).astype(float)  # many ties, as bootstrap resamples have
    y = x + rng.integers(0, 3, size=(4, 25))
    for b in range(4):
        assert _tau_b(x, y)[b] == pytest.approx(kendalltau(x[b], y[b]).statistic)
        assert _spearman(x, y)[b] == pytest.approx(spearmanr(x[b], y[b]).statistic)


@pytest.mark.parametrize("x, y", [([1.0, 1.0, 1.0, 1.0], [0.1, 0.2, 0.3, 0.4]), ([1.0, 2.0], [1.0, 2.0])])
def test_undefined_correlations_are_nan(x, y):
    r = rank_correlation(x, y, n_boot=10)
    assert math.isnan(r["spearman"]) and math.isnan(r["kendall_lo"])


def _rows():
    """Synthetic study: score a = accuracy (monotone); b anti-monotone; random subsets concentrated."""
    rng = np.random.default_rng(0)
    rows = []
    for regime in ("fixed", "balanced"):
        for i in range(12):
            acc = 0.8 + 0.01 * rng.normal()
            rows.append(dict(kind="random", objective=None, regime=regime, k=50, fraction=0.0, filler=None,
                             accuracy=acc, **{"score.a": 10 * acc, "score.b": -acc}))
        for obj in ("a", "b"):
            for kind, f, acc in (("max", 0.0, 0.95), ("mix", 0.5, 0.9), ("mix", 0.75, 0.85), ("min", 0.0, 0.5),
                                 ("mix", 0.5, 0.7)):
                filler = "min" if acc < 0.8 else ("random" if kind == "mix" else None)
                rows.append(dict(kind=kind, objective=obj, regime=regime, k=50, fraction=f, filler=filler,
                                 accuracy=acc + 0.001 * (obj == "b"),
                                 **{"score.a": 10 * acc, "score.b": -acc}))
    return rows


def test_tables_on_synthetic_results():
    rows = _rows()
    corr = correlation_table(rows, ["a", "b"], n_boot=100)
    by = {(c["regime"], c["objective"], c["subsets"]): c for c in corr}
    assert by[("fixed", "a", "all")]["spearman"] == pytest.approx(1, abs=0.02)
    assert by[("fixed", "b", "random")]["spearman"] == pytest.approx(-1)
    assert by[("fixed", "a", "random")]["n"] == 12
    lo, hi = moderate_range([r for r in rows if r["regime"] == "fixed"], "a")
    rand = [r["score.a"] for r in rows if r["kind"] == "random" and r["regime"] == "fixed"]
    assert lo == pytest.approx(np.percentile(rand, 10)) and hi == pytest.approx((np.percentile(rand, 90) + 9.5) / 2)
    moderate = by[("fixed", "a", "moderate")]["n"]
    assert 0 < moderate < len([r for r in rows if r["regime"] == "fixed"])

    spread = {(s["regime"], s["subsets"]): s for s in spread_table(rows, ["a", "b"])}
    assert spread[("fixed", "random")]["cv.accuracy"] < 0.03
    assert spread[("fixed", "optimised")]["n"] == 2
    assert spread[("fixed", "random")]["range.accuracy.all"] == pytest.approx(0.951 - 0.5)

    path = path_table(rows, ["a"])
    series = [p for p in path if p["regime"] == "fixed" and p["filler"] == "random"]
    assert [p["share"] for p in series] == [0.0, 0.25, 0.5, 1.0]
    assert series[-1]["accuracy"] == pytest.approx(0.95)
    stop = {(s["regime"], s["filler"]): s for s in stops_paying(path)}
    assert stop[("fixed", "random")]["peak_share"] == 1.0 and stop[("fixed", "random")]["drop"] == 0.0
