"""A study keeps its paths, completions and scores as they finish: a rerun (other training settings, a killed
or failed run) computes none of them again and gets the very same subsets and scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import pipeline.study as pipeline_study
from flows.study import StudyOptions, run_study
from tests.helpers import make_digits_store

TINY = yaml.safe_load((Path(__file__).parent / "tiny.yaml").read_text())
# every kind of kept work: the minimiser's completions too (tiny.yaml fills with random draws only)
CONFIG = {**TINY, "fillers": ["random", "min"]}


def _subsets(result):
    """``run name → row`` of the study's results file."""
    return {r["name"]: r for r in json.loads(Path(result["results"]).read_text())["rows"]}


def _refuse(*_a, **_k):
    raise AssertionError("recomputed work the checkpoint holds")


@pytest.mark.slow
def test_a_rerun_with_other_training_settings_recomputes_no_path_fill_or_score(tmp_path, monkeypatch):
    store = str(make_digits_store(tmp_path / "digits.zarr", dim=32, seed=0, chunk_rows=512))
    first = run_study(StudyOptions(store=store, config_data=CONFIG, tracking_uri=f"sqlite:///{tmp_path / 'a.db'}",
                                   experiment="a"))
    work = next((tmp_path / "digits.zarr.study" / "work").iterdir())
    kept = {kind: sorted((work / kind).glob("*.json")) for kind in ("paths", "fills", "scores")}
    assert all(kept.values()), kept  # each kind kept as its jobs ended
    monkeypatch.setattr(pipeline_study, "realise_unit", _refuse)
    monkeypatch.setattr(pipeline_study, "complete_mixture", _refuse)
    monkeypatch.setattr(pipeline_study, "score_subsets", _refuse)
    second = run_study(StudyOptions(store=store, config_data={**CONFIG, "epochs": CONFIG["epochs"] + 1},
                                    tracking_uri=f"sqlite:///{tmp_path / 'b.db'}", experiment="b"))
    assert second["study_key"] != first["study_key"] and second["trained"] == second["subsets"] == first["subsets"]
    a, b = _subsets(first), _subsets(second)
    assert a.keys() == b.keys()
    for name, row in a.items():
        assert {k: v for k, v in row.items() if k.startswith("score")} == \
               {k: v for k, v in b[name].items() if k.startswith("score")}, name
