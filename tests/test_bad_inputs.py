"""The catalogue of bad inputs (issue 21, "What must be shown"): each command, each kind of bad input, the one
line it must answer with and its exit code.

Every case runs the CLI in a fresh process (``python -m CLI_MODULE``), as a user would: stderr must be exactly
one line ``error: …`` containing the expected words (the argument and the fix), the exit code 2, and nothing
may be written. Cases that today still fail are marked ``xfail(strict=True)`` with the reason: when a fix
lands they XPASS, which fails the run until the mark is removed.

``CLI_MODULE`` is the one place that names where the CLI lives (``cli.main`` today; ``flows.cli.main`` after
the move).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

CLI_MODULE = "flows.cli.main"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 90  # seconds: a refusal is immediate; a case that starts the work instead runs into this


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Files of every kind of bad input, and a small embedding store (digits, 16-d)."""
    import yaml

    from storage import embed_into_store
    from worth.data.encoders import get_encoder
    from worth.data.sources import load_source

    d = tmp_path_factory.mktemp("bad")
    np.save(d / "x.npy", np.random.default_rng(0).normal(size=(30, 4)))
    np.save(d / "nan.npy", np.full((5, 3), np.nan))
    np.save(d / "vector.npy", np.ones(7))
    np.save(d / "queries16.npy", np.random.default_rng(0).normal(size=(5, 16)))  # targets in the store's space
    np.save(d / "huge.npy", np.random.default_rng(0).normal(size=(30, 4)) * 1e160)
    (d / "garbage.npy").write_bytes(b"not an npy")
    (d / "idx_garbage.json").write_text("{not json")
    (d / "idx_list.json").write_text(json.dumps([0, 1]))
    (d / "syntax.yaml").write_text("objectives: {vendi: {}\nk: [40\n")
    quick = yaml.safe_load(open(os.path.join(ROOT, "study-quick.yaml")))
    (d / "lr.yaml").write_text(yaml.safe_dump({**quick, "lr": -1}))
    (d / "tpu.yaml").write_text(yaml.safe_dump({**quick, "device": "tpu"}))
    (d / "unknown.yaml").write_text(yaml.safe_dump({**quick, "mixture_fraction": [0.5]}))
    (d / "tracking-garbage.db").write_bytes(b"SQLite format 2\0" + bytes(range(256)) * 16)  # not a database
    os.makedirs(d / "cur")  # a curated folder whose latest version is garbage
    (d / "cur" / "v0001.json").write_bytes(b"\x00\xff not a version")
    (d / "cur" / "LATEST").write_text("1\n")
    store = str(d / "s.zarr")
    embed_into_store(store, load_source("digits"), get_encoder("pixels", dim=16, seed=3), chunk_rows=256)
    import shutil

    for name, key in (("meta", "zarr.json"), ("arraymeta", "embeddings/zarr.json")):  # a damaged metadata file
        shutil.copytree(store, d / f"{name}.zarr")
        path = d / f"{name}.zarr" / key
        path.write_bytes(path.read_bytes()[:20])  # truncated
    from infra.processes import free_ports

    # a loopback port nothing listens on: a tracking server that is down
    return {"d": str(d), "store": store, "dead": free_ports(1)[0]}



# (id, arguments with {d} = the files' folder, {store} = the store and {dead} = a loopback port nothing listens on,
#  words the one line must hold); leading NAME=VALUE words set the command's environment
def case(case_id: str, args: str, words: str, *marks):
    return pytest.param(args, words, marks=marks, id=case_id)


