"""`worth embed` and `worth info` from the command line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli.main import app
from storage import EmbeddingStore

runner = CliRunner()


def test_embed_inline_then_nothing_to_do_then_info(tmp_path):
    url = str(tmp_path / "s.zarr")
    first = runner.invoke(app, ["embed", "digits", "--store", url, "--chunk-rows", "500", "--limit", "1200",
                                "--runner", "inline", "-p", "dim=32"])
    assert first.exit_code == 0, first.output
    assert re.search(r"^items \(n\)\s+1,200$", first.output, re.M), first.output  # the rendered summary table
    st = EmbeddingStore.open(url)
    assert st.n == 1200 and st.dim == 32 and st.is_complete and st.chunk_rows == 500
    again = runner.invoke(app, ["embed", "digits", "--store", url, "--limit", "1200", "-p", "dim=32"])
    assert again.exit_code == 0 and "nothing to do" in again.output
    more = runner.invoke(app, ["embed", "digits", "--store", url, "--runner", "inline", "-p", "dim=32"])
    assert more.exit_code == 0 and EmbeddingStore.open(url).n == 1797
    info = runner.invoke(app, ["info", "--store", url])
    assert info.exit_code == 0 and re.search(r"^items \(n\)\s+1,797$", info.output, re.M)
    assert re.search(r"^encoder\s+pixels ", info.output, re.M) and "| items" not in info.output  # no raw markdown
    js = json.loads(runner.invoke(app, ["info", "--store", url, "--json"]).output)
    assert js["n"] == 1797 and js["complete"] and js["class_counts"]["0"] == 178


@pytest.mark.parametrize("args,match", [
    (["digits", "--encoder", "resnet"], "encoder='resnet' is not known"),
    (["nowhere-source"], "not a known source"),
    (["digits", "--encoder", "minilm"], "encodes text"),
])
def test_embed_bad_input_exits_2_with_the_fix(tmp_path, args, match):
    res = runner.invoke(app, ["embed", *args, "--store", str(tmp_path / "s.zarr"), "--runner", "inline"])
    assert res.exit_code == 2 and match in res.output
    assert not EmbeddingStore.exists(str(tmp_path / "s.zarr"))


def test_embed_refuses_another_encoder_on_a_store(tmp_path):
    url = str(tmp_path / "s.zarr")
    assert runner.invoke(app, ["embed", "digits", "--store", url, "--runner", "inline"]).exit_code == 0
    before = EmbeddingStore.open(url).to_numpy()
    res = runner.invoke(app, ["embed", "digits", "--store", url, "--runner", "inline", "-p", "dim=8"])
    assert res.exit_code == 2 and "another --store path" in res.output
    np.testing.assert_array_equal(EmbeddingStore.open(url).to_numpy(), before)


def test_info_of_a_missing_store(tmp_path):
    res = runner.invoke(app, ["info", "--store", str(tmp_path / "none.zarr")])
    assert res.exit_code == 2 and "worth embed" in res.output


def test_embed_through_the_flow_on_an_existing_scheduler(tmp_path, dask_cluster):
    url = str(tmp_path / "s.zarr")
    res = runner.invoke(app, ["embed", "digits", "--store", url, "--chunk-rows", "256", "--limit", "700",
                              "--scheduler", dask_cluster.scheduler_address])
    assert res.exit_code == 0, res.output
    st = EmbeddingStore.open(url)
    assert st.n == 700 and st.is_complete and "items/s" in res.output


def test_embed_through_the_flow_in_threads(tmp_path, prefect_api):
    """The console script in a process of its own (as a user runs it), against the session's Prefect API.

    Not through ``CliRunner``: Prefect's console log handler keeps the stream of the invocation that first set
    up logging, which ``CliRunner`` closes afterwards; a later flow run in the same process then recursed
    between the failing handler and Prefect's print-to-log patch.
    """
    import subprocess
    import sys

    url = str(tmp_path / "s.zarr")
    res = subprocess.run([sys.executable, "-m", "flows.cli.main", "embed", "digits", "--store", url, "--limit", "300",
                          "--runner", "threads"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert EmbeddingStore.open(url).is_complete and re.search(r"^items \(n\)\s+300$", res.stdout, re.M)


def test_select_reads_a_store(tmp_path):
    """`worth select --input STORE` selects on the stored embeddings, the same picks as on the array."""
    import worth

    url = str(tmp_path / "s.zarr")
    assert runner.invoke(app, ["embed", "digits", "--store", url, "--runner", "inline", "--limit", "600"]).exit_code == 0
    out = tmp_path / "sel.json"
    res = runner.invoke(app, ["select", "--input", url, "--k", "8", "--objective", "logdet", "--out", str(out)])
    assert res.exit_code == 0, res.output
    X = EmbeddingStore.open(url).to_numpy(dtype="float64")
    assert json.loads(out.read_text())["indices"] == np.asarray(worth.select(X, 8, "logdet").indices).tolist()
