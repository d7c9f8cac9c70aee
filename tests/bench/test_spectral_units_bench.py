"""Smoke test of bench/spectral_units.py at toy size: this checkout against itself as the reference, every
row runs in its own process from the tree it names, and the picks compare equal."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_spectral_units", _ROOT / "bench" / "spectral_units.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_units_side_by_side(capsys):
    out = bench.main(["--tiny", "--ref-tree", str(_ROOT), "--objectives", "hybrid,power"])
    printed = capsys.readouterr().out
    assert "hybrid" in printed and "power" in printed and "equal" in printed
    for row in out["rows"].values():
        assert row["picks_equal"] and row["seconds"] > 0 and row["reference_seconds"] > 0
        assert row["path_picks"] == 200  # the unconstrained path and the balanced one, 100 picks each


def test_an_unknown_objective_is_refused():
    with pytest.raises(SystemExit, match="--objectives vendy: unknown"):
        bench.main(["--tiny", "--ref-tree", str(_ROOT), "--objectives", "vendy"])
