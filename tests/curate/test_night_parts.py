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


# ------------------------------------------------------------------ the held-out set's identity
def test_the_test_set_digest_names_the_items_not_their_order():
    import hashlib

    from storage.holdout import describe_test_set, ids_digest

    ids = IDS[[5, 2, 9, 700]]
    expected = "sha256:" + hashlib.sha256("\n".join(sorted(ids.tolist())).encode()).hexdigest()
    assert ids_digest(ids) == ids_digest(ids[::-1]) == expected
    assert ids_digest(IDS[[5, 2, 9]]) != expected  # one item fewer: another test set
    assert describe_test_set(ids, "id hash") == {"n": 4, "digest": expected, "rule": "id hash"}


# ------------------------------------------------------------------ the study's ranking and objective=auto
def _corr(objective, k, rho, tau, subsets="all", regime="fixed"):
    return {"regime": regime, "k": k, "objective": objective, "subsets": subsets, "n": 10, "spearman": rho,
            "kendall": tau}


def test_rank_objectives_orders_by_mean_spearman_of_all_subsets():
    from worth.appraisal import rank_objectives

    nan = float("nan")
    table = [_corr("vendi", 40, 0.1, 0.1), _corr("vendi", 80, 0.4, 0.3), _corr("vendi", 40, 0.99, 0.9, "random"),
             _corr("logdet", 40, 0.3, 0.2), _corr("logdet", 80, nan, nan),  # undefined ρ: that group left out
             _corr("facility-location", 40, 0.3, 0.25, regime="budget"),   # ties logdet's 0.3: τ decides
             _corr("scaling-law", 40, nan, nan)]                            # never defined: not ranked
    ranking = rank_objectives(table)
    assert [(r["rank"], r["objective"]) for r in ranking] == [(1, "facility-location"), (2, "logdet"),
                                                             (3, "vendi")]
    assert ranking[2]["spearman"] == pytest.approx(0.25) and ranking[2]["groups"] == 2  # "random" rows ignored
    assert ranking[1]["groups"] == 1 and rank_objectives([]) == []


def test_auto_without_a_study_of_the_pool_falls_back_to_facility_location(tmp_path):
    from pipeline.curate import FALLBACK_OBJECTIVE, choose_objective

    choice = choose_objective(CurateOptions(source="digits", store=str(tmp_path / "pool.zarr")))
    assert (choice.name, choice.params, choice.requested, choice.study) == (FALLBACK_OBJECTIVE, {}, "auto", None)
    assert FALLBACK_OBJECTIVE == "facility-location"
    assert choice.why == (f"auto: no study of this pool (no report in {tmp_path / 'pool.zarr.study'}); "
                          "facility-location, the reference study's best predictor of held-out accuracy")
    remote = choose_objective(CurateOptions(source="digits", store="s3://bucket/pool.zarr"))
    assert remote.name == FALLBACK_OBJECTIVE and "a remote store keeps none beside it" in remote.why


def test_a_named_objective_is_taken_as_given_and_auto_takes_no_parameters():
    from pipeline.curate import choose_objective

    choice = choose_objective(CurateOptions(source="digits", store="s.zarr", objective="vendi",
                                            objective_params={"q": 2}))
    assert (choice.name, choice.params, choice.why) == ("vendi", {"q": 2}, "vendi: as given (objective='vendi')")
    with pytest.raises(ValueError, match="objective='nope' is unknown"):
        choose_objective(CurateOptions(source="digits", store="s.zarr", objective="nope"))
    with pytest.raises(ValidationError, match="with objective='auto'.*name the objective to give parameters"):
        CurateOptions(source="digits", store="s.zarr", objective_params={"q": 2})


