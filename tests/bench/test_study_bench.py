"""bench/study.py runs end to end on digits at a tiny size and prints its breakdown table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

TINY = {"objectives": {"logdet": {}, "facility-location": {}}, "k": [20], "regimes": ["fixed", "balanced"],
        "seeds": [0], "random_subsets": 2, "mixture_fractions": [0.5], "fillers": ["random"],
        "minimiser_sample": 8, "epochs": 2, "steps": 10, "bootstrap": 20}


def test_bench_study_prints_the_breakdown(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_study", Path(__file__).parents[2] / "bench" / "study.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = bench.main(["--digits", "--config", str(cfg), "--train-sample", "1", "--score-sample", "5",
                      "--json", str(tmp_path / "b.json")])
    printed = capsys.readouterr().out
    for phase in ("realisation", "scoring", "training", "orchestration"):
        assert phase in printed
    phases = {r["phase"]: r for r in out["rows"]}
    assert phases["realisation"]["reference"] > 0 and phases["scoring"]["scaled"]
    assert out["specs"] == 2 * (2 * (1 + 1 + 1) + 2) and (tmp_path / "b.json").is_file()
