"""The study flow on a real LocalCluster under the session's Prefect harness, tracked in a real SQLite MLflow store.

One uninterrupted run (module fixture) is read back through ``MlflowClient``: the parent and one child per
subset, every objective's score, the figures and report as artifacts. Its selections are checked against
``worth.select`` called directly and its training against a direct ``train_subset``. A run killed with SIGKILL
and rerun must end with exactly the uninterrupted run's keys, one run each, finished runs untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import worth
from tests.helpers import kill_9_when
from flows.study import PROGRESS_KEY, REPORT_KEY, StudyOptions, child_key, run_study, study_flow
from storage.holdout import read_recorded
from storage.store import EmbeddingStore
from worth.appraisal import StudyConfig, holdout_split, make_specs, train_subset

ROOT = Path(__file__).resolve().parents[2]
TINY = yaml.safe_load((Path(__file__).parent / "tiny.yaml").read_text())
SPECS = make_specs(StudyConfig.from_dict(TINY))


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri, experiment_id):
    from mlflow.entities import ViewType

    return _client(uri).search_runs([experiment_id], run_view_type=ViewType.ALL, max_results=1000)


@pytest.fixture(scope="module")
def flow_run(digits_store, dask_cluster, tmp_path_factory):
    from prefect_dask import DaskTaskRunner

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow-a') / 'mlflow.db'}"
    options = StudyOptions(store=digits_store, config_data=TINY, tracking_uri=uri, experiment="tiny")
    result = study_flow.with_options(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))(options)
    return result, uri


@pytest.mark.slow
def test_parent_and_a_child_per_subset_with_every_metric_and_artifact(flow_run, read_artifacts, digits_store):
    result, uri = flow_run
    assert result["subsets"] == len(SPECS) == 27 and result["trained"] == 27 and result["reused"] == 0
    pids = {p.rsplit(":", 1)[1] for p in result["processes"]}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # trained in both worker processes
    client = _client(uri)
    exp = client.get_experiment(result["experiment_id"])
    assert exp.name == "tiny" and exp.artifact_location == (Path(uri[10:]).parent / "artifacts" / "tiny").as_uri()
    runs = _runs(uri, result["experiment_id"])
    parent = [r for r in runs if r.info.run_id == result["parent_run_id"]]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result["parent_run_id"]]
    assert len(parent) == 1 and len(runs) == 1 + len(SPECS)
    tags = parent[0].data.tags  # the flow run, from MLflow
    assert tags["worth.flow_run_id"] == result["flow_run_id"]
    assert tags["worth.flow_run_url"].endswith(f"/runs/flow-run/{result['flow_run_id']}")
    assert sorted(r.info.run_name for r in children) == sorted(s.name for s in SPECS)
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in children:
        m, p = run.data.metrics, run.data.params
        assert {"score.logdet", "score.facility-location", "accuracy", "loss", "train_seconds"} <= set(m)
        assert {f"accuracy.class.{c}" for c in range(10)} <= set(m) and 0 <= m["accuracy"] <= 1
        assert {"objective", "k", "regime", "seed", "optimizer", "method", "model", "steps"} <= set(p)
        assert p["k"] == "20" and p["model"] == "mlp" and (p["steps"] == "20") == (p["regime"] == "budget")
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["subset.json"]
    named = {r.info.run_name: r for r in children}
    assert named["logdet-k20-balanced-s0"].data.params["optimizer"] == "greedy"
    assert named["random-k20-fixed-s2"].data.params["objective"] == "random"
    # fixed and budget select alike: one realisation, the same scores
    fixed, budget = named["logdet-k20-fixed-s0"].data.metrics, named["logdet-k20-budget-s0"].data.metrics
    assert fixed["score.logdet"] == budget["score.logdet"]

    pm = parent[0].data.metrics
    for obj in ("logdet", "facility-location"):
        for regime in ("fixed", "balanced", "budget"):
            hist = client.get_metric_history(result["parent_run_id"], f"spearman.{obj}.{regime}.k20")
            assert [h.step for h in hist] == [20] and -1 <= hist[0].value <= 1
        assert f"kendall.{obj}.fixed.k20" in pm and f"spearman.{obj}.fixed.k20.random" in pm
    arts = {a.path for a in client.list_artifacts(result["parent_run_id"])}
    assert {"report.md", "report.html", "results.json", "study.json", "accuracy-vs-k.png", "heatmap-spearman-all.png",
            "scatter-balanced-k20.png", "path-budget-k20.png"} <= arts
    report = Path(client.download_artifacts(result["parent_run_id"], "report.md")).read_text()
    assert "(scatter-fixed-k20.png)" in report and "| 20 | facility-location | random |" in report
    assert Path(result["report"]).read_text() == report
    # the study ranks its objectives (mean Spearman rho over regime x k), and the night's objective=auto finds the
    # report where the flow wrote it by default (beside the store) and follows that ranking
    from pipeline.curate import CurateOptions, choose_objective

    ranking = json.loads(Path(result["results"]).read_text())["tables"]["ranking"]
    rho = {r["objective"]: np.mean([pm[f"spearman.{r['objective']}.{g}.k20"] for g in ("fixed", "balanced", "budget")])
           for r in ranking}
    assert [r["objective"] for r in ranking] == sorted(rho, key=rho.get, reverse=True)
    assert [r["spearman"] for r in ranking] == pytest.approx([rho[r["objective"]] for r in ranking])
    assert "## Ranking: best predictor of held-out accuracy first" in report
    choice = choose_objective(CurateOptions(source="digits", store=digits_store))
    positive = [r["objective"] for r in ranking if r["spearman"] > 0]
    assert choice.name == (positive[0] if positive else "facility-location")
    assert choice.study["key"] == Path(result["out_dir"]).name

    progress = read_artifacts(PROGRESS_KEY, result["flow_run_id"])
    assert len(progress) == 1 and progress[0].data == pytest.approx(100.0)
    for phase in ("paths", "scores"):  # the phases before the first run report their progress as well
        done = read_artifacts(f"{PROGRESS_KEY}-{phase}", result["flow_run_id"])
        assert len(done) == 1 and done[0].data == pytest.approx(100.0), phase
    md = read_artifacts(REPORT_KEY, result["flow_run_id"])[0].data
    assert md.startswith("# Appraisal study") and "mlflow ui --backend-store-uri " + uri in md


@pytest.mark.slow
def test_holdout_recorded_once_selections_are_worth_select_training_reproduces(flow_run, digits_store):
    result, uri = flow_run
    store = EmbeddingStore.open(digits_store)
    labels = store.labels()
    rec = read_recorded(digits_store)
    assert rec.kind == "recorded" and rec.fraction == 0.2 and rec.seed == 0
    np.testing.assert_array_equal(rec.mask, holdout_split(labels, 0.2, seed=0))
    pos, test = np.flatnonzero(~rec.mask), np.flatnonzero(rec.mask)
    X = store.to_numpy(dtype="float64")
    client = _client(uri)
    named = {r.info.run_name: r for r in _runs(uri, result["experiment_id"])}
    cfg = StudyConfig.from_dict(TINY)
    for spec in (s for s in SPECS if s.kind == "max"):
        run = named[spec.name]
        manifest = json.loads(Path(client.download_artifacts(run.info.run_id, "subset.json")).read_text())
        direct = worth.select(X[pos], 20, spec.objective, labels=labels[pos],
                              quotas="balanced" if spec.regime == "balanced" else None)
        assert manifest["pool_indices"] == np.asarray(direct.indices).tolist()
        assert manifest["rows"] == pos[np.asarray(direct.indices)].tolist()
        assert manifest["ids"] == store.ids(pos[np.asarray(direct.indices)]).tolist()
        assert run.data.metrics["score.logdet"] == pytest.approx(
            worth.score(X[pos], np.asarray(direct.indices), "logdet"), rel=1e-12)
        if spec.regime == "budget":
            again = train_subset(spec, np.asarray(direct.indices), X[pos], labels[pos], X[test], labels[test], 10, cfg)
            assert again["accuracy"] == run.data.metrics["accuracy"] and again["loss"] == run.data.metrics["loss"]


@pytest.mark.slow
def test_rerun_reuses_every_finished_run_and_logs_nothing_twice(flow_run, digits_store):
    result, uri = flow_run
    before = {r.info.run_id: r.data.tags["worth.key"] for r in _runs(uri, result["experiment_id"])}
    again = run_study(StudyOptions(store=digits_store, config_data=TINY, tracking_uri=uri, experiment="tiny"))
    assert again["trained"] == 0 and again["reused"] == 27 and again["parent_run_id"] == result["parent_run_id"]
    after = _runs(uri, result["experiment_id"])
    assert {r.info.run_id: r.data.tags["worth.key"] for r in after} == before
    child = next(r for r in after if r.info.run_name == "facility-location-k20-fixed-s0")
    assert len(_client(uri).get_metric_history(child.info.run_id, "accuracy")) == 1
    assert len(_client(uri).get_metric_history(result["parent_run_id"], "spearman.logdet.balanced.k20")) == 1
    rows = json.loads(Path(again["results"]).read_text())["rows"]
    assert rows == json.loads(Path(result["results"]).read_text())["rows"]

    # a run left unfinished (here: FAILED) is reopened by its id and retrained, not duplicated
    client = _client(uri)
    client.set_terminated(child.info.run_id, "FAILED")
    third = run_study(StudyOptions(store=digits_store, config_data=TINY, tracking_uri=uri, experiment="tiny"))
    assert third["trained"] == 1 and third["reused"] == 26
    final = _runs(uri, result["experiment_id"])
    assert {r.info.run_id: r.data.tags["worth.key"] for r in final} == before
    assert client.get_run(child.info.run_id).info.status == "FINISHED"
    history = client.get_metric_history(child.info.run_id, "accuracy")
    assert len(history) == 2 and history[0].value == history[1].value  # retrained, seeded: the same accuracy


def _finished_children(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT count(*) FROM runs r JOIN tags t ON r.run_uuid = t.run_uuid "
                               "WHERE t.key = 'mlflow.parentRunId' AND r.status = 'FINISHED'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or mid-migration
        return 0


@pytest.mark.slow
def test_kill_9_then_rerun_ends_with_the_uninterrupted_runs(flow_run, digits_store, dask_cluster, prefect_api,
                                                            tmp_path):
    """The CLI in a process of its own on the session cluster, killed once 3 subsets are FINISHED; the rerun
    (in this process, same cluster) must end with the uninterrupted run's keys, one run each."""
    from mlflow.entities import ViewType
    from prefect_dask import DaskTaskRunner

    result, uri_a = flow_run
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    config = str(Path(__file__).parent / "tiny.yaml")
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONPATH": str(ROOT)}
    kill_9_when([sys.executable, "-m", "flows.cli.main", "study", "--store", digits_store, "--config", config,
                 "--tracking-uri", uri, "--experiment", "tiny", "--out", str(tmp_path / "report"),
                 "--scheduler", dask_cluster.scheduler_address],
                lambda: _finished_children(db) >= 3, env=env, cwd=ROOT, poll=0.1, what="the study")
    client = _client(uri)
    exp = client.get_experiment_by_name("tiny")
    killed = {r.data.tags["worth.key"]: r for r in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)}
    finished = {k: r.info.run_id for k, r in killed.items() if r.info.status == "FINISHED"}
    assert 3 <= len(finished) < len(SPECS) and len(killed) - len(finished) <= 2  # the parent, one mid-logging

    again = run_study(StudyOptions(store=digits_store, config=config, tracking_uri=uri, experiment="tiny",
                                   out_dir=str(tmp_path / "report")),
                      task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    assert again["trained"] == len(SPECS) - len(finished) and again["reused"] == len(finished)
    runs = _runs(uri, exp.experiment_id)
    keys = [r.data.tags["worth.key"] for r in runs]
    uninterrupted = {r.data.tags["worth.key"] for r in _runs(uri_a, result["experiment_id"])}
    assert len(keys) == len(set(keys)) == 1 + len(SPECS) and set(keys) == uninterrupted
    assert {r.info.status for r in runs} == {"FINISHED"}
    by_key = {r.data.tags["worth.key"]: r.info.run_id for r in runs}
    assert {k: by_key[k] for k in killed} == {k: r.info.run_id for k, r in killed.items()}  # kept or reopened
    for run_id in finished.values():  # finished before the kill: neither retrained nor logged again
        assert len(client.get_metric_history(run_id, "accuracy")) == 1
    cfg = StudyConfig.from_dict(TINY)
    assert set(keys) - {result["study_key"]} == {child_key(s, cfg, _pool(digits_store)) for s in SPECS}
    # the same rows, scores and accuracies as the uninterrupted run (training is seeded, 1 thread per worker)
    rows = {r["name"]: r for r in json.loads(Path(again["results"]).read_text())["rows"]}
    ref = {r["name"]: r for r in json.loads(Path(result["results"]).read_text())["rows"]}
    assert {n: (r["accuracy"], r["score.logdet"]) for n, r in rows.items()} == \
        {n: (r["accuracy"], r["score.logdet"]) for n, r in ref.items()}


def _pool(url):
    from pipeline.study import pool_identity

    return pool_identity(url, read_recorded(url).describe())


@pytest.mark.slow
def test_the_cli_reports_each_phase_and_the_runs_under_the_dask_runner(digits_store, dask_cluster, prefect_api,
                                                                       tmp_path):
    """Not inline only: the launcher's progress reaches the terminal from a flow on a Dask cluster, one line a
    tenth of each phase in a log (no terminal), none of Prefect's per-task lines."""
    import subprocess

    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "flows.cli.main", "study", "--store", digits_store, "--config",
                          str(Path(__file__).parent / "tiny.yaml"), "--tracking-uri",
                          f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(tmp_path / "report"),
                          "--scheduler", dask_cluster.scheduler_address],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    for phase in ("paths", "scores"):
        assert any(line.startswith(phase + " ") and "(100 %)" in line for line in lines), (phase, lines)
    assert any(line.startswith(f"runs {len(SPECS)}/{len(SPECS)} (100 %)") for line in lines), lines
    assert sum(line.startswith("runs ") for line in lines) <= 11 and "Task run" not in res.stdout + res.stderr
    # the flow run on the server it ran on (a real one here: its own page), not a "View at" line of Prefect's
    ui = prefect_api.removesuffix("/api")
    assert [line for line in lines if line.startswith("Prefect: ")] == [
        line for line in lines if line.startswith(f"Prefect: {ui}/runs/flow-run/")] != [], lines
    assert "View at" not in res.stdout + res.stderr
