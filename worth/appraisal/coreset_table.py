"""The coreset table: does the selection train a better model than what users pick instead?

A correlation says which score ranks subsets; a user curating data asks which subset trains the best model.
From the results rows of kind ``coreset`` (:func:`worth.appraisal.design.coreset_specs`), per fraction of
the pool and selection: held-out accuracy mean ± sd over the training seeds; and a headline per fraction —
the best selection (highest mean; the full pool is the ceiling, not a candidate) and its margin over uniform
random: the mean and sd over seeds of the per-seed difference (seed ``s`` of the selection against seed ``s``
of random, whose subset is a new draw per seed), so the spread holds both the training noise and the
variation of random subsets.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

RANDOM = "uniform"


def _stats(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else math.nan)


def coreset_table(rows: list[dict]) -> list[dict]:
    """One row per (fraction, selection): ``n`` seeds, ``k``, ``mean`` and ``sd`` of held-out accuracy."""
    cells: dict[tuple[float, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "coreset":
            cells[(float(r["fraction"]), r["objective"])].append(r)
    table = []
    for (fraction, selection), members in cells.items():
        mean, sd = _stats([m["accuracy"] for m in members])
        table.append({"fraction": fraction, "selection": selection, "k": int(members[0]["k"]), "n": len(members),
                      "mean": mean, "sd": sd})
    return sorted(table, key=lambda c: (c["fraction"], -c["mean"]))


def coreset_headline(rows: list[dict]) -> list[dict]:
    """Per fraction: the best selection, its mean accuracy, and its margin over uniform random (mean and sd of
    the per-seed differences; NaN without a random baseline)."""
    by: dict[float, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["kind"] == "coreset" and r["objective"] != "full":
            by[float(r["fraction"])][r["objective"]][int(r["seed"])] = float(r["accuracy"])
    out = []
    for fraction in sorted(by):
        sel = by[fraction]
        best = max(sel, key=lambda name: (np.mean(list(sel[name].values())), name))
        entry = {"fraction": fraction, "best": best, "mean": float(np.mean(list(sel[best].values()))),
                 "margin": math.nan, "margin_sd": math.nan, "n": 0}
        if RANDOM in sel and best != RANDOM:
            seeds = sorted(set(sel[best]) & set(sel[RANDOM]))
            diff = [sel[best][s] - sel[RANDOM][s] for s in seeds]
            if diff:
                entry["margin"], entry["margin_sd"] = _stats(diff)
                entry["n"] = len(diff)
        elif best == RANDOM:
            entry["margin"], entry["margin_sd"], entry["n"] = 0.0, 0.0, len(sel[RANDOM])
        out.append(entry)
    return out


def headline_sentences(headline: list[dict]) -> list[str]:
    """One plain sentence per fraction for the top of the report."""
    lines = []
    for h in headline:
        pct = f"{h['fraction'] * 100:g} %"
        if h["best"] == RANDOM:
            lines.append(f"- At {pct} of the pool, uniform random trains the best model ({h['mean']:.4f}): no "
                         "selection beats it.")
        elif math.isnan(h["margin"]):
            lines.append(f"- At {pct} of the pool, `{h['best']}` trains the best model ({h['mean']:.4f}); no uniform "
                         "random baseline to compare with.")
        else:
            sd = "–" if math.isnan(h["margin_sd"]) else f"{h['margin_sd']:.4f}"
            lines.append(f"- At {pct} of the pool, `{h['best']}` trains the best model ({h['mean']:.4f}), "
                         f"{h['margin']:+.4f} over uniform random (sd {sd} over {h['n']} seeds).")
    return lines
