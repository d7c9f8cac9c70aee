"""Smoke test of bench/fl_minimiser.py at toy size: both rows run, the new evaluation's picks equal the old
one's, and on the trunk it evaluates fewer candidates than it sees (the bench measures what it says)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "bench" / "fl_minimiser.py"
_spec = importlib.util.spec_from_file_location("bench_fl_minimiser", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_old_and_new_side_by_side(capsys):
    out = bench.main(["--tiny"])
    printed = capsys.readouterr().out
    assert "first pass (shared)" in printed and "trunk" in printed and "fill" in printed
    assert set(out["rows"]) == {"trunk", "fill"}
    for row in out["rows"].values():
        assert row["picks_equal"] and row["old_seconds"] > 0 and row["new_seconds"] > 0
    trunk = out["rows"]["trunk"]
    assert 0 < trunk["evaluated"] < trunk["seen"] <= out["k"] * out["sample"]
