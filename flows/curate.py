"""The nightly curation flow: embed the pool's new items, add the best of them to the curated set, publish a version.

One night, in order, while holding the curated folder's lock (:func:`storage.curated.lock`):

1. read the latest curated version (``STORE.curated/LATEST``): the set kept so far and the store's row count then;
2. embed the source's new items (the embed flow as a subflow: it appends only items the store lacks);
3. select tonight's additions among the *new* training rows — rows past the recorded row count, not held out —
   under the objective (``auto``: the latest study's best predictor, else facility location;
   :func:`pipeline.curate.choose_objective`) and budget, **conditioned on the curated set**
   (``worth.select(..., init=)``);
4. train and evaluate the downstream model on the curated set against tonight's held-out rows, and — like for
   like — last night's set under the same training config and seed against the same rows: the held-out set
   grows as items arrive, so last night's own accuracy was measured on fewer rows and is not what the delta
   subtracts. The record names the rows (their count and the digest of their sorted ids) and holds per-class
   held-out accuracy (``accuracy.class.C``, as the study's runs);
5. log the night to MLflow (experiment ``worth-nightly``, one run per night, deltas against the previous night on
   the same rows; no ``delta_value`` when the objective changed), then publish the next version
   (``STORE.curated/vNNNN.json``, ``LATEST`` replaced last) and the Prefect artifacts.

A night with nothing new (the store's row count equals the one recorded) changes nothing: no version, no run.
A night whose embed step fails (a corrupt new item) publishes no version and says which item and why.

Launch it with a cluster bound from outside::

    from flows.curate import CurateOptions, run_curate
    from infra.dask import local_spec
    run_curate(CurateOptions(source="digits", store="demo/digits.zarr", k=40), local_spec(2))

or ``worth curate digits --store demo/digits.zarr --k 40``; deployed as ``curate/curate-nightly`` (prefect.yaml).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import Counter
from typing import Any

import numpy as np

from flows.embed import embed_body, embed_flow
from flows.runtime import deployed, launch, make_flow
from pipeline.curate import (CurateOptions, ObjectiveChoice, choose_objective, contact_sheet,  # noqa: F401
                             curate_run_name, held_out_mask, night_key, why_no_value_delta)
from pipeline.embed import plan_embed
from storage import curated as versions
from storage.holdout import describe_test_set, ids_digest, nightly_rule
from storage.store import EmbeddingStore
from tasks.curate import select_additions, train_evaluate
from tasks.track import default_tracking_uri, finish_night, log_night, run_link
from worth.train import class_accuracy_metrics

SUMMARY_KEY = "curate-summary"
ADDITIONS_KEY = "curate-additions"
CLASSES_KEY = "curate-classes"
SHEET_KEY = "curate-contact-sheet"


def night_tracking_uri(options: CurateOptions, folder: str, *, check: bool = False) -> str:
    """Where the night is tracked (:func:`tasks.track.default_tracking_uri`: ``--tracking-uri``, else
    ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the folder holding the curated folder)."""
    return default_tracking_uri(os.path.dirname(os.path.abspath(folder)), options.tracking_uri, check=check)


def plan_night(options: CurateOptions) -> str:
    """What the night checks before anything starts: the pool (the embed flow's own plan: the source, the
    encoder and the store against each other, writing nothing), the objective (name and parameters; ``auto``
    resolved), the curated folder (a remote store needs ``curated=``; a file there is refused) and its latest version
    (a damaged file is named with its repair), and the tracking store (a dead server, a damaged or full SQLite
    file). Returns the folder."""
    plan_embed(options.pool)  # the embed subflow's refusals (an unknown source, a file as the store) come here
    choose_objective(options)  # a bad name fails before any work
    folder = versions.curated_dir(options.pool.store, options.curated)
    if os.path.isdir(folder):
        versions.read_version(folder)  # the version the night starts from must be readable
    night_tracking_uri(options, folder, check=True)
    return folder


def _class_name(classes: list[str] | None, label: int) -> str:
    return classes[label] if classes and 0 <= label < len(classes) else str(label)


def _sheet(options: CurateOptions, ids: list[str], captions: list[str], new: list[bool], path: str,
           title: str) -> str | None:
    """The contact sheet of the last ``sheet_max`` curated items (image sources only)."""
    from worth.data.sources import load_source

    source = load_source(options.pool.source, limit=options.pool.limit, **options.pool.source_params)
    if source.kind != "images":
        return None
    keep = slice(max(0, len(ids) - options.sheet_max), len(ids))
    index = {s: i for i, s in enumerate(source.ids.tolist())}
    images = source.take(np.array([index[i] for i in ids[keep]], dtype=np.int64))
    return contact_sheet(images, captions[keep], new[keep], path, title)


def _class_accuracy(record: dict[str, Any]) -> dict[str, float | None]:
    """Held-out accuracy by class name, from the record's ``accuracy.class.C`` metrics."""
    names = record.get("class_names") or []
    out = {}
    for key, value in record["metrics"].items():
        if key.startswith("accuracy.class."):
            c = int(key.rsplit(".", 1)[1])
            out[_class_name(names, c)] = value
    return out


