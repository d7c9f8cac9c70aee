"""``worth nights``: the curated versions of a store as a table (rounded for people) or JSON (full precision), and
the messages for a missing store or a store not curated yet. (Here beside the select tests for their digits
store fixture; the versions are made as storage/curated.py publishes them, see _curated_nights.py.)"""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from flows.cli import render
from flows.cli.main import app
from storage import curated

from _curated_nights import publish_nights  # noqa: E402  (tests/select is on sys.path)

runner = CliRunner()


def test_nights_lists_every_published_version(digits_store):
    folder = publish_nights(digits_store, sizes=(12, 20, 31))
    with open(curated.version_path(folder, 4), "w") as f:  # a killed run's unreferenced file: not a night
        f.write("{}")
    res = runner.invoke(app, ["nights", "--store", digits_store])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"Curated versions of {digits_store} ({folder})"
    assert lines[1].split() == ["version", "date", "(UTC)", "size", "added", "objective", "value", "accuracy",
                                "delta", "test", "rows"]
    rows = [line.split() for line in lines[3:]]
    history = curated.history(folder)
    assert [r[0] for r in rows] == ["v0001", "v0002", "v0003"]
    for r, rec in zip(rows, history):
        assert r[1:3] == render.when(rec["created"]).split()
        assert r[3:5] == [str(len(rec["ids"])), f"+{len(rec['added'])}"]
        assert r[5:] == ["facility-location", render.number(rec["value"]), render.accuracy(rec["accuracy"]),
                         *render.accuracy_delta(rec["metrics"]["delta_accuracy"]).split(), "359"]
    assert rows[0][8] == "-" and rows[1][8:10] == ["+10.0", "pp"]  # night 2: 0.7 - 0.6
    assert rows[2][6] == "2" and rows[1][7] == "70.0%"  # 1 + 3/3 rounded; 0.7 as a percentage

    js = json.loads(runner.invoke(app, ["nights", "--store", digits_store, "--json"]).stdout)
    assert [n["version"] for n in js] == [1, 2, 3] and js[1]["value"] == history[1]["value"]  # full precision
    assert js[2]["delta_accuracy"] == history[2]["metrics"]["delta_accuracy"] and js[2]["size"] == 31


def test_nights_of_a_store_not_curated_yet(digits_store):
    res = runner.invoke(app, ["nights", "--store", digits_store])
    assert res.exit_code == 0 and "no curated versions of" in res.stdout and "worth curate" in res.stdout
    os.makedirs(curated.curated_dir(digits_store))  # the folder without a published version
    res = runner.invoke(app, ["nights", "--store", digits_store])
    assert res.exit_code == 0 and "no curated versions in" in res.stdout


@pytest.mark.parametrize("extra", [[], ["--export", "v1", "--out", "a.npy"]])
def test_nights_of_a_missing_store_is_an_error(tmp_path, extra):
    res = runner.invoke(app, ["nights", "--store", str(tmp_path / "none.zarr"), *extra])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"error: no store at {tmp_path / 'none.zarr'} and no curated folder {tmp_path / 'none.zarr.curated'}: "
        f"check --store, or make them with `worth curate SOURCE --store {tmp_path / 'none.zarr'}`"]


def test_nights_refuses_a_remote_store_without_a_local_folder():
    res = runner.invoke(app, ["nights", "--store", "s3://bucket/pool.zarr"])
    assert res.exit_code == 2 and "give curated=LOCAL_FOLDER" in res.stderr
