"""Training on a subset: deterministic for a seed, the step budget independent of the subset size, bad input
refused before any training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worth.train import MODELS, fit_and_evaluate


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


def _images(X):
    return X.reshape(-1, 8, 8)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_same_seed_is_bit_identical(digits, model):
    X, y = digits
    Xin = _images(X) if model == "cnn" else X
    runs = [fit_and_evaluate(Xin[:200], y[:200], Xin[1500:], y[1500:], 10, model=model, epochs=3, seed=7)
            for _ in range(2)]
    a, b = (r.to_dict() for r in runs)
    for key in ("accuracy", "loss", "per_class_accuracy", "steps"):
        assert a[key] == b[key], key
    other = fit_and_evaluate(Xin[:200], y[:200], Xin[1500:], y[1500:], 10, model=model, epochs=3, seed=8)
    assert other.loss != a["loss"]  # the seed is used


def test_models_learn_digits(digits):
    X, y = digits
    mlp = fit_and_evaluate(X[:1000], y[:1000], X[1000:], y[1000:], 10, model="mlp", epochs=20)
    cnn = fit_and_evaluate(_images(X[:1000]), y[:1000], _images(X[1000:]), y[1000:], 10, model="cnn", epochs=10)
    assert mlp.accuracy > 0.9 and cnn.accuracy > 0.8
    assert mlp.n_train == 1000 and mlp.steps == 20 * math.ceil(1000 / 64)


@pytest.mark.parametrize("k", [10, 50, 400])
def test_budget_regime_takes_the_same_steps_whatever_the_size(digits, k):
    X, y = digits
    ev = fit_and_evaluate(X[:k], y[:k], X[1500:], y[1500:], 10, model="linear", steps=37, batch_size=32)
    assert ev.steps == 37 and ev.n_train == k


def test_class_absent_from_subset(digits):
    X, y = digits
    keep = y < 5
    ev = fit_and_evaluate(X[keep][:300], y[keep][:300], X[1500:], y[1500:], 10, epochs=5)
    pc = np.asarray(ev.per_class_accuracy)
    assert pc.shape == (10,)
    assert np.all(pc[5:] == 0.0)  # never predicted: the model has 10 outputs but no data for these
    assert np.nanmax(pc[:5]) > 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rows=0), "empty"),
        (dict(model="resnet"), r"model='resnet' is unknown; pass one of \['cnn', 'linear', 'mlp'\]"),
        (dict(label_shift=10), "outside"),
        (dict(n_test_features=7), "same kind"),
        (dict(short_labels=True), "one label per row"),
        (dict(epochs=None), "exactly one of epochs"),
        (dict(steps=5), "exactly one of epochs"),
        (dict(device="tpu"), "device='tpu'"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(model="cnn"), "images shaped"),
    ],
)
def test_bad_input_is_refused(digits, kwargs, match):
    X, y = digits
    Xtr, ytr, Xte, yte = X[:50], y[:50].copy(), X[1500:], y[1500:]
    if kwargs.pop("rows", None) == 0:
        Xtr, ytr = Xtr[:0], ytr[:0]
    ytr = ytr + kwargs.pop("label_shift", 0)
    if "n_test_features" in kwargs:
        Xte = Xte[:, : kwargs.pop("n_test_features")]
    if kwargs.pop("short_labels", False):
        ytr = ytr[:-1]
    args = {"epochs": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_and_evaluate(Xtr, ytr, Xte, yte, 10, **args)