def _publish_artifacts(runtime, record: dict[str, Any], previous: dict[str, Any] | None,
                       additions: list[dict]) -> str:
    """The night's Prefect artifacts (summary, additions, per-class table); returns the summary's markdown (the
    MLflow run's description too)."""
    m = record["metrics"]
    counts = Counter(record["classes"])
    before = Counter(previous["classes"]) if previous else Counter()
    per_class = _class_accuracy(record)
    test = record["test_set"]
    fmt = lambda v, p=4: "—" if v is None else f"{v:+.{p}f}"  # noqa: E731
    pct = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    if previous is None:
        d_acc = "— (first night)"
    else:
        d_acc = (f"{fmt(m['delta_accuracy'])} (v{previous['version']:04d}'s set on the same {test['n']:,} rows: "
                 f"{m['previous_accuracy']:.4f})")
    d_val = fmt(m["delta_value"]) if record.get("delta_value_note") is None else f"— ({record['delta_value_note']})"
    lines = [
        f"# Curated v{record['version']:04d}: {len(additions)} added, {len(record['ids'])} kept",
        "",
        f"Objective `{record['objective']}`: {record['objective_choice']['why']}.",
        "",
        "| | tonight | delta against last night |",
        "|---|---|---|",
        f"| objective `{record['objective']}` | {record['value']:.4f} | {d_val} |",
        f"| accuracy (held-out, {test['n']:,} items) | {record['accuracy']:.4f} | {d_acc} |",
        f"| curated items | {len(record['ids'])} | {len(additions):+d} |",
        f"| store rows | {record['store_rows']:,} | {m['new_items']:+,} new |",
        "",
        f"Held-out set: {test['n']:,} items, `{test['digest'][:19]}…` ({test['rule']})."
        + ("" if previous is None else
           f" Both accuracies of the delta are measured on these rows (last night's set re-trained under the same "
           f"training config and seed); v{previous['version']:04d} itself reported {previous['accuracy']:.4f} on "
           f"the {previous['metrics']['n_test']:,} items held out then."),
        "",
        f"Chosen among {m['candidates']} new training items, conditioned on the "
        f"{len(record['ids']) - len(additions)} already curated. "
        f"{run_link(record['tracking_uri'], record['mlflow_experiment_id'], record['mlflow_run_id'])}.",
        "",
        "| class | curated | added tonight | held-out accuracy |",
        "|---|---|---|---|",
        *[f"| {c} | {counts[c]} | {counts[c] - before[c]:+d} | {pct(per_class.get(str(c)))} |"
          for c in sorted(set(counts) | set(per_class), key=str)],
    ]
    runtime.markdown(SUMMARY_KEY, "\n".join(lines), f"Nightly curation v{record['version']:04d}")
    runtime.table(ADDITIONS_KEY, additions or [{"id": "", "class": "", "gain": None, "store_row": None}],
                  f"Tonight's additions (v{record['version']:04d})")
    runtime.table(CLASSES_KEY, [{"class": c, "curated": counts[c], "added": counts[c] - before[c],
                                 "held_out_accuracy": per_class.get(str(c))}
                                for c in sorted(set(counts) | set(per_class), key=str)],
                  "Per-class counts of the curated set and held-out accuracy")
    return "\n".join(lines)


