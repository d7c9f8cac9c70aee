"""Which rows of a pool are held out for evaluation: the one home of both rules and of their option name.

Every consumer first asks the store: a pool with a held-out split of its own (Fashion-MNIST's ``test`` rows in the
store's ``split`` array; any name in :data:`HELD_OUT_SPLITS`) holds those rows out, and nothing is recorded
(:func:`split_mask`). A pool without one gets one of two rules, named here so neither is re-invented elsewhere:

* **the study's recorded stratified split** (:func:`read_recorded`, :func:`record`): drawn once, seeded and
  stratified by class, and written with the store, so every later study evaluates on the same rows;
* **the night's id hash** (:func:`id_hash_mask`, :func:`nightly_mask`): a stable share of items chosen by a hash of
  each id, so an item keeps its role on every night whatever else arrives, and nothing needs recording. The
  held-out set still grows as items arrive, so each record names the rows it was measured on
  (:func:`describe_test_set`: their count and the digest of their sorted ids), and numbers are compared only on
  the same rows.

Both take their share as :data:`OPTION` (``holdout_fraction``); the night's option was once ``test_fraction``,
which options refuse with a pointer to the new name (:func:`refuse_old_name`).

The recorded split in detail: A pool without one (digits, a text file) gets a seeded,
stratified split made once by the caller (the rule lives in :func:`worth.appraisal.holdout_split`; this module
does not import ``worth``) and written here as the store's ``holdout`` array — one bool per row, ``True`` for a
held-out row — with its ``fraction``, ``seed`` and row count as the array's attributes. Later studies and nights
read it back instead of drawing again, so their accuracies are measured on the same rows and stay comparable.

Rows appended to the store after the split was recorded are not held out (they join the pool): the rows that
were held out stay exactly the same.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from storage.ref import StoreRef
from storage.store import EmbeddingStore, zarr_store

ARRAY = "holdout"
#: Split names that mean "held out" when a store carries them (Fashion-MNIST's test images are ``test``), for the
#: study and the night alike.
HELD_OUT_SPLITS = ("test", "validation", "val", "held-out")
#: The one name of the held-out share, in the study's config and options and in the night's options.
OPTION = "holdout_fraction"
#: Names it had before, refused with a pointer to :data:`OPTION`.
OLD_NAMES = ("test_fraction",)


@dataclass(frozen=True)
class Holdout:
    """Which rows of a store are held out, and where that came from.

    Attributes
    ----------
    mask : numpy.ndarray of bool
        One entry per store row; ``True`` = held out.
    kind : {"split", "recorded"}
        ``split``: the store's own ``split`` names it; ``recorded``: a seeded split written with the store.
    fraction, seed : float, int or None
        The recorded split's parameters (``None`` for ``split``).
    """

    mask: np.ndarray
    kind: str
    fraction: float | None = None
    seed: int | None = None

    def describe(self) -> dict[str, Any]:
        """Small and JSON-ready: what a worker needs to find the same rows again, and what a run records."""
        return {"kind": self.kind, "fraction": self.fraction, "seed": self.seed, "held_out": int(self.mask.sum())}


def named_split(split) -> np.ndarray | None:
    """Rows whose ``split`` names a held-out split (:data:`HELD_OUT_SPLITS`), or ``None`` when there are none."""
    held = np.isin(np.asarray(split, dtype=str), HELD_OUT_SPLITS)
    return held if held.any() else None


def split_mask(store: EmbeddingStore) -> np.ndarray | None:
    """Rows of a held-out split of the store's own (``split`` in :data:`HELD_OUT_SPLITS`), or ``None``."""
    return named_split(store.split())


def id_hash_mask(ids, fraction: float) -> np.ndarray:
    """The night's rule: the share ``fraction`` of items whose id hashes low (SHA-256, first 4 bytes).

    Chosen by a hash of each item's id, not by its position or a seeded draw, so an item keeps its role on every
    night whatever else arrived: a row once held out is never curated, and a curated row never becomes a test row.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"{OPTION}={fraction}: the store has no test split, so give a share in (0, 1), e.g. 0.2")
    cut = int(fraction * 2**32)
    return np.fromiter((int.from_bytes(hashlib.sha256(str(i).encode()).digest()[:4], "big") < cut for i in ids),
                       dtype=bool, count=len(ids))


def nightly_mask(ids, split, fraction: float) -> np.ndarray:
    """What a night holds out: the store's own held-out split when it has one, else :func:`id_hash_mask`."""
    named = named_split(split)
    return named if named is not None else id_hash_mask(ids, fraction)


