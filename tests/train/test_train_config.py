"""worth.train.TrainConfig: one training config for the study and the night, refusing bad values with the fix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from worth.appraisal import StudyConfig
from worth.appraisal.config import TRAIN_KEYS
from worth.train import TrainConfig, fit_and_evaluate


@pytest.mark.parametrize("bad,match", [
    ({"lr": 0}, r"lr=0 must be a finite positive number, e.g. lr=1e-3"),
    ({"lr": -1e-3}, r"lr=-0.001 must be a finite positive number"),
    ({"lr": float("nan")}, r"lr=nan must be a finite positive number"),
    ({"weight_decay": -1}, r"weight_decay=-1 must be a finite non-negative number"),
    ({"device": "gpu"}, r"device='gpu' is unknown; pass 'cpu', 'cuda' \(or 'cuda:N'\) or 'auto'"),
    ({"model": "resnet"}, r"model='resnet' is unknown"),
    ({"epochs": 0}, r"epochs=0 must be a positive integer, e.g. epochs=30"),
    ({"steps": True}, r"steps=True must be a positive integer"),
    ({"threads": 0}, r"threads=0 must be a positive integer"),
    ({"seed": 1.5}, r"seed=1.5 must be an integer"),
])
def test_bad_values_are_refused_with_the_argument_and_the_fix(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


@pytest.mark.parametrize("device", ["cpu", "auto", "cuda", "cuda:1"])
def test_device_forms_are_accepted(device):
    assert TrainConfig(device=device).device == device


def test_the_study_config_holds_one_and_checks_through_it():
    cfg = StudyConfig(epochs=7, lr=0.01, device="auto")
    assert cfg.train == TrainConfig(epochs=7, lr=0.01, device="auto")
    assert set(TRAIN_KEYS) == set(TrainConfig.fields()) - {"seed"}  # study.yaml keys unchanged: no `seed`
    assert set(TRAIN_KEYS) <= {f.name for f in dataclasses.fields(StudyConfig)}
    with pytest.raises(ValueError, match="lr=0 must be a finite positive number"):
        StudyConfig(lr=0)
    with pytest.raises(ValueError, match="device='tpu' is unknown"):
        StudyConfig.from_dict({"device": "tpu"})


def test_fit_is_fit_and_evaluate_under_the_config():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)).astype(np.float32), np.repeat([0, 1, 2], 20)
    cfg = TrainConfig(model="linear", epochs=3, seed=4)
    via = cfg.fit(X[::2], y[::2], X[1::2], y[1::2], 3)
    direct = fit_and_evaluate(X[::2], y[::2], X[1::2], y[1::2], 3, model="linear", epochs=3, seed=4, threads=1)
    assert via.accuracy == direct.accuracy and via.loss == direct.loss
    assert cfg.fit_kwargs("steps", seed=9)["steps"] == 300 and cfg.fit_kwargs("steps", seed=9)["seed"] == 9
    with pytest.raises(ValueError, match="budget='weeks'"):
        cfg.fit_kwargs("weeks")
    assert TrainConfig(**cfg.to_dict()) == cfg and cfg.replace(epochs=5).epochs == 5
