"""The whole study in one process: specs → subsets → scores → training → tables → report.

Each step is its own function with small, picklable inputs and outputs, so the Prefect flow can map
:func:`realise`, :func:`score_subset` and :func:`train_subset` over Dask workers and log each result to
MLflow, and call :func:`aggregate` once at the end. :func:`run_study` chains them in-process: the reference
the flow is tested against, and the way to run a study without any orchestration. It takes the fast path:
every greedy path once (:func:`worth.appraisal.paths.realise_subsets`), every subset scored in batches
(:func:`worth.appraisal.scoring.score_subsets`); per-spec :func:`~worth.appraisal.design.realise` and
:func:`score_subset` stay as the references they are tested against.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import worth

from ..train import fit_and_evaluate
from .config import StudyConfig
from .coreset_table import coreset_headline, coreset_table
from .correlate import correlation_table, path_table, rank_objectives, spread_table, stops_paying
from .design import SubsetSpec, check_design, make_specs
from .paths import realise_subsets
from .scoring import score_subsets
from .verdicts import judge
from .report import (accuracy_vs_k_figure, heatmap_figure, path_figure, scatter_figures, write_html,
                     write_report)


def score_subset(X, indices, objectives: dict, labels=None) -> dict[str, float]:
    """Every objective's exact score of the subset (:func:`worth.score`): the reference of
    :func:`worth.appraisal.scoring.score_subsets`, which scores many subsets at once."""
    return {name: float(worth.score(X, indices, name, labels=labels, **params)) for name, params in objectives.items()}


def train_subset(spec: SubsetSpec, indices, inputs, labels, X_test, y_test, n_classes: int,
                 config: StudyConfig) -> dict:
    """Train on the subset under its regime (``budget``: ``config.steps`` steps; else ``config.epochs`` passes)."""
    idx = np.asarray(indices, dtype=np.int64)
    budget = {"steps": config.steps} if spec.regime == "budget" else {"epochs": config.epochs}
    ev = fit_and_evaluate(np.asarray(inputs)[idx], np.asarray(labels)[idx], X_test, y_test, n_classes,
                          model=config.model, batch_size=config.batch_size, lr=config.lr,
                          weight_decay=config.weight_decay, hidden=config.hidden, seed=spec.seed,
                          device=config.device, threads=config.threads, **budget)
    return ev.to_dict()


def result_row(spec: SubsetSpec, scores: dict, evaluation: dict) -> dict:
    """One row of the results table: the spec's fields, its name and key, ``score.NAME``s and the evaluation."""
    row = {"name": spec.name, "key": spec.key, **{k: v for k, v in spec.to_dict().items() if k != "params"}}
    row.update({f"score.{name}": value for name, value in scores.items()})
    row.update(evaluation)
    return row


def aggregate(rows: list[dict], config: StudyConfig, out_dir, *, title: str = "Appraisal study") -> dict:
    """Tables, figures, ``report.md`` and ``report.html`` (figures embedded) from the results table; returns
    their paths and the tables. Rows of kind ``coreset`` make the coreset table; the other tables are the
    study's subsets' alone."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    objectives = list(config.objectives)
    cores = [r for r in rows if r["kind"] == "coreset"]
    rows = [r for r in rows if r["kind"] != "coreset"]  # the correlations are the study's subsets' alone
    corr = correlation_table(rows, objectives, n_boot=config.bootstrap, seed=config.bootstrap_seed)
    path = path_table(rows, objectives)
    tables = {"correlation": corr, "ranking": rank_objectives(corr), "spread": spread_table(rows, objectives),
              "path": path, "stops_paying": stops_paying(path)}
    tables["verdicts"] = judge(rows, tables)
    if cores:  # a config without a coreset section keeps exactly the tables it had
        tables.update(coreset=coreset_table(cores), coreset_headline=coreset_headline(cores))
    figures = {
        "scatter": scatter_figures(rows, objectives, out_dir),
        "accuracy_vs_k": accuracy_vs_k_figure(rows, objectives, out_dir),
        "heatmaps": [heatmap_figure(corr, out_dir, subsets=s) for s in ("all", "random", "moderate")],
        "path": path_figure(path, out_dir),
    }
    report = write_report(rows, tables, figures, out_dir, title=title, config=config.to_dict())
    html = write_html(report)
    # the config too, so a reader (the night's objective: auto) finds the ranked objectives' parameters
    (out_dir / "results.json").write_text(json.dumps({"rows": rows + cores, "tables": tables,
                                                      "config": config.to_dict()}, indent=1))
    return {"report": report, "html": html, "results": out_dir / "results.json", "figures": figures,
            "tables": tables}


def report_from_results(results, out_dir, *, title: str = "Appraisal study") -> dict:
    """The tables, figures and report of a finished study again, from its ``results.json`` (its rows and
    config): to write a study's report elsewhere (the repository's ``docs/results/``) or under a newer report
    format, without training anything."""
    data = json.loads(Path(results).read_text())
    if not isinstance(data, dict) or "rows" not in data or "config" not in data:
        raise ValueError(f"{results} is not a study's results.json (no rows and config): give the results.json a "
                         "`worth study` run wrote beside its report.md")
    return aggregate(data["rows"], StudyConfig.from_dict(data["config"]), out_dir, title=title)


def run_study(X, labels, X_test, y_test, config: StudyConfig, out_dir, *, inputs=None, n_classes: int | None = None,
              progress=None) -> dict:
    """Run a whole study in this process and write its report.

    Parameters
    ----------
    X : array (n, m)
        The pool's embeddings: what is selected and scored.
    labels : array (n,)
        Class of every pool row (0..C−1).
    X_test, y_test : arrays
        Held-out rows (in the training input's form) and labels; see :func:`worth.appraisal.holdout_split`
        for a pool without them.
    config : StudyConfig
    out_dir : path
        Where ``report.md``, ``results.json`` and the PNGs go.
    inputs : array, optional
        What the model trains on, row for row with ``X`` (raw images for ``model="cnn"``); default ``X``.
    n_classes : int, optional
        Default: ``max(labels, y_test) + 1``.
    progress : callable, optional
        ``progress(done, total, row)`` after each subset.

    Returns
    -------
    dict
        ``rows`` (the results table), ``report``, ``results``, ``figures``, ``tables``, ``seconds``.
    """
    t0 = time.perf_counter()
    labels = np.asarray(labels)
    inputs = X if inputs is None else inputs
    if np.asarray(inputs).shape[0] != labels.shape[0] or np.asarray(X).shape[0] != labels.shape[0]:
        raise ValueError(f"X ({np.asarray(X).shape[0]} rows), inputs ({np.asarray(inputs).shape[0]}) and labels "
                         f"({labels.shape[0]}) must describe the same pool, row for row.")
    n_classes = int(n_classes or max(labels.max(), np.max(y_test)) + 1)
    check_design(config, labels)
    specs = make_specs(config, n_pool=int(labels.shape[0]))
    subsets = realise_subsets(specs, X, labels)  # every greedy path once, every subset cut from them
    keys = list(subsets)
    table = dict(zip(keys, score_subsets(X, [subsets[k] for k in keys], config.objectives, labels)))
    rows = []
    for i, spec in enumerate(specs):
        idx = subsets[spec.subset_key]
        scores = table[spec.subset_key]
        row = result_row(spec, scores, train_subset(spec, idx, inputs, labels, X_test, y_test, n_classes, config))
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(specs), row)
    out = aggregate(rows, config, out_dir)
    return {"rows": rows, **out, "seconds": time.perf_counter() - t0}
