"""A damaged store knows it: verify names each damaged chunk; a rerun repairs exactly or refuses, never extends.

Each test damages a real local store the way the issue's probes did (a chunk file deleted, truncated, emptied or
overwritten with garbage; an array's ``zarr.json`` deleted) and checks what :meth:`EmbeddingStore.verify`, the
readers and a rerun of the embed planner do about it.
"""

from __future__ import annotations

import json
import re
import os
import shutil

import numpy as np
import pytest

from storage import EmbeddingStore, StoreDamagedError, embed_into_store
from worth.data.sources import from_arrays, load_source

CHUNK = 200  # digits: 1,797 rows → 9 chunks; chunk 3 holds rows 600..800
KEYS = {"embeddings": "embeddings/c/3/0", "ids": "ids/c/3", "labels": "labels/c/3", "split": "split/c/3"}


@pytest.fixture(scope="module")
def built(tmp_path_factory, digits_source):
    """A complete store of digits and a pristine copy of it (build once, copy per test)."""
    from worth.data.encoders import get_encoder

    url = str(tmp_path_factory.mktemp("damage") / "ref.zarr")
    embed_into_store(url, digits_source, get_encoder("pixels", dim=16, seed=3), chunk_rows=CHUNK)
    st = EmbeddingStore.open(url)
    return url, {"x": st.to_numpy(), "ids": st.ids(), "labels": st.labels(), "split": st.split()}


@pytest.fixture
def store(built, tmp_path):
    url = str(tmp_path / "s.zarr")
    shutil.copytree(built[0], url)
    return url


