"""Herding and k-center greedy (worth.coreset) against naive references and brute force on tiny sets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import worth
from tests.helpers import make_instance


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def naive_herding(X, k):
    """The herding recurrence as written: argmax ⟨w_t, x⟩ over unpicked rows, w_{t+1} = w_t + μ − x_t."""
    mu = X.mean(axis=0)
    w = mu.copy()
    picks = []
    for _ in range(k):
        scores = np.array([-np.inf if i in picks else float(w @ X[i]) for i in range(X.shape[0])])
        i = int(np.argmax(scores))
        picks.append(i)
        w = w + mu - X[i]
    return picks


def naive_kcenter(X, k):
    """Farthest-first traversal, first pick nearest the mean, distances by explicit differences."""
    picks = [int(np.argmin(np.linalg.norm(X - X.mean(axis=0), axis=1)))]
    while len(picks) < k:
        d = np.min(np.linalg.norm(X[:, None, :] - X[picks][None, :, :], axis=2), axis=1)
        d[picks] = -np.inf
        picks.append(int(np.argmax(d)))
    return picks


def radius(X, S):
    return float(np.max(np.min(np.linalg.norm(X[:, None, :] - X[list(S)][None, :, :], axis=2), axis=1)))


def mean_error(X, S):
    return float(np.linalg.norm(X.mean(axis=0) - X[list(S)].mean(axis=0)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["gaussian", "clustered"])
def test_herding_equals_the_recurrence(kind, seed):
    X = _unit(make_instance(kind, n=40, m=6, seed=seed))
    sel = worth.select(X, 15, "herding")
    ref = naive_herding(X, 15)
    np.testing.assert_array_equal(sel.indices, ref)
    # its mean-embedding error, step by step, is the reference's; values are |mu| - error
    mu = np.linalg.norm(X.mean(axis=0))
    errors = [mean_error(X, ref[:t]) for t in range(1, 16)]
    np.testing.assert_allclose(sel.values, mu - np.array(errors), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.cumsum(sel.gains), sel.values, atol=1e-12)
    assert worth.score(X, ref, "herding") == pytest.approx(sel.value, abs=1e-12)


def test_herding_error_decreases_faster_than_random():
    """Herding's mean error falls like O(1/t): at k = 40 far below random subsets' typical O(1/sqrt(t))."""
    X = _unit(make_instance("clustered", n=400, m=8, seed=1))
    idx = np.asarray(worth.select(X, 40, "herding").indices)
    errs = np.array([mean_error(X, idx[:t]) for t in (1, 5, 10, 20, 40)])
    assert np.all(np.diff(errs[1:]) < 0), errs
    rng = np.random.default_rng(0)
    random_errs = [mean_error(X, rng.choice(400, 40, replace=False)) for _ in range(50)]
    assert errs[-1] < 0.25 * np.median(random_errs)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["gaussian", "clustered"])
def test_kcenter_equals_naive_and_is_within_twice_the_optimal_radius(kind, seed):
    X = _unit(make_instance(kind, n=12, m=4, seed=seed))
    for k in (1, 2, 3, 4):
        sel = worth.select(X, k, "k-center")
        ref = naive_kcenter(X, k)
        np.testing.assert_array_equal(sel.indices, ref)
        r = radius(X, ref)
        assert sel.value == pytest.approx(-r, abs=1e-7)
        best = min(radius(X, S) for S in itertools.combinations(range(12), k))
        assert best - 1e-9 <= r <= 2 * best + 1e-7


def test_kcenter_with_init_continues_from_the_chosen_rows():
    X = _unit(make_instance("gaussian", n=30, m=5, seed=2))
    init = [3, 17]
    sel = worth.select(X, 4, "k-center", init=init)
    picks = list(init)
    for _ in range(4):
        d = np.min(np.linalg.norm(X[:, None] - X[picks][None], axis=2), axis=1)
        d[picks] = -np.inf
        picks.append(int(np.argmax(d)))
    np.testing.assert_array_equal(sel.indices, picks[2:])
    assert sel.info["init_value"] == pytest.approx(-radius(X, init), abs=1e-7)


@pytest.mark.parametrize("name", ["herding", "k-center"])
def test_quotas_balance_the_classes(name):
    X = _unit(make_instance("clustered", n=90, m=6, seed=4))
    labels = np.arange(90) % 3
    sel = worth.select(X, 12, name, labels=labels, quotas="balanced")
    counts = np.bincount(labels[np.asarray(sel.indices)], minlength=3)
    assert counts.tolist() == [4, 4, 4]
    assert sel.info["class_counts"] == {0: 4, 1: 4, 2: 4}


@pytest.mark.parametrize("name", ["herding", "k-center"])
def test_array_type_in_equals_out(name, xp):
    X = _unit(make_instance("gaussian", n=40, m=5, seed=7))
    ref = worth.select(X, 6, name)
    Xa = xp.asarray(X)
    sel = worth.select(Xa, 6, name)
    assert type(sel.indices) is type(Xa)
    np.testing.assert_array_equal(np.asarray(sel.indices), np.asarray(ref.indices))
    np.testing.assert_allclose(np.asarray(sel.values), np.asarray(ref.values), atol=1e-12)
    assert worth.score(Xa, ref.indices, name) == pytest.approx(ref.value, abs=1e-9)


@pytest.mark.parametrize("name", ["herding", "k-center"])
def test_properties_declared_and_lazy_and_target_refused(name):
    props = worth.objectives()[name]
    assert not (props.submodular or props.weakly_submodular or props.monotone or props.spectral)
    X = make_instance("gaussian", n=20, m=4, seed=0)
    with pytest.raises(ValueError, match="optimizer='lazy' is exact only for submodular"):
        worth.select(X, 3, name, optimizer="lazy")
    with pytest.raises(ValueError, match="target= selects by mutual information"):
        worth.select(X, 3, name, target=[0, 1])
    with pytest.raises(ValueError, match="target= selects by mutual information"):
        worth.score(X, [2, 3], name, target=[0, 1])
    assert worth.select(X, 3, name).info["evaluation"] == "full"


def test_cli_select_k_center(tmp_path):
    from typer.testing import CliRunner

    from flows.cli.main import app

    X = make_instance("gaussian", n=60, m=5, seed=3)
    path = tmp_path / "X.npy"
    np.save(path, X)
    out = tmp_path / "sel.json"
    result = CliRunner().invoke(app, ["select", "--input", str(path), "--objective", "k-center", "--k", "10",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(out.read_text())
    assert data["objective"] == "k-center"
    np.testing.assert_array_equal(data["indices"], naive_kcenter(_unit(X), 10))
