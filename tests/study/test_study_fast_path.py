"""The study's fast path equals today's reference, end to end: the flow (its path, fill, score and train jobs,
facility location's shared first pass, the minimiser on the incremental spectral state) against per-spec
``realise`` with the eigvalsh minimiser (``evaluation="recompute"``), per-objective ``worth.score`` and
``train_subset``, computed here at run time on the same pool with fixed seeds: the same picks, scores,
accuracies and correlation tables, bit for bit.

The flow runs inline (no Prefect, no cluster: what is compared is the arithmetic, the orchestration has its own
tests in ``test_study_flow.py``) and, in the second case, on Prefect's thread pool with two workers, so the jobs
are packed for two slots and run concurrently (picks and scores compared; see the test for the accuracies).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from flows.study import StudyOptions, run_study
from pipeline.study import load_pool
from storage.holdout import read_recorded
from worth.appraisal import StudyConfig, aggregate, make_specs, realise, result_row, score_subset, train_subset
from worth.appraisal import design

SMALL = dict(objectives={"logdet": {}, "vendi": {}, "facility-location": {}, "scaling-law": {"per_class": True}},
             k=[20, 40], regimes=["fixed", "balanced", "budget"], seeds=[0, 1], random_subsets=2,
             mixture_fractions=[0.25, 0.75], fillers=["random", "min"], minimiser_sample=12, epochs=3, steps=10,
             bootstrap=40,
             coreset={"fractions": [0.05], "seeds": 2, "baselines": ["uniform", "herding"], "maximisers": True,
                      "full": False})


def reference_rows(pool, config: StudyConfig, monkeypatch) -> list[dict]:
    """Today's path: per-spec realise (one process-wide cache of maximisers), the minimiser recomputing every
    candidate's value by eigvalsh, worth.score per objective and subset, train_subset per spec."""
    monkeypatch.setattr(design, "greedy_minimise",
                        functools.partial(design.greedy_minimise, evaluation="recompute"))
    cache, subsets, scores, rows = {}, {}, {}, []
    for spec in make_specs(config, n_pool=len(pool.labels)):
        if spec.subset_key not in subsets:
            subsets[spec.subset_key] = realise(spec, pool.X, pool.labels, cache)
            scores[spec.subset_key] = score_subset(pool.X, subsets[spec.subset_key], config.objectives, pool.labels)
        idx = subsets[spec.subset_key]
        rows.append(result_row(spec, scores[spec.subset_key],
                               train_subset(spec, idx, pool.X, pool.labels, pool.X_test, pool.y_test, pool.n_classes,
                                            config)))
    monkeypatch.undo()
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["inline", "threads"])
def test_flow_equals_the_reference(digits_store, tmp_path, monkeypatch, runner):
    config = StudyConfig.from_dict(SMALL)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    options = StudyOptions(store=digits_store, config_data=SMALL, tracking_uri=uri, experiment="fast",
                           out_dir=str(tmp_path / "report"))
    if runner == "inline":
        result = run_study(options)
    else:
        from prefect.task_runners import ThreadPoolTaskRunner

        pytest.importorskip("prefect")
        result = run_study(options, task_runner=ThreadPoolTaskRunner(max_workers=2))
    got = json.loads(Path(result["results"]).read_text())
    pool = load_pool(digits_store, read_recorded(digits_store).describe())
    ref_rows = reference_rows(pool, config, monkeypatch)
    by_name = {r["name"]: r for r in got["rows"]}
    assert sorted(by_name) == sorted(r["name"] for r in ref_rows)
    # in one process on threads two trainings run at once and share torch's global generator, so there the
    # accuracies are not reproducible (Dask workers are processes: test_study_flow.py checks their training)
    training = {"accuracy", "per_class_accuracy", "loss", "train_seconds"} if runner == "threads" else {"train_seconds"}
    for r in ref_rows:
        g = by_name[r["name"]]
        diff = {k: (g[k], r[k]) for k in r if k not in training and g[k] != r[k]}
        assert not diff, (r["name"], diff)
    if runner == "threads":
        return
    ref = aggregate(ref_rows, config, tmp_path / "ref")
    for name in ("correlation", "spread", "path", "stops_paying", "coreset", "coreset_headline"):
        assert json.loads(json.dumps(ref["tables"][name])) == got["tables"][name], name


@pytest.mark.slow
def test_the_flows_picks_are_the_references(digits_store, tmp_path, monkeypatch):
    """Every subset's rows (the manifests' pool indices) as per-spec realise makes them with the reference
    minimiser, mixtures and coreset selections included."""
    from mlflow.tracking import MlflowClient

    config = StudyConfig.from_dict(SMALL)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_study(StudyOptions(store=digits_store, config_data=SMALL, tracking_uri=uri, experiment="picks",
                                    out_dir=str(tmp_path / "report")))
    pool = load_pool(digits_store, read_recorded(digits_store).describe())
    monkeypatch.setattr(design, "greedy_minimise",
                        functools.partial(design.greedy_minimise, evaluation="recompute"))
    client = MlflowClient(tracking_uri=uri)
    runs = {r.info.run_name: r for r in client.search_runs([result["experiment_id"]], max_results=1000)}
    cache = {}
    kinds = set()
    for spec in make_specs(config, n_pool=len(pool.labels)):
        manifest = json.loads(Path(client.download_artifacts(runs[spec.name].info.run_id, "subset.json")).read_text())
        want = realise(spec, pool.X, pool.labels, cache)
        assert manifest["pool_indices"] == np.asarray(want).tolist(), spec.name
        assert manifest["rows"] == pool.positions[want].tolist(), spec.name
        kinds.add((spec.kind, spec.filler))
    assert {("min", None), ("mix", "min"), ("mix", "random"), ("coreset", None)} <= kinds
