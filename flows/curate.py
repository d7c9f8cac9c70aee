"""The nightly curation flow: embed the pool's new items, add the best of them to the curated set, publish a version.

One night, in order, while holding the curated folder's lock (:func:`storage.curated.lock`):

1. read the latest curated version (``STORE.curated/LATEST``): the set kept so far and the store's row count then;
2. embed the source's new items (the embed flow as a subflow: it appends only items the store lacks);
3. select tonight's additions among the *new* training rows — rows past the recorded row count, not held out —
   under the objective and budget, **conditioned on the curated set** (``worth.select(..., init=)``);
4. train and evaluate the downstream model on the curated set (held-out rows of the store);
5. log the night to MLflow (experiment ``worth-nightly``, one run per night, deltas against the previous night),
   then publish the next version (``STORE.curated/vNNNN.json``, ``LATEST`` replaced last) and the Prefect artifacts.

A night with nothing new (the store's row count equals the one recorded) changes nothing: no version, no run.
A night whose embed step fails (a corrupt new item) publishes no version and says which item and why.

Launch it with a cluster bound from outside::

    from flows.curate import CurateOptions, run_curate
    from infra.dask import local_spec
    run_curate(CurateOptions(source="digits", store="demo/digits.zarr", k=40), local_spec(2))

or ``worth curate digits --store demo/digits.zarr --k 40``; deployed as ``curate/curate-nightly`` (prefect.yaml).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from typing import Any, Literal

import numpy as np
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.embed import EmbedOptions, embed_flow
from infra.dask import ClusterOptions
from storage import curated as versions
from storage.holdout import refuse_old_name
from storage.store import DEFAULT_CHUNK_ROWS, EmbeddingStore
from tasks.curate import contact_sheet, held_out_mask, select_additions, train_evaluate
from tasks.track import NIGHTLY_EXPERIMENT, default_tracking_uri, log_night
from worth.train import TrainConfig

SUMMARY_KEY = "curate-summary"
ADDITIONS_KEY = "curate-additions"
CLASSES_KEY = "curate-classes"


class CurateOptions(BaseModel):
    """Options of one night's curation (they become the Prefect UI's run form)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="The pool the items arrive in: digits, mnist5k, fashion-mnist, an image "
                        "folder, a .csv/.parquet/.npy file or hf:NAME (as the embed flow takes it).")
    store: str = Field(description="The Zarr embedding store of the pool (local path or fsspec URL); new items "
                       "are appended to it each night.")
    source_params: dict[str, Any] = Field(default_factory=dict, description="Source options, e.g. "
                                          "{'label_column': 'label'} for a csv file.")
    limit: int | None = Field(None, ge=1, description="Only the first LIMIT items of the source have arrived "
                              "(how the demo delivers digits in two nights); None: all of them.")
    encoder: str = Field("pixels", description="Encoder of the store: pixels, efficientnet-lite0, minilm, or a hub "
                         "model (fixed once the store exists).")
    encoder_params: dict[str, Any] = Field(default_factory=dict, description="Encoder parameters, e.g. "
                                           "{'dim': 256} for pixels.")
    chunk_rows: int = Field(DEFAULT_CHUNK_ROWS, ge=1, description="Rows per Zarr chunk when the store is created.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options of a remote store, "
                                            "e.g. {'endpoint_url': 'http://127.0.0.1:9000'}.")
    curated: str | None = Field(None, description="Local folder of the curated versions; default "
                                "STORE.curated beside the store (required when the store is remote).")
    objective: str = Field("vendi", description="Objective the additions maximise, conditioned on the curated "
                           "set: vendi, logdet, facility-location, ... (worth.objectives()).")
    objective_params: dict[str, Any] = Field(default_factory=dict, description="Objective parameters, e.g. "
                                             "{'q': 1} for vendi.")
    k: int = Field(50, ge=1, description="Items added per night (fewer when fewer new training items arrived).")
    budget: int | None = Field(None, ge=1, description="Largest size of the curated set over all nights; a "
                               "night adds at most BUDGET minus the current size. None: no limit.")
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="Share of items held out for evaluation when "
                                    "the store has no test split (chosen by a hash of the id: stable across "
                                    "nights; storage.holdout). Formerly test_fraction.")
    model: Literal["linear", "mlp"] = Field("mlp", description="Downstream model trained on the curated "
                                            "embeddings each night.")
    epochs: int = Field(30, ge=1, description="Training epochs of the downstream model.")
    seed: int = Field(0, description="Seed of the downstream model's initialisation and batch order.")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; None: MLFLOW_TRACKING_URI of the "
                                     "environment, else a SQLite file beside the store (mlflow.db).")
    experiment: str = Field(NIGHTLY_EXPERIMENT, description="MLflow experiment of the nightly runs.")
    sheet_max: int = Field(200, ge=1, description="Most images on the contact sheet (tonight's additions and "
                           "the latest before them).")

    def training(self) -> TrainConfig:
        """The night's training as the one :class:`worth.train.TrainConfig` (the study's type): its model,
        epochs and seed, the rest as the study's defaults (one torch thread, CPU)."""
        return TrainConfig(model=self.model, epochs=self.epochs, seed=self.seed)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, values):
        return refuse_old_name(values)  # test_fraction → holdout_fraction, with the fix in the message


