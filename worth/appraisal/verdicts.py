"""The published findings, each judged on one study's tables: ``confirmed``, ``refuted`` or ``unclear``.

The reference study (DESIGN.md) reports four findings. A report that only prints correlation tables leaves the
reader to decide whether this pool agrees; these rules decide it the same way for every study, from the results
rows and the tables :func:`worth.appraisal.aggregate` makes, and print the numbers they decided on. They are
deliberately plain (majorities of the (regime, k) groups, intervals that exclude a value, the training noise as
the yardstick), so a reader can check each verdict by hand against the tables below it in the report.

The training noise of a group is the median, over the objectives, of the standard deviation of the maximiser's
held-out accuracy across its training seeds: the maximiser's subset is deterministic, so that spread is what
retraining alone moves accuracy by.

1. **Facility location predicts best.** Per group (all subsets), facility location's Spearman ρ against the
   runner-up's (the other objective with the highest mean ρ). *Confirmed*: facility location ranks first by mean
   ρ and has the higher ρ in at least two thirds of the groups; *refuted*: the runner-up ranks first and has the
   higher ρ in at least two thirds; *unclear* otherwise.
2. **The Vendi Score predicts over moderate ranges and fails when pushed high.** (a) over the moderate range the
   Vendi Score's ρ interval lies above 0 in a majority of the groups; (b) along its mixture series (random
   filler) accuracy peaks before the maximiser by more than twice the training noise in a majority of the
   series. Both: *confirmed*; neither: *refuted*; one: *unclear* (the report says which held).
3. **Random subsets are tightly concentrated.** Per group, the range of the random subsets' accuracy over the
   range of all subsets' accuracy. Median share ≤ 0.5: *confirmed*; ≥ 0.8 (random draws span almost everything):
   *refuted*; between: *unclear*.
4. **Size, balance and budget alone do not determine value.** Per group (fixed size, and per regime fixed
   balance or budget), the range of accuracy over its subsets against the training noise. Range above four times
   the noise in a majority of the groups of every regime: *confirmed* (what is selected still moves accuracy);
   at most twice the noise in a majority of all groups: *refuted*; otherwise *unclear*.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .coreset_table import item_blind

FACILITY = "facility-location"
VENDI = "vendi"


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "–"


def training_noise(rows: list[dict]) -> dict[tuple[str, int], float]:
    """Per (regime, k): the median over objectives of the sd of the maximiser's accuracy across training seeds."""
    acc: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "max":
            acc[(r["regime"], int(r["k"]), r["objective"])].append(float(r["accuracy"]))
    per_group: dict[tuple[str, int], list[float]] = defaultdict(list)
    for (regime, k, _), values in acc.items():
        if len(values) > 1:
            per_group[(regime, k)].append(float(np.std(values, ddof=1)))
    return {g: float(np.median(v)) for g, v in per_group.items()}


def _corr(correlation: list[dict], subsets: str) -> dict[tuple[str, int, str], dict]:
    return {(c["regime"], int(c["k"]), c["objective"]): c for c in correlation if c.get("subsets") == subsets}


def facility_predicts_best(tables: dict) -> dict:
    ranking = tables.get("ranking") or []
    names = [r["objective"] for r in ranking]
    finding = "Facility location predicts held-out accuracy best"
    if FACILITY not in names or len(names) < 2:
        return {"finding": finding, "verdict": "unclear",
                "evidence": "the study did not rank facility location against another objective"}
    mean = {r["objective"]: r["spearman"] for r in ranking}
    rival = next(n for n in names if n != FACILITY)
    corr = _corr(tables["correlation"], "all")
    wins = total = excl = 0
    for (regime, k, obj), c in corr.items():
        if obj != FACILITY or (regime, k, rival) not in corr:
            continue
        a, b = c.get("spearman"), corr[(regime, k, rival)].get("spearman")
        if not (_finite(a) and _finite(b)):
            continue
        total += 1
        wins += a > b
        excl += _finite(c.get("spearman_lo")) and c["spearman_lo"] > b
    first = names[0] == FACILITY
    if total and first and wins >= 2 * total / 3:
        verdict = "confirmed"
    elif total and not first and names[0] == rival and total - wins >= 2 * total / 3:
        verdict = "refuted"
    else:
        verdict = "unclear"
    evidence = (f"mean Spearman ρ {_fmt(mean[FACILITY])} (rank {names.index(FACILITY) + 1}) against the runner-up "
                f"`{rival}`'s {_fmt(mean[rival])}; facility location's ρ is the higher in {wins} of {total} "
                f"(regime, k) groups, its 95 % interval above `{rival}`'s ρ in {excl}")
    blind = [n for n in names if item_blind(n)]
    aware = [n for n in names if n not in blind]
    if blind and FACILITY in aware:  # say where it stands among the objectives that rank items
        place = aware.index(FACILITY) + 1
        other = next((n for n in aware if n != FACILITY), None)
        evidence += (f"; among the objectives that can tell items apart (not {', '.join(f'`{n}`' for n in blind)}: "
                     f"a function of size and class counts) it ranks {place} of {len(aware)}"
                     + (f", next `{other}` at {_fmt(mean[other])}" if other and place == 1 else ""))
    return {"finding": finding, "verdict": verdict, "evidence": evidence}


