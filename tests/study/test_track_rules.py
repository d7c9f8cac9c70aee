"""tasks/track.py: one tracking-URI rule and one artifact rule for the study and the night."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks import track


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_explicit_then_environment_then_the_default_folder(no_env, monkeypatch, tmp_path):
    store = str(tmp_path / "pool.zarr")
    # one project database: the study of a store and its nights (curated versions beside the store) share it
    assert track.resolve_tracking_uri(store) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert track.default_tracking_uri(str(tmp_path)) == track.resolve_tracking_uri(store)
    assert track.resolve_tracking_uri(store, "http://h:5000") == "http://h:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert track.resolve_tracking_uri(store) == track.default_tracking_uri(str(tmp_path)) == "http://env:5000"
    assert track.resolve_tracking_uri(store, "sqlite:///x.db") == "sqlite:///x.db"  # explicit wins over the env


def test_a_study_begun_under_the_older_rule_keeps_its_database(no_env, tmp_path):
    store = str(tmp_path / "pool.zarr")
    (tmp_path / "pool.zarr.mlflow").mkdir()
    (tmp_path / "pool.zarr.mlflow" / "mlflow.db").write_bytes(b"")
    assert track.resolve_tracking_uri(store) == f"sqlite:///{tmp_path / 'pool.zarr.mlflow' / 'mlflow.db'}"


def test_a_remote_store_needs_a_uri(no_env):
    with pytest.raises(ValueError, match="store='s3://b/p.zarr' is remote, so no tracking database .* --tracking-uri"):
        track.resolve_tracking_uri("s3://b/p.zarr")


@pytest.mark.parametrize("uri,explicit,expected", [
    ("sqlite:////data/runs/mlflow.db", None, Path("/data/runs/artifacts/EXP").as_uri()),
    ("http://mlflow:5000", None, None),
    ("postgresql://u@h/db", "s3://bucket/art", "s3://bucket/art"),
])
def test_one_artifact_rule(uri, explicit, expected):
    assert track.resolve_artifact_location(uri, "EXP", explicit) == expected


def test_a_database_without_a_place_for_artifacts_is_refused():
    with pytest.raises(ValueError, match="--artifact-location"):
        track.resolve_artifact_location("postgresql://u@h/db", "EXP")


def test_the_night_and_the_study_create_experiments_by_the_same_rule(no_env, tmp_path):
    uri = track.default_tracking_uri(str(tmp_path))
    night = track.nightly_experiment(uri)
    study = track.Tracker.open(uri, "worth-study-x")
    client = track._client(uri)
    assert client.get_experiment(night).artifact_location == (tmp_path / "artifacts" / "worth-nightly").as_uri()
    assert study.artifact_location == (tmp_path / "artifacts" / "worth-study-x").as_uri()
    assert track.nightly_experiment(uri) == night  # found, not created twice
    client.delete_experiment(night)
    with pytest.raises(ValueError, match="was deleted .* restore it"):
        track.nightly_experiment(uri)


def test_the_default_view_is_an_mlflow_shared_view_on_the_metrics(no_env, tmp_path):
    """What MLflow's "Share" button stores (the experiment tag ``mlflow.sharedViewState.<key>``, JSON of the runs
    table's state), so the address with ``?viewStateShareKey=<key>`` opens the runs table on these columns."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp_id = track.nightly_experiment(uri)
    tags = MlflowClient(tracking_uri=uri).get_experiment(exp_id).tags
    state = json.loads(tags[f"mlflow.sharedViewState.{track.VIEW_KEY}"])
    assert state["selectedColumns"][-len(track.NIGHT_COLUMNS):] == [f"metrics.`{m}`" for m in track.NIGHT_COLUMNS]
    assert "params.`objective`" in state["selectedColumns"] and state["orderByKey"] == "attributes.start_time"
    assert track.nightly_experiment(uri) == exp_id  # rewritten in place, one tag
    assert track.experiment_url(uri, exp_id) == (f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs"
                                                 f"?viewStateShareKey={track.VIEW_KEY}")
    assert track.experiment_url("http://h:5000/", "7").startswith("http://h:5000/#/experiments/7/runs?")