def damage(url: str, key: str, kind: str) -> None:
    path = os.path.join(url, key)
    data = open(path, "rb").read()
    if kind == "deleted":
        os.remove(path)
        return
    content = {"truncated": data[: len(data) // 2], "zero-byte": b"",
               "garbage": np.random.default_rng(1).bytes(len(data))}[kind]
    with open(path, "wb") as f:
        f.write(content)


def rerun(url, source=None):
    from worth.data.encoders import get_encoder

    return embed_into_store(url, source or load_source("digits"), get_encoder("pixels", dim=16, seed=3),
                            chunk_rows=CHUNK)


def assert_identical(url, ref):
    st = EmbeddingStore.open(url)
    assert st.n == 1797 and st.is_complete
    np.testing.assert_array_equal(st.to_numpy(), ref["x"])
    for name in ("ids", "labels", "split"):
        np.testing.assert_array_equal(getattr(st, name)(), ref[name])
    assert st.verify().ok


KINDS = ["deleted", "truncated", "zero-byte", "garbage"]


@pytest.mark.parametrize("array", list(KEYS))
@pytest.mark.parametrize("kind", KINDS)
def test_verify_names_the_damaged_chunk_and_a_rerun_repairs_it(store, built, array, kind):
    assert EmbeddingStore.open(store).verify().ok
    damage(store, KEYS[array], kind)
    report = EmbeddingStore.open(store).verify()
    assert not report.ok
    assert [(d.array, d.chunk, d.rows) for d in report.damaged] == [(array, 3, (600, 800))]
    assert "damaged: " + array + " chunk 3 (rows 600..800)" in report.text()

    res = rerun(store)
    assert res["plan"].damaged and res["plan"].n == 1797
    assert res["rows"] == (CHUNK if array == "embeddings" else 0)  # ids/labels/split are rewritten, not re-embedded
    assert_identical(store, built[1])


@pytest.mark.parametrize("kind", KINDS)
def test_readers_name_the_damaged_chunk_instead_of_blaming_the_input(store, kind):
    damage(store, KEYS["embeddings"], kind)
    st = EmbeddingStore.open(store)
    for read in (st.to_numpy, lambda: st.rows([5, 650]), lambda: st.rows(slice(590, 610))):
        with pytest.raises(StoreDamagedError, match=r"embeddings chunk 3 \(rows 600\.\.800\).*rerun `worth embed`"):
            read()
    np.testing.assert_array_equal(st.rows([5, 900]).shape, (2, 16))  # sound chunks stay readable


def test_deleted_ids_chunk_is_restored_never_appended(store, built):
    """The issue's 1,797 → 1,997: a rerun after losing an ids chunk appended 200 duplicate rows."""
    damage(store, KEYS["ids"], "deleted")
    rerun(store)
    assert_identical(store, built[1])


def test_ids_chunk_the_source_no_longer_has_is_declared_damaged(store, built):
    damage(store, KEYS["ids"], "deleted")
    digits = load_source("digits")
    keep = np.r_[0:650, 700:1797]  # the source lost 50 of the lost chunk's items
    shrunk = from_arrays(digits.take(keep), digits.labels[keep], ids=digits.ids[keep], spec="digits")
    shrunk = type(shrunk)(**{**shrunk.__dict__, "kind": digits.kind, "options": {}})
    with pytest.raises(StoreDamagedError, match=r"ids chunk 3 \(rows 600\.\.800\) cannot be rewritten"):
        rerun(store, shrunk)
    assert EmbeddingStore.open(store).n == 1797  # not extended


@pytest.mark.parametrize("array", ["embeddings", "ids", "chunks_done", "embeddings_digest"])
def test_lost_array_metadata_is_reported_and_restored(store, built, array):
    os.remove(os.path.join(store, array, "zarr.json"))
    report = EmbeddingStore.open(store).verify()
    assert any(d.array == array and d.chunk is None and "zarr.json" in d.problem for d in report.damaged)
    if array in ("embeddings", "ids"):
        with pytest.raises(StoreDamagedError, match=f"array '{array}' has no metadata"):
            EmbeddingStore.open(store).to_numpy() if array == "embeddings" else EmbeddingStore.open(store).ids()
    rerun(store)
    st = EmbeddingStore.open(store)
    np.testing.assert_array_equal(st.to_numpy(), built[1]["x"])
    np.testing.assert_array_equal(st.ids(), built[1]["ids"])
    assert st.n == 1797 and st.is_complete
    assert st.verify().ok or array == "embeddings_digest"  # a lost digest array leaves undigested chunks


def _without_digests(url: str) -> None:
    """Turn a store into one written before digests existed."""
    for name in ("embeddings", "labels", "ids", "split"):
        shutil.rmtree(os.path.join(url, f"{name}_digest"))
    meta_path = os.path.join(url, "zarr.json")
    meta = json.load(open(meta_path))
    del meta["attributes"]["worth"]["digests"]
    json.dump(meta, open(meta_path, "w"))


def test_old_store_without_digests_verifies_what_it_can(store, built):
    _without_digests(store)
    st = EmbeddingStore.open(store)
    report = st.verify()
    assert report.ok and report.undigested == {"embeddings": 9, "labels": 9, "ids": 9, "split": 9}
    assert "no digest recorded" in report.text()
    damage(store, KEYS["embeddings"], "deleted")
    damage(store, "ids/c/5", "garbage")
    report = EmbeddingStore.open(store).verify()
    assert {(d.array, d.chunk) for d in report.damaged} == {("embeddings", 3), ("ids", 5)}
    with pytest.raises(StoreDamagedError, match=r"ids chunk 5 \(rows 1000\.\.1200\).*no digest"):
        rerun(store)  # lost ids cannot be rewritten without a digest to check them: declared damaged, n kept
    assert EmbeddingStore.open(store).n == 1797


def test_old_store_deleted_ids_chunk_refuses_to_append(store):
    _without_digests(store)
    os.remove(os.path.join(store, KEYS["ids"]))
    st = EmbeddingStore.open(store, mode="r+")
    with pytest.raises(StoreDamagedError, match=r"ids chunk 3 \(rows 600\.\.800\): some ids read as empty"):
        st.reserve(["new-1"], [0], ["train"])


def test_old_store_gets_digests_for_chunks_written_from_then_on(store, built):
    _without_digests(store)
    damage(store, KEYS["embeddings"], "deleted")
    rerun(store)
    st = EmbeddingStore.open(store)
    assert st.has_digests and st.verify().ok
    assert st.verify().undigested["embeddings"] == 8  # the re-embedded chunk has its digest now
    np.testing.assert_array_equal(st.to_numpy(), built[1]["x"])


def test_digest_ignores_rows_reserved_behind_the_last_row(store):
    """Rows a killed run reserved past n change the tail chunk's bytes but not the rows that exist."""
    st = EmbeddingStore.open(store, mode="r+")
    arr = st.array_raw("ids")
    arr.resize((1800,))
    arr[1797:1800] = np.array(["x", "y", "z"])  # the write of reserve(), killed before n was raised
    assert EmbeddingStore.open(store).verify().ok


META_KINDS = ["truncated", "zero-byte", "garbage"]


@pytest.mark.parametrize("kind", META_KINDS)
def test_a_damaged_store_metadata_file_is_named_by_its_path(store, kind):
    """Before: "Expecting value: line 1 column 1 (char 0)", naming no file (issue 21 §2)."""
    damage(store, "zarr.json", kind)
    where = re.escape(f"its metadata file {store}/zarr.json cannot be read")
    for call in (lambda: EmbeddingStore.open(store), lambda: EmbeddingStore.exists(store)):
        with pytest.raises(StoreDamagedError, match=rf"{where} .*restore that file from a backup"):
            call()


@pytest.mark.parametrize("kind", META_KINDS)
@pytest.mark.parametrize("array", ["embeddings", "labels", "chunks_done", "embeddings_digest"])
def test_a_damaged_array_metadata_file_is_named_up_front_and_repaired_by_its_fix(store, built, array, kind):
    """Before: found by the first job that read the array (a select's worker, every one of a study's subsets),
    in JSON's words; now the plans' check_metadata names the file and the fix, and the fix works."""
    damage(store, f"{array}/zarr.json", kind)
    st = EmbeddingStore.open(store)  # the store opens; its damaged array is named when checked or read
    path = re.escape(f"{store}/{array}/zarr.json")
    with pytest.raises(StoreDamagedError, match=rf"array '{array}', {path}, cannot be read .*delete that file"):
        st.check_metadata()
    with pytest.raises(StoreDamagedError, match=path):
        rerun(store)  # the embed planner refuses to write over it
    os.remove(os.path.join(store, array, "zarr.json"))  # the fix the message gives
    rerun(store)
    st = EmbeddingStore.open(store)
    st.check_metadata()
    np.testing.assert_array_equal(st.to_numpy(), built[1]["x"])
    np.testing.assert_array_equal(st.labels(), built[1]["labels"])
