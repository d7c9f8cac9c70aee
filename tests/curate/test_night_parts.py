"""The parts of a night that need no server: the held-out rule, the night's key, the options' checks."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from flows.curate import CurateOptions, night_key
from pipeline.curate import held_out_mask

IDS = np.array([f"digits-{i:05d}" for i in range(1797)])


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_held_out_share_is_stable_as_the_pool_grows(fraction):
    full = held_out_mask(IDS, np.full(len(IDS), "train"), fraction)
    first = held_out_mask(IDS[:600], np.full(600, "train"), fraction)
    assert np.array_equal(full[:600], first)  # an item keeps its role whatever arrives after it
    assert abs(full.mean() - fraction) < 0.04


def test_a_test_split_is_used_as_it_is():
    split = np.where(np.arange(10) % 3 == 0, "test", "train")
    assert np.array_equal(held_out_mask(IDS[:10], split, 0.5), split == "test")


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_a_share_outside_0_1_is_refused(fraction):
    with pytest.raises(ValueError, match="holdout_fraction"):
        held_out_mask(IDS[:10], np.full(10, "train"), fraction)


def test_night_key_depends_on_what_makes_the_night():
    base = CurateOptions(source="digits", store="s.zarr")
    key = night_key(base, 1, 600)
    assert key == night_key(base.model_copy(update={"tracking_uri": "http://elsewhere"}), 1, 600)
    assert len({key, night_key(base, 1, 601), night_key(base, 2, 600),
                night_key(base.model_copy(update={"k": 7}), 1, 600)}) == 4


@pytest.mark.parametrize("bad", [{"kk": 3}, {"k": 0}, {"test_fraction": 1.0}, {"holdout_fraction": 1.0},
                                 {"model": "cnn"}, {"budget": 0}])
def test_options_refuse_bad_fields(bad):
    with pytest.raises(ValidationError):
        CurateOptions(source="digits", store="s.zarr", **bad)


def test_the_old_option_name_is_refused_with_the_new_one():
    with pytest.raises(ValidationError, match="test_fraction=0.3 is now called holdout_fraction"):
        CurateOptions(source="digits", store="s.zarr", test_fraction=0.3)
    assert CurateOptions(source="digits", store="s.zarr", holdout_fraction=0.3).holdout_fraction == 0.3


def test_the_night_trains_under_the_one_train_config():
    from worth.train import TrainConfig

    opts = CurateOptions(source="digits", store="s.zarr", model="linear", epochs=4, seed=2)
    assert opts.training() == TrainConfig(model="linear", epochs=4, seed=2)
    assert opts.training().threads == 1  # as the study's default, no longer hard-coded in the task
