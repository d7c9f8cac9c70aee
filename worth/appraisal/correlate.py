"""How well each objective's score predicts held-out accuracy: the study's tables, from a results table.

A results table is a list of dicts, one per trained subset (see :func:`worth.appraisal.study.result_row`):
``name``, ``kind``, ``objective``, ``regime``, ``k``, ``seed``, ``fraction``, ``filler``, ``score.NAME`` for every
objective, ``accuracy``, ``loss``…. Every statistic is computed per regime and size ``k`` — scores at
different sizes are not comparable (the Vendi Score grows with ``k``, so does accuracy), so pooling sizes
would measure size, which is not the question.

Definitions (docs/appraisal.md explains the choices):

- **Rank correlation**: Spearman's ρ and Kendall's τ-b between an objective's score and accuracy, with
  percentile bootstrap intervals (pairs resampled with replacement, seeded).
- **Random only**: the same over random subsets alone (can a score tell apart subsets drawn alike?).
- **Moderate range**: the subsets whose score lies between the 10th percentile of the random subsets'
  scores and the point halfway from their 90th percentile to the objective's own maximiser: the neither
  pushed-down nor pushed-hard part of the range, where the reference study found the Vendi Score predictive.
- **Spread**: coefficient of variation (std / |mean|) of score and accuracy over random subsets, against the
  same over the optimised subsets (every objective's maximiser).
- **Ranking**: the objectives ordered by how well they predict accuracy: the mean of their Spearman ρ over
  every (regime, k) group, all subsets (:func:`rank_objectives`; what the nightly curation's ``auto`` follows).
- **Path**: accuracy along each objective's mixture series at fixed size: the share of maximiser picks
  ``1 − f`` from 0 (random rows, or the minimiser) to 1 (the maximiser). Pushing a score higher pays if
  accuracy keeps rising to share 1; it stops paying where accuracy peaks before it.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def _tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's τ-b of each row pair of ``x``, ``y`` (shape (B, n)), from the sign matrices (ties count 0)."""
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    num = np.einsum("bij,bij->b", sx, sy)
    den = np.sqrt(np.einsum("bij,bij->b", sx, sx) * np.einsum("bij,bij->b", sy, sy))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair (average ranks for ties): Pearson's r of the ranks."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=1) - (x.shape[1] + 1) / 2
    ry = rankdata(y, axis=1) - (y.shape[1] + 1) / 2
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / np.where(den > 0, den, 1), np.nan)


