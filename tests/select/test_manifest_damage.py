"""Damaged manifest files and concurrent writers of one job (issue 21 §2, §3).

One garbage, empty or truncated ``vNNNN.json`` blocked listing, exporting and every new ``select --store`` with
"Expecting value: line 1 column 1 (char 0)", naming no file; two concurrent writers of one job key wrote
v0001 and v0002; a store path that does not exist was "no selections yet".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage import curated
from storage import manifest as mf

ROOT = str(Path(__file__).resolve().parents[2])


def _record(key="a" * 64, ids=("b", "a", "c")):
    return {"key": key, "created": mf.now(), "objective": "vendi", "value": 1.5,
            "picks": {"ids": list(ids), "rows": [1, 0, 2], "gains": [1.0, 0.3, 0.2], "values": [1.0, 1.3, 1.5]}}


def _truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


DAMAGE = {
    "empty": lambda p: open(p, "wb").close(),
    "garbage": lambda p: open(p, "wb").write(b"\x00\xff not json at all"),
    "truncated": _truncate,
    "foreign": lambda p: open(p, "w").write(json.dumps([1, 2, 3])),
}


@pytest.fixture
def store(tmp_path):
    url = str(tmp_path / "pool.zarr")
    mf.write_manifest(url, "good", _record("1" * 64))
    mf.write_manifest(url, "bad", _record("2" * 64))
    return url


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_listing_names_the_damaged_file_and_keeps_the_others(store, damage):
    path = mf.manifest_path(store, "bad", 1)
    DAMAGE[damage](path)
    damaged = []
    rows = mf.list_manifests(store, damaged=damaged)
    assert [(r["name"], r["version"]) for r in rows] == [("good", 1)]
    assert len(damaged) == 1 and damaged[0].path == path
    assert path in str(damaged[0]) and "move it aside or delete it" in str(damaged[0])
    with pytest.raises(mf.DamagedManifestError, match="damaged.*move it aside or delete it"):
        mf.read_manifest(store, "bad")
    assert mf.read_manifest(store, "good")["key"] == "1" * 64
    # a new write of another job still works, and the key look-up still finds the good one
    assert mf.write_manifest(store, "bad", _record("3" * 64))["version"] == 2
    assert mf.find_by_key(store, "1" * 64)["name"] == "good"


def test_a_truncated_record_of_this_job_is_reported_by_the_key_lookup(store):
    _truncate(mf.manifest_path(store, "bad", 1))
    with pytest.raises(mf.DamagedManifestError, match="bad/v0001.json is damaged"):
        mf.find_by_key(store, "2" * 64)


def test_listing_a_store_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*worth embed"):
        mf.list_manifests(str(tmp_path / "nope.zarr"))


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "foreign"])
def test_a_damaged_curated_version_is_named_with_its_repair(tmp_path, damage):
    folder = str(tmp_path / "pool.zarr.curated")
    os.makedirs(folder)
    with open(curated.version_path(folder, 1), "w") as f:
        json.dump({"schema_version": curated.SCHEMA_VERSION, "ids": ["a"]}, f)
    with open(os.path.join(folder, curated.LATEST), "w") as f:
        f.write("1\n")
    DAMAGE[damage](curated.version_path(folder, 1))
    with pytest.raises(ValueError, match=r"v0001.json is damaged.*point .*LATEST at the previous good version"):
        curated.read_version(folder)


def _nights(tmp_path, n=3):
    """A store folder and its curated folder with ``n`` published nights."""
    store = tmp_path / "pool.zarr"
    store.mkdir()
    folder = str(tmp_path / "pool.zarr.curated")
    record = {k: [] for k in ("ids", "positions", "classes")}
    record.update({k: None for k in curated.REQUIRED if k not in record}, objective="vendi", value=1.0,
                  accuracy=0.5, store_rows=0, metrics={})
    for v in range(n):
        curated.publish(folder, record, expected_latest=v)
    return str(store), folder


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated"])
def test_a_damaged_older_night_is_named_and_the_others_listed(tmp_path, damage):
    """`worth nights` refused the whole list for one damaged version file (issue 21 §2)."""
    store, folder = _nights(tmp_path)
    path = curated.version_path(folder, 2)
    DAMAGE[damage](path)
    with pytest.raises(ValueError, match="v0002.json is damaged"):
        curated.history(folder)
    damaged = []
    assert [r["version"] for r in curated.history(folder, damaged=damaged)] == [1, 3]
    assert len(damaged) == 1 and path in str(damaged[0])
    assert "the later versions, LATEST (v0003) included, are whole" in str(damaged[0])
    listed = _cli("nights", "--store", store)
    assert listed.exit_code == 0, listed.output
    assert f"warning: curated version file {path} is damaged" in listed.output
    assert [line.split()[0] for line in listed.output.splitlines() if line.startswith("v000")] == ["v0001", "v0003"]


_PUBLISHER = """
import json, os, sys, time
from storage import manifest as mf
url, key, tag, go = sys.argv[1:5]
while not os.path.exists(go):  # every writer imported and waiting: they race from here
    time.sleep(0.005)
