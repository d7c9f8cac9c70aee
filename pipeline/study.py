"""The appraisal study's library: its options, the plan (every input check), subset jobs and MLflow records.

:func:`plan_pool` checks and decides everything about the pool before anything runs: a config with unknown keys
or an objective (or parameter) the registry refuses, a store that is missing, incomplete or unlabelled, a
held-out fraction outside (0, 0.9] or different from the split recorded with the store, a k the pool (or, in the
balanced regime, a class) cannot serve. The flow (:mod:`flows.study`) adds where it tracks.

A :class:`SubsetJob` is one distinct subset of the study: realise it (select), score it with every objective,
and train and evaluate it once per spec that uses it (``fixed`` and ``budget`` share a realisation). What travels
is small: the store's URL, the held-out split's description, spec dicts and the subset's row positions. Each
worker reads the pool itself from the Zarr store (:func:`load_pool`, once per process and then cached), so no
array is ever shipped through Dask.

The held-out split is decided once, in the flow's process, before any worker starts (:func:`resolve_holdout`):
the store's own ``test`` split when it has one, else a seeded stratified split recorded with the store
(:mod:`storage.holdout`). A worker finds the same rows from the description it is given and refuses a store
whose recorded split no longer matches it. Torch runs on at most the worker's share of threads; the device is
the study's ``device`` resolved on the worker.

Resume: every run is tagged with a deterministic key (:func:`child_key`: the subset spec, the training settings
and the pool's identity), so a rerun reuses FINISHED children's metrics and never creates a second run for a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.batch import Outcome, is_transient
from pipeline.threads import worker_threads
from storage.holdout import Holdout, read_recorded, split_mask
from storage.store import EmbeddingStore
from worth.appraisal import (StudyConfig, SubsetSpec, holdout_split, load_config, make_specs, realise, result_row,
                             score_subsets, train_subset)
from worth.appraisal.config import check_holdout_fraction
from worth.appraisal.design import check_design
from worth.data.encoders import set_torch_threads
from worth.train import class_accuracies, class_accuracy_metrics

#: Settings of the study that change what a subset's run measures: part of every child run's key.
TRAINING_FIELDS = ("objectives", "model", "epochs", "steps", "batch_size", "lr", "weight_decay", "hidden",
                   "threads", "device")


class StudyOptions(BaseModel):
    """Options of one appraisal study (they become the Prefect UI's run form)."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="The Zarr embedding store to appraise (a local path or an fsspec URL), made by "
                       "`worth embed`; it must be complete and labelled.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for a remote store, e.g. {'endpoint_url': '...'}.")
    config: str | None = Field(None, description="Path of a study.yaml (keys of worth.appraisal.StudyConfig). One of "
                               "config, config_data or quick.")
    config_data: dict[str, Any] | None = Field(
        None, description="The study config inline, as the mapping a study.yaml holds (a deployment parameter).")
    quick: bool = Field(False, description="The --quick preset (StudyConfig.quick(): a few minutes on digits).")
    holdout_fraction: float | None = Field(
        None, description="Share of each class held out when the store has no held-out split of its own; default "
        "the config's holdout_fraction (0.2). Must lie in (0, 0.9] and equal the split already recorded with the "
        "store, if any. Ignored for a store with a 'test' split (Fashion-MNIST).")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite beside a local store "
        "(<store>.mlflow/mlflow.db).")
    experiment: str | None = Field(None, description="MLflow experiment name; default 'worth-study-<store name>'.")
    artifact_location: str | None = Field(
        None, description="Where a new experiment's artifacts go; default beside a SQLite tracking file (needed "
        "for other database URIs; a tracking server keeps its own).")
    out_dir: str | None = Field(
        None, description="Where report.md, results.json and the figures are written; default "
        "<store>.study/<study key> beside a local store, ./worth-study-<study key> for a remote one.")

    @model_validator(mode="after")
    def _one_config(self) -> "StudyOptions":
        given = [n for n, v in (("config", self.config), ("config_data", self.config_data), ("quick", self.quick))
                 if v]
        if len(given) > 1:
            raise ValueError(f"give one of config, config_data or quick, not {' and '.join(given)}")
        return self


def _digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def child_key(spec: SubsetSpec, config: StudyConfig, pool: dict) -> str:
    """A subset run's key: its spec, the training settings and the pool's identity (not the store's path)."""
    training = {f: config.to_dict()[f] for f in TRAINING_FIELDS}
    return _digest({"spec": spec.key, "training": training, "pool": pool})


