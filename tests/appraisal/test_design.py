"""Study design: spec names and keys, JSON round trips, subsets of the right size and balance, the holdout."""

from __future__ import annotations

import json

import numpy as np
import pytest

import worth
from worth.appraisal import StudyConfig, SubsetSpec, holdout_split, make_specs, realise
from worth.appraisal.design import check_design


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


@pytest.mark.parametrize(
    "spec, name",
    [
        (SubsetSpec("max", "vendi", 100, "balanced", 0), "vendi-k100-balanced-s0"),
        (SubsetSpec("random", None, 100, "fixed", 3), "random-k100-fixed-s3"),
        (SubsetSpec("mix", "vendi", 100, "fixed", 0, fraction=0.5, filler="random"), "mix50-vendi-random-k100-fixed-s0"),
        (SubsetSpec("min", "logdet", 20, "budget", 1, sample=8), "min-logdet-k20-budget-s1"),
    ],
)
def test_names_keys_and_json(spec, name):
    assert spec.name == name
    again = SubsetSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.key == spec.key and len(spec.key) == 16
    assert SubsetSpec.from_dict({**spec.to_dict(), "seed": 9}).key != spec.key


def test_fixed_and_budget_share_subsets_not_runs():
    a, b = SubsetSpec("max", "vendi", 50, "fixed", 0), SubsetSpec("max", "vendi", 50, "budget", 0)
    assert a.subset_key == b.subset_key and a.key != b.key
    assert SubsetSpec("max", "vendi", 50, "balanced", 0).subset_key != a.subset_key


def test_make_specs_counts_and_unique_names():
    cfg = StudyConfig(objectives=["vendi", "logdet"], k=[10, 20], regimes=["fixed", "balanced"], seeds=[0, 1],
                      random_subsets=5, mixture_fractions=[0.25, 0.5], fillers=["random", "min"])
    specs = make_specs(cfg)
    per_group = 2 * 2 * (1 + 1 + 2 * 2) + 5  # seeds × objectives × (max, min, mixes) + randoms
    assert len(specs) == 2 * 2 * per_group
    assert len({s.name for s in specs}) == len(specs) == len({s.key for s in specs})


@pytest.mark.parametrize("regime", ["fixed", "balanced"])
@pytest.mark.parametrize("kind, filler, fraction", [("max", None, 0.0), ("min", None, 0.0), ("random", None, 0.0),
                                                    ("mix", "random", 0.25), ("mix", "random", 0.75),
                                                    ("mix", "min", 0.5)])
def test_subsets_have_size_balance_and_prefix(digits, regime, kind, filler, fraction):
    X, y = digits
    k = 40
    spec = SubsetSpec(kind, None if kind == "random" else "logdet", k, regime, 0, fraction=fraction, filler=filler,
                      sample=16 if "min" in (kind, filler) else None)
    idx = realise(spec, X, y, cache={})
    assert idx.size == k == np.unique(idx).size
    counts = np.bincount(y[idx], minlength=10)
    if regime == "balanced":
        assert counts.max() - counts.min() <= 1 and counts.max() <= 4
    if kind == "mix":
        best = np.asarray(worth.select(X, k, "logdet", labels=y, quotas="balanced" if regime == "balanced" else None
                                       ).indices)
        keep = round((1 - fraction) * k)
        assert idx[:keep].tolist() == best[:keep].tolist()
        if regime == "balanced":  # the completion restores the maximiser's class counts
            assert counts.tolist() == np.bincount(y[best], minlength=10).tolist()
        low = worth.score(X, idx, "logdet")
        assert low < worth.score(X, best, "logdet")
    assert realise(spec, X, y).tolist() == idx.tolist()  # deterministic


def test_mixtures_span_the_score_range(digits):
    X, y = digits
    values = [worth.score(X, realise(SubsetSpec("mix", "logdet", 40, "fixed", 0, fraction=f, filler="min",
                                                 sample=32), X, y), "logdet") for f in (0.25, 0.5, 0.75)]
    lo = worth.score(X, realise(SubsetSpec("min", "logdet", 40, "fixed", 0, sample=32), X, y), "logdet")
    hi = worth.score(X, realise(SubsetSpec("max", "logdet", 40, "fixed", 0), X, y), "logdet")
    assert hi > values[0] > values[1] > values[2] > lo


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_holdout_is_stratified_and_seeded(digits, fraction):
    _, y = digits
    mask = holdout_split(y, fraction, seed=4)
    assert mask.tolist() == holdout_split(y, fraction, seed=4).tolist()
    assert mask.tolist() != holdout_split(y, fraction, seed=5).tolist()
    for c in range(10):
        n_c = int((y == c).sum())
        assert int(mask[y == c].sum()) == round(fraction * n_c)


@pytest.mark.parametrize("fraction", [0, 0.95, -0.1, "0.2", True])
def test_holdout_fraction_is_checked(fraction):
    with pytest.raises(ValueError, match=r"holdout_fraction=.* must lie in \(0, 0.9\]"):
        holdout_split(np.arange(20) % 2, fraction)


def test_balanced_k_beyond_a_class_is_refused(digits):
    _, y = digits
    with pytest.raises(ValueError, match="needs 58 rows of every class"):
        check_design(StudyConfig(k=[580], regimes=["balanced"]), y)
