"""bench/study_flow.py runs two whole ``worth study`` processes side by side (here this checkout against itself,
on a digits store and the tests' tiny config): both from scratch, the same runs and accuracies, and a table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_two_whole_studies_side_by_side(tmp_path, capsys):
    store = tmp_path / "digits.zarr"
    subprocess.run([sys.executable, "-m", "flows.cli.main", "embed", "digits", "--store", str(store),
                    "--runner", "inline"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    spec = importlib.util.spec_from_file_location("bench_study_flow", ROOT / "bench" / "study_flow.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main(["--store", str(store), "--config", str(ROOT / "tests" / "study" / "tiny.yaml"),
                      "--ref-tree", str(ROOT), "--timeout", "900", "--keep", str(tmp_path / "runs")])
    printed = capsys.readouterr().out
    ref, new = out["reference"], out["this checkout"]
    assert ref["runs"] == new["runs"] == 27 and ref["names"] == new["names"]
    assert ref["accuracy"] == new["accuracy"]  # Dask workers are processes: training is reproducible
    assert "| wall (s) |" in printed and "runs whose held-out accuracy differs: 0 of 27" in printed
    assert ref["from_scratch"] and new["from_scratch"]  # the second run found none of the first's kept work
    for run in ("reference", "this-checkout"):  # --keep: each run's logs and databases stay for its task times
        assert (tmp_path / "runs" / run / "mlflow.db").is_file() and (tmp_path / "runs" / run / "stdout.log").is_file()