def night_key(options: CurateOptions, previous_version: int, store_rows: int) -> str:
    """What makes a night the same night: the options, the version it starts from and the store's row count."""
    opts = options.model_dump(exclude={"tracking_uri", "sheet_max"})
    text = json.dumps({"options": opts, "previous": previous_version, "rows": store_rows}, sort_keys=True,
                      default=str)
    return "night-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def _sibling_runner():
    """A task runner on the same engine as this flow's, for the embed subflow (a Dask client of the same cluster)."""
    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx else None
    if runner is None:
        return None
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        return runner.duplicate()
    if isinstance(runner, DaskTaskRunner):
        # ``client`` starts the flow's cluster now if no task has yet (prefect-dask starts it lazily): without
        # this the subflow's duplicate would start a second LocalCluster
        return DaskTaskRunner(address=runner.client.scheduler.address)
    return runner.duplicate()


def _embed_new_items(options: CurateOptions) -> dict[str, Any]:
    emb = EmbedOptions(source=options.source, store=options.store, encoder=options.encoder,
                       encoder_params=options.encoder_params, source_params=options.source_params,
                       limit=options.limit, chunk_rows=options.chunk_rows, storage_options=options.storage_options)
    runner = _sibling_runner()
    subflow = embed_flow.with_options(task_runner=runner) if runner is not None else embed_flow
    return subflow(emb)


def _class_name(classes: list[str] | None, label: int) -> str:
    return classes[label] if classes and 0 <= label < len(classes) else str(label)


def _sheet(options: CurateOptions, ids: list[str], captions: list[str], new: list[bool], path: str,
           title: str) -> str | None:
    """The contact sheet of the last ``sheet_max`` curated items (image sources only)."""
    from worth.data.sources import load_source

    source = load_source(options.source, limit=options.limit, **options.source_params)
    if source.kind != "images":
        return None
    keep = slice(max(0, len(ids) - options.sheet_max), len(ids))
    index = {s: i for i, s in enumerate(source.ids.tolist())}
    images = source.take(np.array([index[i] for i in ids[keep]], dtype=np.int64))
    return contact_sheet(images, captions[keep], new[keep], path, title)


def _publish_artifacts(record: dict[str, Any], previous: dict[str, Any] | None, additions: list[dict]) -> None:
    counts = Counter(record["classes"])
    before = Counter(previous["classes"]) if previous else Counter()
    d_acc = record["metrics"]["delta_accuracy"]
    d_val = record["metrics"]["delta_value"]
    fmt = lambda v, p=4: "—" if v is None else f"{v:+.{p}f}"  # noqa: E731
    lines = [
        f"# Curated v{record['version']:04d}: {len(additions)} added, {len(record['ids'])} kept",
        "",
        "| | tonight | delta against last night |",
        "|---|---|---|",
        f"| objective `{record['objective']}` | {record['value']:.4f} | {fmt(d_val)} |",
        f"| accuracy (held-out, {record['metrics']['n_test']} items) | {record['accuracy']:.4f} | {fmt(d_acc)} |",
        f"| curated items | {len(record['ids'])} | {len(additions):+d} |",
        f"| store rows | {record['store_rows']:,} | {record['metrics']['new_items']:+,} new |",
        "",
        f"Chosen among {record['metrics']['candidates']} new training items, conditioned on the "
        f"{len(record['ids']) - len(additions)} already curated. MLflow run `{record['mlflow_run_id']}`.",
        "",
        "| class | curated | added tonight |",
        "|---|---|---|",
        *[f"| {c} | {counts[c]} | {counts[c] - before[c]:+d} |" for c in sorted(counts, key=str)],
    ]
    create_markdown_artifact(markdown="\n".join(lines), key=SUMMARY_KEY,
                             description=f"Nightly curation v{record['version']:04d}")
    create_table_artifact(table=additions or [{"id": "", "class": "", "gain": None, "store_row": None}],
                          key=ADDITIONS_KEY, description=f"Tonight's additions (v{record['version']:04d})")
    create_table_artifact(
        table=[{"class": c, "curated": counts[c], "added": counts[c] - before[c]} for c in sorted(counts, key=str)],
        key=CLASSES_KEY, description="Per-class counts of the curated set")


