"""pipeline/export.py and the export options of ``worth selections`` / ``worth nights``: every format reads back to
the manifest's ids (and the curated version's ids), in pick order where the format keeps it; clear refusals."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli.main import app
from flows.select import SelectionSpec, SelectOptions, run_select
from storage import curated
from pipeline import export as ex
from storage import manifest as mf
from storage.store import EmbeddingStore

from _curated_nights import publish_nights  # noqa: E402  (tests/select is on sys.path)

runner = CliRunner()
FORMATS = ["txt", "npy", "parquet", "datasets"]
OUT = {"txt": "ids.txt", "npy": "ids.npy", "parquet": "picks.parquet", "datasets": "subset"}
ORDERED = {"parquet", "datasets"}  # formats that keep the pick order (txt and npy are sorted)


def _selection(url: str, name: str = "pc") -> dict:
    run_select(SelectOptions(store=url, selections=[SelectionSpec(name=name, objective="logdet",
                                                                     regime="per-class", quotas=2)]))
    return mf.read_manifest(url, name)


def _check_read_back(path, fmt, ids):
    got = ex.read_ids(path)
    assert got == (list(ids) if fmt in ORDERED else sorted(ids))
    assert len(got) == len(ids) > 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_manifest_exports_read_back_to_its_ids(digits_store, tmp_path, fmt):
    man = _selection(digits_store)
    out = tmp_path / OUT[fmt]
    res = runner.invoke(app, ["selections", "--store", digits_store, "--export", "pc@v1", "--out", str(out),
                              *(["--format", "hf"] if fmt == "datasets" else [])])
    assert res.exit_code == 0, res.output
    assert f"wrote 20 items of selection pc@v1 to {out} ({fmt})" in res.stdout
    _check_read_back(out, fmt, man["picks"]["ids"])
    if fmt == "datasets":
        assert "not a Hugging Face data set" in res.stderr  # the note: no source rows to select
    if fmt == "parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(out).to_pydict()
        st = EmbeddingStore.open(digits_store)
        assert t["gain"] == man["picks"]["gains"]  # full precision, in pick order
        assert t["pick_order"] == list(range(20)) and t["store_row"] == man["picks"]["rows"]
        assert t["class"] == [st.classes[v] for v in st.labels(np.asarray(man["picks"]["rows"]))]
        assert json.loads(pq.read_schema(out).metadata[b"worth"])["name"] == "pc"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("version", ["v1", "latest"])
def test_curated_exports_read_back_to_the_version_ids(digits_store, tmp_path, fmt, version):
    folder = publish_nights(digits_store)
    record = curated.read_version(folder, 1 if version == "v1" else None)
    out = tmp_path / OUT[fmt]
    res = runner.invoke(app, ["nights", "--store", digits_store, "--export", version, "--out", str(out),
                              "--format", fmt])
    assert res.exit_code == 0, res.output
    _check_read_back(out, fmt, record["ids"])
    if fmt in ORDERED:  # every item's gain comes from the night that added it
        adds = {}
        for v in range(1, record["version"] + 1):
            adds.update({a["id"]: a["gain"] for a in json.load(open(os.path.join(folder, "sheets",
                                                                                 f"v{v:04d}-additions.json")))})
        gains = ex.from_curated(digits_store, folder, record["version"]).gains
        assert gains == [adds[i] for i in record["ids"]]


def test_datasets_export_carries_the_embeddings_on_request(digits_store, tmp_path):
    import datasets

    man = _selection(digits_store)
    sub = ex.from_manifest(digits_store, man)
    done = ex.export(sub, digits_store, str(tmp_path / "ds"), "datasets", embeddings=True)
    ds = datasets.load_from_disk(done.path)
    st = EmbeddingStore.open(digits_store)
    np.testing.assert_array_equal(np.asarray(ds["embedding"], dtype=st.dtype), st.rows(np.asarray(sub.rows)))
    assert ds["label"] == sub.labels and ds["class"] == sub.classes


def test_a_hugging_face_source_is_selected_from_its_own_rows(tmp_path):
    """An hf: store exports the source data set's own rows (Dataset.select in pick order), plus worth's columns."""
    import datasets
    from PIL import Image

    from storage import embed_into_store
    from worth.data.encoders import get_encoder
    from worth.data.sources import load_source

    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)) for _ in range(40)]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"]),
                               "note": datasets.Value("string")})
    src_ds = datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(40)],
                                         "note": [f"n{i}" for i in range(40)]}, features=feats)
    data = str(tmp_path / "pool.parquet")
    src_ds.to_parquet(data)
    url = str(tmp_path / "hf.zarr")
    embed_into_store(url, load_source("hf:parquet", data_files=data), get_encoder("pixels", dim=8, seed=0))
    man = _selection(url)
    out = tmp_path / "subset"
    res = runner.invoke(app, ["selections", "--store", url, "--export", "pc", "--out", str(out), "--format",
                              "datasets", "--source-param", f"data_files={data}"])
    assert res.exit_code == 0, res.output
    assert "note:" not in res.stderr
    got = datasets.load_from_disk(str(out))
    assert got["worth_id"] == man["picks"]["ids"] and got["worth_gain"] == man["picks"]["gains"]
    src_rows = [int(i.split("-")[1]) for i in man["picks"]["ids"]]  # hf ids are SPLIT-ROW
    assert got["note"] == [f"n{r}" for r in src_rows] and got["label"] == [r % 3 for r in src_rows]
    assert got.features["label"].names == ["a", "b", "c"]  # the source's own features, not rebuilt
    _check_read_back(out, "datasets", man["picks"]["ids"])

    # the store recorded the options it was embedded with: no --source-param needed to load the source again
    assert EmbeddingStore.open(url).source["options"] == {"split": "train", "data_files": data,
                                                          "image_column": "image", "label_column": "label"}
    again = runner.invoke(app, ["selections", "--store", url, "--export", "pc", "--out", str(tmp_path / "again"),
                                "--format", "hf"])
    assert again.exit_code == 0 and "note:" not in again.stderr, again.output
    assert datasets.load_from_disk(str(tmp_path / "again"))["note"] == got["note"]

    # a store embedded before the options were recorded: the source cannot be loaded again without them
    import zarr

    group = zarr.open_group(url, mode="r+")
    meta = dict(group.attrs["worth"])
    meta["source"] = {k: v for k, v in meta["source"].items() if k != "options"}
    group.attrs["worth"] = meta
    missing = runner.invoke(app, ["selections", "--store", url, "--export", "pc", "--out", str(tmp_path / "x"),
                                  "--format", "datasets"])
    assert missing.exit_code == 2 and "--source-param" in missing.stderr and not (tmp_path / "x").exists()


def test_datacomp_uids_are_exported_as_datacomp_subset_arrays(tmp_path):
    """Ids that are DataComp uids (32 hex digits) go to the .npy as DataComp's own subset file: a sorted u8,u8
    array of the uids' 64-bit halves, built here as DataComp's resharder README builds one; read back as hex."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from storage import embed_into_store
    from worth.data.encoders import get_encoder
    from worth.data.sources import load_source

    rng = np.random.default_rng(2)
    uids = [f"{int(a):016x}{int(b):016x}" for a, b in rng.integers(0, 2**63, size=(60, 2), dtype=np.uint64)]
    pq.write_table(pa.table({"uid": uids, "vector": rng.normal(size=(60, 6)).tolist(),
                             "label": [f"c{i % 3}" for i in range(60)]}), tmp_path / "pool.parquet")
    url = str(tmp_path / "dc.zarr")
    embed_into_store(url, load_source(str(tmp_path / "pool.parquet"), id_column="uid", vector_column="vector",
                                      label_column="label"), get_encoder("pixels", dim=6, seed=0))
    man = _selection(url)
    picked = man["picks"]["ids"]
    out = tmp_path / "subset.npy"
    res = runner.invoke(app, ["selections", "--store", url, "--export", "pc", "--out", str(out)])
    assert res.exit_code == 0, res.output
    arr = np.load(out, allow_pickle=False)
    expected = np.array([(int(u[:16], 16), int(u[16:32], 16)) for u in picked], np.dtype("u8,u8"))
    expected.sort()
    assert arr.dtype == np.dtype("u8,u8") and arr.shape == (len(picked),)
    np.testing.assert_array_equal(arr, expected)
    _check_read_back(out, "npy", picked)
    assert mf.read_sorted_ids(mf.export_ids(man, str(tmp_path / "lib.npy"))) == sorted(picked)  # the library's


