"""Prefect tasks of the appraisal study: realise a subset, score it with every objective, train and evaluate it.

Thin wrappers over :mod:`worth.appraisal` (``realise``, ``score_subsets``, ``train_subset``). What travels through
the scheduler is small: the store's URL, the held-out split's description, a subset spec and the subset's
row positions. Each worker reads the pool itself from the Zarr store (:func:`load_pool`, once per process and
then cached), so no array is ever shipped through Dask; each task returns a small picklable dict.

The held-out split is decided once, in the flow's process, before any worker starts (:func:`resolve_holdout`):
the store's own ``test`` split when it has one, else a seeded stratified split recorded with the store
(:mod:`storage.holdout`). A worker finds the same rows from the description it is given and refuses a store
whose recorded split no longer matches it.

Torch runs on at most the worker's share of threads (a Dask worker with one thread per core must not start a
thread per core); the device is the study's ``device`` resolved on the worker, so ``auto`` trains on CUDA
wherever the cluster has a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from storage.holdout import Holdout, read_recorded, split_mask
from storage.store import EmbeddingStore
from tasks._task import worker_threads, worth_task
from worth.appraisal import StudyConfig, SubsetSpec, holdout_split, realise, score_subsets, train_subset
from worth.appraisal.config import check_holdout_fraction
from worth.data.encoders import set_torch_threads


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


def resolve_holdout(url: str, fraction: float, seed: int,
                    storage_options: dict | None = None) -> tuple[Holdout, bool]:
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
    store = check_store(url, storage_options)
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


def pool_identity(url: str, holdout: dict, storage_options: dict | None = None) -> dict[str, Any]:
    """What the pool *is*, independent of where it lives: source fingerprint, encoder, rows, held-out split.

    Run keys hash this rather than the store's path, so the same pool embedded twice keys its runs alike.
    """
    store = _open(url, storage_options)
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


realise_subset = worth_task(_realise, name="realise-subset", task_run_name="realise-{spec[kind]}-k{spec[k]}")
score_subset_task = worth_task(_score, name="score-subset")
train_subset_task = worth_task(_train, name="train-subset", task_run_name="train-{spec[regime]}-k{spec[k]}")