def _curate(options: CurateOptions) -> dict[str, Any]:
    import worth

    t0 = time.perf_counter()
    worth.get_objective(options.objective, **options.objective_params)  # a bad name fails before any work
    folder = versions.curated_dir(options.store, options.curated)
    tracking_uri = options.tracking_uri or default_tracking_uri(os.path.dirname(os.path.abspath(folder)))
    run_id = str(flow_run.id) if flow_run.id else None
    with versions.lock(folder, owner=f"flow run {run_id}"):
        previous = versions.read_version(folder)
        start = int(previous["store_rows"]) if previous else 0
        prev_version = int(previous["version"]) if previous else 0
        try:
            embedded = _embed_new_items(options)
        except Exception as exc:
            why = (f"Night not curated: embedding the new items of {options.source!r} failed, so no version was "
                   f"published (LATEST stays v{prev_version:04d}). Cause: {type(exc).__name__}: {exc}")
            create_markdown_artifact(markdown=f"# No curated version tonight\n\n{why}", key=SUMMARY_KEY,
                                     description="Nightly curation: failed")
            raise RuntimeError(why) from exc
        store = EmbeddingStore.open(options.store, storage_options=options.storage_options or None)
        n = store.n
        if n < start:
            raise ValueError(f"store {options.store!r} has {n} rows but curated v{prev_version:04d} recorded "
                             f"{start}: this is not the store the versions were made from; give another curated=")
        if previous is not None and n == start:
            print(f"Nothing new since v{prev_version:04d} ({n} rows): no version, no run.")
            create_markdown_artifact(markdown=f"# Nothing new tonight\n\nThe store still has {n:,} rows, as when "
                                     f"v{prev_version:04d} was curated: nothing was published.",
                                     key=SUMMARY_KEY, description="Nightly curation: nothing new")
            return {"noop": True, "version": prev_version, "folder": folder, "record": previous,
                    "flow_run_id": run_id, "seconds": time.perf_counter() - t0}
        ids, labels, classes = store.ids(), store.labels(), store.classes
        held = held_out_mask(ids, store.split(), options.holdout_fraction)
        kept = [int(p) for p in previous["positions"]] if previous else []
        if previous and ids[kept].tolist() != previous["ids"]:
            raise ValueError(f"the rows of store {options.store!r} at the curated positions no longer hold the "
                             "curated ids: the store was rebuilt; start a new curated folder")
        new = np.arange(start, n)
        candidates = new[~held[new]]
        room = options.budget - len(kept) if options.budget else options.k
        k = int(min(options.k, room, len(candidates)))
        so = options.storage_options or None
        if k > 0:
            sel = select_additions.submit(options.store, kept, candidates.tolist(), k, options.objective,
                                          options.objective_params, so).result()
        elif kept:
            sel = {"positions": [], "gains": [], "value": previous["value"], "value_before": previous["value"]}
        else:
            raise ValueError(f"no new training items to curate: {len(new)} new rows, all held out or none; "
                             "deliver more items or lower holdout_fraction")
        added = [int(p) for p in sel["positions"]]
        positions = kept + added
        test = np.flatnonzero(held)
        if not len(test):
            raise ValueError("no held-out rows to evaluate on: raise holdout_fraction or add a test split")
        n_classes = max(len(classes or []), int(labels.max()) + 1)
        ev = train_evaluate.submit(options.store, positions, test.tolist(), n_classes,
                                   options.training().to_dict(), so).result()
        key = night_key(options, prev_version, n)
        version = max([prev_version, *versions.versions(folder)]) + 1
        names = [_class_name(classes, int(labels[p])) for p in positions]
        metrics = {
            "accuracy": ev["accuracy"], "value": sel["value"], "loss": ev["loss"], "n_curated": len(positions),
            "added": len(added), "store_rows": n, "new_items": len(new), "candidates": len(candidates),
            "n_test": len(test), "train_seconds": ev["train_seconds"],
            "delta_accuracy": ev["accuracy"] - previous["accuracy"] if previous else None,
            "delta_value": sel["value"] - previous["value"] if previous else None,
        }
        os.makedirs(os.path.join(folder, "sheets"), exist_ok=True)
        sheet = _sheet(options, ids[positions].tolist(), [f"{c}" for c in names],
                       [False] * len(kept) + [True] * len(added), os.path.join(folder, "sheets", f"v{version:04d}.png"),
                       f"curated v{version:04d}: {len(positions)} items, {len(added)} new (red)")
        additions = [{"id": str(ids[p]), "class": _class_name(classes, int(labels[p])), "gain": float(g),
                      "store_row": int(p)} for p, g in zip(added, sel["gains"])]
        adds_path = os.path.join(folder, "sheets", f"v{version:04d}-additions.json")
        with open(adds_path, "w") as f:
            json.dump(additions, f, indent=1)
        params = {"source": options.source, "store": options.store, "encoder": options.encoder,
                  "objective": options.objective, "objective_params": json.dumps(options.objective_params),
                  "k": options.k, "budget": options.budget, "model": options.model, "epochs": options.epochs,
                  "seed": options.seed, "holdout_fraction": options.holdout_fraction, "limit": options.limit}
        logged = log_night(tracking_uri, options.experiment, key, f"v{version:04d}", params, metrics, version,
                           [p for p in (sheet, adds_path) if p],
                           {"worth.version": str(version), "worth.flow_run_id": str(run_id),
                            "worth.curated": folder})
        record = {
            "ids": ids[positions].tolist(), "positions": positions, "classes": names, "store_rows": n,
            "objective": options.objective, "objective_params": options.objective_params,
            "value": sel["value"], "accuracy": ev["accuracy"], "flow_run_id": run_id,
            "mlflow_run_id": logged["run_id"], "mlflow_experiment_id": logged["experiment_id"],
            "tracking_uri": tracking_uri, "key": key, "added": [str(ids[p]) for p in added],
            "metrics": metrics, "options": options.model_dump(), "embedded_rows": embedded.get("rows_embedded"),
            "contact_sheet": sheet,
        }
        out = versions.publish(folder, record, expected_latest=prev_version)
        _publish_artifacts(out, previous, additions)
        print(f"Curated v{out['version']:04d}: +{len(added)} of {len(candidates)} new training items, "
              f"{len(positions)} kept; {options.objective}={sel['value']:.4f}, accuracy={ev['accuracy']:.4f}")
        return {"noop": False, "version": out["version"], "folder": folder, "record": out, "flow_run_id": run_id,
                "mlflow_run_id": logged["run_id"], "contact_sheet": sheet, "additions": additions,
                "seconds": time.perf_counter() - t0}