CASES = [
    # worth select --input
    case("select-input-missing", "select --input {d}/nope.npy --k 3", "--input"),
    case("select-input-not-npy", "select --input {d}/garbage.npy --k 3", "not a NumPy file"),
    case("select-input-nan", "select --input {d}/nan.npy --k 2", "NaN"),
    case("select-input-1d", "select --input {d}/vector.npy --k 2", "2-D"),
    case("select-k-zero", "select --input {d}/x.npy --k 0", "k=0"),
    case("select-k-too-big", "select --input {d}/x.npy --k 99", "k <= 30"),
    case("select-objective-unknown", "select --input {d}/x.npy --k 3 --objective nope", "objective='nope'"),
    case("select-method-unknown", "select --input {d}/x.npy --k 3 --method nope", "method='nope'"),
    case("select-param-range", "select --input {d}/x.npy --k 3 --objective logdet -p sigma2=-1", "sigma2=-1"),
    case("select-huge-raw-rows", "select --input {d}/huge.npy --k 3 --objective power --no-normalize",
     "divide X by a constant"),
    # worth select --store
    case("select-store-missing", "select --store {d}/nope.zarr --name a --k 3 --runner inline", "worth embed"),
    case("select-store-unsafe-name", "select --store {store} --name ../a --k 3 --runner inline", "safe path component"),
    # under the default (dask) runner: refused by the plan in the launching process, before Prefect or Dask starts
    case("select-store-quota-exceeds-class", "select --store {store} --name a --regime per-class --quotas 500",
         "lower it to at most"),
    case("select-store-method-unknown", "select --store {store} --name a --k 3 --method nope", "method='nope'"),
    case("select-store-method-not-for-objective", "select --store {store} --name a --k 3 --objective vendi "
         "--method closed-form", "method='closed-form'"),
    case("select-store-method-not-spectral", "select --store {store} --name a --k 3 --objective facility-location "
         "--method secular", "Pass method='auto'"),
    case("select-scheduler-dead", "select --store {store} --name a --k 3 --scheduler tcp://127.0.0.1:{dead}",
         "no Dask scheduler answers there"),
    case("select-scheduler-not-an-address", "select --store {store} --name a --k 3 --scheduler nonsense",
         "is not a Dask scheduler address"),
    # worth embed
    case("embed-scheduler-dead", "embed digits --store {d}/e.zarr --scheduler tcp://127.0.0.1:{dead}",
         "no Dask scheduler answers there"),
    case("select-store-target-count-objective", "select --store {store} --name a --k 3 --objective scaling-law "
         "--target {d}/queries16.npy", "target= needs an objective of the items' content"),
    case("select-store-target-lazy", "select --store {store} --name a --k 3 --objective logdet --optimizer lazy "
         "--target {d}/queries16.npy", "the mutual information of 'logdet' with target= is not"),
    # a damaged store metadata file, named by its path before any job reads it (issue 21 §2)
    case("select-store-metadata-damaged", "select --store {d}/meta.zarr --name a --k 3", "meta.zarr/zarr.json cannot"),
    case("select-store-array-metadata-damaged", "select --store {d}/arraymeta.zarr --name a --k 3",
         "arraymeta.zarr/embeddings/zarr.json, cannot be read"),
    case("study-store-array-metadata-damaged", "study --store {d}/arraymeta.zarr --quick --out {d}/o",
         "arraymeta.zarr/embeddings/zarr.json, cannot be read"),
    # worth score
    case("score-indices-missing", "score --input {d}/x.npy --indices {d}/nope.json", "--indices"),
    case("score-indices-not-json", "score --input {d}/x.npy --indices {d}/idx_garbage.json", "not valid JSON"),
    case("score-indices-no-list", "score --input {d}/x.npy --indices {d}/idx_list.json", "'indices'"),
    case("score-objective-unknown", "score --input {d}/x.npy --indices {d}/idx_list.json --objective nope", "'nope'"),
    # worth selections
    case("selections-store-missing", "selections --store {d}/nope.zarr", "does not exist"),
    case("selections-store-is-a-file", "selections --store {d}/x.npy", "is a file, not an embedding store"),
    case("selections-store-not-a-store", "selections --store {d}/cur", "is not an embedding store"),
    case("selections-export-unknown", "selections --store {store} --export nope --out {d}/o.txt", "no selection named"),
    case("selections-export-no-out", "selections --store {store} --export nope", "--export needs --out"),
    # worth info
    case("info-store-missing", "info --store {d}/nope.zarr", "does not exist"),
    case("info-store-is-a-file", "info --store {d}/x.npy", "is a file"),
    # worth study
    case("study-config-missing", "study --store {store} --config {d}/nope.yaml --out {d}/o", "no such file"),
    case("study-runner-unknown", "study --store {store} --quick --runner nope --out {d}/o", "runner='nope'"),
    case("study-store-missing", "study --store {d}/nope.zarr --quick --out {d}/o", "does not exist"),
    case("study-config-unknown-key", "study --store {store} --config {d}/unknown.yaml --out {d}/o", "mixture_fraction"),
    case("study-config-syntax", "study --store {store} --config {d}/syntax.yaml --out {d}/o", "syntax.yaml"),
    case("study-lr-negative", "study --store {store} --config {d}/lr.yaml --runner inline --out {d}/o", "lr", pytest.mark.slow),
    case("study-device-tpu", "study --store {store} --config {d}/tpu.yaml --runner inline --out {d}/o", "device", pytest.mark.slow),
    # a tracking store that cannot work, found before any server or worker starts (issue 21 §2)
    case("study-tracking-db-damaged", "study --store {store} --quick --tracking-uri sqlite:///{d}/tracking-garbage.db "
         "--out {d}/o", "tracking-garbage.db is damaged"),
    case("study-tracking-server-dead", "study --store {store} --quick --tracking-uri http://127.0.0.1:{dead} "
         "--out {d}/o", "does not answer"),
    case("study-tracking-env-server-dead", "MLFLOW_TRACKING_URI=http://127.0.0.1:{dead} study --store {store} --quick "
         "--out {d}/o",
         "(from MLFLOW_TRACKING_URI) does not answer"),
    case("study-tracking-scheme-unknown", "study --store {store} --quick --tracking-uri foo://bar --out {d}/o",
         "no MLflow store serves"),
    # worth curate
    case("curate-tracking-scheme-unknown", "curate digits --store {d}/c.zarr --tracking-uri foo://bar",
         "no MLflow store serves"),
    case("curate-tracking-plain-path", "curate digits --store {d}/c.zarr --tracking-uri {d}/mlruns",
         "MLflow's file store"),
    case("curate-tracking-server-dead", "curate digits --store {d}/c.zarr --tracking-uri http://127.0.0.1:{dead}",
         "does not answer"),
    case("curate-curated-version-damaged", "curate digits --store {d}/c.zarr --curated {d}/cur",
         "cur/v0001.json is damaged"),
    # the pool of the night (the embed subflow's own plan), checked before the night starts (issue 21 §1)
    case("curate-source-unknown", "curate nosuch --store {d}/c.zarr", "source='nosuch'"),
    case("curate-encoder-unknown", "curate digits --store {d}/c.zarr --encoder nope", "encoder='nope'"),
    case("curate-store-is-a-file", "curate digits --store {d}/x.npy", "is a file, not a store"),
    case("curate-curated-is-a-file", "curate digits --store {d}/c.zarr --curated {d}/x.npy",
         "is a file, not a folder of curated versions"),
    # worth nights, worth demo: a file where a folder goes
    case("nights-curated-is-a-file", "nights --store {store} --curated {d}/x.npy",
         "is a file, not a folder of curated versions"),
    case("demo-out-is-a-file", "demo --out {d}/x.npy", "--out"),
    case("curate-objective-unknown", "curate digits --store {d}/c.zarr --objective nope", "objective='nope'"),
]