record = {"key": key, "created": mf.now(), "objective": "vendi", "value": 1.5,
          "picks": {"ids": [tag], "rows": [0], "gains": [1.0], "values": [1.0]}}
man = mf.write_manifest(url, "same", record)
print(json.dumps([man["version"], man["picks"]["ids"][0]]))
"""


@pytest.mark.parametrize("attempt", range(4))
def test_concurrent_writers_of_one_job_key_leave_one_record(tmp_path, attempt):
    """Processes of their own, as concurrent ``worth select`` runs are (the writer lock is per process): the
    writers that lose return the first's manifest.

    Fresh interpreters, not forks of the test process: a fork inherits whatever the suite's earlier tests left
    running (Prefect, Dask threads), and such children exited 1 after writing in the full suite.
    """
    url, go = str(tmp_path / "pool.zarr"), str(tmp_path / "go")
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [subprocess.Popen([sys.executable, "-c", _PUBLISHER, url, "f" * 64, f"w{i}", go], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    time.sleep(0.5)
    open(go, "w").close()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    got = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(os.listdir(os.path.join(url, "selections", "same"))) == ["v0001.json"]
    assert len({tag for _, tag in got}) == 1 and {v for v, _ in got} == {1}  # all report the one record


def test_concurrent_writers_in_threads_leave_one_record(tmp_path):
    import threading

    url = str(tmp_path / "pool.zarr")
    done = []
    threads = [threading.Thread(target=lambda i=i: done.append(mf.write_manifest(url, "same", _record("e" * 64))))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [m["version"] for m in done] == [1] * 6
    assert sorted(os.listdir(os.path.join(url, "selections", "same"))) == ["v0001.json"]


# -- through the CLI ---------------------------------------------------------------------------------------
def _cli(*args):
    from typer.testing import CliRunner

    from flows.cli.main import app

    return CliRunner().invoke(app, list(args))


PC = ["--name", "pc", "--regime", "per-class", "--quotas", "2", "--objective", "logdet", "--runner", "inline"]


def test_cli_lists_a_missing_store_as_an_error(tmp_path):
    res = _cli("selections", "--store", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "does not exist" in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_cli_select_and_listing_around_a_damaged_manifest(digits_store, damage):
    assert _cli("select", "--store", digits_store, *PC).exit_code == 0
    assert _cli("select", "--store", digits_store, *PC, "--name", "other").exit_code == 0
    path = mf.manifest_path(digits_store, "pc", 1)
    DAMAGE[damage](path)
    listed = _cli("selections", "--store", digits_store)
    assert listed.exit_code == 0, listed.output
    assert f"warning: manifest file {path} is damaged" in listed.output
    assert any(line.split()[:2] == ["other", "v1"] for line in listed.output.splitlines())
    res = _cli("select", "--store", digits_store, *PC)
    if damage == "truncated":  # the key is still legible: this job's record is damaged, said so
        assert res.exit_code == 2, res.output
        assert f"selection 'pc': this job's earlier record is damaged: manifest file {path}" in res.output
        assert "move it aside or delete it" in res.output
    else:  # nothing legible: the job is recomputed into the next version, the damaged file left as it was
        assert res.exit_code == 0, res.output
        assert mf.read_manifest(digits_store, "pc")["version"] == 2
    os.replace(path, path + ".aside")  # the repair the message names
    assert _cli("select", "--store", digits_store, *PC).exit_code == 0