curate_flow = flow(_curate, name="curate", description="Nightly curation: embed new items, add the best of them "
                   "to the curated set (conditioned on it), train, log to MLflow, publish a version.",
                   log_prints=True, validate_parameters=True)


def run_curate(options: CurateOptions, spec=None, *, task_runner=None) -> dict[str, Any]:
    """Run the curate flow on the cluster of ``spec`` (an :class:`infra.dask.ClusterSpec`) or on ``task_runner``.

    As :func:`flows.embed.run_embed`: with a Dask cluster one Prefect API serves the run
    (:func:`infra.dask.prefect_api`); with neither, Prefect's default thread runner is used.
    """
    from infra.dask import prefect_api, task_runner as runner_for

    if spec is not None and task_runner is not None:
        raise ValueError("give spec (a ClusterSpec) or task_runner, not both")
    if spec is None and task_runner is None:
        return curate_flow(options)
    if spec is None:
        return curate_flow.with_options(task_runner=task_runner)(options)
    with prefect_api():
        return curate_flow.with_options(task_runner=runner_for(spec))(options)


def _nightly(options: CurateOptions, cluster: ClusterOptions = ClusterOptions()) -> dict[str, Any]:
    return run_curate(options, **cluster.launch())


curate_nightly = flow(_nightly, name="curate-nightly", description="The deployed night: binds the cluster given "
                      "as a parameter and runs the curate flow on it.", log_prints=True, validate_parameters=True)
