"""worth.check_options: every option check of worth.select without an array, with select's own messages (what a
flow's plan runs in the launching process, so a bad method or optimizer is refused before any worker starts)."""

from __future__ import annotations

import numpy as np
import pytest

import worth


@pytest.mark.parametrize("kwargs,words", [
    ({"method": "nope"}, "method='nope' is unknown"),
    ({"objective": "vendi", "method": "closed-form"}, "method='closed-form'"),
    ({"objective": "facility-location", "method": "secular"}, "Pass method='auto'"),
    ({"optimizer": "nope"}, "optimizer='nope'"),
    ({"optimizer": "lazy", "objective": "vendi"}, "optimizer='lazy'"),
    ({"optimizer": "stochastic", "epsilon": 5.0}, "epsilon"),
    ({"rtol": 2.0}, "rtol=2.0"),
    ({"objective": "logdet", "sigma2": -1.0}, "sigma2=-1"),
    ({"objective": "nope"}, "objective='nope'"),
])
def test_check_options_refuses_what_select_refuses(kwargs, words):
    with pytest.raises(ValueError) as checked:
        worth.check_options(**kwargs)
    assert words in str(checked.value)
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError) as selected:
        worth.select(X, 3, **kwargs)
    assert str(selected.value) == str(checked.value)


@pytest.mark.parametrize("objective,method", [("logdet", "closed-form"), ("vendi", "secular"), ("vendi", "auto"),
                                              ("facility-location", "auto"), ("power", "oracle")])
def test_check_options_accepts_what_select_runs(objective, method):
    obj = worth.check_options(objective, "greedy", method)
    assert obj.name == objective
    X = np.random.default_rng(0).normal(size=(20, 4))
    assert len(worth.select(X, 3, objective, "greedy", method).indices) == 3


@pytest.mark.parametrize("kwargs,words", [
    ({"objective": "scaling-law"}, "target= needs an objective of the items' content"),
    ({"objective": "logdet", "optimizer": "lazy"}, "the mutual information of 'logdet' with target= is not"),
])
def test_check_options_with_a_target_refuses_what_select_refuses(kwargs, words):
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError) as checked:
        worth.check_options(target=[0, 1], **kwargs)
    assert words in str(checked.value)
    with pytest.raises(ValueError) as selected:
        worth.select(X, 3, target=[0, 1], **kwargs)
    assert str(selected.value) == str(checked.value)
