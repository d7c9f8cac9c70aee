"""The curate flow on real parts: Prefect test server, Dask LocalCluster, Zarr store, MLflow on SQLite.

Digits arrive in two nights (the first 600 items, then all 1,797): the second night selects only among the new
items, conditioned on the first night's set; its version is new and yesterday's file byte-identical; the same
night rerun is a no-op. Its delta is like for like: both sets trained here with worth.train on the held-out ids
the record names give exactly the accuracies it reports, and their difference. A night whose objective changed
logs no objective delta and says why. Faults: a corrupt new image publishes nothing and says why; of two runs at
once, one fails.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading

import numpy as np
import pytest

from flows.curate import ADDITIONS_KEY, SHEET_KEY, SUMMARY_KEY, CurateOptions, run_curate
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


def _task_run_names(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def go():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return [r.name for r in runs]

    return run_coro_as_sync(go())


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
    # the default objective is auto: with no study of this pool, facility location, and the record says why
    assert v2["objective"] == "facility-location" and v2["objective_choice"]["requested"] == "auto"
    assert "no study of this pool" in v2["objective_choice"]["why"]
    # the additions are the conditioned greedy's picks among the new training rows, not an unconditioned choice
    cand = np.array([p for p in range(600, 1797) if not held[p]])
    rows = store.rows(np.concatenate([v1["positions"], cand]))
    expected = worth.select(rows, 25, "facility-location", init=np.arange(25))
    assert added == cand[np.asarray(expected.indices) - 25].tolist()
    assert v2["value"] == pytest.approx(expected.info["init_value"] + expected.value)
    # the value delta compares both sets scored tonight, on tonight's rows (facility location's ground set grew)
    assert v2["value_before"] == pytest.approx(worth.score(rows, np.arange(25), "facility-location"))

    # like for like: night 2's held-out rows, named by the record, are the id-hashed 20 % of all 1,797 items ...
    test_ids = sorted(i for i in store.ids().tolist()
                      if int.from_bytes(hashlib.sha256(i.encode()).digest()[:4], "big") < int(0.2 * 2**32))
    assert v2["test_set"] == {"n": len(test_ids), "rule": "id hash, holdout_fraction=0.2",
                              "digest": "sha256:" + hashlib.sha256("\n".join(test_ids).encode()).hexdigest()}
    assert v1["test_set"]["n"] < v2["test_set"]["n"] and v1["test_set"]["digest"] != v2["test_set"]["digest"]
    # ... and both nights' sets, trained here by worth.train under the night's config on those ids, give exactly
    # the accuracies night 2 reports, and its delta is their difference
    from worth.train import TrainConfig

    position = {i: p for p, i in enumerate(store.ids().tolist())}
    test = np.array([position[i] for i in test_ids])
    labels = store.labels()

    def accuracy_of(ids):
        train = np.array([position[i] for i in ids])
        return TrainConfig(model="mlp", epochs=8, seed=0).fit(store.rows(train), labels[train], store.rows(test),
                                                              labels[test], 10)

    ev1, ev2 = accuracy_of(v1["ids"]), accuracy_of(v2["ids"])
    assert v2["accuracy"] == pytest.approx(ev2.accuracy, abs=1e-12)
    assert v2["metrics"]["previous_accuracy"] == pytest.approx(ev1.accuracy, abs=1e-12)
    assert v2["metrics"]["delta_accuracy"] == pytest.approx(ev2.accuracy - ev1.accuracy, abs=1e-12)
    assert v2["metrics"]["n_test_new"] == len(test_ids) - v1["test_set"]["n"]

    runs = _runs(v2["tracking_uri"])
    assert [r.info.run_id for r in runs] == [v1["mlflow_run_id"], v2["mlflow_run_id"]]
    m1, m2 = runs[0].data.metrics, runs[1].data.metrics
    assert m2["accuracy"] == pytest.approx(v2["accuracy"]) and m2["added"] == 25 and m2["n_curated"] == 50
    assert m2["delta_accuracy"] == pytest.approx(ev2.accuracy - ev1.accuracy, abs=1e-12)
    assert m2["delta_value"] == pytest.approx(v2["value"] - v2["value_before"]) and "delta_accuracy" not in m1
    # per-class held-out accuracy, named as the study's runs name it
    assert {f"accuracy.class.{c}": m2[f"accuracy.class.{c}"] for c in range(10)} == pytest.approx(
        {f"accuracy.class.{c}": a for c, a in enumerate(ev2.per_class_accuracy)}, abs=1e-12)
    p2 = runs[1].data.params
    assert p2["test_digest"] == v2["test_set"]["digest"] and m2["n_test"] == len(test_ids)
    assert (p2["objective"], p2["objective_requested"]) == ("facility-location", "auto")
    from mlflow.tracking import MlflowClient

    names = {a.path for a in MlflowClient(tracking_uri=v2["tracking_uri"]).list_artifacts(v2["mlflow_run_id"])}
    # stable names across nights, so MLflow's compare view finds the artifacts the nights have in common
    assert names == {"contact_sheet.png", "additions.json"} and os.path.getsize(night2["contact_sheet"]) > 10_000

    summary = read_artifacts(SUMMARY_KEY, night2["flow_run_id"])[0].data
    assert "Curated v0002: 25 added, 50 kept" in summary and "delta against last night" in summary
    assert f"v0001's set on the same {len(test_ids):,} rows: {ev1.accuracy:.4f}" in summary
    assert "auto: no study of this pool" in summary and v2["test_set"]["digest"][:19] in summary
    table = json.loads(read_artifacts(ADDITIONS_KEY, night2["flow_run_id"])[0].data)
    assert [row["id"] for row in table] == v2["added"]
    tasks = sorted(n for n in _task_run_names(night2["flow_run_id"]) if not n.startswith("embed-"))  # the subflow's
    assert tasks == [  # each task run named after what it did
        "finish-night-v0002", "log-night-v0002", "select-additions-v0002", "train-evaluate-v0001-on-v0002-rows",
        "train-evaluate-v0002"]
    sheet = read_artifacts(SHEET_KEY, night2["flow_run_id"])[0]  # the contact sheet in Prefect: the PNG itself
    assert sheet.type == "image" and sheet.data.startswith("data:image/png;base64,")
    assert base64.b64decode(sheet.data.split(",", 1)[1]) == open(night2["contact_sheet"], "rb").read()

    rerun = run_curate(_options(tmp_path), task_runner=dask_task_runner)
    assert rerun["noop"] and rerun["version"] == 2 and curated.versions(folder) == [1, 2]
    assert open(curated.version_path(folder, 1), "rb").read() == v1_bytes
    assert len(_runs(v2["tracking_uri"])) == 2
    assert "Nothing new tonight" in read_artifacts(SUMMARY_KEY, rerun["flow_run_id"])[0].data


def test_a_changed_objective_logs_no_value_delta_and_says_why(tmp_path):
    night1 = run_curate(_options(tmp_path, limit=500, objective="vendi", k=15))  # inline: no Prefect, no Dask
    night2 = run_curate(_options(tmp_path, limit=900, k=15))  # the default: auto, here facility location
    v2 = night2["record"]
    assert (night1["record"]["objective"], v2["objective"]) == ("vendi", "facility-location")
    why = "objective changed since v0001 (vendi -> facility-location)"
    assert v2["metrics"]["delta_value"] is None and v2["delta_value_note"].startswith(why)
    run = _runs(v2["tracking_uri"])[1]
    assert "delta_value" not in run.data.metrics and run.data.tags["worth.delta_value"].startswith("none: " + why)
    # accuracy stays comparable (same rows, same training): its delta is logged
    assert run.data.metrics["delta_accuracy"] == pytest.approx(v2["accuracy"] - v2["metrics"]["previous_accuracy"])

    night3 = run_curate(_options(tmp_path, k=15))  # the same objective again: the delta is back
    v3 = night3["record"]
    assert v3["delta_value_note"] is None
    assert v3["metrics"]["delta_value"] == pytest.approx(v3["value"] - v3["value_before"])


def test_a_lost_latest_is_rebuilt_and_a_failed_publish_finishes_no_run(tmp_path, monkeypatch):
    """LATEST deleted after night 1: night 2 builds on v0001 (rebuilt from its claim), one FINISHED run per
    published version. A night whose publish fails leaves its run FAILED, and the rerun finishes that same run."""
    night1 = run_curate(_options(tmp_path, limit=500, k=10))  # inline
    folder = night1["folder"]
    os.remove(os.path.join(folder, curated.LATEST))
    night2 = run_curate(_options(tmp_path, limit=900, k=10))
    assert (night2["version"], night2["record"]["previous"]) == (2, 1)
    assert night2["record"]["ids"][:10] == night1["record"]["ids"]

    real = curated.publish

    def conflict(*args, **kwargs):
        raise curated.CurationConflict("another curate run published meanwhile (injected)")

    monkeypatch.setattr(curated, "publish", conflict)
    with pytest.raises(curated.CurationConflict, match="injected"):
        run_curate(_options(tmp_path, k=10))
    assert curated.latest_version(folder) == 2
    runs = _runs(night2["record"]["tracking_uri"])
    assert [(r.info.run_name, r.info.status) for r in runs] == [("v0001", "FINISHED"), ("v0002", "FINISHED"),
                                                                ("v0003", "FAILED")]
    monkeypatch.setattr(curated, "publish", real)
    night3 = run_curate(_options(tmp_path, k=10))
    runs = _runs(night2["record"]["tracking_uri"])
    assert [(r.info.run_name, r.info.status) for r in runs] == [("v0001", "FINISHED"), ("v0002", "FINISHED"),
                                                                ("v0003", "FINISHED")]
    assert runs[2].info.run_id == night3["mlflow_run_id"]


def test_version_files_without_latest_or_claims_are_refused_with_the_repair(tmp_path):
    import shutil

    night1 = run_curate(_options(tmp_path, limit=500, k=10))
    folder = night1["folder"]
    os.remove(os.path.join(folder, curated.LATEST))
    shutil.rmtree(os.path.join(folder, curated.CLAIMS))
    with pytest.raises(ValueError, match=r"LATEST is missing while .* holds v0001: write .*echo 1 >"):
        run_curate(_options(tmp_path, limit=900, k=10))
    assert curated.versions(folder) == [1] and len(_runs(night1["record"]["tracking_uri"])) == 1


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


def test_two_runs_at_once_one_fails_clearly(tmp_path, prefect_api, monkeypatch):
    from prefect.task_runners import ThreadPoolTaskRunner

    opts = _options(tmp_path, limit=500)
    barrier, results, refused = threading.Barrier(2), [], threading.Event()
    real_lock = curated.lock

    @contextlib.contextmanager
    def held_until_refused(folder, owner=""):
        # the winner keeps the lock until the other night has been refused: the two overlap by construction,
        # not by the scheduler's timing (under load, one night could finish before the other started)
        with real_lock(folder, owner) as holder:
            refused.wait(timeout=300)
            yield holder

    monkeypatch.setattr(curated, "lock", held_until_refused)

    def night():
        barrier.wait()
        try:
            results.append(run_curate(opts, task_runner=ThreadPoolTaskRunner(max_workers=1)))
        except Exception as exc:  # the loser's error, kept for the assertions
            results.append(exc)
            refused.set()

    threads = [threading.Thread(target=night) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    errors = [r for r in results if isinstance(r, Exception)]
    wins = [r for r in results if not isinstance(r, Exception)]
    assert len(errors) == 1 and len(wins) == 1, results
    assert isinstance(errors[0], curated.CurationLocked)
    assert "locked by another curate run (flow run" in str(errors[0])
    assert curated.versions(wins[0]["folder"]) == [1] and len(_runs(wins[0]["record"]["tracking_uri"])) == 1