def rank_correlation(scores, accuracy, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Spearman's ρ and Kendall's τ-b of ``scores`` against ``accuracy``, with bootstrap percentile intervals.

    Returns ``{"n", "spearman", "spearman_lo", "spearman_hi", "kendall", "kendall_lo", "kendall_hi"}``; NaN
    where undefined (fewer than 3 subsets, or a constant score such as the scaling law's at fixed size).
    The point estimates are :func:`scipy.stats.spearmanr` and :func:`scipy.stats.kendalltau`.
    """
    from scipy.stats import kendalltau, spearmanr

    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"scores and accuracy must be 1-D and of one length; got {x.shape} and {y.shape}.")
    out = {"n": int(x.size)}
    keys = ("spearman", "spearman_lo", "spearman_hi", "kendall", "kendall_lo", "kendall_hi")
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {**out, **{k: math.nan for k in keys}}
    out["spearman"] = float(spearmanr(x, y).statistic)
    out["kendall"] = float(kendalltau(x, y).statistic)
    rng = np.random.default_rng(seed)
    alpha = (1 - level) / 2 * 100
    rho, tau = [], []
    chunk = max(1, 2_000_000 // (x.size * x.size))
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, x.size, size=(min(chunk, n_boot - start), x.size))
        rho.append(_spearman(x[idx], y[idx]))
        tau.append(_tau_b(x[idx], y[idx]))
    for name, boot in (("spearman", np.concatenate(rho)), ("kendall", np.concatenate(tau))):
        boot = boot[np.isfinite(boot)]
        lo, hi = np.percentile(boot, [alpha, 100 - alpha]) if boot.size else (math.nan, math.nan)
        out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
    return out


def groups(rows: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """Rows by ``(regime, k)``, in first-seen order."""
    out: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows:
        out[(row["regime"], int(row["k"]))].append(row)
    return dict(out)


def moderate_range(rows: list[dict], objective: str) -> tuple[float, float]:
    """``(lo, hi)`` of the moderate score range of ``objective`` in one (regime, k) group (see module doc)."""
    key = f"score.{objective}"
    rand = np.array([r[key] for r in rows if r["kind"] == "random"])
    best = [r[key] for r in rows if r["kind"] == "max" and r["objective"] == objective]
    if rand.size == 0:
        return math.nan, math.nan
    lo, p90 = np.percentile(rand, [10, 90])
    top = max(best) if best else p90
    return float(lo), float(p90 + max(0.0, top - p90) / 2)


def correlation_table(rows: list[dict], objectives, *, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """One row per (regime, k, objective, subset set): ``all`` subsets, ``random`` only, ``moderate`` range."""
    table = []
    for (regime, k), grp in groups(rows).items():
        for obj in objectives:
            key = f"score.{obj}"
            lo, hi = moderate_range(grp, obj)
            sets = {
                "all": grp,
                "random": [r for r in grp if r["kind"] == "random"],
                "moderate": [r for r in grp if lo <= r[key] <= hi],
            }
            for subset, members in sets.items():
                stats = rank_correlation([r[key] for r in members], [r["accuracy"] for r in members],
                                         n_boot=n_boot, seed=seed)
                table.append({"regime": regime, "k": k, "objective": obj, "subsets": subset, **stats})
    return table


def rank_objectives(correlation: list[dict]) -> list[dict]:
    """The study's objectives, best predictor of held-out accuracy first.

    Each objective's ``spearman`` is the mean of its Spearman ρ over the (regime, k) groups of
    :func:`correlation_table`'s ``all`` subsets (the estimate the report's heat map ``all`` shows), ``groups``
    how many groups had a defined ρ, ``kendall`` the mean τ-b over the same groups. An objective whose ρ is
    undefined in every group (a constant score) is left out; ties order by ``kendall``, then by first
    appearance. Returns ``[{"rank", "objective", "spearman", "kendall", "groups"}, ...]`` (empty: no ranking).
    """
    found: dict[str, list[tuple[float, float]]] = {}
    for c in correlation:
        if c.get("subsets") != "all":
            continue
        pairs = found.setdefault(c["objective"], [])
        rho, tau = c.get("spearman"), c.get("kendall")
        if rho is not None and math.isfinite(rho):
            pairs.append((float(rho), float(tau) if tau is not None and math.isfinite(tau) else math.nan))
    table = []
    for order, (objective, pairs) in enumerate(found.items()):
        if not pairs:
            continue
        taus = [t for _, t in pairs if math.isfinite(t)]
        table.append({"objective": objective, "spearman": float(np.mean([r for r, _ in pairs])),
                      "kendall": float(np.mean(taus)) if taus else math.nan, "groups": len(pairs), "_order": order})
    table.sort(key=lambda r: (-r["spearman"], -r["kendall"] if math.isfinite(r["kendall"]) else math.inf,
                              r["_order"]))
    return [{"rank": i + 1, **{k: v for k, v in r.items() if k != "_order"}} for i, r in enumerate(table)]


def _cv(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2 or np.mean(v) == 0:
        return math.nan
    return float(np.std(v, ddof=1) / abs(np.mean(v)))


def spread_table(rows: list[dict], objectives) -> list[dict]:
    """Coefficient of variation of accuracy and of every score, random subsets against optimised ones.

    Also the accuracy range (max − min) over *all* subsets of the group: how far accuracy moves at fixed
    size, balance and budget.
    """
    table = []
    for (regime, k), grp in groups(rows).items():
        span = [r["accuracy"] for r in grp]
        for label, members in (("random", [r for r in grp if r["kind"] == "random"]),
                               ("optimised", [r for r in grp if r["kind"] == "max"])):
            acc = [r["accuracy"] for r in members]
            entry = {"regime": regime, "k": k, "subsets": label, "n": len(members), "cv.accuracy": _cv(acc),
                     "mean.accuracy": float(np.mean(acc)) if acc else math.nan,
                     "range.accuracy.all": float(np.ptp(span))}
            entry.update({f"cv.{o}": _cv([r[f"score.{o}"] for r in members]) for o in objectives})
            table.append(entry)
    return table


def path_table(rows: list[dict], objectives) -> list[dict]:
    """Score and accuracy along each objective's mixture series, by share of maximiser picks (0 … 1).

    Share 0 is the random subsets' mean (``random`` filler) or the minimiser (``min`` filler); share 1 is the
    maximiser. Subsets with several seeds are averaged.
    """
    table = []
    for (regime, k), grp in groups(rows).items():
        rand = [r for r in grp if r["kind"] == "random"]
        for obj in objectives:
            key = f"score.{obj}"
            for filler in ("random", "min"):
                points: dict[float, list[dict]] = defaultdict(list)
                points[0.0] = list(rand) if filler == "random" else [
                    r for r in grp if r["kind"] == "min" and r["objective"] == obj]
                for r in grp:
                    if r["objective"] == obj and r["kind"] == "mix" and r["filler"] == filler:
                        points[round(1 - r["fraction"], 6)].append(r)
                    if r["objective"] == obj and r["kind"] == "max":
                        points[1.0].append(r)
                if len([p for p in points.values() if p]) < 3:
                    continue  # no series of this filler in the study
                for share in sorted(points):
                    members = points[share]
                    if members:
                        table.append({"regime": regime, "k": k, "objective": obj, "filler": filler, "share": share,
                                      "n": len(members), "score": float(np.mean([m[key] for m in members])),
                                      "accuracy": float(np.mean([m["accuracy"] for m in members]))})
    return table


def stops_paying(path: list[dict]) -> list[dict]:
    """Per (regime, k, objective, filler) series: the share where accuracy peaks, and the maximiser's deficit.

    ``drop`` = peak accuracy − the maximiser's accuracy: positive when pushing the score to its greedy maximum
    lost accuracy against a less optimised mixture.
    """
    series: dict[tuple, list[dict]] = defaultdict(list)
    for p in path:
        series[(p["regime"], p["k"], p["objective"], p["filler"])].append(p)
    out = []
    for (regime, k, obj, filler), pts in series.items():
        peak = max(pts, key=lambda p: p["accuracy"])
        top = [p for p in pts if p["share"] == 1.0]
        drop = peak["accuracy"] - top[0]["accuracy"] if top else math.nan
        out.append({"regime": regime, "k": k, "objective": obj, "filler": filler, "peak_share": peak["share"],
                    "peak_accuracy": peak["accuracy"], "drop": drop})
    return out
