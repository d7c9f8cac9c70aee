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
    sizes = np.bincount(st.labels(), minlength=CLASSES)
    assert sizes.tolist() == scale.class_sizes(N, CLASSES).tolist() and sizes.sum() == N
    assert sizes.min() < 0.6 * sizes.max()  # uneven, as ImageNet's classes are
    X = st.rows(slice(512, 1024)).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=2e-3)
    again = scale.mixture_chunk(512, 1024, scale.mixture_labels(N, 0, CLASSES), 0, CLASSES)  # deterministic
    np.testing.assert_allclose(X, again, atol=1e-3)


FLOW_ROWS = [r for r in scale.ROWS if r != "fl-ref"]


def test_every_row_end_to_end_through_the_cli(store):
    """Each flow row as a user runs it: `worth select --store S --name N ...` in its own subprocess (inline
    runner here, for speed; the default runner is covered below), timed whole, peak RSS of its tree."""
    out = {row: scale.run_row(row, store, timeout=600, fl_sample=N, runner="inline", tag="smoke")
           for row in scale.ROWS}
    assert not [o["error"] for o in out.values() if "error" in o]
    k10, k1 = N // 10, N // 100
    assert {r: o["k"] for r, o in out.items()} == {"stochastic": k10, "exact": k1, "per-class": k1,
                                                   "sharded": k1, "fl": k1, "fl-ref": k1}
    for row, o in out.items():
        assert o["value"] > 0 and o["evaluations"] > 0 and o["seconds"] > 0, row
        assert 0 < o["peak_rss_gb"] <= o["tree_rss_gb"], row
    for row in FLOW_ROWS:
        assert out[row]["command"].startswith("flows.cli.main select --store") and "--runner inline" in out[row]["command"]
    names = {m["name"]: m for m in mf.list_manifests(store)}
    assert {f"bench-{r}-smoke" for r in FLOW_ROWS} <= set(names)
    for row in FLOW_ROWS:
        assert out[row]["value"] == pytest.approx(names[f"bench-{row}-smoke"]["value"])
    ref = out["fl-ref"]
    assert 0.9 <= ref["recall"] <= 1.0 and 0.0 <= ref["recall_min"] <= ref["recall"]
    assert ref["value_ratio"] <= 1.0 + 1e-9 or ref["recall"] < 1.0  # the same graph gives the same picks
    assert ref["value_ratio"] > 0.95
    # fl-ref's sample is the whole store here; HNSW built on several threads is not bit-reproducible, hence rel
    assert ref["value"] == pytest.approx(out["fl"]["value"], rel=1e-2)
    ratio = out["sharded"]["value"] / out["exact"]["value"]
    assert 0.9 < ratio < 1.1
    text = scale.table([{"row": r, **o} for r, o in out.items()], N)
    assert f"value / exact greedy = {ratio:.4f}" in text and text.count("\n") == len(scale.ROWS) + 1


def test_default_runner_row_and_side_by_side(store):
    """One row on the CLI's default runner (a LocalCluster: workers in the tree), and the before/after table."""
    after = scale.run_row("exact", store, timeout=600, tag="dask")
    assert "error" not in after and after["k"] == N // 100
    assert after["tree_rss_gb"] > after["peak_rss_gb"] > 0  # flow process + Dask workers sampled together
    before = {**after, "seconds": 2 * after["seconds"]}
    text = scale.side_by_side([before, {"row": "fl", "error": "timed out after 1 s"}],
                              [after, {"row": "fl", "error": "timed out after 1 s"}], N, "main")
    assert "| exact |" in text and "| 0.50 |" in text and "timed out after 1 s" in text


def test_cli_args_are_the_issue_rows():
    assert scale.cli_args("sharded", 1_281_167, "x") == ["--name", "x", "--objective", "vendi", "--k", "12812",
                                                           "--regime", "sharded", "--parts", "8"]
    assert scale.cli_args("stochastic", 1_281_167, "x")[-3:] == ["128117", "--optimizer", "stochastic"]
    assert scale.cli_args("per-class", 1_281_167, "x")[-2:] == ["--quotas", "13"]
    assert "ann=faiss-hnsw" in scale.cli_args("fl", 1_281_167, "x")


def test_a_row_past_its_timeout_is_recorded_and_killed(store):
    out = scale.run_row("exact", store, timeout=1)
    assert out["error"] == "timed out after 1 s" and out["seconds"] < 30 and out["peak_rss_gb"] >= 0


def test_embed_row_of_a_precomputed_pool(tmp_path):
    """`worth embed POOL.npz --encoder pixels` as a whole process: the pool written chunk by chunk, uncompressed
    (memory-mapped by the source), the store holds its rows."""
    npz, out = str(tmp_path / "pool.npz"), str(tmp_path / "pool.zarr")
    assert scale.write_npz(npz, 1500, classes=CLASSES, chunk_rows=400) > 0
    with np.load(npz) as z:
        np.testing.assert_array_equal(z["x"][400:800], scale.mixture_chunk(400, 800, z["y"], 0, CLASSES))
    r = scale.embed_row(npz, out, timeout=600, runner="inline")
    assert "error" not in r and r["seconds"] > 0 and 0 < r["peak_rss_gb"] <= r["tree_rss_gb"]
    st = EmbeddingStore.open(out)
    assert st.is_complete and st.n == 1500
    with np.load(npz) as z:
        np.testing.assert_allclose(st.rows(slice(0, 1500)), z["x"], atol=1e-6)


def test_graph_recall_of_the_fl_rows_graph(store, capsys):
    r = scale.graph_recall(store, N, K=10, queries=200)
    assert r["n"] == N and r["K"] == 10 and r["queries"] == 200 and r["graph_s"] > 0
    assert 0.0 <= r["recall_min"] <= r["recall"] <= 1.0
    assert r["recall"] >= 0.9  # HNSW with the kept settings finds nearly every neighbour at n = 2,000
    scale.main(["--n", str(N), "--store", store, "--recall"])
    out = capsys.readouterr().out
    assert f"| graph (n = {N:,}, K = 50) |" in out and "recall@50" in out
