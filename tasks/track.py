"""MLflow tracking: the one module of ``tasks/`` that imports MLflow (``infra/`` is the other place allowed).

Runs are written only from the flow's own process (STACK.md: several processes opening a fresh SQLite store at
once corrupted it), through ``MlflowClient`` rather than the fluent API, whose active-run state is global to
the process.
"""

from __future__ import annotations


# -- nightly curation runs ---------------------------------------------------------------------------------------
# One MLflow run per curated night in the experiment ``worth-nightly``: the night's parameters, its metrics with
# deltas against the previous night, and its artifacts (contact sheet, additions). A run is tagged with the
# night's deterministic key, so a night rerun after a crash finds and finishes its run instead of adding one.

import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from tasks._task import worth_task  # noqa: E402

NIGHTLY_EXPERIMENT = "worth-nightly"
NIGHT_KEY_TAG = "worth.key"


def default_tracking_uri(beside: str) -> str:
    """``MLFLOW_TRACKING_URI`` when set (the services' MLflow server), else a SQLite file in folder ``beside``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return "sqlite:///" + os.path.abspath(os.path.join(beside, "mlflow.db"))


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def nightly_experiment(tracking_uri: str, name: str = NIGHTLY_EXPERIMENT) -> str:
    """The experiment's id, created when missing (artifacts beside a SQLite database, not in ``./mlruns``)."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        db = tracking_uri[len("sqlite:///"):]
        location = "file://" + os.path.join(os.path.dirname(os.path.abspath(db)), "mlartifacts")
    return client.create_experiment(name, artifact_location=location)


def find_night(tracking_uri: str, experiment_id: str, key: str) -> Any | None:
    """The run tagged with ``key`` (any state, deleted ones included), or None."""
    from mlflow.entities import ViewType

    runs = _client(tracking_uri).search_runs(
        [experiment_id], filter_string=f"tags.`{NIGHT_KEY_TAG}` = '{key}'", run_view_type=ViewType.ALL,
        max_results=1)
    return runs[0] if runs else None


def _log_night(tracking_uri: str, experiment: str, key: str, run_name: str, params: Mapping[str, Any],
               metrics: Mapping[str, float], step: int, artifacts: Sequence[str] = (),
               tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Log one night as one run; a finished run with the same key is returned untouched (no duplicate).

    Returns ``{"run_id", "experiment_id", "resumed", "existing"}``: ``existing`` when the night was already
    logged in full, ``resumed`` when a run left unfinished by a killed process was completed.
    """
    from mlflow.entities import Metric, Param, RunTag

    client = _client(tracking_uri)
    exp_id = nightly_experiment(tracking_uri, experiment)
    found = find_night(tracking_uri, exp_id, key)
    if found is not None and found.info.status == "FINISHED":
        return {"run_id": found.info.run_id, "experiment_id": exp_id, "resumed": False, "existing": True}
    if found is not None:
        run_id = found.info.run_id
    else:
        run_id = client.create_run(exp_id, run_name=run_name,
                                   tags={NIGHT_KEY_TAG: key, **dict(tags or {})}).info.run_id
    ms = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), ms, step) for k, v in metrics.items() if v is not None],
                     params=[Param(k, str(v)) for k, v in params.items()],
                     tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])
    for path in artifacts:
        client.log_artifact(run_id, path)
    client.set_terminated(run_id, "FINISHED")
    return {"run_id": run_id, "experiment_id": exp_id, "resumed": found is not None, "existing": False}


log_night = worth_task(_log_night, name="log-night", cache=False)  # runs in the flow's process (one writer)