def test_other_ids_are_a_sorted_array_of_str(tmp_path):
    ids = ["row-10", "row-9", "A", "0123456789abcdef0123456789ABCDEF"]  # not all uids: strings, sorted as such
    mf.write_sorted_ids(ids, str(tmp_path / "ids.npy"), "npy")
    arr = np.load(tmp_path / "ids.npy", allow_pickle=False)
    assert arr.dtype.kind == "U" and arr.tolist() == sorted(ids)
    assert np.searchsorted(arr, "row-9") == 3


@pytest.mark.parametrize("command", ["selections", "nights"])
@pytest.mark.parametrize("args, named", [
    (["--out", "ids.npy"], "--out without --export"),
    (["--format", "npy", "--force"], "--format, --force without --export"),
    (["--source-param", "split=train"], "--source-param without --export"),
])
def test_export_options_without_export_are_refused(digits_store, tmp_path, monkeypatch, command, args, named):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, [command, "--store", digits_store, *args])
    assert res.exit_code == 2 and f"error: {named}: add --export" in res.stderr, res.output
    assert os.listdir(tmp_path) == ["digits.zarr"]


def test_nights_export_of_a_store_not_curated_yet(digits_store, tmp_path):
    res = runner.invoke(app, ["nights", "--store", digits_store, "--export", "latest", "--out",
                              str(tmp_path / "a.npy")])
    assert res.exit_code == 2 and "has no curated versions yet" in res.stderr and "worth curate" in res.stderr
    assert not (tmp_path / "a.npy").exists()


