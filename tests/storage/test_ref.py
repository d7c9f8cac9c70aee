"""StoreRef: one value for a store's URL and its fsspec options, accepted wherever storage takes a store."""

from __future__ import annotations

import numpy as np
import pytest

from storage import EmbeddingStore, StoreRef, writer_lock
from storage.lock import lock_path


@pytest.mark.parametrize("url,local,path,name", [
    ("/data/pool.zarr", True, "/data/pool.zarr", "pool"),
    ("file:///data/pool.zarr/", True, "/data/pool.zarr/", "pool"),
    ("s3://bucket/pool.zarr", False, "s3://bucket/pool.zarr", "pool"),
    ("memory://x/items", False, "memory://x/items", "items"),
])
def test_where_a_ref_points(url, local, path, name):
    ref = StoreRef(url)
    assert (ref.is_local, ref.path, ref.name, str(ref), ref.options) == (local, path, name, url, None)


@pytest.mark.parametrize("url,suffix,expected", [
    ("/d/pool.zarr", ".lock", "/d/pool.zarr.lock"),
    ("/d/pool.zarr/", ".curated", "/d/pool.zarr.curated"),
    ("s3://b/pool.zarr", ".lock", "s3://b/pool.zarr.lock"),
])
def test_beside_keeps_the_filesystem(url, suffix, expected):
    so = {} if "://" not in url else {"endpoint_url": "http://127.0.0.1:1"}
    sib = StoreRef(url, so).beside(suffix)
    assert sib.url == expected and dict(sib.storage_options) == so
    assert lock_path(StoreRef(url, so)) == lock_path(url) == StoreRef(url).beside(".lock").url


@pytest.mark.parametrize("url,so,match", [
    ("", None, "give a local path or an fsspec URL"),
    (None, None, "give a local path or an fsspec URL"),
    ("/d/pool.zarr", {"anon": True}, "only apply to fsspec URLs"),
    ("s3://b/p.zarr", ["anon"], "give a mapping of fsspec options"),
])
def test_bad_refs_are_refused_with_the_fix(url, so, match):
    with pytest.raises(ValueError, match=match):
        StoreRef(url, so)


def test_of_takes_a_ref_or_a_url_and_refuses_two_sets_of_options():
    ref = StoreRef("memory://b/p.zarr", {"skip_instance_cache": True})
    assert StoreRef.of(ref) is ref and StoreRef.of(ref, {"skip_instance_cache": True}) is ref
    assert StoreRef.of("memory://b/p.zarr", {"skip_instance_cache": True}) == ref
    with pytest.raises(ValueError, match="do not pass other storage_options"):
        StoreRef.of(ref, {"anon": True})
    with pytest.raises(ValueError, match="suffix"):
        ref.beside("")


def test_a_ref_opens_the_same_store_as_its_url(tmp_path):
    url = str(tmp_path / "s.zarr")
    ref = StoreRef(url)
    assert not ref.exists()
    store = EmbeddingStore.create(ref, dim=3, encoder={"name": "e", "version": "1", "params": {}},
                                  source={"spec": "t", "kind": "array", "fingerprint": "f"}, chunk_rows=4)
    store.reserve(["a", "b"], np.array([0, 1]), np.array(["train", "train"]))
    assert ref.exists() and store.ref == ref and store.url == url
    assert ref.open().n == EmbeddingStore.open(url).n == 2
    with writer_lock(ref) as held:
        assert held == url + ".lock"
