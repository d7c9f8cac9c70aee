"""The `worth` command line, run in-process with typer's runner."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

import worth
from flows.cli.main import app

runner = CliRunner()


def test_objectives_lists_every_objective():
    result = runner.invoke(app, ["objectives"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in worth.objectives():
        assert name in result.output


def test_select_digits_writes_json(tmp_path):
    out = tmp_path / "sel.json"
    result = runner.invoke(app, ["select", "--input", "digits", "--objective", "logdet", "--k", "12",
                                 "--optimizer", "lazy", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    from sklearn.datasets import load_digits

    ref = worth.select(load_digits().data, 12, "logdet", "lazy")
    assert data["indices"] == np.asarray(ref.indices).tolist()
    assert data["values"][-1] == ref.value
    score = runner.invoke(app, ["score", "--input", "digits", "--indices", str(out), "--objective", "logdet"])
    assert score.exit_code == 0 and f"{ref.value:.10g}" in score.output


def test_select_npy_with_params(tmp_path):
    X = np.random.default_rng(0).normal(size=(50, 6))
    np.save(tmp_path / "x.npy", X)
    result = runner.invoke(app, ["select", "-i", str(tmp_path / "x.npy"), "--objective", "power", "-k", "5",
                                 "-p", "alpha=0.3", "--show", "0"])
    assert result.exit_code == 0, result.output
    assert f"{worth.select(X, 5, 'power', alpha=0.3).value:.6g}" in result.output


def test_bad_parameter_is_a_clear_error():
    result = runner.invoke(app, ["select", "--input", "digits", "-k", "5", "--objective", "power", "-p", "alpha=2"])
    assert result.exit_code == 2
    assert "alpha=2 is out of range" in result.output


def test_missing_input_file():
    result = runner.invoke(app, ["select", "--input", "nope.npy", "-k", "5"])
    assert result.exit_code != 0
    assert "neither a file nor a built-in input" in result.output