def study_key(config: StudyConfig, pool: dict) -> str:
    """The parent run's key: the whole config and the pool's identity."""
    return _digest({"config": config.to_dict(), "pool": pool})


@dataclass
class StudyPlan:
    """Everything decided before any work: what :func:`plan_pool` checked and resolved (and, from the flow,
    where the study is tracked and reported)."""

    options: StudyOptions
    config: StudyConfig
    holdout: Holdout
    holdout_is_new: bool
    pool: dict
    n_pool: int
    n_test: int
    n_classes: int
    specs: list[SubsetSpec]
    key: str
    tracking_uri: str | None = None
    experiment: str | None = None
    artifact_location: str | None = None
    out_dir: str | None = None

    @property
    def holdout_desc(self) -> dict:
        return self.holdout.describe()


def resolve_config(options: StudyOptions) -> StudyConfig:
    """The study's config from ``options`` (a path, inline data or the quick preset; default the quick one)."""
    if options.config:
        if not Path(options.config).is_file():
            raise ValueError(f"--config {options.config!r}: no such file; pass a study.yaml (see study-quick.yaml).")
        return load_config(options.config)
    if options.config_data is not None:
        return StudyConfig.from_dict(options.config_data)
    return StudyConfig.quick()


def plan_pool(options: StudyOptions) -> StudyPlan:
    """Check every input about the pool and decide the study, writing nothing (the held-out split is recorded
    by the flow; tracking is resolved by :func:`flows.study.plan_study`).

    Raises
    ------
    ValueError, FileNotFoundError
        With the argument at fault and the fix, before any selection, training or tracking.
    """
    config = resolve_config(options)
    if config.model == "cnn":
        raise ValueError("model='cnn' trains on raw images, but the study trains on the store's embeddings: use "
                         "model: mlp or linear (the pixels encoder stores raw pixels as embeddings).")
    fraction = check_holdout_fraction(options.holdout_fraction if options.holdout_fraction is not None
                                      else config.holdout_fraction)
    so = options.storage_options or None
    store = check_store(options.store, so)
    holdout, is_new = resolve_holdout(options.store, fraction, config.holdout_seed, so, store=store)
    store_labels = store.labels()
    labelled = store_labels >= 0
    pool_labels = store_labels[labelled & ~holdout.mask]
    n_test = int((labelled & holdout.mask).sum())
    if n_test == 0:
        raise ValueError(f"store {options.store!r} has no labelled held-out row to evaluate on; raise "
                         "--holdout-fraction.")
    check_design(config, pool_labels)
    pool = pool_identity(options.store, holdout.describe(), so, store=store)
    n_classes = len(store.classes) if store.classes else int(store_labels.max()) + 1
    return StudyPlan(options, config, holdout, is_new, pool, int(pool_labels.size), n_test, n_classes,
                     make_specs(config, n_pool=int(pool_labels.size)), study_key(config, pool))


# ------------------------------------------------------------------------------------------ keys and records
def _digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def child_key(spec: SubsetSpec, config: StudyConfig, pool: dict) -> str:
    """A subset run's key: its spec, the training settings and the pool's identity (not the store's path)."""
    training = {f: config.to_dict()[f] for f in TRAINING_FIELDS}
    return _digest({"spec": spec.key, "training": training, "pool": pool})


def study_key(config: StudyConfig, pool: dict) -> str:
    """The parent run's key: the whole config and the pool's identity."""
    return _digest({"config": config.to_dict(), "pool": pool})


def _optimizer(spec: SubsetSpec) -> tuple[str, str]:
    """(optimizer, method) of how the subset was selected, as the run's params say it."""
    sampled = "exact" if spec.sample is None else f"sampled-{spec.sample}"
    if spec.kind == "coreset":
        return spec.objective, "class-balanced" if spec.balanced else "uniform"
    if spec.kind == "max":
        return "greedy", "auto"
    if spec.kind == "min":
        return "greedy-minimise", sampled
    if spec.kind == "mix":
        return f"greedy+{spec.filler}", sampled if spec.filler == "min" else "random"
    return "random", "class-balanced" if spec.balanced else "uniform"


