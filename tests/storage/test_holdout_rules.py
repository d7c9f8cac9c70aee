"""storage.holdout names both held-out rules: one set of split names, one option name, both rules reachable."""

from __future__ import annotations

import numpy as np
import pytest

from storage import holdout

IDS = np.array([f"item-{i}" for i in range(2000)])


@pytest.mark.parametrize("name", holdout.HELD_OUT_SPLITS)
def test_a_named_split_wins_over_the_id_hash(name):
    split = np.where(np.arange(20) % 4 == 0, name, "train")
    assert np.array_equal(holdout.nightly_mask(IDS[:20], split, 0.5), split == name)
    assert np.array_equal(holdout.named_split(split), split == name)


def test_without_a_named_split_the_night_hashes_ids_stably():
    mask = holdout.nightly_mask(IDS, np.full(len(IDS), "train"), 0.2)
    assert np.array_equal(mask, holdout.id_hash_mask(IDS, 0.2))
    assert np.array_equal(holdout.id_hash_mask(IDS[:500], 0.2), mask[:500])  # an item keeps its role
    assert abs(mask.mean() - 0.2) < 0.04
    assert holdout.named_split(np.full(5, "train")) is None


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_the_share_is_refused_under_the_one_option_name(fraction):
    with pytest.raises(ValueError, match=rf"^{holdout.OPTION}="):
        holdout.id_hash_mask(IDS[:10], fraction)


def test_old_names_are_refused_with_the_new_one():
    assert holdout.refuse_old_name({"holdout_fraction": 0.2}) == {"holdout_fraction": 0.2}
    for old in holdout.OLD_NAMES:
        with pytest.raises(ValueError, match=f"{old}=0.3 is now called {holdout.OPTION}"):
            holdout.refuse_old_name({old: 0.3})


def test_one_constant_set_for_the_study_and_the_night():
    import pipeline.curate
    import pipeline.study

    assert not hasattr(pipeline.curate, "HELD_OUT_SPLITS") and pipeline.curate.held_out_mask is holdout.nightly_mask
    assert pipeline.study.split_mask is holdout.split_mask
