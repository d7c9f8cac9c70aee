"""`worth score`: every bad input is one line and exit 2; a selection JSON is scored with its own parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worth import score


@pytest.fixture
def data(tmp_path):
    X = np.random.default_rng(0).normal(size=(40, 6))
    np.save(tmp_path / "x.npy", X)
    return tmp_path, X


def write(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize("content,fragments", [
    ({"indices": [1.5, 2.0]}, ["--indices", "whole row numbers", "1.5"]),
    ({"indices": [1, 40]}, ["--indices", "[40]", "outside 0..39"]),
    ({"indices": [-1, 2]}, ["--indices", "[-1]"]),
    ({"indices": []}, ["--indices", "selects no rows"]),
    ({"objective": "vendi"}, ["--indices", "no 'indices'"]),
    ("{not json", ["--indices", "not valid JSON"]),
    ([1, 2, 3], ["--indices", "no 'indices'"]),
])
def test_bad_selection_file(worth, one_line, data, content, fragments):
    tmp, _ = data
    out = worth("score", "-i", tmp / "x.npy", "--indices", write(tmp / "sel.json", content))
    one_line(out, 2, *fragments)


def test_missing_selection_file(worth, one_line, data):
    tmp, _ = data
    one_line(worth("score", "-i", tmp / "x.npy", "--indices", tmp / "none.json"), 2, "no such file")


def test_float_npy_indices_are_refused_not_truncated(worth, one_line, data):
    tmp, _ = data
    np.save(tmp / "idx.npy", np.array([1.5, 2.0]))
    one_line(worth("score", "-i", tmp / "x.npy", "--indices", tmp / "idx.npy"), 2, "integer row numbers")


def test_unknown_objective(worth, one_line, data):
    tmp, _ = data
    out = worth("score", "-i", tmp / "x.npy", "--indices", write(tmp / "s.json", {"indices": [1, 2]}),
                "--objective", "vendy")
    one_line(out, 2, "--objective", "'vendy' is not an objective", "vendi")


def test_nan_input(worth, one_line, data):
    tmp, X = data
    X = X.copy()
    X[7] = np.nan
    np.save(tmp / "nan.npy", X)
    out = worth("score", "-i", tmp / "nan.npy", "--indices", write(tmp / "s.json", {"indices": [1, 2]}))
    one_line(out, 2, "--input", "rows [7]", "NaN")


def test_selection_params_are_used_and_param_overrides(worth, one_line, data):
    tmp, X = data
    sel = write(tmp / "s.json", {"objective": "power", "params": {"alpha": 0.3}, "indices": [1, 5, 9]})
    out = worth("score", "-i", tmp / "x.npy", "--indices", sel)
    assert out.code == 0, out.lines
    assert float(out.stdout.split(":")[-1]) == pytest.approx(score(X, [1, 5, 9], "power", alpha=0.3), rel=1e-9)
    assert float(out.stdout.split(":")[-1]) != pytest.approx(score(X, [1, 5, 9], "power", alpha=0.5), rel=1e-6)
    out = worth("score", "-i", tmp / "x.npy", "--indices", sel, "--param", "alpha=0.5")
    assert float(out.stdout.split(":")[-1]) == pytest.approx(score(X, [1, 5, 9], "power", alpha=0.5), rel=1e-9)


def test_bad_param_value_is_one_line(worth, one_line, data):
    tmp, _ = data
    out = worth("score", "-i", tmp / "x.npy", "--indices", write(tmp / "s.json", {"indices": [1, 2]}),
                "--objective", "power", "--param", "alpha=high")
    one_line(out, 2, "--param")


def test_string_parameters_parse(worth, one_line, data):
    """`--param similarity=rbf` reached the objective as a string (it used to be refused as "not a number")."""
    tmp, X = data
    out = worth("score", "-i", tmp / "x.npy", "--indices", write(tmp / "s.json", {"indices": [1, 2, 3]}),
                "--objective", "facility-location", "--param", "similarity=rbf")
    assert out.code == 0, out.lines
    assert float(out.stdout.split(":")[-1]) == pytest.approx(
        score(X, [1, 2, 3], "facility-location", similarity="rbf"), rel=1e-9)


def test_debug_shows_the_traceback(worth, one_line, data):
    tmp, _ = data
    out = worth("--debug", "score", "-i", tmp / "x.npy", "--indices", tmp / "none.json")
    assert out.code != 0 and out.exception is not None and "no such file" in str(out.exception)