def test_auto_follows_the_latest_study_of_the_pool(tmp_path):
    """A real (tiny) study written where `worth study` writes it; auto takes its best predictor, with its
    parameters, and passes over a newer report that is damaged; a newer study ranking nothing positively
    makes it fall back, saying so."""
    import json
    import os

    from scipy.stats import spearmanr
    from sklearn.datasets import load_digits

    from pipeline.curate import choose_objective
    from pipeline.study import study_folder
    from worth.appraisal import StudyConfig, run_study

    store = str(tmp_path / "pool.zarr")
    d = load_digits()
    X = d.data.astype(float) / np.linalg.norm(d.data, axis=1, keepdims=True)
    cfg = StudyConfig(objectives={"herding": {}, "vendi": {"q": 0.5}}, k=(20, 60), regimes=("fixed",),
                      random_subsets=6, mixture_fractions=(0.5,), fillers=("random",), minimisers=False,
                      epochs=30, bootstrap=20)
    folder = study_folder(store)
    out = run_study(X[:500], d.target[:500], X[500:800], d.target[500:800], cfg, folder / "a1b2c3d4e5f6a7b8")
    # the expectation, computed here from the study's rows: mean over k of Spearman's rho of score and accuracy
    rows = json.loads(out["results"].read_text())["rows"]
    mean_rho = {o: np.mean([spearmanr([r[f"score.{o}"] for r in rows if r["k"] == k],
                                      [r["accuracy"] for r in rows if r["k"] == k]).statistic for k in (20, 60)])
                for o in cfg.objectives}
    best = max(mean_rho, key=mean_rho.get)
    assert mean_rho[best] > 0  # this study ranks a positive predictor first (vendi with q = 0.5 here)
    opts = CurateOptions(source="digits", store=store)
    choice = choose_objective(opts)
    assert (choice.name, choice.params) == (best, cfg.objectives[best])
    assert choice.study["key"] == "a1b2c3d4e5f6a7b8" and choice.study["spearman"] == pytest.approx(mean_rho[best])
    assert choice.why.startswith(f"auto: {best}, the best predictor of held-out accuracy in study a1b2c3d4e5f6 of ")
    assert f"mean Spearman rho {mean_rho[best]:.2f} over 2 regime x k groups" in choice.why

    t = out["results"].stat().st_mtime
    damaged = folder / "ffff" / "results.json"
    damaged.parent.mkdir()
    damaged.write_text('{"rows": [], "tables": {"correla')  # a study killed while writing: passed over
    os.utime(damaged, (t + 10, t + 10))
    assert choose_objective(opts).name == best

    newer = folder / "eeee" / "results.json"
    newer.parent.mkdir()
    newer.write_text(json.dumps({"rows": [], "tables": {"correlation": [_corr("vendi", 40, -0.2, -0.1),
                                                                         _corr("logdet", 40, -0.4, -0.3)]}}))
    os.utime(newer, (t + 20, t + 20))
    fallback = choose_objective(opts)
    assert (fallback.name, fallback.study["key"]) == ("facility-location", "eeee")
    assert "ranked no objective with a positive correlation; facility-location, the reference study's" in fallback.why


def test_auto_passes_over_the_scaling_law_of_the_projects_own_study(tmp_path):
    """The committed Fashion-MNIST (pixels) study ranks the scaling law first (its value grows with the subset's
    size, as accuracy does) and facility location second. The scaling law gives every candidate of a class the
    same gain, so it cannot choose a night's additions (and per_class=True needs labels the night's selection
    does not pass): auto takes facility location with the study's parameters, and says what it passed over."""
    import json
    import shutil
    from pathlib import Path

    import worth
    from pipeline.curate import choose_objective
    from pipeline.study import study_folder

    report = Path(__file__).resolve().parents[2] / "docs/results/fashion-mnist-pixels/results.json"
    ranked = [r["objective"] for r in json.loads(report.read_text())["tables"]["ranking"]]
    assert ranked[:2] == ["scaling-law", "facility-location"]
    store = str(tmp_path / "fm.zarr")
    study = study_folder(store) / "fm-pixels"
    study.mkdir(parents=True)
    shutil.copyfile(report, study / "results.json")
    choice = choose_objective(CurateOptions(source="fashion-mnist", store=store))
    assert (choice.name, choice.params) == ("facility-location", {"similarity": "cosine"})
    assert choice.study["key"] == "fm-pixels" and choice.study["rank"] == 2
    assert choice.why.startswith("auto: facility-location, the best predictor of held-out accuracy in study fm-pixels")
    assert ("passed over: scaling-law (a function of the subset's size and class counts alone: it cannot tell "
            "items apart)") in choice.why
    # what it passes over: the scaling law's picks are the candidates in row order, whatever their content
    X = np.random.default_rng(0).normal(size=(40, 8))
    for rows in (X, X[::-1].copy()):
        assert list(worth.select(rows, 5, "scaling-law", init=np.arange(10)).indices) == [10, 11, 12, 13, 14]


def test_a_changed_objective_has_no_value_delta():
    from pipeline.curate import ObjectiveChoice, why_no_value_delta

    fl = ObjectiveChoice("facility-location", {}, "auto", "")
    assert why_no_value_delta(None, fl) is None  # a first night: nothing to compare
    assert why_no_value_delta({"version": 3, "objective": "facility-location", "objective_params": {}}, fl) is None
    assert why_no_value_delta({"version": 3, "objective": "vendi", "objective_params": {"q": 2}}, fl) == (
        'objective changed since v0003 (vendi {"q": 2} -> facility-location): values of two objectives are not '
        "comparable, so no delta_value")
    assert why_no_value_delta({"version": 1, "objective": "vendi", "objective_params": {"q": 2}},
                              ObjectiveChoice("vendi", {"q": 1}, "vendi", "")) is not None
