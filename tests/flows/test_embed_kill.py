"""A run killed with a real SIGKILL mid-way leaves a readable store, and a rerun completes it identically."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import kill_9_when
from storage import EmbeddingStore, embed_into_store
from worth.data.encoders import get_encoder
from worth.data.sources import load_source

ARGS = ["mnist5k", "--encoder", "efficientnet-lite0", "--limit", "512", "--chunk-rows", "32", "-p", "image_size=32",
        "-p", "batch_size=32"]


def _cli(store, runner):
    return [sys.executable, "-m", "flows.cli.main", "embed", *ARGS, "--store", store, "--runner", runner]


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_is_identical(tmp_path, prefect_api):
    url = str(tmp_path / "killed.zarr")
    env = {**os.environ, "PREFECT_API_URL": prefect_api}

    def three_chunks_done() -> bool:
        if not EmbeddingStore.exists(url):
            return False
        try:
            return int((EmbeddingStore.open(url).chunks_done() > 0).sum()) >= 3
        except Exception:  # metadata mid-write: look again
            return False

    kill_9_when(_cli(url, "threads"), three_chunks_done, env=env, timeout=180)

    st = EmbeddingStore.open(url)  # readable after the kill
    assert st.n == 512 and 3 * 32 <= st.rows_done() < 512 and not st.is_complete
    x = st.to_numpy()
    finished = np.repeat(st.chunks_done() == 32, 32)
    assert np.isfinite(x[finished]).all()

    rerun = subprocess.run(_cli(url, "threads"), env=env, capture_output=True, text=True, timeout=300,
                           cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    from typer.testing import CliRunner

    from flows.cli.main import app

    again = CliRunner().invoke(app, ["embed", *ARGS, "--store", url])
    assert again.exit_code == 0 and "nothing to do" in again.output

    ref_url = str(tmp_path / "uninterrupted.zarr")
    embed_into_store(ref_url, load_source("mnist5k", limit=512),
                     get_encoder("efficientnet-lite0", image_size=32, batch_size=32), chunk_rows=32)
    resumed, ref = EmbeddingStore.open(url), EmbeddingStore.open(ref_url)
    assert resumed.is_complete
    np.testing.assert_array_equal(resumed.to_numpy(), ref.to_numpy())
    np.testing.assert_array_equal(resumed.to_numpy()[finished], x[finished])  # finished rows never rewritten
    for name in ("ids", "labels", "split"):
        np.testing.assert_array_equal(getattr(resumed, name)(), getattr(ref, name)())