def child_params(spec: SubsetSpec, config: StudyConfig) -> dict[str, Any]:
    """A subset run's params (strings in MLflow): what was selected, and how it was trained."""
    optimizer, method = _optimizer(spec)
    budget = {"steps_budget": config.steps} if spec.regime == "budget" else {"epochs": config.epochs}
    return {"objective": spec.objective or "random", "kind": spec.kind, "k": spec.k, "regime": spec.regime,
            "seed": spec.seed, "fraction": spec.fraction, "filler": spec.filler or "-",
            "objective_params": json.dumps(spec.params, sort_keys=True), "optimizer": optimizer, "method": method,
            "model": config.model, "batch_size": config.batch_size, "lr": config.lr, **budget}


def child_metrics(scores: dict, evaluation: dict) -> dict[str, float]:
    """``score.NAME`` for every objective, accuracy, loss, ``accuracy.class.C``, train seconds, rows."""
    out = {f"score.{name}": v for name, v in scores.items()}
    out.update(accuracy=evaluation["accuracy"], loss=evaluation["loss"], train_seconds=evaluation["train_seconds"],
               n_train=evaluation["n_train"])
    out.update(class_accuracy_metrics(evaluation["per_class_accuracy"]))  # the night's runs name them alike
    return out


def row_from_run(spec: SubsetSpec, run, objectives, n_classes: int) -> dict:
    """The results-table row of a FINISHED run, rebuilt from what it logged (NaN where nothing was logged)."""
    m = run.metrics
    scores = {name: m.get(f"score.{name}", math.nan) for name in objectives}
    evaluation = {"accuracy": m["accuracy"],
                  "per_class_accuracy": class_accuracies(m, n_classes),
                  "loss": m["loss"], "train_seconds": m["train_seconds"], "steps": int(run.params["steps"]),
                  "n_train": int(m["n_train"]), "model": run.params["model"], "device": run.params["device"],
                  "extra": {}}
    return result_row(spec, scores, evaluation)


def correlation_metrics(table: list[dict]) -> list[tuple[str, float, int]]:
    """``(name, value, step=k)``: ``spearman.OBJECTIVE.REGIME.kK`` (all subsets), ``….random``, ``….moderate``,
    and the same for ``kendall``: one metric per (objective, regime, k), so the run page shows every one (a name
    without k, logged at step k, showed only the last k)."""
    out = []
    for c in table:
        tail = "" if c["subsets"] == "all" else f".{c['subsets']}"
        for stat in ("spearman", "kendall"):
            out.append((f"{stat}.{c['objective']}.{c['regime']}.k{int(c['k'])}{tail}", c[stat], int(c["k"])))
    return out


# ------------------------------------------------------------------------------------------ where reports go
#: Beside a local store ``pool.zarr``, its studies' reports: ``pool.zarr.study/<study key>/`` (``report.md``,
#: ``results.json``, the figures) — the flow's default ``out_dir``.
STUDY_SUFFIX = ".study"


def study_folder(store: str) -> Path | None:
    """The folder of a local store's study reports (``<store>.study``, absolute); ``None`` for a remote store."""
    from storage.ref import StoreRef

    ref = StoreRef.of(store)
    if not ref.is_local:
        return None
    path = Path(ref.path).resolve()
    return path.with_name(path.name + STUDY_SUFFIX)


def latest_study(store: str) -> dict[str, Any] | None:
    """The newest study of ``store`` found in :func:`study_folder`, or ``None`` (no folder, no readable report).

    Newest by the time its ``results.json`` was written. Returns ``{"key", "results", "created", "ranking",
    "objectives"}``: the study's key (its folder's name), the path of its ``results.json``, when it was written
    (UTC, ISO 8601), :func:`worth.appraisal.rank_objectives` of its correlation table (recomputed, so a report
    written before the ranking was recorded is ranked alike), and its objectives' parameters (``{}`` each when
    the report predates their recording). A ``results.json`` that is not valid JSON or has no correlation table
    is passed over (a study killed while writing it), so an older complete study is used instead.
    """
    import datetime as _dt

    from worth.appraisal import rank_objectives

    folder = study_folder(store)
    if folder is None or not folder.is_dir():
        return None
    found = sorted(((p.stat().st_mtime, p) for p in folder.glob("*/results.json")), reverse=True)
    for mtime, path in found:
        try:
            data = json.loads(path.read_text())
            correlation = data["tables"]["correlation"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        ranking = rank_objectives(correlation)
        config = data.get("config") or {}
        params = config.get("objectives") or {r["objective"]: {} for r in ranking}
        created = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).isoformat(timespec="seconds")
        return {"key": path.parent.name, "results": str(path), "created": created, "ranking": ranking,
                "objectives": {name: dict(p or {}) for name, p in params.items()}}
    return None


