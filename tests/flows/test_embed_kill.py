"""A run killed with a real SIGKILL mid-way leaves a readable store, and a rerun completes it identically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

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
    proc = subprocess.Popen(_cli(url, "threads"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    done = 0
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if EmbeddingStore.exists(url):
                try:
                    done = int((EmbeddingStore.open(url).chunks_done() > 0).sum())
                except Exception:  # metadata mid-write: look again
                    done = 0
                if done >= 3:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

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
