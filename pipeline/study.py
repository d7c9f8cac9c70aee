"""The appraisal study's library: its options, the plan (every input check), subset jobs and MLflow records.

:func:`plan_pool` checks and decides everything about the pool before anything runs: a config with unknown keys
or an objective (or parameter) the registry refuses, a store that is missing, incomplete or unlabelled, a
held-out fraction outside (0, 0.9] or different from the split recorded with the store, a k the pool (or, in the
balanced regime, a class) cannot serve. The flow (:mod:`flows.study`) adds where it tracks.

The study's work runs as four kinds of jobs, composed so that nothing is computed twice and the workers stay
balanced, and streamed by the flow (each submitted as soon as its inputs are in: :class:`flows.study._Subsets`): :class:`PathJob` (every maximiser and minimiser path once, at its largest k — every k, regime share,
coreset selection and mixture is cut from it; facility location's states in one job share their first pass),
:class:`FillJob` (the mixtures completed by the greedy minimiser, from the stored maximisers), :class:`ScoreJob`
(every subset by every objective in batches: one eigendecomposition per subset for all spectral scores, facility
location by GEMMs against the union of the subsets' rows) and :class:`TrainJob` (each distinct subset trained
once per spec that uses it: ``fixed`` and ``budget`` share a subset). Prefixes, seeded draws and random
completions are cut in the flow's process (:func:`worth.appraisal.subset_from_paths`). What travels is small:
the store's URL, the held-out split's description, spec and path-key dicts, row positions and scores. Each
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
from worth.appraisal import (StudyConfig, SubsetSpec, holdout_split, load_config, make_specs, plan_paths, result_row,
                             score_subsets, train_subset)
from worth.appraisal.config import check_holdout_fraction
from worth.appraisal.design import check_design, complete_mixture, spec_rng
from worth.appraisal.paths import PathKey, fill_cost, path_key, path_units, realise_unit, unit_cost
from worth.data.encoders import set_torch_threads
from worth.appraisal.minimise import unit_rows_kept
from worth.facility.lists import share_first_pass
from worth.threads import run_threads
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
        "(mlflow.db in the folder holding the store, shared with its nights).")
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


# ------------------------------------------------------------------------------------------ keys
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
    labels: np.ndarray | None = None  # the pool's labels (random draws and completions are cut in the flow)
    positions: np.ndarray | None = None  # store rows of the pool, in pool order

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
                     make_specs(config, n_pool=int(pool_labels.size)), study_key(config, pool), labels=pool_labels,
                     positions=np.flatnonzero(labelled & ~holdout.mask))


# ------------------------------------------------------------------------------------------ records
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


def open_store(url: str, storage_options: dict | None = None) -> EmbeddingStore:
    """The store at ``url`` (the flow reads the item ids of its subsets' rows from it)."""
    return _open(url, storage_options)


def check_store(url: str, storage_options: dict | None = None) -> EmbeddingStore:
    """The store at ``url`` if a study can run on it: complete, and labelled. Else a ValueError saying why."""
    store = _open(url, storage_options)
    store.check_metadata()  # a damaged zarr.json named here, not by every subset's job
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


def _process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_threads():
    """Numba, BLAS and facility location's task pool on at most the Dask worker's share of the cores (two
    one-thread workers on two cores would otherwise oversubscribe them); no cap outside Dask."""
    return run_threads(worker_threads())


# ------------------------------------------------------------------------------------------ jobs
# The study runs four kinds of jobs, composed by the flow so that the work is shared and balanced, and streamed:
# greedy paths (every maximiser and minimiser once: worth.appraisal.paths), mixture completions by the
# minimiser (from the stored maximisers), scores (every subset by every objective, in batches), training (one
# job per distinct subset, once per spec). Every other subset is cut from the stored paths in the flow's
# process. What travels: the store's URL, the held-out split's description, spec and path-key dicts, row
# positions, scores and evaluations.

@dataclass(frozen=True)
class PathJob:
    """Greedy paths computed in one task: ``units`` of :func:`worth.appraisal.paths.path_units` (each one
    branching run: a maximiser or minimiser at every regime and k it is needed at)."""

    store: str
    holdout: dict
    units: list[dict]
    storage_options: dict | None = None
    label: str = "paths"


def run_path_job(job: PathJob) -> dict[str, Any]:
    """Every unit of the job (facility location's states share one first pass): ``{"paths": [[PathKey dict,
    picks], ...], "seconds": [per unit]}``."""
    pool = load_pool(job.store, job.holdout, job.storage_options)
    out, seconds = [], []
    with _worker_threads(), share_first_pass(), unit_rows_kept(pool.X):
        for unit in job.units:
            t0 = time.perf_counter()
            for key, picks in realise_unit(unit, pool.X, pool.labels).items():
                out.append([key.to_dict(), picks.tolist()])
            seconds.append(time.perf_counter() - t0)
    return {"paths": out, "seconds": seconds, "process": _process()}


@dataclass(frozen=True)
class FillJob:
    """Mixtures completed by the greedy minimiser: ``fills`` holds ``{"spec": spec dict, "best": the
    maximiser's first k picks}``."""

    store: str
    holdout: dict
    fills: list[dict]
    storage_options: dict | None = None
    label: str = "fills"


def run_fill_job(job: FillJob) -> dict[str, Any]:
    """Every mixture of the job: ``{"subsets": [rows], "seconds": [...]}`` (what :func:`subset_from_paths` gives)."""
    pool = load_pool(job.store, job.holdout, job.storage_options)
    out, seconds = [], []
    with _worker_threads(), share_first_pass(), unit_rows_kept(pool.X):
        for item in job.fills:
            t0 = time.perf_counter()
            spec = SubsetSpec.from_dict(item["spec"])
            best = np.asarray(item["best"], dtype=np.int64)
            out.append(complete_mixture(spec, best, pool.X, pool.labels, spec_rng(spec)).tolist())
            seconds.append(time.perf_counter() - t0)
    return {"subsets": out, "seconds": seconds, "process": _process()}


@dataclass(frozen=True)
class ScoreJob:
    """Subsets scored in one batch by some of the study's objectives (:func:`worth.appraisal.score_subsets`)."""

    store: str
    holdout: dict
    subsets: list[list[int]]
    objectives: dict
    storage_options: dict | None = None
    label: str = "scores"
    positions: list[int] = field(default_factory=list)  # which of the flow's subsets these are (bookkeeping)


def run_score_job(job: ScoreJob) -> dict[str, Any]:
    """``{"scores": [{objective: score}]}``, one dict per subset, in the job's order."""
    pool = load_pool(job.store, job.holdout, job.storage_options)
    t0 = time.perf_counter()
    with _worker_threads():
        scores = score_subsets(pool.X, [np.asarray(s, dtype=np.int64) for s in job.subsets], job.objectives,
                               pool.labels)
    return {"scores": scores, "seconds": time.perf_counter() - t0, "process": _process()}


@dataclass(frozen=True)
class TrainJob:
    """One distinct subset trained once per spec in ``trains`` (``fixed`` and ``budget`` share a subset)."""

    store: str
    holdout: dict
    indices: list[int]
    trains: list[dict]
    config: dict
    storage_options: dict | None = None
    label: str = "train"


def _train(url: str, holdout: dict, spec: dict, indices, config: dict,
           storage_options: dict | None = None) -> dict[str, Any]:
    """Train the study's model on a realised subset under the spec's regime; evaluate on the held-out rows."""
    cfg = StudyConfig.from_dict(config)
    share = worker_threads()
    if share:
        set_torch_threads(share)
        if cfg.threads > share:  # never more torch threads than the worker has cores
            cfg = dataclasses.replace(cfg, threads=share)
    pool = load_pool(url, holdout, storage_options)
    out = train_subset(SubsetSpec.from_dict(spec), np.asarray(indices, dtype=np.int64), pool.X, pool.labels,
                       pool.X_test, pool.y_test, pool.n_classes, cfg)
    return {**out, "process": _process()}


def run_train_job(job: TrainJob) -> dict[str, Any]:
    """``{"trains": [Outcome per spec]}``: a spec whose training fails is an outcome of its own (its run is
    marked FAILED, the others are logged); a transient I/O error fails the job, to be retried."""
    trains = []
    for spec in job.trains:
        try:
            trains.append(Outcome(_train(job.store, job.holdout, spec, job.indices, job.config, job.storage_options)))
        except Exception as exc:
            if is_transient(exc):
                raise
            trains.append(Outcome(error=exc))
    return {"trains": trains}


# ------------------------------------------------------------------------------------------ composing the jobs
BINS_PER_SLOT = 4  # jobs per worker slot in the path and fill maps: enough to balance, few enough to share


def _bins(costs: list[float], n_bins: int) -> list[list[int]]:
    """Items (by index) packed into at most ``n_bins`` bins of near-equal total cost (longest first onto the
    lightest bin), heaviest bin first: the scheduler then starts the longest work first."""
    order = sorted(range(len(costs)), key=lambda i: -costs[i])
    bins: list[list[int]] = [[] for _ in range(max(1, min(n_bins, len(costs))))]
    load = [0.0] * len(bins)
    for i in order:
        b = min(range(len(bins)), key=load.__getitem__)
        bins[b].append(i)
        load[b] += costs[i]
    ranked = sorted(range(len(bins)), key=lambda b: -load[b])
    return [bins[b] for b in ranked if bins[b]]


def _group(items: list, costs: list[float], together, n_bins: int) -> list[list]:
    """Bins of ``items``, those for which ``together(item)`` is true kept in one bin (their states share a
    first pass), the others balanced around it."""
    kept = [i for i, it in enumerate(items) if together(it)]
    free = [i for i, it in enumerate(items) if not together(it)]
    units = ([kept] if kept else []) + [[i] for i in free]
    unit_costs = [sum(costs[i] for i in u) for u in units]
    return [[items[i] for u in b for i in units[u]] for b in _bins(unit_costs, n_bins)]


def dense_facility(objective: str, params: dict) -> bool:
    return objective == "facility-location" and params.get("neighbors") is None


def plan_path_jobs(plan: StudyPlan, specs: list[SubsetSpec], slots: int,
                   have: dict | None = None) -> list[PathJob]:
    """The path jobs of ``specs``: every greedy path they are cut from, once, as branching runs
    (:func:`worth.appraisal.paths.path_units`) packed into balanced jobs (dense facility location's
    minimisers in one job, sharing a first pass); the paths in ``have`` (from the checkpoint, long enough:
    :func:`covers`) are not computed again."""
    units = path_units({key: length for key, length in plan_paths(specs).items() if not covers(have, key, length)})
    n, m = plan.n_pool, int(plan.pool["dim"])
    costs = [unit_cost(u, n, m) for u in units]
    opts = plan.options
    jobs = []
    for kind in ("max", "min"):
        mine = [i for i, u in enumerate(units) if u["kind"] == kind]
        for b in _group([units[i] for i in mine], [costs[i] for i in mine],
                        lambda u: dense_facility(u["objective"], json.loads(u["params"])),
                        BINS_PER_SLOT * max(1, slots)):
            jobs.append(PathJob(opts.store, plan.holdout_desc, b, opts.storage_options or None,
                                label=f"{kind}-{len(b)}"))
    # the heaviest first: the scheduler starts the longest work first
    return sorted(jobs, key=lambda j: -sum(unit_cost(u, n, m) for u in j.units))


# ------------------------------------------------------------------------------------------ checkpoint
# Paths, completions and scores are pure functions of the pool (its rows and held-out split), so they are kept
# per pool, not per study: a study rerun with other training settings, a killed study or one whose runs
# failed finds them (storage.checkpoint). Keys name the work: a path's key, a completion's subset key, a
# subset's sorted rows and the objective.

WORK_FOLDER = "work"


def work_folder(plan: StudyPlan) -> Path:
    """Where the pool's finished paths, completions and scores are kept: ``<store>.study/work/<pool digest>``
    for a local store, ``<report folder>/work`` otherwise."""
    base = study_folder(plan.options.store)
    if base is None:
        return Path(plan.out_dir) / WORK_FOLDER
    return base / WORK_FOLDER / _digest(plan.pool)


def path_entry(key: PathKey) -> str:
    """A path's checkpoint key."""
    return json.dumps(key.to_dict(), sort_keys=True)


def cached_paths(entries: dict[str, Any]) -> dict[PathKey, np.ndarray]:
    """The checkpoint's paths by key."""
    return {PathKey.from_dict(json.loads(k)): np.asarray(v, dtype=np.int64) for k, v in entries.items()}


def covers(have: dict | None, key: PathKey, length: int) -> bool:
    """Whether a stored path serves a need of ``length`` picks: a balanced path is made for its own k; an
    unconstrained one serves every shorter k as its prefix (the prefix property of greedy runs)."""
    got = None if have is None else have.get(key)
    return got is not None and (key.balanced_k is not None or len(got) >= length)


def score_entry(indices, objective: str, params: dict) -> str:
    """A score's checkpoint key: the objective, its parameters and the subset's pool positions *in order* (the
    value of a set does not depend on the order of its rows, but its last bits do: a kept score is the very
    number a fresh scoring of those rows gives)."""
    rows = np.asarray(indices, dtype=np.int64)
    return _digest({"objective": objective, "params": params, "rows": hashlib.sha256(rows.tobytes()).hexdigest()})


def needs_fill(spec: SubsetSpec) -> bool:
    """A mixture completed by the greedy minimiser (the one kind of subset a stored path does not give)."""
    return spec.kind == "mix" and spec.filler == "min"


def plan_fill_jobs(plan: StudyPlan, specs: list[SubsetSpec], paths: dict, slots: int) -> list[FillJob]:
    """The fill jobs of the distinct minimiser-completed mixtures among ``specs`` whose maximiser is stored."""
    seen, items, costs = set(), [], []
    n, m = plan.n_pool, int(plan.pool["dim"])
    for spec in specs:
        key = path_key(spec) if needs_fill(spec) else None
        if key is None or key not in paths or spec.subset_key in seen:
            continue
        seen.add(spec.subset_key)
        items.append({"spec": spec.to_dict(), "best": np.asarray(paths[key][:spec.k]).tolist()})
        costs.append(fill_cost(spec, n, m))
    opts = plan.options
    return [FillJob(opts.store, plan.holdout_desc, b, opts.storage_options or None, label=f"fills-{len(b)}")
            for b in _group(items, costs, lambda it: dense_facility(it["spec"]["objective"], it["spec"]["params"]),
                            BINS_PER_SLOT * max(1, slots))]


def plan_score_jobs(plan: StudyPlan, subsets: list[np.ndarray], objectives: dict, slots: int) -> list[ScoreJob]:
    """Score jobs covering every (subset, objective): dense facility location over all subsets in one job (its
    GEMMs against the union of their rows, as :func:`worth.appraisal.run_study` makes them), the other
    objectives (one eigendecomposition per subset for all spectral ones) over chunks of the subsets."""
    opts = plan.options
    so = opts.storage_options or None
    dense = {k: v for k, v in objectives.items() if dense_facility(k, v)}
    rest = {k: v for k, v in objectives.items() if k not in dense}
    rows = [np.asarray(s, dtype=np.int64).tolist() for s in subsets]
    jobs = []
    if dense and rows:
        jobs.append(ScoreJob(opts.store, plan.holdout_desc, rows, dense, so, label=f"scores-facility-{len(rows)}",
                             positions=list(range(len(rows)))))
    if rest and rows:
        chunks = max(1, min(len(rows), 2 * max(1, slots)))
        for c in range(chunks):
            where = list(range(c, len(rows), chunks))
            jobs.append(ScoreJob(opts.store, plan.holdout_desc, [rows[i] for i in where], rest, so,
                                 label=f"scores-{c}-{len(where)}", positions=where))
    return jobs


def study_run_name(options: StudyOptions) -> str:
    """The flow run's name: ``study-STORE-CONFIG`` (the config file's stem, ``quick``, or ``config``)."""
    from pipeline.embed import store_name

    which = "quick" if options.quick else (Path(options.config).stem if options.config else "config")
    return f"study-{store_name(options.store)}-{which}"
