"""The Zarr embedding store: round trip, read API, chunk-aligned writes, refusals that lose nothing."""

from __future__ import annotations

import numpy as np
import pytest

from storage.store import EmbeddingStore, StoreMismatchError

ENC = {"name": "test", "version": "1", "params": {}}
SRC = {"spec": "test", "kind": "vectors", "fingerprint": "x"}


def _filled(path, x, labels, *, chunk_rows=4, dtype="float32", ids=None, split=None):
    n = len(x)
    st = EmbeddingStore.create(str(path), dim=x.shape[1], encoder=ENC, source=SRC, chunk_rows=chunk_rows, dtype=dtype,
                               classes=["a", "b", "c"])
    st.reserve(ids if ids is not None else [f"id{i}" for i in range(n)], labels,
               split if split is not None else ["train"] * n)
    for c in range(st.n_chunks):
        lo, hi = st.chunk_bounds(c)
        st.write_rows(c, lo, x[lo:hi])
    return st


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("n,chunk_rows", [(10, 4), (8, 4), (1, 16)])
def test_round_trip(tmp_path, rng, dtype, n, chunk_rows):
    x = rng.standard_normal((n, 5)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    split = np.where(np.arange(n) % 3 == 0, "test", "train")
    _filled(tmp_path / "s.zarr", x, labels, chunk_rows=chunk_rows, dtype=dtype, split=split)
    st = EmbeddingStore.open(str(tmp_path / "s.zarr"))
    assert (st.n, st.dim, st.dtype, st.chunk_rows) == (n, 5, dtype, chunk_rows)
    assert st.is_complete and st.pending_chunks() == []
    np.testing.assert_array_equal(st.to_numpy(), x.astype(dtype))
    np.testing.assert_array_equal(st.labels(), labels)
    np.testing.assert_array_equal(st.ids(), [f"id{i}" for i in range(n)])
    np.testing.assert_array_equal(st.split(), split)
    assert st.encoder == ENC and st.source == SRC and st.classes == ["a", "b", "c"]
    assert st.to_numpy().dtype == np.dtype(dtype)


def test_read_api(tmp_path, rng):
    x = rng.standard_normal((11, 3)).astype(np.float32)
    labels = np.arange(11) % 3
    st = _filled(tmp_path / "s.zarr", x, labels, split=["train"] * 8 + ["test"] * 3)
    idx = [9, 0, 4, 4, -1]
    np.testing.assert_array_equal(st.rows(idx), x[idx])
    np.testing.assert_array_equal(st.rows(slice(2, 9, 3)), x[2:9:3])
    got_idx, got = st.rows_of_class(1)
    np.testing.assert_array_equal(got_idx, np.flatnonzero(labels == 1))
    np.testing.assert_array_equal(got, x[labels == 1])
    np.testing.assert_array_equal(st.indices(split="test", label=2), [8])
    d = st.to_dask()
    assert d.chunks[0] == (4, 4, 3)  # one Dask block per Zarr chunk
    np.testing.assert_array_equal(d.compute(), x)
    np.testing.assert_array_equal(st.to_array("numpy"), x)
    assert st.class_counts() == {0: 4, 1: 4, 2: 3}
    with pytest.raises(IndexError):
        st.rows([11])
    with pytest.raises(ValueError, match="xp="):
        st.to_array("jax")


def test_unwritten_rows_read_as_nan_and_store_stays_readable(tmp_path, rng):
    st = EmbeddingStore.create(str(tmp_path / "s.zarr"), dim=2, encoder=ENC, source=SRC, chunk_rows=3)
    st.reserve([f"i{k}" for k in range(7)], [0] * 7, ["train"] * 7)
    st.write_rows(1, 3, np.ones((3, 2)))
    again = EmbeddingStore.open(str(tmp_path / "s.zarr"))
    x = again.to_numpy()
    assert np.isnan(x[:3]).all() and (x[3:6] == 1).all() and np.isnan(x[6:]).all()
    assert again.pending_chunks() == [0, 2] and again.rows_done() == 3 and not again.is_complete


@pytest.mark.parametrize("start,k,match", [(1, 2, "write from 0"), (0, 4, "run past"), (0, 0, None)])
def test_writes_stay_inside_one_chunk(tmp_path, start, k, match):
    st = EmbeddingStore.create(str(tmp_path / "s.zarr"), dim=2, encoder=ENC, source=SRC, chunk_rows=3)
    st.reserve(["a", "b", "c", "d"], [0] * 4, ["train"] * 4)
    if match is None:
        st.write_rows(0, start, np.ones((k, 2)))
        assert st.chunks_done()[0] == 0
    else:
        with pytest.raises(ValueError, match=match):
            st.write_rows(0, start, np.ones((k, 2)))


def test_partial_chunk_writes_continue_in_order(tmp_path):
    st = EmbeddingStore.create(str(tmp_path / "s.zarr"), dim=2, encoder=ENC, source=SRC, chunk_rows=4)
    st.reserve(list("abcd"), [0] * 4, ["train"] * 4)
    st.write_rows(0, 0, np.full((2, 2), 1.0))
    st.write_rows(0, 2, np.full((2, 2), 2.0))
    np.testing.assert_array_equal(st.to_numpy()[:, 0], [1, 1, 2, 2])
    assert st.is_complete


def test_bad_rows_are_refused_and_nothing_is_written(tmp_path):
    st = EmbeddingStore.create(str(tmp_path / "s.zarr"), dim=2, encoder=ENC, source=SRC, chunk_rows=4)
    st.reserve(list("abcd"), [0] * 4, ["train"] * 4)
    bad = np.ones((4, 2))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"rows \[2\] contain NaN"):
        st.write_rows(0, 0, bad)
    with pytest.raises(ValueError, match=r"must be \(k, 2\)"):
        st.write_rows(0, 0, np.ones((4, 3)))
    assert st.rows_done() == 0 and np.isnan(st.to_numpy()).all()


