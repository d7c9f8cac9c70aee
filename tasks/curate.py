"""Prefect tasks of the nightly curation: thin wrappers over ``worth.select``, ``worth.train`` and the store.

``select_additions`` and ``train_evaluate`` read their rows from the store by position, so they run anywhere
the store is readable (a Dask worker, say) and ship back only small results. ``contact_sheet`` runs where the
flow runs (it reads the source's images and writes one PNG). Retries and caching follow :mod:`tasks._task`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from storage.holdout import nightly_mask
from storage.store import EmbeddingStore
from tasks._task import worth_task

#: The night's held-out rule lives with the study's in :mod:`storage.holdout`.
held_out_mask = nightly_mask


def _select_additions(store_url: str, curated: Sequence[int], candidates: Sequence[int], k: int, objective: str,
                      objective_params: Mapping[str, Any], storage_options: Mapping[str, Any] | None = None
                      ) -> dict[str, Any]:
    """Pick ``k`` of the ``candidates`` rows that add most to the ``curated`` rows under ``objective``.

    Conditioned selection (``worth.select(..., init=)``): the gains are ``f(S ∪ A) − f(A)`` with ``A`` the set
    curated so far, so tonight's picks complement what is kept instead of repeating it. Returns the chosen store
    positions in pick order, their gains, and ``f(A)`` and ``f(S ∪ A)``.
    """
    import worth

    curated = np.asarray(curated, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    store = EmbeddingStore.open(store_url, storage_options=storage_options)
    rows = store.rows(np.concatenate([curated, candidates]))
    init = np.arange(len(curated)) if len(curated) else None
    sel = worth.select(rows, k, objective, init=init, **dict(objective_params))
    picked = np.concatenate([curated, candidates])[np.asarray(sel.indices, dtype=np.int64)]
    before = float(sel.info.get("init_value") or 0.0) if init is not None else 0.0
    return {"positions": picked.tolist(), "gains": np.asarray(sel.gains, dtype=float).tolist(),
            "value_before": before, "value": before + sel.value, "method": sel.method,
            "seconds": float(sel.timings.get("total", 0.0))}


def _train_evaluate(store_url: str, train: Sequence[int], test: Sequence[int], n_classes: int,
                    training: Mapping[str, Any], storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Held-out accuracy of the model trained on the curated rows under ``training`` (the fields of the one
    :class:`worth.train.TrainConfig` the study uses too: seeded, one torch thread by default, reproducible)."""
    from worth.train import TrainConfig

    store = EmbeddingStore.open(store_url, storage_options=storage_options)
    labels = store.labels()
    train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
    ev = TrainConfig(**dict(training)).fit(store.rows(train), labels[train], store.rows(test), labels[test],
                                           n_classes)
    return ev.to_dict()


def _contact_sheet(images: Any, captions: Sequence[str], new: Sequence[bool], path: str, title: str) -> str:
    """A grid of the curated images, captioned by class; tonight's additions framed in red. Returns ``path``.

    matplotlib with the Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(captions)
    cols = min(20, max(1, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.95 + 0.5), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        img = np.asarray(images[i])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        ax.set_title(captions[i], fontsize=6, pad=1, color="red" if new[i] else "black")
        for spine in ax.spines.values():
            spine.set_color("red" if new[i] else "0.8")
            spine.set_linewidth(2 if new[i] else 0.5)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


select_additions = worth_task(_select_additions, name="select-additions")
train_evaluate = worth_task(_train_evaluate, name="train-evaluate")
contact_sheet = worth_task(_contact_sheet, name="contact-sheet", cache=False)  # the flow's process: images stay