@pytest.mark.parametrize("args, match", [
    (["--out", "ids.csv"], "name the file .txt, .npy or .parquet, or give --format (txt, npy, parquet, datasets"),
    (["--out", "ids.txt", "--format", "xml"], "format='xml' is not an export format: choose one of txt, npy, "
                                              "parquet, datasets"),
    (["--out", "nowhere/ids.txt"], "does not exist; create it first"),
])
def test_bad_exports_are_refused_in_one_line(digits_store, tmp_path, args, match, monkeypatch):
    _selection(digits_store)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["selections", "--store", digits_store, "--export", "pc", *args])
    assert res.exit_code == 2 and match in res.stderr, res.output
    assert os.listdir(tmp_path) == ["digits.zarr"]  # nothing written, no temporary file left


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_existing_out_is_kept_unless_forced(digits_store, tmp_path, fmt):
    man = _selection(digits_store)
    out = tmp_path / OUT[fmt]
    if fmt == "datasets":
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
    else:
        out.write_text("keep me")
    args = ["selections", "--store", digits_store, "--export", "pc", "--out", str(out), "--format", fmt]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and f"{out} exists: choose another --out, or pass --force" in res.stderr
    assert (out / "mine.txt" if fmt == "datasets" else out).read_text() == "keep me"
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    _check_read_back(out, fmt, man["picks"]["ids"])
    assert sorted(os.listdir(tmp_path)) == sorted(["digits.zarr", OUT[fmt]])  # the old one moved out, not left


def test_nights_export_of_a_missing_version(digits_store, tmp_path):
    publish_nights(digits_store)
    res = runner.invoke(app, ["nights", "--store", digits_store, "--export", "v7", "--out", str(tmp_path / "a.npy")])
    assert res.exit_code == 2 and "no published version v7 (published: v1, v2)" in res.stderr
