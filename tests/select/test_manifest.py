"""Selection manifests: versioned, atomic, never overwritten, safe names, export, store fingerprint."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from storage import manifest as mf
from storage.store import EmbeddingStore


def _record(key="k1", ids=("b", "a", "c")):
    return {"key": key, "created": mf.now(), "objective": "vendi", "value": 1.5,
            "picks": {"ids": list(ids), "rows": [1, 0, 2], "gains": [1.0, 0.3, 0.2], "values": [1.0, 1.3, 1.5]}}


def test_versions_count_up_and_never_overwrite(tmp_path, manifest_bytes):
    url = str(tmp_path / "pool.zarr")
    first = mf.write_manifest(url, "div", _record("k1"))
    before = manifest_bytes(url)
    second = mf.write_manifest(url, "div", _record("k2"))
    assert (first["version"], second["version"]) == (1, 2)
    after = manifest_bytes(url)
    assert sorted(after) == [os.path.join("div", "v0001.json"), os.path.join("div", "v0002.json")]
    assert after[os.path.join("div", "v0001.json")] == before[os.path.join("div", "v0001.json")]
    assert mf.read_manifest(url, "div")["key"] == "k2"
    assert mf.read_manifest(url, "div", 1)["key"] == "k1" == mf.read_manifest(url, "div@v1")["key"]
    assert json.loads(after[os.path.join("div", "v0002.json")]) == second


def test_a_race_loser_takes_the_next_version(tmp_path, monkeypatch):
    """Many writers at once: every one gets its own version, none is lost, no file is half-written."""
    url = str(tmp_path / "pool.zarr")
    barrier = threading.Barrier(8)
    real = mf._Folder.versions

    def versions_then_wait(self, name):  # all writers read the same "next version" before any writes
        out = real(self, name)
        barrier.wait(timeout=30)
        return out

    monkeypatch.setattr(mf._Folder, "versions", versions_then_wait)
    written = []
    threads = [threading.Thread(target=lambda i=i: written.append(mf.write_manifest(url, "race", _record(f"k{i}"))))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.setattr(mf._Folder, "versions", real)
    assert sorted(w["version"] for w in written) == list(range(1, 9))
    assert sorted(m["key"] for m in mf.list_manifests(url)) == sorted(f"k{i}" for i in range(8))
    assert sorted(os.listdir(tmp_path / "pool.zarr" / "selections" / "race")) == [f"v{i:04d}.json" for i in range(1, 9)]
    for w in written:  # each file holds exactly its writer's record
        assert mf.read_manifest(url, "race", w["version"])["key"] == w["key"]


def test_a_failed_write_leaves_nothing(tmp_path):
    url = str(tmp_path / "pool.zarr")
    with pytest.raises(ValueError, match="not plain JSON"):
        mf.write_manifest(url, "bad", {**_record(), "value": float("nan")})
    assert mf.list_manifests(url) == []
    assert not (tmp_path / "pool.zarr" / "selections" / "bad").exists() or \
        os.listdir(tmp_path / "pool.zarr" / "selections" / "bad") == []


@pytest.mark.parametrize("name", ["../up", "a/b", "", ".hidden", "a b", "..", "x" * 129, "ok..no", "-dash", None])
def test_unsafe_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="safe path component"):
        mf.write_manifest(str(tmp_path / "pool.zarr"), name, _record())
    assert not (tmp_path / "pool.zarr").exists()


@pytest.mark.parametrize("ref, match", [("nope", "no selection named 'nope'"), ("div@v7", "versions \\[1\\]"),
                                        ("div@x", "NAME@vN")])
def test_unknown_references(tmp_path, ref, match):
    url = str(tmp_path / "pool.zarr")
    mf.write_manifest(url, "div", _record())
    with pytest.raises(ValueError, match=match):
        mf.read_manifest(url, ref)


def test_fsspec_url_versions_and_exclusive(monkeypatch):
    url = "memory://worth-manifest-test/pool.zarr"
    assert mf.write_manifest(url, "m", _record("a"))["version"] == 1
    assert mf.write_manifest(url, "m", _record("b"))["version"] == 2
    assert [(m["name"], m["version"], m["key"]) for m in mf.list_manifests(url)] == [("m", 1, "a"), ("m", 2, "b")]
    assert mf.find_by_key(url, "a")["version"] == 1 and mf.find_by_key(url, "zzz") is None


def test_fsspec_without_exclusive_create_uses_a_temporary_key(monkeypatch):
    """A filesystem that refuses mode 'x': temporary key, then a move; an existing version is still not replaced."""
    import fsspec

    url = "memory://worth-manifest-nox/pool.zarr"
    fs, _ = fsspec.core.url_to_fs(url)
    real_open = fs.open

    def no_x(path, mode="rb", **kw):
        if "x" in mode:
            raise ValueError("mode 'x' not supported")
        return real_open(path, mode, **kw)

    monkeypatch.setattr(fs, "open", no_x)
    mf.write_manifest(url, "m", _record("a"))
    folder = mf._Folder(url)
    with pytest.raises(FileExistsError):
        folder.create_exclusive(folder.path("m", "v0001.json"), b"{}")
    assert mf.read_manifest(url, "m@v1")["key"] == "a"
    assert mf.write_manifest(url, "m", _record("b"))["version"] == 2
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(folder.path("m"), detail=False)] == ["v0001.json", "v0002.json"]


@pytest.mark.parametrize("fmt", ["npy", "txt"])
def test_export_writes_the_sorted_ids(tmp_path, fmt):
    url = str(tmp_path / "pool.zarr")
    man = mf.write_manifest(url, "div", _record(ids=["item-10", "item-2", "item-1"]))
    out = mf.export_ids(mf.read_manifest(url, "div"), str(tmp_path / f"ids.{fmt}"))
    got = np.load(out, allow_pickle=False).tolist() if fmt == "npy" else open(out).read().splitlines()
    assert got == sorted(man["picks"]["ids"]) == ["item-1", "item-10", "item-2"]


def test_export_refuses_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="npy, txt"):
        mf.export_ids(_record(), str(tmp_path / "ids.csv"))
    assert not (tmp_path / "ids.csv").exists()


def _tiny_store(url, n=10, chunk_rows=4):
    st = EmbeddingStore.create(url, dim=3, encoder={"name": "t", "params": {}, "version": "1"},
                               source={"kind": "array", "spec": "t"}, chunk_rows=chunk_rows)
    st.reserve([f"i{j}" for j in range(n)], [j % 2 for j in range(n)], ["train"] * n)
    return st


def test_fingerprint_follows_rows_not_manifests(tmp_path):
    url = str(tmp_path / "pool.zarr")
    st = _tiny_store(url)
    fps = [mf.store_fingerprint(st)]
    st.write_rows(0, 0, np.ones((4, 3)))
    fps.append(mf.store_fingerprint(EmbeddingStore.open(url)))
    mf.write_manifest(url, "div", _record())
    fps.append(mf.store_fingerprint(EmbeddingStore.open(url)))
    st.reserve(["new"], [0], ["train"])
    fps.append(mf.store_fingerprint(EmbeddingStore.open(url)))
    assert fps[0] != fps[1] == fps[2] != fps[3] and fps[0] != fps[3]
    assert EmbeddingStore.open(url).summary()["n"] == 11  # manifests beside the arrays do not disturb the store


def test_finished_mask_and_costs(tmp_path):
    url = str(tmp_path / "pool.zarr")
    st = _tiny_store(url)
    st.write_rows(0, 0, np.ones((4, 3)))
    st.write_rows(2, 8, np.ones((1, 3)))
    assert st.finished_mask().tolist() == [True] * 4 + [False] * 4 + [True, False]
    st.write_costs("tokens", np.arange(1, 11))
    assert st.cost_names() == ["tokens"] and st.costs("tokens", [0, 9]).tolist() == [1.0, 10.0]
    with pytest.raises(ValueError, match="no cost array 'pixels'"):
        st.costs("pixels")
    with pytest.raises(ValueError, match="positive and finite"):
        st.write_costs("bad", np.zeros(10))