@pytest.mark.parametrize("args,words", CASES)
def test_bad_input_is_one_line_and_exit_2(inputs, args, words, tmp_path):
    argv = [a.format(**inputs) for a in args.split()]
    before = sorted(os.listdir(inputs["d"]))
    env = {**os.environ, "PYTHONPATH": ROOT, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_HOME": str(tmp_path / ".prefect")}
    env.pop("MLFLOW_TRACKING_URI", None)
    while argv and re.match(r"^[A-Z_]+=", argv[0]):  # leading NAME=VALUE: the command's environment
        name, _, value = argv.pop(0).partition("=")
        env[name] = value
    try:  # in an empty folder: whatever a command writes by default (mlruns, reports) lands there, and is seen
        res = subprocess.run([sys.executable, "-m", CLI_MODULE, *argv], capture_output=True, text=True,
                             cwd=tmp_path, timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{args}: not refused within {TIMEOUT} s (the work started)")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    assert words in lines[0], lines[0]
    assert sorted(os.listdir(inputs["d"])) == before, "a refused command wrote something"
    assert [p for p in os.listdir(tmp_path) if p != ".prefect"] == [], "a refused command wrote something"
    home = tmp_path / ".prefect"  # a Prefect server (even a temporary one) keeps its database here
    assert not home.exists() or os.listdir(home) == [], f"a refused command started Prefect: {os.listdir(home)}"
