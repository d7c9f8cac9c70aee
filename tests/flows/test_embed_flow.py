"""The embed flow under Prefect's test harness, shard-parallel on a real LocalCluster of worker processes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from flows.embed import PROGRESS_KEY, SUMMARY_KEY, EmbedOptions, embed_flow
from storage import EmbeddingStore, embed_into_store
from worth.data.encoders import get_encoder
from worth.data.sources import load_source


def _chunk_files(url):
    base = os.path.join(url, "embeddings", "c")
    return {os.path.join(d, f): open(os.path.join(d, f), "rb").read() for d, _, fs in os.walk(base) for f in fs}


@pytest.mark.parametrize("encoder,params,limit,chunk_rows,exact", [
    ("pixels", {"dim": 64, "seed": 0}, 2000, 256, True),
    # worker processes run torch on 1 thread, this process on 2: equal up to float rounding
    ("efficientnet-lite0", {"image_size": 32}, 192, 48, False),
])
def test_parallel_flow_equals_serial_run(tmp_path, dask_task_runner, read_artifacts, encoder, params, limit,
                                         chunk_rows, exact):
    url = str(tmp_path / "par.zarr")
    options = EmbedOptions(source="mnist5k", store=url, encoder=encoder, encoder_params=params, limit=limit,
                           chunk_rows=chunk_rows)
    result = embed_flow.with_options(task_runner=dask_task_runner)(options)
    n_chunks = -(-limit // chunk_rows)
    assert result["rows_embedded"] == limit and result["shards"] == n_chunks and result["complete"]
    pids = {p.rsplit(":", 1)[1] for p in result["shard_processes"]}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # shards ran in both worker processes

    ref_url = str(tmp_path / "serial.zarr")
    embed_into_store(ref_url, load_source("mnist5k", limit=limit), get_encoder(encoder, **params), chunk_rows=chunk_rows)
    par, ser = EmbeddingStore.open(url), EmbeddingStore.open(ref_url)
    if exact:
        np.testing.assert_array_equal(par.to_numpy(), ser.to_numpy())
    else:
        np.testing.assert_allclose(par.to_numpy(), ser.to_numpy(), atol=2e-5)
    for name in ("ids", "labels", "split"):
        np.testing.assert_array_equal(getattr(par, name)(), getattr(ser, name)())
    assert par.attrs["encoder"] == ser.attrs["encoder"] and par.attrs["source"] == ser.attrs["source"]

    progress = read_artifacts(PROGRESS_KEY, result["flow_run_id"])
    assert len(progress) == 1 and progress[0].data == pytest.approx(100.0)
    summary = read_artifacts(SUMMARY_KEY, result["flow_run_id"])
    assert f"| items (n) | {limit:,} |" in summary[0].data and "items/s" in summary[0].data


def test_rerun_on_a_complete_store_does_nothing(tmp_path, dask_task_runner, read_artifacts):
    url = str(tmp_path / "s.zarr")
    options = EmbedOptions(source="digits", store=url, encoder="pixels", chunk_rows=512)
    run = embed_flow.with_options(task_runner=dask_task_runner)
    first = run(options)
    files = _chunk_files(url)
    second = run(options)
    assert first["rows_embedded"] == 1797 and second["rows_embedded"] == 0 and second["nothing_to_do"]
    assert second["shards"] == 0 and _chunk_files(url) == files
    md = read_artifacts(SUMMARY_KEY, second["flow_run_id"])[0].data
    assert "already complete: nothing to do" in md


def test_a_failing_shard_keeps_the_others(tmp_path, dask_task_runner):
    from PIL import Image

    digits = load_source("digits", limit=64)
    folder = tmp_path / "imgs"
    for i in range(64):
        d = folder / str(digits.labels[i])
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.take([i])[0]).save(d / f"{i:03d}.png")
    src = load_source(str(folder))
    bad = folder / src.ids[40]  # in chunk 2 of 4
    bad.write_bytes(b"\x89PNG broken")
    url = str(tmp_path / "s.zarr")
    options = EmbedOptions(source=str(folder), store=url, encoder="pixels", chunk_rows=16)
    with pytest.raises(ValueError, match="cannot be read"):
        embed_flow.with_options(task_runner=dask_task_runner)(options)
    st = EmbeddingStore.open(url)
    assert st.chunks_done().tolist() == [16, 16, 0, 16] and st.pending_chunks() == [2]


@pytest.mark.parametrize("kw,match", [({"chunk_rows": 0}, "chunk_rows"), ({"dtype": "int8"}, "dtype"),
                                      ({"limit": 0}, "limit"), ({"colour": "red"}, "colour")])
def test_options_are_validated(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        EmbedOptions(source="digits", store=str(tmp_path / "s.zarr"), **kw)


def test_options_document_every_field():
    schema = EmbedOptions.model_json_schema()
    assert all(p.get("description") for p in schema["properties"].values())
    assert EmbedOptions.__doc__


def test_unknown_encoder_fails_before_writing(tmp_path, prefect_api):
    url = str(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="encoder='resnet' is not known"):
        embed_flow(EmbedOptions(source="digits", store=url, encoder="resnet"))
    assert not EmbeddingStore.exists(url)
