"""storage/curated.py: immutable versions, LATEST replaced last, compare-and-swap, the exclusive lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from storage import curated


def _record(n: int, **extra):
    ids = [f"item-{i}" for i in range(n)]
    return {"ids": ids, "positions": list(range(n)), "classes": ["a"] * n, "store_rows": 10 * n,
            "objective": "vendi", "value": float(n), "accuracy": 0.5, "flow_run_id": None, "mlflow_run_id": None,
            **extra}


def test_versions_chain_and_yesterday_untouched(tmp_path):
    folder = str(tmp_path / "curated")
    assert curated.read_version(folder) is None and curated.latest_version(folder) == 0
    v1 = curated.publish(folder, _record(2), expected_latest=0)
    before = open(curated.version_path(folder, 1), "rb").read()
    v2 = curated.publish(folder, _record(3), expected_latest=1)
    assert (v1["version"], v2["version"], v2["previous"]) == (1, 2, 1)
    assert open(curated.version_path(folder, 1), "rb").read() == before
    assert curated.latest_version(folder) == 2
    assert [r["version"] for r in curated.history(folder)] == [1, 2]
    assert sorted(os.listdir(folder)) == [".claims", "LATEST", "v0001.json", "v0002.json"]  # no temporary file left
    assert sorted(os.listdir(os.path.join(folder, ".claims"))) == ["v0000", "v0001"]  # each swap claimed once


def test_stale_start_loses_the_compare_and_swap(tmp_path):
    folder = str(tmp_path / "c")
    curated.publish(folder, _record(1), expected_latest=0)
    curated.publish(folder, _record(2), expected_latest=1)  # the winner
    with pytest.raises(curated.CurationConflict, match="started from v0001.*publishes nothing"):
        curated.publish(folder, _record(3), expected_latest=1)
    assert curated.versions(folder) == [1, 2] and curated.latest_version(folder) == 2


def test_unreferenced_file_of_a_killed_run_is_never_overwritten(tmp_path):
    folder = str(tmp_path / "c")
    curated.publish(folder, _record(1), expected_latest=0)
    orphan = curated.version_path(folder, 2)
    with open(orphan, "w") as f:  # a run killed between the version file and LATEST
        f.write('{"left": "by a killed run"}\n')
    out = curated.publish(folder, _record(2), expected_latest=1)
    assert out["version"] == 3 and out["previous"] == 1
    assert json.load(open(orphan)) == {"left": "by a killed run"}
    assert [r["version"] for r in curated.history(folder)] == [1, 3]


@pytest.mark.parametrize("bad, match", [({"ids": []}, "lacks"), (_record(1, value=float("nan")), "plain JSON")])
def test_bad_records_are_refused_before_writing(tmp_path, bad, match):
    folder = str(tmp_path / "c")
    with pytest.raises(ValueError, match=match):
        curated.publish(folder, bad, expected_latest=0)
    assert curated.versions(folder) == []


def test_concurrent_publishers_one_wins(tmp_path):
    folder = str(tmp_path / "c")
    curated.publish(folder, _record(1), expected_latest=0)
    results, barrier = [], threading.Barrier(8)

    def go(i):
        barrier.wait()
        try:
            results.append(curated.publish(folder, _record(2 + i), expected_latest=1)["version"])
        except curated.CurationConflict as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wins = [r for r in results if isinstance(r, int)]
    assert len(wins) == 1 and curated.latest_version(folder) == wins[0]
    assert all("another" in r or "moved" in r for r in results if isinstance(r, str))


def test_a_run_killed_after_its_claim_is_rolled_forward(tmp_path):
    """A run that claimed the swap from v1 and died before writing LATEST: its complete v2 becomes LATEST when the
    next run publishes (instead of every later night being refused)."""
    folder = str(tmp_path / "c")
    curated.publish(folder, _record(1), expected_latest=0)
    curated.publish(folder, _record(2), expected_latest=1)
    with open(os.path.join(folder, "LATEST"), "w") as f:  # as if the second run died between claim and LATEST
        f.write("1\n")
    out = curated.publish(folder, _record(3), expected_latest=2)
    assert out["version"] == 3 and curated.latest_version(folder) == 3 and out["previous"] == 2


def test_lock_is_exclusive_and_released(tmp_path):
    folder = str(tmp_path / "c")
    with curated.lock(folder, owner="run-a") as held:
        assert curated.read_lock(folder)["token"] == held["token"]
        with pytest.raises(curated.CurationLocked, match=r"run-a, pid \d+ .*delete .*LOCK"):
            with curated.lock(folder, owner="run-b"):
                pass
    assert curated.read_lock(folder) is None
    with curated.lock(folder, owner="run-c"):
        pass


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    folder = str(tmp_path / "c")
    code = ("import os, sys; sys.path.insert(0, os.getcwd()); from storage import curated\n"
            f"cm = curated.lock({folder!r}, owner='killed'); cm.__enter__(); os._exit(0)")  # exits holding it
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.getcwd())
    assert curated.read_lock(folder)["owner"] == "killed" and curated.is_stale(curated.read_lock(folder))
    with curated.lock(folder, owner="next-night") as held:
        assert curated.read_lock(folder)["token"] == held["token"]
    assert not [f for f in os.listdir(folder) if "stale" in f]


@pytest.mark.parametrize("store, given, expected", [
    ("pool.zarr", None, "pool.zarr.curated"), ("pool.zarr/", None, "pool.zarr.curated"),
    ("s3://bucket/pool.zarr", "/tmp/cur", "/tmp/cur"),
    ("pool.zarr", "file:///tmp/cur", "/tmp/cur"),
])
def test_curated_dir(store, given, expected):
    assert curated.curated_dir(store, given) == expected


def test_remote_store_needs_a_local_folder():
    with pytest.raises(ValueError, match="give curated=LOCAL_FOLDER"):
        curated.curated_dir("s3://bucket/pool.zarr")
