"""Corrupt ``--input`` files, unwritable ``--out`` paths, labels and quotas: refused before any work, in one line.

The catalogue runs ``worth score`` (the readers are shared with ``worth select``) and calls the shared checks of
:mod:`flows.cli.params` directly where a command is not needed to show them.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import typer

from flows.cli.params import check_output_path, load_input, parse_quotas, resolve_labels
from tests.helpers import copy_store, make_digits_store


def _npy_bytes(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


GOOD = _npy_bytes(np.random.default_rng(0).normal(size=(30, 4)))


def _make(tmp_path, kind):
    p = tmp_path / "in.npy"
    if kind == "truncated":
        p.write_bytes(GOOD[: len(GOOD) // 2])
    elif kind == "header-only":
        p.write_bytes(GOOD[:128])
    elif kind == "text renamed .npy":
        p.write_text("0.1,0.2\n0.3,0.4\n")
    elif kind == "object array":
        np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "empty file":
        p.write_bytes(b"")
    elif kind == "no rows":
        np.save(p, np.zeros((0, 4)))
    elif kind == "1-D":
        np.save(p, np.zeros(4))
    elif kind == "strings":
        np.save(p, np.array([["a", "b"]]))
    elif kind == "a directory":
        p = tmp_path / "folder"
        p.mkdir()
    elif kind == "a zarr group that is not a store":
        import zarr

        p = tmp_path / "group.zarr"
        zarr.open_group(str(p), mode="w").create_array("x", shape=(3, 2), dtype="float32")
    return p


CASES = {
    "truncated": "truncated or damaged",
    "header-only": "truncated or damaged",
    "text renamed .npy": "not a NumPy file",
    "object array": "Python objects",
    "empty file": "is empty",
    "no rows": "no rows",
    "1-D": "2-D array",
    "strings": "give numbers",
    "a directory": "not a Zarr embedding store",
    "a zarr group that is not a store": "not a worth embedding store",
}


@pytest.mark.parametrize("kind", list(CASES))
def test_corrupt_input_is_one_line(worth, one_line, tmp_path, kind):
    bad = _make(tmp_path, kind)
    sel = tmp_path / "s.json"
    sel.write_text(json.dumps({"indices": [0, 1]}))
    one_line(worth("score", "-i", bad, "--indices", sel), 2, "--input", CASES[kind])


def test_npz_labels_and_ids_are_read(tmp_path):
    X = np.random.default_rng(1).normal(size=(12, 3))
    y = np.arange(12) % 3
    np.savez(tmp_path / "d.npz", X=X, y=y, ids=np.array([f"item-{i}" for i in range(12)]))
    inputs = load_input(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(inputs.labels, y)
    assert inputs.ids[3] == "item-3"
    assert parse_quotas("balanced", resolve_labels(inputs, None)) == "balanced"
    assert parse_quotas("0=2,2=1", inputs.labels) == {0: 2, 2: 1}
    assert resolve_labels(inputs, "none") is None


def test_labels_from_a_file_and_quotas_without_labels(tmp_path):
    X = np.random.default_rng(1).normal(size=(5, 3))
    np.save(tmp_path / "x.npy", X)
    inputs = load_input(str(tmp_path / "x.npy"))
    with pytest.raises(typer.BadParameter, match="quotas need labels"):
        parse_quotas("balanced", resolve_labels(inputs, None))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1, 1]))
    np.testing.assert_array_equal(resolve_labels(inputs, str(tmp_path / "y.npy")), [0, 1, 0, 1, 1])
    np.save(tmp_path / "short.npy", np.array([0, 1]))
    with pytest.raises(typer.BadParameter, match="give 5 integer class numbers"):
        resolve_labels(inputs, str(tmp_path / "short.npy"))
    with pytest.raises(typer.BadParameter, match="CLASS=COUNT"):
        parse_quotas("lots", np.zeros(5, dtype=np.int64))


def test_store_input_gives_rows_labels_and_ids(tmp_path, digits_store):
    inputs = load_input(digits_store)
    assert inputs.X.shape == (1797, 16) and inputs.X.dtype == np.float64
    assert inputs.ids[0] == "digits-00000" and inputs.labels[:3].tolist() == [0, 1, 2]
    assert inputs.classes is None or len(inputs.classes) == 10


def test_damaged_store_input_names_the_chunk(worth, one_line, tmp_path, digits_store):
    os.remove(os.path.join(digits_store, "embeddings", "c", "1", "0"))
    sel = tmp_path / "s.json"
    sel.write_text(json.dumps({"indices": [0, 1]}))
    one_line(worth("score", "-i", digits_store, "--indices", sel), 1,
             "embeddings chunk 1 (rows 500..1000)", "rerun `worth embed`")


@pytest.mark.parametrize("where,fragment", [
    ("missing/dir/out.json", "does not exist"),
    ("a-folder", "is a folder"),
    ("/proc/version", "cannot be written"),
    ("/proc/out.json", "cannot be written"),
])
def test_output_path_is_checked_before_the_run(tmp_path, where, fragment):
    (tmp_path / "a-folder").mkdir()
    path = tmp_path / where if not where.startswith("/") else where
    with pytest.raises(typer.BadParameter, match=fragment):
        check_output_path(path)


def test_writable_output_path_leaves_nothing_behind(tmp_path):
    assert check_output_path(tmp_path / "sel.json") == tmp_path / "sel.json"
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def _digits_store_built(tmp_path_factory):
    return make_digits_store(tmp_path_factory.mktemp("store") / "digits.zarr", dim=16, seed=0, chunk_rows=500)


@pytest.fixture
def digits_store(_digits_store_built, tmp_path):
    return copy_store(_digits_store_built, tmp_path / "digits.zarr")
