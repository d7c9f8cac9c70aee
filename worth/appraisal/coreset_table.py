"""The coreset table: does the selection train a better model than what users pick instead?

A correlation says which score ranks subsets; a user curating data asks which subset trains the best model.
From the results rows of kind ``coreset`` (:func:`worth.appraisal.design.coreset_specs`), per fraction of
the pool and selection: held-out accuracy mean ± sd over the training seeds; and a headline per fraction —
the best selection (highest mean; the full pool is the ceiling, not a candidate) and its margin over uniform
random: the mean and sd over seeds of the per-seed difference (seed ``s`` of the selection against seed ``s``
of random, whose subset is a new draw per seed), so the spread holds both the training noise and the
variation of random subsets.

A maximiser of an objective that cannot tell items apart (the scaling law: a function of size and class counts,
``Objective.content_aware`` False) is not a selection: every candidate of a class gains the same, so greedy's
tie-break takes the first rows of each class in store order — one balanced draw, trained 5 times. It stays in
the table, marked (:func:`item_blind`), and is not the headline's best; the headline says when it scored higher.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

RANDOM = "uniform"


def item_blind(selection: str) -> bool:
    """Whether ``selection`` is the maximiser of an objective that cannot tell items apart (its picks are the
    store's order within each class; see the module docstring). Baselines and unknown names: False."""
    from ..registry import get_objective

    try:
        return not get_objective(selection).content_aware
    except (ValueError, TypeError, KeyError):
        return False


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
                      "mean": mean, "sd": sd, "item_blind": item_blind(selection)})
    return sorted(table, key=lambda c: (c["fraction"], -c["mean"]))


def coreset_headline(rows: list[dict]) -> list[dict]:
    """Per fraction: the best selection that can tell items apart (:func:`item_blind`), its mean accuracy, and
    its margin over uniform random (mean and sd of the per-seed differences; NaN without a random baseline);
    ``above`` lists the item-blind maximisers whose mean is higher (name, mean)."""
    by: dict[float, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["kind"] == "coreset" and r["objective"] != "full":
            by[float(r["fraction"])][r["objective"]][int(r["seed"])] = float(r["accuracy"])
    out = []
    for fraction in sorted(by):
        sel = by[fraction]
        means = {name: float(np.mean(list(v.values()))) for name, v in sel.items()}
        candidates = [name for name in sel if not item_blind(name)] or list(sel)
        best = max(candidates, key=lambda name: (means[name], name))
        above = sorted(((name, means[name]) for name in sel if name not in candidates and means[name] > means[best]),
                       key=lambda t: -t[1])
        entry = {"fraction": fraction, "best": best, "mean": means[best], "above": [list(a) for a in above],
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
        for name, mean in h.get("above", []):
            lines[-1] += (f" `{name}` scored higher ({mean:.4f}) but cannot tell items apart: its subset is the "
                          "store's first rows of each class, one balanced draw in store order, not a selection.")
    return lines
