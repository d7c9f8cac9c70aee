"""Filling a store: resume after partial work, append without rewriting, refusals, S3 via a local server."""

from __future__ import annotations

import os

import numpy as np
import pytest

from storage import EmbeddingStore, StoreMismatchError, embed_chunks, embed_into_store, plan
from worth.data.encoders import get_encoder
from worth.data.sources import from_arrays, load_source


def _reference(tmp_path, source, encoder, chunk_rows, name="ref.zarr"):
    url = str(tmp_path / name)
    embed_into_store(url, source, encoder, chunk_rows=chunk_rows)
    return EmbeddingStore.open(url)


def _same(a: EmbeddingStore, b: EmbeddingStore):
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    np.testing.assert_array_equal(a.ids(), b.ids())
    np.testing.assert_array_equal(a.labels(), b.labels())
    np.testing.assert_array_equal(a.split(), b.split())


def test_serial_embedding_matches_the_encoder(tmp_path, digits_source, pixels16):
    src = digits_source.head(300)
    res = embed_into_store(str(tmp_path / "s.zarr"), src, pixels16, chunk_rows=64)
    st = EmbeddingStore.open(str(tmp_path / "s.zarr"))
    assert res["rows"] == 300 and st.is_complete and st.n_chunks == 5
    np.testing.assert_allclose(st.to_numpy(), pixels16.encode(src.take(np.arange(300))), rtol=0, atol=0)
    np.testing.assert_allclose(np.linalg.norm(st.to_numpy(), axis=1), 1.0, rtol=1e-6)
    assert st.source["spec"] == "digits" and st.source["fingerprint"] == src.fingerprint()
    assert st.encoder == pixels16.identity() and st.classes == [str(i) for i in range(10)]


def test_resume_finishes_only_what_is_missing(tmp_path, digits_source, pixels16):
    src = digits_source.head(300)
    ref = _reference(tmp_path, src, pixels16, 64)
    url = str(tmp_path / "s.zarr")
    p = plan(url, src, pixels16, chunk_rows=64)
    embed_chunks(url, src, pixels16, [0, 3])  # an interrupted run finished chunks 0 and 3
    assert EmbeddingStore.open(url).pending_chunks() == [1, 2, 4]
    before = EmbeddingStore.open(url).to_numpy()
    again = plan(url, src, pixels16, chunk_rows=64)
    assert again.pending_chunks == [1, 2, 4] and again.added == (300, 300) and p.pending_chunks == [0, 1, 2, 3, 4]
    res = embed_chunks(url, src, pixels16, again.pending_chunks)
    assert res["rows"] == 300 - 2 * 64
    assert embed_chunks(url, src, pixels16, [0, 1, 2, 3, 4])["rows"] == 0  # finished chunks are skipped
    st = EmbeddingStore.open(url)
    _same(st, ref)
    np.testing.assert_array_equal(st.to_numpy()[:64], before[:64])


def test_append_keeps_old_chunks_byte_identical(tmp_path, digits_source, pixels16, chunk_bytes):
    url = str(tmp_path / "s.zarr")
    embed_into_store(url, digits_source.head(300), pixels16, chunk_rows=64)  # chunks 0-3 full, chunk 4 has 44 rows
    files = chunk_bytes(url)
    stats = {k: os.stat(os.path.join(url, "embeddings", "c", k)).st_mtime_ns for k in files}
    old = EmbeddingStore.open(url).to_numpy()
    res = embed_into_store(url, digits_source.head(500), pixels16, chunk_rows=64)
    assert res["plan"].added == (300, 500) and res["rows"] == 200
    st = EmbeddingStore.open(url)
    assert st.n == 500 and st.is_complete
    after = chunk_bytes(url)
    full = [k for k in files if int(k.split(os.sep)[0]) < 4]
    assert len(full) == 4
    for k in full:
        assert after[k] == files[k], f"full chunk {k} changed"
        assert os.stat(os.path.join(url, "embeddings", "c", k)).st_mtime_ns == stats[k], f"chunk {k} rewritten"
    np.testing.assert_array_equal(st.to_numpy()[:300], old)  # the tail chunk's old rows keep their values
    _same(st, _reference(tmp_path, digits_source.head(500), pixels16, 64))  # as if built in one go


def test_append_matches_rows_by_id_not_position(tmp_path, pixels16):
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    ids = [f"item-{i:02d}" for i in range(20)]
    url = str(tmp_path / "s.zarr")
    embed_into_store(url, from_arrays(x[::2], ids=ids[::2]), pixels16, chunk_rows=4)
    # tomorrow: the same items plus new ones, interleaved and reordered
    order = np.random.default_rng(1).permutation(20)
    res = embed_into_store(url, from_arrays(x[order], ids=np.asarray(ids)[order]), pixels16, chunk_rows=4)
    st = EmbeddingStore.open(url)
    assert res["rows"] == 10 and st.n == 20 and len(set(st.ids())) == 20
    by_id = dict(zip(ids, pixels16.encode(x)))
    for i, row in zip(st.ids(), st.to_numpy()):
        np.testing.assert_allclose(row, by_id[i], rtol=1e-6)