def test_reserve_refuses_duplicates_and_keeps_the_store(tmp_path):
    st = EmbeddingStore.create(str(tmp_path / "s.zarr"), dim=2, encoder=ENC, source=SRC, chunk_rows=4)
    st.reserve(["a", "b"], [0, 1], ["train", "train"])
    with pytest.raises(ValueError, match="already in the store"):
        st.reserve(["c", "a"], [0, 0], ["train", "train"])
    with pytest.raises(ValueError, match="unique"):
        st.reserve(["c", "c"], [0, 0], ["train", "train"])
    assert EmbeddingStore.open(str(tmp_path / "s.zarr")).ids().tolist() == ["a", "b"]


def test_create_open_errors(tmp_path):
    path = str(tmp_path / "s.zarr")
    EmbeddingStore.create(path, dim=2, encoder=ENC, source=SRC)
    with pytest.raises(ValueError, match="already exists"):
        EmbeddingStore.create(path, dim=2, encoder=ENC, source=SRC)
    with pytest.raises(FileNotFoundError, match="worth embed"):
        EmbeddingStore.open(str(tmp_path / "missing.zarr"))
    with pytest.raises(ValueError, match="mode="):
        EmbeddingStore.open(path, mode="w")
    ro = EmbeddingStore.open(path)
    with pytest.raises(ValueError, match="read-only"):
        ro.reserve(["a"], [0], ["train"])
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(ValueError, match="not a worth embedding store"):
        EmbeddingStore.open(str(tmp_path / "other.zarr"))
    for kw, match in [({"dim": 0}, "dim="), ({"chunk_rows": 0}, "chunk_rows="), ({"dtype": "int8"}, "dtype="),
                      ({"codec": "lzma"}, "codec=")]:
        with pytest.raises(ValueError, match=match):
            EmbeddingStore.create(str(tmp_path / f"bad{match}.zarr"), **{"dim": 2, **kw}, encoder=ENC, source=SRC)


@pytest.mark.parametrize("change,match", [
    ({"encoder": {"name": "other", "version": "1", "params": {}}}, "encoder='other'"),
    ({"encoder": {"name": "test", "version": "1", "params": {"dim": 3}}}, "params"),
    ({"encoder": {"name": "test", "version": "2", "params": {}}}, "version"),
    ({"dim": 7}, "dim=7"),
    ({"dtype": "float16"}, "dtype="),
    ({"normalize": False}, "normalize="),
    ({"source_spec": "elsewhere"}, "source='elsewhere'"),
])
def test_check_compatible_refuses_to_mix(tmp_path, change, match):
    st = EmbeddingStore.create(str(tmp_path / "s.zarr"), dim=2, encoder=ENC, source=SRC)
    args = {"encoder": ENC, "dim": 2, "dtype": "float32", "normalize": True, "source_spec": "test", **change}
    with pytest.raises(StoreMismatchError, match=match) as err:
        st.check_compatible(**args)
    assert "new store" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_nbytes_and_summary(tmp_path, rng):
    x = rng.standard_normal((9, 4)).astype(np.float32)
    st = _filled(tmp_path / "s.zarr", x, np.zeros(9, int))
    s = st.summary()
    assert s["n"] == 9 and s["dim"] == 4 and s["chunks"] == 3 and s["chunks_complete"] == 3 and s["complete"]
    assert s["bytes_stored"] > 0 and s["split_counts"] == {"train": 9}


@pytest.mark.parametrize("stored", ["float16", "float32"])
@pytest.mark.parametrize("dtype", [None, np.float32, np.float64])
@pytest.mark.parametrize("index", [slice(None), slice(3, 14), slice(1, 17, 3), [16, 0, 5, 5, 9, 2, -1], []])
def test_rows_read_chunk_by_chunk_into_the_asked_dtype(tmp_path, rng, stored, dtype, index):
    """rows()/to_numpy() fill one preallocated array of ``dtype`` (default the stored one) chunk by chunk: the
    values are the stored ones converted, in the order asked, repeats and negative indices included."""
    x = rng.standard_normal((17, 5)).astype(np.float32)
    st = _filled(tmp_path / "s.zarr", x, rng.integers(0, 3, 17), chunk_rows=4, dtype=stored)
    ref = x.astype(stored)[index].astype(dtype or stored)
    got = st.rows(index, dtype=dtype)
    assert got.dtype == np.dtype(dtype or stored) and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    whole = st.to_numpy(dtype=None if dtype is None else np.dtype(dtype).name)
    assert whole.dtype == np.dtype(dtype or stored)
    np.testing.assert_array_equal(whole, x.astype(stored).astype(dtype or stored))


def test_rows_as_float32_of_a_float16_store_need_no_float64(tmp_path, rng, monkeypatch):
    """Reading a float16 store as float32 never makes a float64 array nor concatenates parts."""
    x = rng.standard_normal((40, 8)).astype(np.float32)
    st = _filled(tmp_path / "s.zarr", x, rng.integers(0, 3, 40), chunk_rows=8, dtype="float16")
    monkeypatch.setattr(np, "concatenate", lambda *a, **k: pytest.fail("concatenated the parts"))
    out = st.rows(np.arange(40)[::-1], dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.astype(np.float16).astype(np.float32)[::-1])
    np.testing.assert_array_equal(st.rows(slice(0, 40), dtype=np.float32), x.astype(np.float16).astype(np.float32))
