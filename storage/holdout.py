"""The held-out rows a study evaluates on, recorded once with the store so every later study uses the same ones.

A pool with a held-out split of its own (Fashion-MNIST's ``test`` rows in the store's ``split`` array) needs
nothing recorded: :func:`split_mask` reads it. A pool without one (digits, a text file) gets a seeded,
stratified split made once by the caller (the rule lives in :func:`worth.appraisal.holdout_split`; this module
does not import ``worth``) and written here as the store's ``holdout`` array — one bool per row, ``True`` for a
held-out row — with its ``fraction``, ``seed`` and row count as the array's attributes. Later studies and nights
read it back instead of drawing again, so their accuracies are measured on the same rows and stay comparable.

Rows appended to the store after the split was recorded are not held out (they join the pool): the rows that
were held out stay exactly the same.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from storage.ref import StoreRef
from storage.store import EmbeddingStore, zarr_store

ARRAY = "holdout"
#: Split names that mean "held out" when a store carries them (Fashion-MNIST's test images are ``test``).
HELD_OUT_SPLITS = ("test",)


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


def split_mask(store: EmbeddingStore) -> np.ndarray | None:
    """Rows of a held-out split of the store's own (``split`` in :data:`HELD_OUT_SPLITS`), or ``None``."""
    held = np.isin(store.split(), HELD_OUT_SPLITS)
    return held if held.any() else None


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