def curate_body(options: CurateOptions, runtime) -> dict[str, Any]:
    """One night under the curated folder's lock (the body of the flow; see the module's docstring)."""
    t0, start_ms = time.perf_counter(), int(time.time() * 1000)
    folder = plan_night(options)
    choice = choose_objective(options)
    tracking_uri = night_tracking_uri(options, folder)
    run_id = runtime.run_id()
    with versions.lock(folder, owner=f"flow run {run_id}"):
        versions.recover_latest(folder)  # a LATEST lost after a publish is rebuilt from its claim first
        previous = versions.read_version(folder)
        start = int(previous["store_rows"]) if previous else 0
        prev_version = int(previous["version"]) if previous else 0
        try:
            embedded = runtime.subflow(embed_flow, embed_body, options.pool)
        except Exception as exc:
            why = (f"Night not curated: embedding the new items of {options.pool.source!r} failed, so no version was "
                   f"published (LATEST stays v{prev_version:04d}). Cause: {type(exc).__name__}: {exc}")
            runtime.markdown(SUMMARY_KEY, f"# No curated version tonight\n\n{why}", "Nightly curation: failed")
            raise RuntimeError(why) from exc
        store = EmbeddingStore.open(options.pool.store, storage_options=options.pool.storage_options or None)
        n = store.n
        if n < start:
            raise ValueError(f"store {options.pool.store!r} has {n} rows but curated v{prev_version:04d} recorded "
                             f"{start}: this is not the store the versions were made from; give another curated=")
        if previous is not None and n == start:
            print(f"Nothing new since v{prev_version:04d} ({n} rows): no version, no run.")
            runtime.markdown(SUMMARY_KEY, f"# Nothing new tonight\n\nThe store still has {n:,} rows, as when "
                             f"v{prev_version:04d} was curated: nothing was published.",
                             "Nightly curation: nothing new")
            return {"noop": True, "version": prev_version, "folder": folder, "record": previous,
                    "flow_run_id": run_id, "seconds": time.perf_counter() - t0}
        ids, labels, classes = store.ids(), store.labels(), store.classes
        held = held_out_mask(ids, store.split(), options.holdout_fraction)
        kept = [int(p) for p in previous["positions"]] if previous else []
        if previous and ids[kept].tolist() != previous["ids"]:
            raise ValueError(f"the rows of store {options.pool.store!r} at the curated positions no longer hold the "
                             "curated ids: the store was rebuilt; start a new curated folder")
        new = np.arange(start, n)
        candidates = new[~held[new]]
        room = options.budget - len(kept) if options.budget else options.k
        k = int(min(options.k, room, len(candidates)))
        so = options.pool.storage_options or None
        if k == 0 and not kept:
            raise ValueError(f"no new training items to curate: {len(new)} new rows, all held out or none; "
                             "deliver more items or lower holdout_fraction")
        version = max([prev_version, *versions.versions(folder)]) + 1
        tag = f"v{version:04d}"  # the task runs are named after the version they make (and the UI shows which)
        # k = 0 (budget spent) still scores the kept set under tonight's objective, on tonight's rows
        sel = runtime.call(select_additions, options.pool.store, kept, candidates.tolist(), k, choice.name,
                           choice.params, so, name=f"select-additions-{tag}")
        added = [int(p) for p in sel["positions"]]
        positions = kept + added
        test = np.flatnonzero(held)
        if not len(test):
            raise ValueError("no held-out rows to evaluate on: raise holdout_fraction or add a test split")
        test_set = describe_test_set(ids[test], nightly_rule(store.split(), options.holdout_fraction))
        n_classes = max(len(classes or []), int(labels.max()) + 1)
        training = options.training().to_dict()
        ev = runtime.call(train_evaluate, options.pool.store, positions, test.tolist(), n_classes, training, so,
                          name=f"train-evaluate-{tag}")
        # like for like: last night's set, trained under tonight's config and seed, on tonight's held-out rows
        # (nothing added: the same set and training give the same model, so its evaluation is tonight's)
        base = None
        if previous is not None:
            base = ev if not added else runtime.call(train_evaluate, options.pool.store, kept, test.tolist(),
                                                     n_classes, training, so,
                                                     name=f"train-evaluate-v{prev_version:04d}-on-{tag}-rows")
        no_value_delta = why_no_value_delta(previous, choice)
        key = night_key(options, prev_version, n, choice)
        names = [_class_name(classes, int(labels[p])) for p in positions]
        metrics = {
            "accuracy": ev["accuracy"], "value": sel["value"], "loss": ev["loss"], "n_curated": len(positions),
            "added": len(added), "store_rows": n, "new_items": len(new), "candidates": len(candidates),
            "n_test": test_set["n"], "train_seconds": ev["train_seconds"],
            "n_test_new": test_set["n"] - int(previous["metrics"]["n_test"]) if previous else None,
            "previous_accuracy": base["accuracy"] if base is not None else None,
            "delta_accuracy": ev["accuracy"] - base["accuracy"] if base is not None else None,
            # f(S ∪ A) − f(A), both scored tonight on tonight's rows: last night's own value of a pool-dependent
            # objective (facility location's ground set grows) was measured on other rows
            "delta_value": (sel["value"] - sel["value_before"]
                            if previous is not None and no_value_delta is None else None),
            **class_accuracy_metrics(ev["per_class_accuracy"]),
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
        params = {"source": options.pool.source, "store": options.pool.store, "encoder": options.pool.encoder,
                  "objective": choice.name, "objective_params": json.dumps(choice.params),
                  "objective_requested": choice.requested, "objective_why": choice.why,
                  "k": options.k, "budget": options.budget, "model": options.model, "epochs": options.epochs,
                  "seed": options.seed, "holdout_fraction": options.holdout_fraction, "limit": options.pool.limit,
                  "test_digest": test_set["digest"], "test_rule": test_set["rule"]}
        tags = {"worth.version": str(version), "worth.flow_run_id": str(run_id), "worth.curated": folder}
        if no_value_delta is not None:
            tags["worth.delta_value"] = f"none: {no_value_delta}"
        if runtime.run_url():
            tags["worth.flow_run_url"] = runtime.run_url()
        datasets = [{"name": f"curated-v{version:04d}", "digest": ids_digest(ids[positions]), "source": folder,
                     "context": "training", "rows": len(positions)},
                    {"name": "held-out", "digest": test_set["digest"], "source": options.pool.store,
                     "context": "evaluation", "rows": test_set["n"]}]
        # stable artifact names: MLflow's compare view matches artifacts by name across the nights
        logged = runtime.here(log_night, tracking_uri, options.experiment, key, f"v{version:04d}", params, metrics,
                              version, {"contact_sheet.png": sheet, "additions.json": adds_path}, tags, start_ms,
                              datasets, name=f"log-night-{tag}")
        record = {
            "ids": ids[positions].tolist(), "positions": positions, "classes": names, "store_rows": n,
            "objective": choice.name, "objective_params": choice.params, "objective_choice": choice.to_dict(),
            "value": sel["value"], "value_before": sel["value_before"], "accuracy": ev["accuracy"],
            "test_set": test_set, "class_names": [_class_name(classes, c) for c in range(n_classes)],
            "delta_value_note": no_value_delta, "flow_run_id": run_id,
            "mlflow_run_id": logged["run_id"], "mlflow_experiment_id": logged["experiment_id"],
            "tracking_uri": tracking_uri, "key": key, "added": [str(ids[p]) for p in added],
            "metrics": metrics, "options": options.model_dump(), "embedded_rows": embedded.get("rows_embedded"),
            "contact_sheet": sheet,
        }
        try:
            out = versions.publish(folder, record, expected_latest=prev_version)
        except BaseException:  # nothing published: the run is not a finished night (a rerun logs into it)
            runtime.here(finish_night, tracking_uri, logged["run_id"], "FAILED", name=f"finish-night-{tag}")
            raise
        summary = _publish_artifacts(runtime, out, previous, additions)
        # the contact sheet in Prefect too, as a data URL: the PNG travels inside the artifact, so the page shows
        # it with no file server and no MLflow server up
        with open(sheet, "rb") as f:
            runtime.image(SHEET_KEY, "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii"),
                          f"Curated v{out['version']:04d}: the curated set, tonight's additions in red")
        link, reopen = runtime.run_url(), runtime.reopen_command()
        runtime.here(finish_night, tracking_uri, logged["run_id"], "FINISHED",
                     summary + (f"\n\nPrefect flow run: {link}" + (f" (serve it with `{reopen}`)" if reopen else "")
                                if link else f"\n\nPrefect flow run id `{run_id}`" if run_id else ""),
                     name=f"finish-night-{tag}")
        print(f"Curated v{out['version']:04d}: +{len(added)} of {len(candidates)} new training items, "
              f"{len(positions)} kept; {choice.name}={sel['value']:.4f}, accuracy={ev['accuracy']:.4f} on "
              f"{test_set['n']} held-out items ({choice.why})")
        return {"noop": False, "version": out["version"], "folder": folder, "record": out, "flow_run_id": run_id,
                "mlflow_run_id": logged["run_id"], "contact_sheet": sheet, "additions": additions,
                "seconds": time.perf_counter() - t0}


curate_flow = make_flow(curate_body, CurateOptions, name="curate", description="Nightly curation: embed new "
                        "items, add the best of them to the curated set (conditioned on it), train, log to MLflow, "
                        "publish a version.",
                        run_name=curate_run_name)


def run_curate(options: CurateOptions, spec=None, *, task_runner=None) -> dict[str, Any]:
    """Run the night on the cluster of ``spec``, on ``task_runner``, or — with neither — inline in this process
    (:func:`flows.runtime.launch`: the objective and the curated folder are checked here first)."""
    return launch(curate_flow, curate_body, plan_night, options, spec, task_runner=task_runner)


curate_nightly = deployed(run_curate, CurateOptions, name="curate-nightly", description="The deployed night: binds "
                          "the cluster given as a parameter and runs the curate flow on it.", run_name=curate_run_name)