# ------------------------------------------------------------------------------------------ the pool
@dataclass(frozen=True)
class Pool:
    """The rows a study selects from and the rows it evaluates on, read from one store.

    Attributes
    ----------
    positions, test_positions : ndarray of int64
        Store rows of the pool (labelled, not held out) and of the held-out set (labelled, held out).
    X, labels : ndarray
        Pool embeddings (float64: what is selected and scored, and trained on) and labels.
    X_test, y_test : ndarray
        Held-out embeddings and labels.
    n_classes : int
        Classes of the store (its class names, else the largest label + 1).
    """

    positions: np.ndarray
    labels: np.ndarray
    X: np.ndarray
    test_positions: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


def _open(url: str, storage_options: dict | None) -> EmbeddingStore:
    return EmbeddingStore.open(url, storage_options=storage_options or None)


def check_store(url: str, storage_options: dict | None = None) -> EmbeddingStore:
    """The store at ``url`` if a study can run on it: complete, and labelled. Else a ValueError saying why."""
    store = _open(url, storage_options)
    if not store.is_complete:
        raise ValueError(f"store {url!r} is incomplete ({store.rows_done():,} of {store.n:,} rows embedded); finish "
                         f"it with `worth embed SOURCE --store {url}` first.")
    labels = store.labels()
    if not (labels >= 0).any():
        raise ValueError(f"store {url!r} has no labels (every row is -1): the study measures accuracy, so it needs "
                         "a labelled pool; embed a source with labels (a class per sub-folder, or --source-param "
                         "label_column=...).")
    return store


def resolve_holdout(url: str, fraction: float, seed: int, storage_options: dict | None = None, *,
                    store: EmbeddingStore | None = None) -> tuple[Holdout, bool]:
    """The held-out split of the store — its own ``test`` rows, else the one recorded, else a new one — and
    whether it is new (the caller records it with :func:`storage.holdout.record` once every check passed).

    Runs in the flow's process (the one writer), before any worker. A new split is stratified over the labelled
    rows (:func:`worth.appraisal.holdout_split`); unlabelled rows are never held out.

    Raises
    ------
    ValueError
        ``fraction`` outside (0, 0.9], or different from the fraction (or seed) of the split already recorded.
    """
    fraction = check_holdout_fraction(fraction)
    store = store if store is not None else check_store(url, storage_options)
    own = split_mask(store)
    if own is not None:
        return Holdout(own, "split"), False
    recorded = read_recorded(url, storage_options=storage_options or None)
    if recorded is not None:
        if not (np.isclose(recorded.fraction, fraction) and recorded.seed == seed):
            raise ValueError(
                f"holdout_fraction={fraction} (seed {seed}) differs from the split recorded with store {url!r} "
                f"(fraction {recorded.fraction}, seed {recorded.seed}): pass --holdout-fraction "
                f"{recorded.fraction} (and holdout_seed: {recorded.seed}) so results stay comparable with earlier "
                f"studies, or delete {url}/holdout to draw a new split.")
        return recorded, False
    labels = store.labels()
    labelled = np.flatnonzero(labels >= 0)
    mask = np.zeros(store.n, dtype=bool)
    mask[labelled[holdout_split(labels[labelled], fraction, seed=seed)]] = True
    return Holdout(mask, "recorded", fraction, int(seed)), True


def pool_identity(url: str, holdout: dict, storage_options: dict | None = None, *,
                  store: EmbeddingStore | None = None) -> dict[str, Any]:
    """What the pool *is*, independent of where it lives: source fingerprint, encoder, rows, held-out split.

    Run keys hash this rather than the store's path, so the same pool embedded twice keys its runs alike.
    """
    store = store if store is not None else _open(url, storage_options)
    return {"source": store.source.get("fingerprint"), "encoder": store.encoder, "normalize": store.normalize,
            "n": store.n, "dim": store.dim, "holdout": {k: holdout[k] for k in ("kind", "fraction", "seed")}}


def _holdout_mask(store: EmbeddingStore, url: str, holdout: dict, storage_options) -> np.ndarray:
    if holdout["kind"] == "split":
        mask = split_mask(store)
    else:
        rec = read_recorded(url, storage_options=storage_options or None)
        if rec is not None and not (np.isclose(rec.fraction, holdout["fraction"]) and rec.seed == holdout["seed"]):
            rec = None
        mask = None if rec is None else rec.mask
    if mask is None or int(mask.sum()) != holdout["held_out"]:
        raise ValueError(f"store {url!r} no longer holds the held-out split this study was planned with "
                         f"({holdout}); rerun the study so it is planned again.")
    return mask


