"""The in-process study end to end on digits: every subset selected, scored, trained; the report and figures
written; maximisers equal to worth.select called directly; training reproducible."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import worth
from worth.appraisal import StudyConfig, holdout_split, make_specs, realise, run_study, train_subset

TINY = dict(objectives={"logdet": {}, "facility-location": {}}, k=[30], regimes=["fixed", "balanced", "budget"],
            seeds=[0], random_subsets=4, mixture_fractions=[0.5], fillers=["random", "min"], minimiser_sample=16,
            epochs=10, steps=30, bootstrap=50)


@pytest.fixture(scope="module")
def split():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    held = holdout_split(y, 0.2, seed=0)
    return X[~held], y[~held], X[held], y[held]


@pytest.fixture(scope="module")
def study(split, tmp_path_factory):
    X, y, Xt, yt = split
    out = tmp_path_factory.mktemp("study")
    return run_study(X, y, Xt, yt, StudyConfig.from_dict(TINY), out), out


@pytest.mark.slow
def test_run_study_writes_report_and_figures(study):
    result, out = study
    rows = result["rows"]
    assert len(rows) == 3 * (2 * (1 + 1 + 2) + 4)
    assert {r["regime"] for r in rows} == {"fixed", "balanced", "budget"}
    assert all(np.isfinite(r["score.logdet"]) and 0 <= r["accuracy"] <= 1 for r in rows)
    assert {r["steps"] for r in rows if r["regime"] == "budget"} == {30}
    report = (out / "report.md").read_text()
    for name in ("scatter-fixed-k30.png", "scatter-balanced-k30.png", "accuracy-vs-k.png",
                 "heatmap-spearman-all.png", "path-budget-k30.png"):
        assert (out / name).stat().st_size > 5000
        assert f"({name})" in report
    assert "| 30 | facility-location | random | 4 |" in report
    corr = result["tables"]["correlation"]
    assert len(corr) == 3 * 2 * 3 and all(-1 <= c["spearman"] <= 1 for c in corr if c["subsets"] == "all")


@pytest.mark.slow
def test_maximisers_are_worth_select_and_training_reproduces(study, split):
    result, _ = study
    X, y, Xt, yt = split
    cfg = StudyConfig.from_dict(TINY)
    spec = next(s for s in make_specs(cfg) if s.kind == "max" and s.regime == "balanced")
    direct = worth.select(X, 30, spec.objective, labels=y, quotas="balanced")
    idx = realise(spec, X, y)
    assert idx.tolist() == np.asarray(direct.indices).tolist()
    row = next(r for r in result["rows"] if r["name"] == spec.name)
    again = train_subset(spec, idx, X, y, Xt, yt, 10, cfg)
    assert again["accuracy"] == row["accuracy"] and again["loss"] == row["loss"]


@pytest.mark.parametrize("module", ["worth.train", "worth.appraisal"])
def test_importing_the_wings_loads_no_torch_or_matplotlib(module):
    code = f"import sys, {module}; print(' '.join(m for m in ('torch', 'matplotlib', 'scipy.stats') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
