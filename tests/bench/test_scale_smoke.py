"""Smoke test of bench/scale.py at n = 2,000: every row end to end, outputs consistent. Not a timed test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from storage import manifest as mf
from storage.store import EmbeddingStore

pytest.importorskip("faiss")
pytestmark = pytest.mark.slow

_PATH = Path(__file__).resolve().parents[2] / "bench" / "scale.py"
_spec = importlib.util.spec_from_file_location("bench_scale", _PATH)
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)

N, CLASSES = 2000, 10


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("scale") / "mix.zarr")
    scale.make_store(path, N, chunk_rows=512, classes=CLASSES)
    return path


def test_store_holds_the_mixture_written_chunk_by_chunk(store):
    st = EmbeddingStore.open(store)
    assert (st.n, st.dim, st.dtype, st.is_complete) == (N, scale.M, "float16", True)
    assert np.bincount(st.labels(), minlength=CLASSES).tolist() == [N // CLASSES] * CLASSES
    X = st.rows(slice(512, 1024)).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=2e-3)
    again = scale.mixture_chunk(512, 1024, scale.mixture_labels(N, 0, CLASSES), 0, CLASSES)  # deterministic
    np.testing.assert_allclose(X, again, atol=1e-3)


def test_every_row_end_to_end(store):
    out = {row: scale.child(row, store, fl_sample=N, dask=False) for row in scale.ROWS}
    k10, k1 = N // 10, N // 100
    assert {r: o["k"] for r, o in out.items()} == {"stochastic": k10, "exact": k1, "per-class": k10,
                                                   "sharded": k1, "fl": k1, "fl-ref": k1}
    for row, o in out.items():
        assert o["value"] > 0 and o["evaluations"] > 0 and o["peak_rss_gb"] > 0 and o["seconds"] > 0, row
    names = {m["name"]: m for m in mf.list_manifests(store)}
    assert set(names) == {"vendi-stochastic", "vendi-greedy", "vendi-per-class", "vendi-greedi", "fl-knn"}
    for row in set(scale.ROWS) - {"fl-ref"}:
        assert Path(out[row]["manifest"]).is_file()
        assert out[row]["value"] == pytest.approx(names[Path(out[row]["manifest"]).parent.name]["value"])
    ref = out["fl-ref"]
    assert 0.0 <= ref["recall"] <= 1.0
    assert ref["value_ratio"] <= 1.0 + 1e-9 or ref["recall"] < 1.0  # the same graph gives the same picks
    assert ref["value_ratio"] > 0.95
    # fl-ref's sample is the whole store here; HNSW built on several threads is not bit-reproducible, hence rel
    assert ref["value"] == pytest.approx(out["fl"]["value"], rel=1e-2)
    ratio = out["sharded"]["value"] / out["exact"]["value"]
    assert 0.9 < ratio < 1.1
    text = scale.table([{"row": r, **o} for r, o in out.items()], N)
    assert f"value / exact greedy = {ratio:.4f}" in text and text.count("\n") == len(scale.ROWS) + 1


def test_a_row_past_its_timeout_is_recorded_and_killed(store):
    assert scale.run_row("exact", store, timeout=1) == {"row": "exact", "error": "timed out after 1 s"}
