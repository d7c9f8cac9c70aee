"""The curate flow on real parts: Prefect test server, Dask LocalCluster, Zarr store, MLflow on SQLite.

Digits arrive in two nights (the first 600 items, then all 1,797): the second night selects only among the new
items, conditioned on the first night's set; its version is new and yesterday's file byte-identical; the same
night rerun is a no-op. Faults: a corrupt new image publishes nothing and says why; of two runs at once, one fails.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from flows.curate import ADDITIONS_KEY, SUMMARY_KEY, CurateOptions, run_curate
from storage import curated
from storage.store import EmbeddingStore
from pipeline.curate import held_out_mask

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _options(tmp_path, **kw) -> CurateOptions:
    base = dict(source="digits", store=str(tmp_path / "digits.zarr"), chunk_rows=256, k=25, epochs=8,
                tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return CurateOptions(**{**base, **kw})


def _runs(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name("worth-nightly")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]) if exp else []


def test_two_nights_then_a_rerun(tmp_path, dask_task_runner, read_artifacts):
    import worth

    night1 = run_curate(_options(tmp_path, limit=600), task_runner=dask_task_runner)
    folder = night1["folder"]
    v1_bytes = open(curated.version_path(folder, 1), "rb").read()
    v1 = night1["record"]
    store = EmbeddingStore.open(str(tmp_path / "digits.zarr"))
    held = held_out_mask(store.ids(), store.split(), 0.2)
    assert (night1["version"], len(v1["ids"]), v1["store_rows"]) == (1, 25, 600)
    assert max(v1["positions"]) < 600 and not held[v1["positions"]].any()

    night2 = run_curate(_options(tmp_path), task_runner=dask_task_runner)
    v2 = night2["record"]
    store = EmbeddingStore.open(str(tmp_path / "digits.zarr"))
    held = held_out_mask(store.ids(), store.split(), 0.2)
    added = v2["positions"][25:]
    assert (night2["version"], v2["previous"], v2["store_rows"], len(added)) == (2, 1, 1797, 25)
    assert v2["ids"][:25] == v1["ids"] and min(added) >= 600 and not held[added].any()
    assert v2["added"] == store.ids(np.array(added)).tolist()
    assert v2["classes"] == [str(store.labels()[p]) for p in v2["positions"]]
    assert open(curated.version_path(folder, 1), "rb").read() == v1_bytes
    # the additions are the conditioned greedy's picks among the new training rows, not an unconditioned choice
    cand = np.array([p for p in range(600, 1797) if not held[p]])
    rows = store.rows(np.concatenate([v1["positions"], cand]))
    expected = worth.select(rows, 25, "vendi", init=np.arange(25))
    assert added == cand[np.asarray(expected.indices) - 25].tolist()
    assert v2["value"] == pytest.approx(expected.info["init_value"] + expected.value)

    runs = _runs(v2["tracking_uri"])
    assert [r.info.run_id for r in runs] == [v1["mlflow_run_id"], v2["mlflow_run_id"]]
    m1, m2 = runs[0].data.metrics, runs[1].data.metrics
    assert m2["accuracy"] == pytest.approx(v2["accuracy"]) and m2["added"] == 25 and m2["n_curated"] == 50
    assert m2["delta_accuracy"] == pytest.approx(m2["accuracy"] - m1["accuracy"])
    assert m2["delta_value"] == pytest.approx(m2["value"] - m1["value"]) and "delta_accuracy" not in m1
    from mlflow.tracking import MlflowClient

    names = {a.path for a in MlflowClient(tracking_uri=v2["tracking_uri"]).list_artifacts(v2["mlflow_run_id"])}
    assert names == {"v0002.png", "v0002-additions.json"} and os.path.getsize(night2["contact_sheet"]) > 10_000

    summary = read_artifacts(SUMMARY_KEY, night2["flow_run_id"])[0].data
    assert "Curated v0002: 25 added, 50 kept" in summary and "delta against last night" in summary
    table = json.loads(read_artifacts(ADDITIONS_KEY, night2["flow_run_id"])[0].data)
    assert [row["id"] for row in table] == v2["added"]

    rerun = run_curate(_options(tmp_path), task_runner=dask_task_runner)
    assert rerun["noop"] and rerun["version"] == 2 and curated.versions(folder) == [1, 2]
    assert open(curated.version_path(folder, 1), "rb").read() == v1_bytes
    assert len(_runs(v2["tracking_uri"])) == 2
    assert "Nothing new tonight" in read_artifacts(SUMMARY_KEY, rerun["flow_run_id"])[0].data


def _image_folder(root, count, start=0):
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for i in range(start, start + count):
        folder = root / str(d.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[i] * 15).astype(np.uint8)).save(folder / f"{i:04d}.png")


def test_corrupt_new_item_publishes_nothing_and_says_why(tmp_path, prefect_api, read_artifacts):
    from prefect.task_runners import ThreadPoolTaskRunner

    images = tmp_path / "images"
    _image_folder(images, 80)
    opts = _options(tmp_path, source=str(images), store=str(tmp_path / "imgs.zarr"), k=10)
    first = run_curate(opts, task_runner=ThreadPoolTaskRunner(max_workers=1))
    _image_folder(images, 40, start=80)
    (images / "3" / "9999.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated by a failing upload")
    with pytest.raises(RuntimeError, match=r"no version was published \(LATEST stays v0001\).*9999\.png"):
        run_curate(opts, task_runner=ThreadPoolTaskRunner(max_workers=1))
    assert curated.versions(first["folder"]) == [1] and curated.latest_version(first["folder"]) == 1
    assert curated.read_lock(first["folder"]) is None  # the failed night let go of the lock
    assert len(_runs(first["record"]["tracking_uri"])) == 1


def test_two_runs_at_once_one_fails_clearly(tmp_path, prefect_api):
    from prefect.task_runners import ThreadPoolTaskRunner

    opts = _options(tmp_path, limit=500)
    barrier, results = threading.Barrier(2), []

    def night():
        barrier.wait()
        try:
            results.append(run_curate(opts, task_runner=ThreadPoolTaskRunner(max_workers=1)))
        except Exception as exc:  # the loser's error, kept for the assertions
            results.append(exc)

    threads = [threading.Thread(target=night) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    errors = [r for r in results if isinstance(r, Exception)]
    wins = [r for r in results if not isinstance(r, Exception)]
    assert len(errors) == 1 and len(wins) == 1, results
    assert isinstance(errors[0], curated.CurationLocked)
    assert "locked by another curate run (flow run" in str(errors[0])
    assert curated.versions(wins[0]["folder"]) == [1] and len(_runs(wins[0]["record"]["tracking_uri"])) == 1