def nightly_rule(split, fraction: float) -> str:
    """In words, which rule :func:`nightly_mask` applies to a store with this ``split``: what a record says."""
    if named_split(split) is not None:
        return f"the store's own held-out split ({', '.join(HELD_OUT_SPLITS)})"
    return f"id hash, {OPTION}={fraction:g}"


def ids_digest(ids) -> str:
    """The identity of a set of items: ``sha256:`` of their ids, sorted, one per line (UTF-8).

    Order-free and independent of the store's row order, so two nights (or two stores) that hold out the same
    items have the same digest, and a digest that differs says the test set is not the same one.
    """
    text = "\n".join(sorted(str(i) for i in np.asarray(ids).tolist()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def describe_test_set(ids, rule: str = "") -> dict[str, Any]:
    """What a record says of the held-out rows it was evaluated on: ``{"n", "digest", "rule"}`` (JSON-ready).

    ``n`` and ``digest`` (:func:`ids_digest`) identify the set, so two numbers are known to be measured on the
    same rows exactly when their digests are equal; ``rule`` says how the rows were chosen (:func:`nightly_rule`).
    """
    return {"n": int(len(ids)), "digest": ids_digest(ids), "rule": rule}


def refuse_old_name(values):
    """For an options model's ``mode="before"`` validator: refuse an old name of :data:`OPTION`, naming the new one."""
    if isinstance(values, Mapping):
        for old in OLD_NAMES:
            if old in values:
                raise ValueError(f"{old}={values[old]!r} is now called {OPTION}: pass {OPTION}={values[old]!r}")
    return values


def _group(ref: StoreRef, mode: str) -> zarr.Group:
    return zarr.open_group(zarr_store(ref, read_only=mode == "r"), mode=mode)


def read_recorded(url: StoreRef | str, *, storage_options: Mapping[str, Any] | None = None) -> Holdout | None:
    """The split recorded with the store at ``url``, extended with ``False`` for rows appended since; or ``None``."""
    ref = StoreRef.of(url, storage_options)
    store = EmbeddingStore.open(ref)
    group = _group(ref, "r")
    if ARRAY not in group:
        return None
    arr = group[ARRAY]
    attrs = dict(arr.attrs)
    mask = np.zeros(store.n, dtype=bool)
    recorded = np.asarray(arr[:], dtype=bool)[: store.n]
    mask[: recorded.size] = recorded
    return Holdout(mask, "recorded", float(attrs["fraction"]), int(attrs["seed"]))


def record(url: StoreRef | str, mask, *, fraction: float, seed: int,
           storage_options: Mapping[str, Any] | None = None) -> Holdout:
    """Write ``mask`` as the store's held-out split, once.

    Raises
    ------
    ValueError
        When the store already has a recorded split (it is never replaced: delete the store's ``holdout``
        array to draw a new one, knowing earlier studies' accuracies then stop being comparable), or when
        ``mask`` does not hold one bool per row.
    """
    ref = StoreRef.of(url, storage_options)
    url = ref.url
    store = EmbeddingStore.open(ref)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (store.n,):
        raise ValueError(f"the held-out mask must hold one bool per store row ({store.n}); got shape {mask.shape}.")
    group = _group(ref, "r+")
    if ARRAY in group:
        raise ValueError(f"store {url!r} already has a recorded held-out split; read it with read_recorded() "
                         f"(or delete {url}/{ARRAY} to draw a new one).")
    arr = group.create_array(ARRAY, shape=mask.shape, chunks=(max(1, store.chunk_rows),), dtype="bool",
                             fill_value=False)
    arr[:] = mask
    arr.attrs.update({"fraction": float(fraction), "seed": int(seed), "n": int(store.n),
                      "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    return Holdout(mask, "recorded", float(fraction), int(seed))
