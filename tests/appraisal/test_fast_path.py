"""The study's fast path equals today's: shared greedy paths (worth.appraisal.paths) and batched scoring
(worth.appraisal.scoring) against per-spec realise() and per-objective worth.score (score_subset), on digits
with fixed seeds — picks, scores, accuracies and the correlation tables."""

from __future__ import annotations

import numpy as np
import pytest

from worth.appraisal import (StudyConfig, aggregate, holdout_split, make_specs, plan_paths, realise,
                             realise_subsets, result_row, run_study, score_subset, score_subsets, train_subset)
from worth.appraisal.paths import path_key

SMALL = dict(objectives={"logdet": {}, "vendi": {}, "power": {"alpha": 0.5}, "facility-location": {},
                         "scaling-law": {"per_class": True}},
             k=[20, 40], regimes=["fixed", "balanced", "budget"], seeds=[0, 1], random_subsets=3,
             mixture_fractions=[0.5], fillers=["random", "min"], minimiser_sample=12, epochs=3, steps=10,
             bootstrap=40)


@pytest.fixture(scope="module")
def split():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    held = holdout_split(y, 0.2, seed=0)
    return X[~held], y[~held], X[held], y[held]


@pytest.fixture(scope="module")
def config():
    return StudyConfig.from_dict(SMALL)


def reference_rows(X, y, Xt, yt, config):
    """Today's in-process study: realise per spec (one process-wide cache), score_subset per subset."""
    cache, subsets, rows = {}, {}, []
    for spec in make_specs(config):
        if spec.subset_key not in subsets:
            subsets[spec.subset_key] = realise(spec, X, y, cache)
        idx = subsets[spec.subset_key]
        scores = score_subset(X, idx, config.objectives, y)
        rows.append(result_row(spec, scores, train_subset(spec, idx, X, y, Xt, yt, 10, config)))
    return subsets, rows


@pytest.fixture(scope="module")
def both(split, config, tmp_path_factory):
    X, y, Xt, yt = split
    ref_subsets, ref_rows = reference_rows(X, y, Xt, yt, config)
    fast = run_study(X, y, Xt, yt, config, tmp_path_factory.mktemp("fast"))
    ref = aggregate(ref_rows, config, tmp_path_factory.mktemp("ref"))
    return ref_subsets, ref_rows, ref, fast


def test_paths_are_shared(config):
    specs = make_specs(config)
    plan = plan_paths(specs)
    unconstrained = [k for k in plan if k.balanced_k is None]
    assert all(plan[k] == 40 for k in unconstrained)  # the k = 20 runs are cut from the k = 40 ones
    # maximisers: one per objective unconstrained + one per balanced k; minimisers also per seed
    n_obj = len(config.objectives)
    assert sum(k.kind == "max" for k in plan) == n_obj * (1 + 2)
    assert sum(k.kind == "min" for k in plan) == n_obj * 2 * (1 + 2)
    assert {path_key(s) for s in specs if s.kind == "mix"} <= set(plan)


@pytest.mark.slow
def test_picks_equal_the_reference(split, config, both):
    X, y, _, _ = split
    ref_subsets, *_ = both
    fast = realise_subsets(make_specs(config), X, y)
    assert set(fast) == set(ref_subsets)
    for key, idx in ref_subsets.items():
        np.testing.assert_array_equal(fast[key], idx, err_msg=key)


@pytest.mark.slow
def test_scores_equal_the_reference(split, config, both):
    X, y, _, _ = split
    ref_subsets, *_ = both
    keys = list(ref_subsets)
    fast = score_subsets(X, [ref_subsets[k] for k in keys], config.objectives, y)
    for key, got in zip(keys, fast):
        want = score_subset(X, ref_subsets[key], config.objectives, y)
        assert got == want, key  # bit for bit, facility location included (no differing GEMM rounding here)


@pytest.mark.slow
def test_rows_and_correlation_tables_equal_the_reference(both):
    _, ref_rows, ref, fast = both
    untimed = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]  # noqa: E731
    assert untimed(fast["rows"]) == untimed(ref_rows)  # names, picks' scores and trained accuracies
    for name in ("correlation", "spread", "path", "stops_paying"):
        assert fast["tables"][name] == ref["tables"][name], name


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("similarity", ["cosine", "shifted-cosine", "rbf"])
def test_batched_facility_scores_equal_worth_score(similarity, precision):
    import worth

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 7))
    subsets = [rng.choice(300, size=s, replace=False) for s in (1, 5, 40, 40, 120)] + [np.arange(0)]
    subsets.append(subsets[2][::-1].copy())  # the same rows in another order
    params = {"similarity": similarity, "precision": precision}
    got = [r["facility-location"] for r in score_subsets(X, subsets, {"facility-location": params})]
    want = [worth.score(X, s, "facility-location", **params) for s in subsets]
    # float64: a GEMM of another shape may round an inner product by an ulp; float32 by ~1e-7 of a similarity
    np.testing.assert_allclose(got, want, rtol=1e-12 if precision == "float64" else 1e-6, atol=0)
    assert got[-1] == got[2]


def test_facility_batches_and_chunks_do_not_change_scores(monkeypatch):
    from worth.appraisal import scoring

    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 6))
    subsets = [rng.choice(200, size=s, replace=False) for s in (3, 30, 30, 90, 7)]
    whole = score_subsets(X, subsets, {"facility-location": {}})
    monkeypatch.setattr(scoring, "_CUR_BYTES", 8 * 200 * 2)  # two subsets per batch
    monkeypatch.setattr(scoring, "_GEMM_ELEMENTS", 500)  # a few pool rows per GEMM chunk
    assert score_subsets(X, subsets, {"facility-location": {}}) == whole
