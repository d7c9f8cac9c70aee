"""The nightly curation's library: its options, the night's key, the held-out rule and the night's jobs — the
additions selected conditioned on the curated set, the downstream model trained and evaluated, the contact
sheet. No Prefect.

``select_additions`` and ``train_evaluate`` read their rows from the store by position, so they run anywhere the
store is readable (a Dask worker, say) and ship back only small results; ``contact_sheet`` runs where the flow
runs (it reads the source's images and writes one PNG).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.embed import EmbedOptions
from storage.holdout import nightly_mask, refuse_old_name
from storage.store import EmbeddingStore
from worth.train import TrainConfig

#: The MLflow experiment of the nightly runs.
NIGHTLY_EXPERIMENT = "worth-nightly"


class CurateOptions(BaseModel):
    """Options of one night's curation (they become the Prefect UI's run form)."""

    model_config = ConfigDict(extra="forbid")

    pool: EmbedOptions = Field(description="The pool and how its new items are embedded each night: the embed "
                               "flow's options (source, store, encoder, limit, chunk_rows, storage_options ...). "
                               "Given flat (source=..., store=...) they are gathered here.")
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
    def _old_names_and_flat_pool(cls, values):
        values = refuse_old_name(values)  # test_fraction → holdout_fraction, with the fix in the message
        if isinstance(values, dict):  # the embed options given flat, as the CLI and prefect.yaml give them
            flat = {k: values[k] for k in EmbedOptions.model_fields if k in values and k not in cls.model_fields}
            if flat:
                pool = values.get("pool") or {}
                pool = pool.model_dump() if isinstance(pool, BaseModel) else dict(pool)
                values = {**{k: v for k, v in values.items() if k not in flat}, "pool": {**pool, **flat}}
        return values


def night_key(options: CurateOptions, previous_version: int, store_rows: int) -> str:
    """What makes a night the same night: the options, the version it starts from and the store's row count."""
    opts = options.model_dump(exclude={"tracking_uri", "sheet_max"})
    text = json.dumps({"options": opts, "previous": previous_version, "rows": store_rows}, sort_keys=True,
                      default=str)
    return "night-" + hashlib.sha256(text.encode()).hexdigest()[:24]


#: The night's held-out rule lives with the study's in :mod:`storage.holdout`.
held_out_mask = nightly_mask


def select_additions(store_url: str, curated: Sequence[int], candidates: Sequence[int], k: int, objective: str,
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


def train_evaluate(store_url: str, train: Sequence[int], test: Sequence[int], n_classes: int,
                   training: Mapping[str, Any], storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Held-out accuracy of the model trained on the curated rows under ``training`` (the fields of the one
    :class:`worth.train.TrainConfig` the study uses too: seeded, one torch thread by default, reproducible)."""
    store = EmbeddingStore.open(store_url, storage_options=storage_options)
    labels = store.labels()
    train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
    ev = TrainConfig(**dict(training)).fit(store.rows(train), labels[train], store.rows(test), labels[test],
                                           n_classes)
    return ev.to_dict()


def contact_sheet(images: Any, captions: Sequence[str], new: Sequence[bool], path: str, title: str) -> str:
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


