"""The study config: unknown keys and objectives refused with the allowed ones named; YAML files load."""

from __future__ import annotations

from pathlib import Path

import pytest

from worth.appraisal import StudyConfig, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "data, match",
    [
        ({"mixture_fraction": [0.5]}, r"key 'mixture_fraction' is unknown; the allowed keys are: objectives, k,"),
        ({"objectives": {"vendy": {}}}, r"'vendy' is unknown; pass names from \["),
        ({"objectives": {"vendi": {"p": 2}}}, "parameter 'p' is not a parameter of objective 'vendi'"),
        ({"objectives": {"logdet": {"sigma2": -1}}}, "sigma2=-1 is out of range"),
        ({"regimes": ["fixed", "weekly"]}, r"regimes: \['weekly'\] unknown"),
        ({"k": [1]}, "k=.* must be integers >= 2"),
        ({"mixture_fractions": [1.0]}, r"must lie in \(0, 1\)"),
        ({"holdout_fraction": 0.95}, r"holdout_fraction=0.95 must lie in \(0, 0.9\]"),
        ({"model": "resnet"}, "model='resnet' is unknown"),
        ({"fillers": ["zeros"]}, "fillers"),
    ],
)
def test_bad_config_is_refused(data, match):
    with pytest.raises(ValueError, match=match):
        StudyConfig.from_dict(data)


def test_round_trip_and_objective_list():
    cfg = StudyConfig.from_dict({"objectives": ["vendi", "facility-location"], "k": [10, 20]})
    assert cfg.objectives == {"vendi": {}, "facility-location": {}} and cfg.k == (10, 20)
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", ["study.yaml", "study-quick.yaml"])
def test_repository_configs_load(name):
    cfg = load_config(ROOT / name)
    assert set(cfg.objectives) <= set(__import__("worth").objectives())


def test_quick_file_is_the_quick_preset():
    assert load_config(ROOT / "study-quick.yaml") == StudyConfig.quick()


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("objectives: [vendi]\nseed: 3\n")
    with pytest.raises(ValueError, match=r"s.yaml: study config key 'seed' is unknown"):
        load_config(path)