def test_class_names_stay_stable_when_appending(tmp_path, pixels16):
    url = str(tmp_path / "s.zarr")
    x = np.eye(6, dtype=np.float32)
    embed_into_store(url, from_arrays(x[:3], ["cat", "dog", "cat"], ids=list("abc")), pixels16, chunk_rows=4)
    embed_into_store(url, from_arrays(x, ["cat", "dog", "cat", "ant", "dog", "ant"], ids=list("abcdef")),
                     pixels16, chunk_rows=4)
    st = EmbeddingStore.open(url)
    assert st.classes == ["cat", "dog", "ant"]
    assert [st.classes[k] for k in st.labels()] == ["cat", "dog", "cat", "ant", "dog", "ant"]


@pytest.mark.parametrize("other,match", [
    (("pixels", {"dim": 32, "seed": 3}), "params"),
    (("pixels", {}), "params"),
    (("pixels", {"dim": 16, "seed": 3, "normalize": False}), "normalize="),
])
def test_a_store_of_another_encoder_is_refused_and_kept(tmp_path, digits_source, pixels16, chunk_bytes, other, match):
    url = str(tmp_path / "s.zarr")
    embed_into_store(url, digits_source.head(100), pixels16, chunk_rows=64)
    files = chunk_bytes(url)
    with pytest.raises(StoreMismatchError, match=match) as err:
        embed_into_store(url, digits_source.head(200), get_encoder(other[0], **other[1]), chunk_rows=64)
    assert "new store" in str(err.value)
    st = EmbeddingStore.open(url)
    assert st.n == 100 and st.is_complete and chunk_bytes(url) == files


def test_another_dimension_is_refused(tmp_path, pixels16):
    url = str(tmp_path / "s.zarr")
    embed_into_store(url, from_arrays(np.ones((5, 3)), spec="v.npy"), get_encoder("pixels"), chunk_rows=4)
    with pytest.raises(StoreMismatchError, match="dim=4"):
        embed_into_store(url, from_arrays(np.ones((5, 4)), spec="v.npy"), get_encoder("pixels"), chunk_rows=4)
    with pytest.raises(StoreMismatchError, match="source of kind 'images'"):
        embed_into_store(url, load_source("digits", limit=5), get_encoder("pixels"), chunk_rows=4)
    assert EmbeddingStore.open(url).n == 5


def test_an_unreadable_image_fails_clearly_and_loses_nothing(tmp_path, digits_source, pixels16):
    from PIL import Image

    folder = tmp_path / "imgs"
    for i in range(40):
        (folder / str(digits_source.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits_source.take([i])[0]).save(folder / str(digits_source.labels[i]) / f"{i:03d}.png")
    src = load_source(str(folder))
    victim = folder / src.ids[25]
    good = victim.read_bytes()
    victim.write_bytes(b"this is not a png")
    url = str(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match=r"cannot be read.*remove or replace") as err:
        embed_into_store(url, src, pixels16, chunk_rows=8)
    assert str(victim) in str(err.value)
    st = EmbeddingStore.open(url)
    assert st.chunks_done().tolist() == [8, 8, 8, 0, 0]  # rows before the bad chunk are kept
    kept = st.to_numpy()[:24]
    victim.write_bytes(good)
    embed_into_store(url, load_source(str(folder)), pixels16, chunk_rows=8)
    st = EmbeddingStore.open(url)
    assert st.is_complete
    np.testing.assert_array_equal(st.to_numpy()[:24], kept)


def test_s3_store_against_a_local_server(s3_server, tmp_path, digits_source, pixels16):
    options, bucket = s3_server
    url = f"s3://{bucket}/pools/digits.zarr"
    src = digits_source.head(200)
    p = plan(url, src, pixels16, chunk_rows=64, storage_options=options)
    embed_chunks(url, src, pixels16, [1], storage_options=options)  # a partial run, then resume
    assert EmbeddingStore.open(url, storage_options=options).pending_chunks() == [0, 2, 3]
    embed_into_store(url, src, pixels16, chunk_rows=64, storage_options=options)
    st = EmbeddingStore.open(url, storage_options=options)
    assert p.created and st.is_complete and st.nbytes_stored() > 0
    _same(st, _reference(tmp_path, src, pixels16, 64))
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": options["endpoint_url"]}, key="testing", secret="testing")
    assert fs.exists(f"{bucket}/pools/digits.zarr/embeddings/c/0/0")
    assert EmbeddingStore.exists(url, storage_options=options)
    assert not EmbeddingStore.exists(f"s3://{bucket}/pools/none.zarr", storage_options=options)


def test_file_url_is_the_local_store(tmp_path, digits_source, pixels16):
    embed_into_store("file://" + str(tmp_path / "s.zarr"), digits_source.head(50), pixels16, chunk_rows=16)
    assert EmbeddingStore.open(str(tmp_path / "s.zarr")).is_complete


def test_dry_run_plans_without_writing(tmp_path, digits_source, pixels16):
    url = str(tmp_path / "s.zarr")
    p = plan(url, digits_source.head(100), pixels16, chunk_rows=64, dry_run=True)
    assert p.pending_rows == 100 and not EmbeddingStore.exists(url)
    embed_into_store(url, digits_source.head(100), pixels16, chunk_rows=64)
    assert plan(url, digits_source.head(100), pixels16, dry_run=True).nothing_to_do
    p = plan(url, digits_source.head(150), pixels16, dry_run=True)
    assert p.pending_rows == 50 and p.pending_chunks == [1, 2] and EmbeddingStore.open(url).n == 100
