"""Planning and the inline path of the select flow (no Prefect server): the bad-input catalogue, the regime
arguments (init, target, budget, partial stores), the run form, and the CuPy path (GPU only)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydantic import ValidationError

import worth
from flows.select import SelectionSpec, SelectOptions, plan_selections, run_select
from storage import manifest as mf
from storage.store import EmbeddingStore
from pipeline.select import SelectJob, run_select_job


def _inline(url, *specs, **kw):
    return run_select(SelectOptions(store=url, selections=list(specs), **kw))


@pytest.mark.parametrize("model", [SelectOptions, SelectionSpec])
def test_the_run_form_documents_every_field_and_forbids_extras(model):
    assert all(f.description for f in model.model_fields.values())
    with pytest.raises(ValidationError, match="extra"):
        model.model_validate({"store": "s", "name": "n", "selections": [], "typo": 1})


def test_init_target_and_budget_equal_the_library(digits_store):
    st = EmbeddingStore.open(digits_store)
    X, ids = st.rows(np.arange(st.n)), st.ids()
    st_w = EmbeddingStore.open(digits_store, mode="r+")
    st_w.write_costs("tokens", 1.0 + (np.arange(st.n) % 7))
    _inline(digits_store, SelectionSpec(name="seed-set", objective="logdet", k=5))
    _inline(digits_store,
            SelectionSpec(name="cond", objective="logdet", k=6, init="seed-set@v1"),
            SelectionSpec(name="mi", objective="logdet", k=6, target=ids[100:120].tolist()),
            SelectionSpec(name="knap", objective="logdet", k=None, budget=20.0, costs="tokens"))
    init = np.asarray(mf.read_manifest(digits_store, "seed-set")["picks"]["rows"])
    refs = {"cond": worth.select(X, 6, "logdet", init=init),
            "mi": worth.select(X, 6, "logdet", target=X[100:120]),
            "knap": worth.select(X, None, "logdet", costs=1.0 + (np.arange(st.n) % 7), budget=20.0)}
    for name, ref in refs.items():
        man = mf.read_manifest(digits_store, name)
        assert man["picks"]["rows"] == np.asarray(ref.indices).tolist(), name
        np.testing.assert_allclose(man["picks"]["values"], ref.values, rtol=1e-12)
    assert mf.read_manifest(digits_store, "cond")["init"]["manifest"] == "seed-set@v1"


@pytest.fixture
def partial_store(digits_template, tmp_path):
    """The digits rows in a store whose chunks 2 and 5 (of 8) are not embedded yet."""
    src = EmbeddingStore.open(digits_template)
    url = str(tmp_path / "partial.zarr")
    st = EmbeddingStore.create(url, dim=src.dim, encoder=src.encoder, source=src.source,
                               chunk_rows=src.chunk_rows, classes=src.classes)
    st.reserve(src.ids(), src.labels(), src.split())
    for c in range(st.n_chunks):
        if c not in (2, 5):
            lo, hi = st.chunk_bounds(c)
            st.write_rows(c, lo, src.rows(slice(lo, hi)))
    return url


def test_allow_partial_selects_among_finished_rows_only(partial_store):
    st = EmbeddingStore.open(partial_store)
    done = np.flatnonzero(st.finished_mask())
    assert done.size == st.n - 2 * st.chunk_rows
    _inline(partial_store, SelectionSpec(name="part", objective="logdet", k=10), allow_partial=True)
    man = mf.read_manifest(partial_store, "part")
    ref = worth.select(st.rows(done), 10, "logdet")
    assert man["picks"]["rows"] == done[np.asarray(ref.indices)].tolist()
    assert man["store"]["complete"] is False and man["store"]["rows_done"] == done.size


def _no_labels_store(tmp_path):
    url = str(tmp_path / "nolabels.zarr")
    st = EmbeddingStore.create(url, dim=4, encoder={"name": "t", "params": {}, "version": "1"},
                               source={"kind": "array", "spec": "t"}, chunk_rows=16)
    st.reserve([f"i{j}" for j in range(40)], [-1] * 40, ["train"] * 40)
    rows = np.random.default_rng(0).normal(size=(40, 4))
    for c in range(st.n_chunks):
        lo, hi = st.chunk_bounds(c)
        st.write_rows(c, lo, rows[lo:hi])
    return url


BAD = [
    ("per-class without labels", "nolabels", dict(name="a", regime="per-class", quotas=2),
     "needs the class of every row"),
    ("balanced without labels", "nolabels", dict(name="a", regime="balanced", k=4), "needs the class of every row"),
    ("quota larger than a class", "digits", dict(name="a", regime="per-class", quotas={3: 500}),
     "quota 500 of class 3 is larger than the class"),
    ("quota of an unknown class", "digits", dict(name="a", regime="balanced", k=5, quotas={42: 1}), "class 42"),
    ("unfinished store", "partial", dict(name="a", k=3), "still being written .* allow_partial"),
    ("unknown init manifest", "digits", dict(name="a", k=3, init="nope@v2"), "no selection named 'nope'"),
    ("init ids not in the store", "digits", dict(name="a", k=3, init=["zzz"]), "not in the store"),
    ("target of another dimension", "digits", dict(name="a", k=3, target="TARGET5"), r"must be \(n_targets, 16\)"),
    ("target not a .npy", "digits", dict(name="a", k=3, target="missing.npy"), "is not a .npy file"),
    ("unsafe name", "digits", dict(name="../up", k=3), "safe path component"),
    ("unknown split", "digits", dict(name="a", k=3, split="test"), "no finished rows in split 'test'"),
    ("k larger than the pool", "digits", dict(name="a", k=5000), "k=5000 exceeds the pool"),
    ("sharded without parts", "digits", dict(name="a", k=3, regime="sharded"), "needs parts"),
    ("parts outside sharded", "digits", dict(name="a", k=3, parts=2), "applies to regime 'sharded' only"),
    ("quotas on fixed", "digits", dict(name="a", k=3, quotas=2), "quotas apply to regimes"),
    ("per-class without quotas", "digits", dict(name="a", regime="per-class"), "needs quotas"),
    ("no size", "digits", dict(name="a"), "give k"),
    ("budget without costs", "digits", dict(name="a", budget=3.0), "budget and costs go together"),
    ("unknown cost array", "digits", dict(name="a", budget=3.0, costs="tokens"), "no cost array 'tokens'"),
    ("unknown objective", "digits", dict(name="a", k=3, objective="nope"), "nope"),
    ("lazy on a non-submodular objective", "digits", dict(name="a", k=3, objective="vendi", optimizer="lazy"),
     "exact only for submodular"),
]


@pytest.mark.parametrize("what, store, spec, match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_before_anything_runs(what, store, spec, match, request, tmp_path):
    url = _no_labels_store(tmp_path) if store == "nolabels" else request.getfixturevalue(f"{store}_store")
    if spec.get("target") == "TARGET5":
        np.save(tmp_path / "q5.npy", np.ones((3, 5)))
        spec = dict(spec, target=str(tmp_path / "q5.npy"))
    good = SelectionSpec(name="good", objective="logdet", k=2)  # planned first, but nothing runs
    with pytest.raises(ValueError, match=match):
        _inline(url, good, SelectionSpec(**spec))
    assert not os.path.exists(os.path.join(url, "selections"))


def test_duplicate_names_in_one_run(digits_store):
    with pytest.raises(ValueError, match="more than once"):
        plan_selections(SelectOptions(store=digits_store, selections=[SelectionSpec(name="a", k=2)] * 2))


def test_the_key_follows_the_job(digits_store):
    """Same spec → same key; any argument that changes the picks → another key."""
    base = SelectionSpec(name="a", objective="logdet", k=5)
    keys = {p.key for p in plan_selections(SelectOptions(store=digits_store, selections=[base]))}
    keys |= {p.key for p in plan_selections(SelectOptions(store=digits_store, selections=[base]))}
    assert len(keys) == 1
    for change in ({"k": 6}, {"seed": 1}, {"optimizer": "lazy"}, {"split": None}, {"objective": "vendi"}):
        other = plan_selections(SelectOptions(store=digits_store, selections=[base.model_copy(update=change)]))
        assert other[0].key not in keys, change


@pytest.mark.gpu
def test_a_cuda_job_picks_what_the_cpu_job_picks(digits_store):
    st = EmbeddingStore.open(digits_store)
    job = dict(store=digits_store, positions=np.arange(st.n), k=12, objective="vendi", params={})
    cpu, gpu = run_select_job(SelectJob(**job)), run_select_job(SelectJob(**job, device="cuda"))
    assert gpu["rows"] == cpu["rows"]
    np.testing.assert_allclose(gpu["values"], cpu["values"], rtol=1e-9)


@pytest.mark.parametrize("objective", ["herding", "k-center"])
def test_coreset_baselines_through_the_flow_equal_the_library(digits_store, objective):
    """The select flow takes the coreset baselines through the registry, quotas included, with no other change."""
    st = EmbeddingStore.open(digits_store)
    X, labels = st.rows(np.arange(st.n)), st.labels()
    _inline(digits_store, SelectionSpec(name=f"{objective}-b", objective=objective, k=20, regime="balanced"))
    ref = worth.select(X, 20, objective, labels=labels, quotas="balanced")
    man = mf.read_manifest(digits_store, f"{objective}-b")
    assert man["picks"]["rows"] == np.asarray(ref.indices).tolist()
    np.testing.assert_allclose(man["picks"]["values"], ref.values, rtol=1e-12)
