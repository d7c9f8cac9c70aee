"""bench/study.py runs end to end on digits at a tiny size and prints its breakdown table, alone and side by side
with another tree (here this checkout again: the same picks, every phase on both sides)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
TINY = {"objectives": {"logdet": {}, "facility-location": {}}, "k": [20], "regimes": ["fixed", "balanced"],
        "seeds": [0], "random_subsets": 2, "mixture_fractions": [0.5], "fillers": ["random", "min"],
        "minimiser_sample": 8, "epochs": 2, "steps": 10, "bootstrap": 20}
PHASES = ("load pool", "paths · max", "paths · min", "fills", "cuts", "scoring (score_subsets)",
          "scoring per objective (score_subset)", "training")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_study", ROOT / "bench" / "study.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.parametrize("per_spec", ["no", "yes"])
def test_bench_study_prints_the_breakdown(tmp_path, capsys, per_spec):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = _bench().main(["--digits", "--config", str(cfg), "--train-sample", "1", "--score-sample", "5",
                         "--per-spec", per_spec, "--json", str(tmp_path / "b.json")])
    printed = capsys.readouterr().out
    phases = {r["phase"]: r for r in out["rows"]}
    for phase in PHASES + (("per-spec",) if per_spec == "yes" else ()):
        assert phase in printed and phase in phases
        assert phases[phase]["seconds"] >= 0
    assert phases["paths · max"]["seconds"] > 0 and phases["scoring per objective (score_subset)"]["scaled"]
    # per (regime, k): maximiser, minimiser, two mixtures per objective, two random subsets
    assert out["specs"] == 2 * (2 * (1 + 1 + 2) + 2) and (tmp_path / "b.json").is_file()


@pytest.mark.slow
def test_side_by_side_with_another_tree(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    _bench().main(["--digits", "--config", str(cfg), "--train-sample", "1", "--ref-tree", str(ROOT),
                   "--json", str(tmp_path / "b.json")])
    printed = capsys.readouterr().out
    runs = json.loads((tmp_path / "b.json").read_text())
    assert len(runs) == 2 and runs[0]["tree"] == str(ROOT.resolve()) and runs[1]["tree"] == "this checkout"
    assert runs[0]["picks_digest"] == runs[1]["picks_digest"]
    assert "| ratio |" in printed and all(f"| {p} |" in printed for p in PHASES)