@lru_cache(maxsize=2)
def _cached_pool(url: str, options_json: str, holdout_json: str) -> Pool:
    storage_options = json.loads(options_json) or None
    holdout = json.loads(holdout_json)
    store = _open(url, storage_options)
    labels = store.labels()
    held = _holdout_mask(store, url, holdout, storage_options)
    X = store.to_numpy(dtype="float64")
    pos = np.flatnonzero((labels >= 0) & ~held)
    test = np.flatnonzero((labels >= 0) & held)
    n_classes = len(store.classes) if store.classes else int(labels.max()) + 1
    return Pool(pos, labels[pos], X[pos], test, X[test], labels[test], n_classes)


def load_pool(url: str, holdout: dict, storage_options: dict | None = None) -> Pool:
    """The study's pool and held-out rows from the store at ``url`` (read once per process, then cached)."""
    return _cached_pool(url, json.dumps(storage_options or {}, sort_keys=True), json.dumps(holdout, sort_keys=True))


_MAXIMISERS: dict[tuple, dict] = {}  # per pool: maximisers shared by the mixtures realised in this process


def _process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _realise(url: str, holdout: dict, spec: dict, storage_options: dict | None = None) -> dict[str, Any]:
    """Select the subset of ``spec``: its pool indices (pick order), store rows and item ids."""
    t0 = time.perf_counter()
    pool = load_pool(url, holdout, storage_options)
    cache = _MAXIMISERS.setdefault((url, json.dumps(holdout, sort_keys=True)), {})
    idx = realise(SubsetSpec.from_dict(spec), pool.X, pool.labels, cache)
    rows = pool.positions[idx]
    ids = _open(url, storage_options).ids(rows)
    return {"indices": idx.tolist(), "rows": rows.tolist(), "ids": ids.tolist(),
            "seconds": time.perf_counter() - t0, "process": _process()}


def _score(url: str, holdout: dict, subset: dict, objectives: dict,
           storage_options: dict | None = None) -> dict[str, float]:
    """Every objective's exact score of a realised subset (``subset`` is :func:`_realise`'s result)."""
    pool = load_pool(url, holdout, storage_options)
    return score_subsets(pool.X, [np.asarray(subset["indices"], dtype=np.int64)], objectives, pool.labels)[0]


def _train(url: str, holdout: dict, spec: dict, subset: dict, config: dict,
           storage_options: dict | None = None) -> dict[str, Any]:
    """Train the study's model on a realised subset under the spec's regime; evaluate on the held-out rows."""
    cfg = StudyConfig.from_dict(config)
    share = worker_threads()
    if share:
        set_torch_threads(share)
        if cfg.threads > share:  # never more torch threads than the worker has cores
            cfg = dataclasses.replace(cfg, threads=share)
    pool = load_pool(url, holdout, storage_options)
    out = train_subset(SubsetSpec.from_dict(spec), np.asarray(subset["indices"], dtype=np.int64), pool.X, pool.labels,
                       pool.X_test, pool.y_test, pool.n_classes, cfg)
    return {**out, "process": _process()}




# ------------------------------------------------------------------------------------------ subset jobs
@dataclass(frozen=True)
class SubsetJob:
    """One distinct subset of the study: realised once, scored once, trained once per spec in ``trains``."""

    store: str
    holdout: dict
    subset: dict
    trains: list[dict]
    objectives: dict
    config: dict
    storage_options: dict | None = None
    label: str = "subset"


def run_subset_job(job: SubsetJob) -> dict[str, Any]:
    """Realise, score and train the job's subset: ``{"subset", "scores", "trains": [Outcome per spec]}``.

    A spec whose training fails is an outcome of its own (its run is marked FAILED, the others are logged); a
    failed realisation or scoring fails every spec of the subset, as the unbatched tasks did.
    """
    subset = _realise(job.store, job.holdout, job.subset, job.storage_options)
    scores = _score(job.store, job.holdout, subset, job.objectives, job.storage_options)
    trains = []
    for spec in job.trains:
        try:
            trains.append(Outcome(_train(job.store, job.holdout, spec, subset, job.config, job.storage_options)))
        except Exception as exc:
            if is_transient(exc):
                raise
            trains.append(Outcome(error=exc))
    return {"subset": subset, "scores": scores, "trains": trains}
