"""The nightly curation's library: its options, the night's objective (``auto``: the study's best predictor),
the night's key, the held-out rule and the night's jobs — the additions selected conditioned on the curated set,
the downstream model trained and evaluated, the contact sheet. No Prefect.

``select_additions`` and ``train_evaluate`` read their rows from the store by position, so they run anywhere the
store is readable (a Dask worker, say) and ship back only small results; ``contact_sheet`` runs where the flow
runs (it reads the source's images and writes one PNG).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.embed import EmbedOptions
from storage.holdout import nightly_mask, refuse_old_name
from storage.store import EmbeddingStore
from worth.train import TrainConfig

#: The MLflow experiment of the nightly runs.
NIGHTLY_EXPERIMENT = "worth-nightly"
#: The default objective: the one the latest study of the pool ranked best (:func:`choose_objective`).
AUTO = "auto"
#: What ``auto`` falls back to without a usable study of the pool: facility location, the best predictor of
#: held-out accuracy in the reference study (``worth objectives``; docs/objectives.md).
FALLBACK_OBJECTIVE = "facility-location"


class CurateOptions(BaseModel):
    """Options of one night's curation (they become the Prefect UI's run form)."""

    model_config = ConfigDict(extra="forbid")

    pool: EmbedOptions = Field(description="The pool and how its new items are embedded each night: the embed "
                               "flow's options (source, store, encoder, limit, chunk_rows, storage_options ...). "
                               "Given flat (source=..., store=...) they are gathered here.")
    curated: str | None = Field(None, description="Local folder of the curated versions; default "
                                "STORE.curated beside the store (required when the store is remote).")
    objective: str = Field(AUTO, description="Objective the additions maximise, conditioned on the curated set: "
                           "'auto' (default) = the best predictor of held-out accuracy in the latest study of this "
                           "pool (`worth study`, reports in STORE.study) that can tell items apart (not the scaling "
                           "law, a function of size), else facility-location (the reference "
                           "study's best); or a name of worth.objectives(): vendi, logdet, facility-location, ...")
    objective_params: dict[str, Any] = Field(default_factory=dict, description="Objective parameters, e.g. "
                                             "{'q': 1} for vendi (with auto: the study's, so none here).")
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


    @model_validator(mode="after")
    def _auto_takes_no_params(self):
        if self.objective == AUTO and self.objective_params:
            raise ValueError(f"objective_params={self.objective_params!r} with objective='auto': auto takes the "
                             "study's parameters of the objective it picks; name the objective to give parameters "
                             "(e.g. objective='vendi'), or drop objective_params")
        return self


@dataclass(frozen=True)
class ObjectiveChoice:
    """Which objective a night maximises, and why (what its summary and record say).

    Attributes
    ----------
    name, params : str, dict
        The objective and its parameters, as :func:`worth.select` takes them.
    requested : str
        What the options asked for: ``auto`` or the objective's name.
    why : str
        One sentence for people: ``"auto: facility-location, the best predictor ... in study 1a2b… (...)"``.
    study : dict or None
        The study ``auto`` followed (its key, results file, date and the objective's mean Spearman ρ), if any.
    """

    name: str
    params: dict[str, Any]
    requested: str
    why: str
    study: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data (the record's ``objective_choice``)."""
        return asdict(self)


def _usable(name: str, params: Mapping[str, Any]) -> str | None:
    """Why ``name`` with ``params`` cannot choose a night's additions, or None when it can: the registry refuses
    them, or the objective is a function of the subset's size and class counts alone (the scaling law,
    ``content_aware`` False): every candidate gains the same, so it cannot tell items apart — a study ranks it
    high because accuracy grows with size, which says nothing about which items to add."""
    import worth

    try:
        objective = worth.get_objective(name, **dict(params))
    except (ValueError, TypeError, KeyError) as exc:
        return str(exc)
    if not objective.content_aware:
        return "a function of the subset's size and class counts alone: it cannot tell items apart"
    return None


def choose_objective(options: CurateOptions) -> ObjectiveChoice:
    """The night's objective: the one named, or for ``auto`` the latest study of the pool's best predictor.

    ``auto`` reads the newest study report beside the store (:func:`pipeline.study.latest_study`:
    ``STORE.study/<key>/results.json``, the flow's default output) and takes the first objective of its ranking
    (:func:`worth.appraisal.rank_objectives`: mean Spearman ρ of score with held-out accuracy) that predicts
    positively (ρ > 0), the registry accepts and that can tell items apart (:func:`_usable`: not the scaling law,
    whose high rank reflects subset size), with the parameters the study gave it. With no study (none
    written yet, a remote store, a study written elsewhere with ``out_dir``) or none usable, it falls back to
    :data:`FALLBACK_OBJECTIVE`. The choice says which, and why.

    Raises
    ------
    ValueError
        A named objective (or its parameters) the registry refuses: the registry's message names the fix.
    """
    if options.objective != AUTO:
        import worth

        worth.get_objective(options.objective, **options.objective_params)  # its message names the fix
        return ObjectiveChoice(options.objective, dict(options.objective_params), options.objective,
                               f"{options.objective}: as given (objective={options.objective!r})")
    from pipeline.study import latest_study, study_folder

    fallback = f"{FALLBACK_OBJECTIVE}, the reference study's best predictor of held-out accuracy"
    store = options.pool.store
    study = latest_study(store)
    if study is None:
        folder = study_folder(store)
        where = (f"no report in {folder}" if folder is not None else "a remote store keeps none beside it")
        return ObjectiveChoice(FALLBACK_OBJECTIVE, {}, AUTO, f"auto: no study of this pool ({where}); {fallback}")
    skipped = []
    for entry in study["ranking"]:
        name, rho = entry["objective"], entry["spearman"]
        if rho <= 0:
            break  # the ranking is sorted: nothing below predicts positively either
        params = study["objectives"].get(name, {})
        refused = _usable(name, params)
        if refused is not None:
            skipped.append(f"{name} ({refused})")
            continue
        told = {"key": study["key"], "results": study["results"], "created": study["created"],
                "spearman": rho, "groups": entry["groups"], "rank": entry["rank"]}
        note = f"; passed over: {', '.join(skipped)}" if skipped else ""
        return ObjectiveChoice(
            name, dict(params), AUTO,
            f"auto: {name}, the best predictor of held-out accuracy in study {study['key'][:12]} of "
            f"{study['created']} (mean Spearman rho {rho:.2f} over {entry['groups']} regime x k groups; "
            f"{study['results']}){note}", told)
    what = (f"ranked no usable objective with a positive correlation ({', '.join(skipped)})" if skipped else
            "ranked no objective with a positive correlation")
    return ObjectiveChoice(FALLBACK_OBJECTIVE, {}, AUTO,
                           f"auto: study {study['key'][:12]} of {study['created']} {what}; {fallback}",
                           {"key": study["key"], "results": study["results"], "created": study["created"]})


def why_no_value_delta(previous: Mapping[str, Any] | None, choice: ObjectiveChoice) -> str | None:
    """Why last night's objective value cannot be compared with tonight's (another objective or other
    parameters), or None when it can (also None on a first night, with nothing to compare)."""
    if previous is None:
        return None
    before = (previous.get("objective"), previous.get("objective_params") or {})
    if before == (choice.name, choice.params):
        return None
    def say(name, params):
        return f"{name} {json.dumps(params, sort_keys=True)}" if params else str(name)
    return (f"objective changed since v{int(previous['version']):04d} ({say(*before)} -> "
            f"{say(choice.name, choice.params)}): values of two objectives are not comparable, so no delta_value")


def night_key(options: CurateOptions, previous_version: int, store_rows: int,
              choice: ObjectiveChoice | None = None) -> str:
    """What makes a night the same night: the options, the version it starts from and the store's row count
    (and, for ``auto``, the objective it chose and why: a new study makes a new night's run)."""
    opts = options.model_dump(exclude={"tracking_uri", "sheet_max"})
    if choice is not None and choice.requested == AUTO:
        opts["objective_choice"] = choice.to_dict()
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
    positions in pick order, their gains, and ``f(A)`` and ``f(S ∪ A)`` — both scored on tonight's rows (the
    curated and the candidate rows: facility location's ground set), so their difference is what tonight added.
    ``k=0`` (the budget is spent) picks nothing and scores ``f(A)`` alone.
    """
    import worth

    curated = np.asarray(curated, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    store = EmbeddingStore.open(store_url, storage_options=storage_options)
    rows = store.rows(np.concatenate([curated, candidates]))
    if k == 0:
        if not len(curated):
            raise ValueError("k=0 with nothing curated: nothing to select or score; give k >= 1")
        value = float(worth.score(rows, np.arange(len(curated)), objective, **dict(objective_params)))
        return {"positions": [], "gains": [], "value_before": value, "value": value, "method": "none",
                "seconds": 0.0}
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


def curate_run_name(options: CurateOptions) -> str:
    """The flow run's name: ``curate-STORE-vNNNN``, the version the night is about to publish."""
    from pipeline.embed import store_name
    from storage import curated as versions

    folder = versions.curated_dir(options.pool.store, options.curated)
    return f"curate-{store_name(options.pool.store)}-v{max([0, *versions.versions(folder)]) + 1:04d}"
