"""The coreset table: its config section (validated), its specs, their rows (reference and shared paths
alike), the table and headline, the report section, and nothing changed for a config without it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import worth
from worth.appraisal import (StudyConfig, holdout_split, make_specs, realise, realise_subsets, run_study)
from worth.appraisal.coreset_table import coreset_headline, coreset_table, headline_sentences
from worth.appraisal.design import coreset_specs

BASE = dict(objectives={"logdet": {}, "facility-location": {}}, k=[20], regimes=["fixed"], seeds=[0],
            random_subsets=3, mixture_fractions=[0.5], fillers=["random"], minimisers=False, epochs=3, steps=10,
            bootstrap=20)
CORESET = {"fractions": [0.02, 0.05], "seeds": 2}


@pytest.fixture(scope="module")
def split():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    held = holdout_split(y, 0.2, seed=0)
    return X[~held], y[~held], X[held], y[held]


@pytest.mark.parametrize("section,match", [
    ({"fractions": [0]}, "coreset.fractions"),
    ({"fractions": [1.0]}, "coreset.fractions"),
    ({"fraction": [0.1]}, "key 'fraction' is unknown"),
    ({"seeds": 0}, "coreset.seeds"),
    ({"seeds": [1, 1]}, "coreset.seeds"),
    ({"baselines": ["kmeans"]}, "coreset.baselines"),
    ({"full": "yes"}, "coreset.full"),
    ({"baselines": [], "maximisers": False}, "nothing to compare"),
    ([0.1], "coreset must be a mapping"),
])
def test_bad_coreset_sections_are_refused(section, match):
    with pytest.raises(ValueError, match=match):
        StudyConfig.from_dict({**BASE, "coreset": section})


def test_no_coreset_section_changes_nothing():
    cfg = StudyConfig.from_dict(BASE)
    assert "coreset" not in cfg.to_dict()  # the study key hashes to_dict(): unchanged
    assert make_specs(cfg) == make_specs(cfg, n_pool=1000)
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    with_table = StudyConfig.from_dict({**BASE, "coreset": CORESET})
    assert StudyConfig.from_dict(with_table.to_dict()) == with_table
    with pytest.raises(ValueError, match="n_pool"):
        make_specs(with_table)


def test_coreset_specs():
    cfg = StudyConfig.from_dict({**BASE, "coreset": CORESET})
    specs = coreset_specs(cfg, 1437)
    names = {s.name for s in specs}
    assert len(names) == len(specs) == 2 * 2 * (4 + 2) + 2
    assert "coreset5-herding-k72-s1" in names and "coreset-full-k1437-s0" in names
    keys = {}
    for s in specs:
        keys.setdefault(s.subset_key, set()).add(s.objective)
    # deterministic selections share one subset over the seeds; random draws do not
    assert sum(1 for v in keys.values() if v <= {"uniform"}) == 4
    assert len(keys) == 2 * (2 * 2 + 4) + 1


def test_coreset_rows_equal_the_library_and_the_reference(split):
    X, y, _, _ = split
    cfg = StudyConfig.from_dict({**BASE, "coreset": CORESET})
    specs = make_specs(cfg, n_pool=len(y))
    fast = realise_subsets(specs, X, y)
    cache = {}
    for s in specs:
        np.testing.assert_array_equal(fast[s.subset_key], realise(s, X, y, cache), err_msg=s.name)
    by = {s.name: fast[s.subset_key] for s in specs}
    for name in ("herding", "k-center", "logdet"):
        ref = worth.select(X, 72, name, labels=y, quotas="balanced")
        np.testing.assert_array_equal(by[f"coreset5-{name}-k72-s0"], ref.indices)
    counts = np.bincount(y[by["coreset5-balanced-random-k72-s1"]], minlength=10)
    assert counts.max() - counts.min() <= 1  # k // C each, the remainder to random classes
    for name in ("herding", "k-center", "facility-location"):  # worth.select's rule: at most ceil(k / C)
        assert np.bincount(y[by[f"coreset5-{name}-k72-s1"]], minlength=10).max() <= 8
    assert by[f"coreset-full-k{len(y)}-s0"].tolist() == list(range(len(y)))
    assert not np.array_equal(by["coreset5-uniform-k72-s0"], by["coreset5-uniform-k72-s1"])


def test_table_and_headline_by_hand():
    rows = [{"kind": "coreset", "fraction": 0.1, "objective": o, "seed": s, "k": 10, "accuracy": a}
            for o, accs in (("uniform", [0.5, 0.6]), ("herding", [0.7, 0.75]), ("logdet", [0.4, 0.45]))
            for s, a in enumerate(accs)]
    rows += [{"kind": "coreset", "fraction": 1.0, "objective": "full", "seed": s, "k": 100, "accuracy": 0.99}
             for s in range(2)]
    table = {(c["fraction"], c["selection"]): c for c in coreset_table(rows)}
    assert table[(0.1, "herding")]["mean"] == pytest.approx(0.725)
    assert table[(0.1, "uniform")]["sd"] == pytest.approx(np.std([0.5, 0.6], ddof=1))
    (head,) = coreset_headline(rows)  # the full pool is the ceiling, not a candidate
    assert head["best"] == "herding"
    assert head["margin"] == pytest.approx(np.mean([0.2, 0.15]))
    assert head["margin_sd"] == pytest.approx(np.std([0.2, 0.15], ddof=1))
    assert not math.isnan(head["margin_sd"])


@pytest.mark.slow
def test_run_study_reports_the_coreset_table(split, tmp_path):
    X, y, Xt, yt = split
    cfg = StudyConfig.from_dict({**BASE, "coreset": {"fractions": [0.05], "seeds": 2,
                                                     "baselines": ["uniform", "herding", "k-center"]}})
    out = run_study(X, y, Xt, yt, cfg, tmp_path)
    core = [r for r in out["rows"] if r["kind"] == "coreset"]
    assert len(core) == 2 * (3 + 2) + 2
    assert {(c["selection"]) for c in out["tables"]["coreset"]} == {"uniform", "herding", "k-center", "logdet",
                                                                    "facility-location", "full"}
    assert all(c["regime"] != "coreset" for c in out["tables"]["correlation"])
    report = out["report"].read_text()
    assert "## Coreset table" in report and "over uniform random" in report and "| full pool |" in report
    html = out["html"].read_text()
    assert html.count("data:image/png;base64,") == report.count("](") and "<table>" in html


def test_an_item_blind_maximiser_is_marked_and_not_the_headline():
    """The scaling law cannot tell items apart: its 'selection' is store order within each class. Scoring
    highest, it is named beside the headline, not as its best."""
    rows = [{"kind": "coreset", "fraction": 0.1, "objective": o, "seed": s, "k": 10, "accuracy": a}
            for o, accs in (("uniform", [0.5, 0.6]), ("scaling-law", [0.9, 0.9]), ("herding", [0.7, 0.75]))
            for s, a in enumerate(accs)]
    blind = {c["selection"]: c["item_blind"] for c in coreset_table(rows)}
    assert blind == {"uniform": False, "scaling-law": True, "herding": False}
    (head,) = coreset_headline(rows)
    assert head["best"] == "herding" and head["above"] == [["scaling-law", 0.9]]
    (line,) = headline_sentences([head])
    assert "`herding` trains the best model" in line and "`scaling-law` scored higher (0.9000)" in line
