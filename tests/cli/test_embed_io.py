"""`worth embed` when the store cannot be written or reached, or the source is bad: one line, before any work.

The lock is the run's first write (:mod:`storage.lock`), so these failures surface there, before a Prefect
server or a Dask cluster starts. Read-only places: as root, permission bits do not stop a write, so the tests use
paths the kernel refuses for everyone (under a regular file, under ``/proc``).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from storage import EmbeddingStore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def embed(worth, *args):
    return worth("embed", *args, "--runner", "inline", "--limit", "50", "-p", "dim=4")


def test_store_under_a_regular_file(worth, one_line, tmp_path):
    (tmp_path / "plain").write_text("x")
    one_line(embed(worth, "digits", "--store", tmp_path / "plain" / "s.zarr"), 1,
             "cannot write the store", "Not a directory", "--store path")


def test_store_on_a_filesystem_that_refuses_writes(worth, one_line):
    one_line(embed(worth, "digits", "--store", "/proc/worth-test.zarr"), 1, "cannot write the store", "/proc")


def test_hf_source_offline(worth, one_line, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = embed(worth, "hf:fashion_mnist", "--store", tmp_path / "s.zarr")
    try:
        import datasets  # noqa: F401
    except ImportError:
        one_line(out, 2, "pip install datasets")
    else:
        one_line(out, 1, "source='hf:fashion_mnist'", "connect to the network", "data_files")
    assert not EmbeddingStore.exists(str(tmp_path / "s.zarr"))


@pytest.mark.parametrize("creds", [True, False])
def test_s3_store_that_cannot_be_reached(worth, one_line, monkeypatch, creds):
    pytest.importorskip("s3fs")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    if creds:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    out = embed(worth, "digits", "--store", "s3://bucket/pool.zarr", "--storage-option",
                f"endpoint_url=http://127.0.0.1:{9 if creds else 7}",  # two ports: no cached s3fs instance shared
                "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}}')
    one_line(out, 1, "cannot reach the store 's3://bucket/pool.zarr'",
             "EndpointConnectionError" if creds else "NoCredentialsError", "endpoint_url")


def test_nan_item_is_refused_with_its_id(worth, one_line, tmp_path):
    """A NaN row of a source .npy used to become an all-zero embedding that slipped past the store's guard."""
    x = np.random.default_rng(0).normal(size=(20, 5))
    x[13, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    out = worth("embed", tmp_path / "x.npy", "--store", tmp_path / "s.zarr", "--runner", "inline")
    one_line(out, 1, "row-00013", "NaN or inf", "drop or fix")
    st = EmbeddingStore.open(str(tmp_path / "s.zarr"))
    assert not st.is_complete and not (st.to_numpy()[:10] == 0).all(axis=1).any()


def test_store_that_is_a_regular_file_fails_before_prefect_starts(tmp_path):
    """One line, no Prefect traceback logged first: the check runs before the flow (and its server) start."""
    store = tmp_path / "pool.npy"
    store.write_bytes(b"not a store")
    res = subprocess.run([sys.executable, "-m", "flows.cli.main", "embed", "digits", "--store", str(store), "--runner",
                          "threads", "--limit", "20"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "is a file, not a store" in lines[0] and store.read_bytes() == b"not a store"


@pytest.mark.parametrize("err,transient", [
    (OSError(errno.EROFS, "Read-only file system"), False),
    (OSError(errno.ENOSPC, "No space left on device"), False),
    (PermissionError(errno.EACCES, "Permission denied"), False),
    (ConnectionResetError(errno.ECONNRESET, "reset"), True),
    (TimeoutError("timed out"), True),
])
def test_only_passing_io_errors_are_retried(err, transient):
    from prefect.states import Failed

    from tasks._task import is_transient_io_error

    assert is_transient_io_error(None, None, Failed(data=err)) is transient
