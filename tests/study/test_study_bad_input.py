"""Bad input is refused with the argument and the fix, before any selection, training or tracking starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli.main import app
from flows.study import StudyOptions, plan_study
from storage import embed_into_store
from storage.holdout import read_recorded, record
from worth.data.encoders import get_encoder
from worth.data.sources import from_arrays

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"objectives": {"logdet": {}}, "k": [20], "regimes": ["fixed"], "random_subsets": 2, "mixture_fractions": [0.5],
         "fillers": ["random"], "epochs": 2, "steps": 5, "bootstrap": 10}


def _store(path, labels, n=120):
    rng = np.random.default_rng(0)
    url = str(path)
    embed_into_store(url, from_arrays(rng.normal(size=(n if labels is None else len(labels), 8)), labels),
                     get_encoder("pixels"))
    return url


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-stores")
    recorded = _store(root / "recorded.zarr", np.repeat([0, 1, 2], 40))
    labels = np.repeat([0, 1, 2], 40)
    mask = np.zeros(labels.size, dtype=bool)
    mask[::5] = True
    record(recorded, mask, fraction=0.2, seed=0)
    return {"unlabelled": _store(root / "unlabelled.zarr", None),
            "imbalanced": _store(root / "imbalanced.zarr", [0] * 100 + [1] * 10),
            "recorded": recorded, "missing": str(root / "nowhere.zarr")}


CASES = [
    ("unlabelled", {}, "has no labels"),
    ("imbalanced", {"config_data": {**SMALL, "k": [40], "regimes": ["balanced"]}},
     "k=40 in the balanced regime needs 20"),
    ("imbalanced", {"config_data": {**SMALL, "k": [500]}}, "exceeds the pool"),
    ("recorded", {"holdout_fraction": 0.0}, "holdout_fraction=0.0 must lie in (0, 0.9]"),
    ("recorded", {"holdout_fraction": 0.95}, "holdout_fraction=0.95 must lie in (0, 0.9]"),
    ("recorded", {"holdout_fraction": 0.3}, "differs from the split recorded"),
    ("recorded", {"config_data": {**SMALL, "objectives": {"vendy": {}}}}, "'vendy' is unknown"),
    ("recorded", {"config_data": {**SMALL, "objectives": {"vendi": {"qq": 2}}}}, "'qq' is not a parameter"),
    ("recorded", {"config_data": {**SMALL, "objectives": {"vendi": {"q": -1}}}}, "q=-1 is out of range"),
    ("recorded", {"config_data": {**SMALL, "epoch": 3}}, "key 'epoch' is unknown"),
    ("recorded", {"config_data": {**SMALL, "model": "cnn"}}, "model='cnn' trains on raw images"),
    ("recorded", {"config": "/nonexistent/study.yaml"}, "no such file"),
    ("missing", {}, "does not exist"),
]


@pytest.mark.parametrize("store,kwargs,match", CASES, ids=[f"{c[0]}-{c[2][:24]}" for c in CASES])
def test_plan_refuses_before_anything_is_written(stores, tmp_path, store, kwargs, match):
    options = StudyOptions(store=stores[store], tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                           **(kwargs if "config" in kwargs else {"config_data": SMALL} | kwargs))
    with pytest.raises((ValueError, FileNotFoundError), match=match.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        plan_study(options)
    assert not (tmp_path / "mlflow.db").exists()
    if store != "recorded" and store != "missing":
        assert read_recorded(stores[store]) is None  # no split recorded for a study that cannot run


def test_a_valid_plan_records_nothing_yet_and_keeps_the_recorded_split(stores, tmp_path):
    plan = plan_study(StudyOptions(store=stores["recorded"], config_data=SMALL,
                                   tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert not plan.holdout_is_new and plan.holdout.fraction == 0.2 and plan.n_test == 24 and plan.n_pool == 96
    assert not (tmp_path / "mlflow.db").exists()
    assert plan.artifact_location == (tmp_path / "artifacts" / "worth-study-recorded.zarr").as_uri()


def test_options_refuse_unknown_fields_and_two_configs():
    with pytest.raises(ValueError, match="extra"):
        StudyOptions(store="s.zarr", epochs=3)
    with pytest.raises(ValueError, match="not config and quick"):
        StudyOptions(store="s.zarr", config="study.yaml", quick=True)


@pytest.mark.parametrize("args,match", [
    (["--holdout-fraction", "1.5"], "error: holdout_fraction=1.5 must lie in (0, 0.9], e.g. 0.2."),
    (["--config", "study.yaml", "--quick"], "error: give --config FILE or --quick, not both."),
    (["--runner", "spark"], "error: runner='spark': choose one of dask, threads, inline"),
])
def test_cli_errors_are_one_line_exit_2(stores, args, match):
    res = CliRunner().invoke(app, ["study", "--store", stores["recorded"], "--runner", "inline", *args])
    assert res.exit_code == 2 and res.output.strip() == match and "Traceback" not in res.output


def test_cli_on_a_store_without_labels_in_a_process_of_its_own(stores):
    res = subprocess.run([sys.executable, "-m", "flows.cli.main", "study", "--store", stores["unlabelled"]], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.strip().startswith("error: store ") and "has no labels" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not Path(stores["unlabelled"] + ".mlflow").exists()