def vendi_moderate_not_high(rows: list[dict], tables: dict) -> dict:
    finding = "The Vendi Score predicts over moderate ranges and fails when pushed high"
    moderate = [c for (regime, k, obj), c in _corr(tables["correlation"], "moderate").items()
                if obj == VENDI and _finite(c.get("spearman"))]
    series = [s for s in tables.get("stops_paying", []) if s["objective"] == VENDI and s["filler"] == "random"
              and _finite(s.get("drop"))]
    if not moderate and not series:
        return {"finding": finding, "verdict": "unclear", "evidence": "the study has no Vendi Score rows"}
    noise = training_noise(rows)
    pos = sum(_finite(c.get("spearman_lo")) and c["spearman_lo"] > 0 for c in moderate)
    falls = sum(s["drop"] > 2 * noise.get((s["regime"], int(s["k"])), 0.0) for s in series)
    a = bool(moderate) and pos > len(moderate) / 2
    b = bool(series) and falls > len(series) / 2
    verdict = "confirmed" if a and b else "refuted" if not a and not b else "unclear"
    mean_rho = float(np.mean([c["spearman"] for c in moderate])) if moderate else math.nan
    drops = [s["drop"] for s in series]
    held = {(True, False): "; the moderate-range part holds, the pushed-high part does not",
            (False, True): "; the pushed-high part holds, the moderate-range part does not"}.get((a, b), "")
    evidence = (f"moderate range: mean ρ {_fmt(mean_rho)}, interval above 0 in {pos} of {len(moderate)} groups; "
                f"mixture series: accuracy peaks before the maximiser by more than twice the training noise in "
                f"{falls} of {len(series)} (median drop {_fmt(float(np.median(drops)) if drops else math.nan, 4)})"
                f"{held}")
    return {"finding": finding, "verdict": verdict, "evidence": evidence}


def random_concentrated(rows: list[dict]) -> dict:
    finding = "Random subsets are tightly concentrated"
    by: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in rows:
        by[(r["regime"], int(r["k"]))].append(r)
    shares = []
    for grp in by.values():
        rand = [r["accuracy"] for r in grp if r["kind"] == "random"]
        span = float(np.ptp([r["accuracy"] for r in grp]))
        if len(rand) > 1 and span > 0:
            shares.append(float(np.ptp(rand)) / span)
    if not shares:
        return {"finding": finding, "verdict": "unclear", "evidence": "no group with several random subsets"}
    med = float(np.median(shares))
    verdict = "confirmed" if med <= 0.5 else "refuted" if med >= 0.8 else "unclear"
    evidence = (f"the random subsets' accuracy range is a median {med:.2f} of the whole group's range "
                f"(from {min(shares):.2f} to {max(shares):.2f} over {len(shares)} groups)")
    return {"finding": finding, "verdict": verdict, "evidence": evidence}


def value_not_fixed(rows: list[dict], tables: dict) -> dict:
    finding = "Size, balance and budget alone do not determine value"
    noise = training_noise(rows)
    ratios: dict[str, list[float]] = defaultdict(list)
    seen = set()
    for s in tables.get("spread", []):
        g = (s["regime"], int(s["k"]))
        if g in seen or not _finite(noise.get(g)) or noise[g] <= 0:
            continue
        seen.add(g)
        ratios[s["regime"]].append(float(s["range.accuracy.all"]) / noise[g])
    if not ratios:
        return {"finding": finding, "verdict": "unclear",
                "evidence": "no group with a maximiser trained under several seeds (no training noise to compare)"}
    every = all(sum(r > 4 for r in v) > len(v) / 2 for v in ratios.values())
    flat = [r for v in ratios.values() for r in v]
    verdict = "confirmed" if every else "refuted" if sum(r <= 2 for r in flat) > len(flat) / 2 else "unclear"
    parts = ", ".join(f"`{regime}` median {float(np.median(v)):.1f}× ({sum(r > 4 for r in v)} of {len(v)} "
                      "groups above 4×)" for regime, v in ratios.items())
    return {"finding": finding, "verdict": verdict,
            "evidence": f"accuracy range over a group's subsets ÷ the training noise: {parts}"}


def judge(rows: list[dict], tables: dict) -> list[dict]:
    """The four findings (module docstring), each ``{"finding", "verdict", "evidence"}``, from the study's rows
    (``kind`` other than ``coreset``) and the tables of :func:`worth.appraisal.aggregate`."""
    return [facility_predicts_best(tables), vendi_moderate_not_high(rows, tables), random_concentrated(rows),
            value_not_fixed(rows, tables)]


def verdict_lines(verdicts: list[dict]) -> list[str]:
    """The report's opening section: one bullet per finding."""
    lines = ["## The published findings on this pool", "",
             "Judged by the rules of `worth.appraisal.verdicts` (docs/appraisal.md) on the tables below.", ""]
    lines += [f"- **{v['finding']}: {v['verdict']}.** {v['evidence']}." for v in verdicts]
    return lines + [""]
