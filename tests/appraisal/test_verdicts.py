"""worth.appraisal.verdicts: each published finding judged confirmed, refuted or unclear by its stated rule."""

from __future__ import annotations

import numpy as np
import pytest

from worth.appraisal import verdicts as V

GROUPS = [("fixed", 100), ("fixed", 300), ("balanced", 100)]


def _corr(rho: dict[str, list[float]], subsets: str = "all", half: float = 0.1) -> list[dict]:
    return [{"regime": g[0], "k": g[1], "objective": obj, "subsets": subsets, "spearman": r,
             "spearman_lo": r - half, "spearman_hi": r + half}
            for obj, values in rho.items() for g, r in zip(GROUPS, values)]


def _ranking(rho: dict[str, list[float]]) -> list[dict]:
    order = sorted(rho, key=lambda o: -np.mean(rho[o]))
    return [{"rank": i + 1, "objective": o, "spearman": float(np.mean(rho[o]))} for i, o in enumerate(order)]


@pytest.mark.parametrize("fl, rival, verdict", [
    ([0.8, 0.7, 0.6], [0.3, 0.2, 0.1], "confirmed"),
    ([0.2, 0.1, 0.0], [0.6, 0.5, 0.4], "refuted"),
    ([0.9, 0.1, 0.3], [0.2, 0.3, 0.4], "unclear"),  # first on the mean, the higher in 1 group of 3
])
def test_facility_predicts_best(fl, rival, verdict):
    rho = {"facility-location": fl, "vendi": rival}
    got = V.facility_predicts_best({"ranking": _ranking(rho), "correlation": _corr(rho)})
    assert got["verdict"] == verdict, got
    wins = sum(a > b for a, b in zip(fl, rival))
    assert f"is the higher in {wins} of 3" in got["evidence"]


def test_facility_behind_only_the_scaling_law_says_where_it_stands_among_item_aware_objectives():
    rho = {"scaling-law": [0.9, 0.9, 0.9], "facility-location": [0.8, 0.7, 0.6], "vendi": [0.3, 0.2, 0.1]}
    got = V.facility_predicts_best({"ranking": _ranking(rho), "correlation": _corr(rho)})
    assert got["verdict"] == "refuted"  # the rule is unchanged: the runner-up is the scaling law
    assert "can tell items apart (not `scaling-law`" in got["evidence"]
    assert "it ranks 1 of 2, next `vendi` at 0.200" in got["evidence"]
    plain = V.facility_predicts_best({"ranking": _ranking({k: rho[k] for k in ("facility-location", "vendi")}),
                                      "correlation": _corr(rho)})
    assert "tell items apart" not in plain["evidence"]


def test_facility_location_missing_is_unclear():
    rho = {"vendi": [0.1, 0.2, 0.3], "logdet": [0.0, 0.1, 0.2]}
    got = V.facility_predicts_best({"ranking": _ranking(rho), "correlation": _corr(rho)})
    assert got["verdict"] == "unclear" and "did not rank facility location" in got["evidence"]


def _max_rows(sd: float) -> list[dict]:
    """Maximiser rows: three training seeds per group with accuracy spread ``sd`` (the training noise)."""
    return [{"kind": "max", "regime": g[0], "k": g[1], "objective": "vendi", "accuracy": 0.7 + sd * z}
            for g in GROUPS for z in (-1.0, 0.0, 1.0)]


@pytest.mark.parametrize("moderate, drop, verdict, says", [
    ([0.5, 0.4, 0.3], 0.05, "confirmed", ""),
    ([0.0, -0.1, 0.05], 0.0, "refuted", ""),
    ([0.5, 0.4, 0.3], 0.0, "unclear", "the moderate-range part holds, the pushed-high part does not"),
    ([0.0, -0.1, 0.05], 0.05, "unclear", "the pushed-high part holds, the moderate-range part does not"),
])
def test_vendi_moderate_but_not_high(moderate, drop, verdict, says):
    rows = _max_rows(sd=0.01)  # noise 0.01: a drop counts above 0.02
    stops = [{"regime": g[0], "k": g[1], "objective": "vendi", "filler": "random", "drop": drop} for g in GROUPS]
    got = V.vendi_moderate_not_high(rows, {"correlation": _corr({"vendi": moderate}, "moderate"),
                                           "stops_paying": stops})
    assert got["verdict"] == verdict and says in got["evidence"], got


def test_training_noise_is_the_maximisers_spread_over_seeds():
    noise = V.training_noise(_max_rows(sd=0.02))
    assert set(noise) == set(GROUPS) and all(v == pytest.approx(0.02) for v in noise.values())


def _group_rows(random_span: float, other_span: float) -> list[dict]:
    rows = []
    for g in GROUPS:
        rows += [{"kind": "random", "regime": g[0], "k": g[1], "accuracy": 0.7 + random_span * t}
                 for t in np.linspace(0, 1, 5)]
        rows += [{"kind": "min", "regime": g[0], "k": g[1], "accuracy": 0.7 - other_span}]
    return rows


@pytest.mark.parametrize("random_span, other_span, verdict", [
    (0.01, 0.09, "confirmed"),  # random covers 0.1 of the range
    (0.09, 0.01, "refuted"),    # 0.9
    (0.065, 0.035, "unclear"),  # 0.65
])
def test_random_concentrated(random_span, other_span, verdict):
    got = V.random_concentrated(_group_rows(random_span, other_span))
    assert got["verdict"] == verdict, got


@pytest.mark.parametrize("span, verdict", [(0.1, "confirmed"), (0.015, "refuted"), (0.03, "unclear")])
def test_value_not_fixed_by_size_balance_budget(span, verdict):
    rows = _max_rows(sd=0.01)
    spread = [{"regime": g[0], "k": g[1], "range.accuracy.all": span} for g in GROUPS]
    got = V.value_not_fixed(rows, {"spread": spread})
    assert got["verdict"] == verdict, got
    assert "`fixed` median" in got["evidence"] and "`balanced` median" in got["evidence"]


def test_the_report_opens_with_the_verdicts(tmp_path):
    """aggregate() on a small synthetic study: the verdicts are a table of their own, first in report.md."""
    from worth.appraisal import StudyConfig, aggregate

    rng = np.random.default_rng(0)
    rows = []
    for regime in ("fixed", "balanced"):
        for k in (10, 20):
            for i in range(8):
                acc = 0.6 + 0.02 * i + rng.normal(0, 0.002)
                rows.append({"kind": "random", "regime": regime, "k": k, "objective": None, "seed": i, "fraction": None,
                             "filler": None, "accuracy": acc, "score.facility-location": acc + rng.normal(0, 0.001),
                             "score.vendi": rng.normal()})
            for seed in range(3):
                rows.append({"kind": "max", "regime": regime, "k": k, "objective": "facility-location", "seed": seed,
                             "fraction": None, "filler": None, "accuracy": 0.8 + 0.001 * seed,
                             "score.facility-location": 1.0, "score.vendi": 0.0})
    cfg = StudyConfig(objectives={"facility-location": {}, "vendi": {}}, k=(10, 20), regimes=("fixed", "balanced"),
                      bootstrap=50)
    out = aggregate(rows, cfg, tmp_path)
    assert [v["finding"] for v in out["tables"]["verdicts"]] == [
        "Facility location predicts held-out accuracy best",
        "The Vendi Score predicts over moderate ranges and fails when pushed high",
        "Random subsets are tightly concentrated", "Size, balance and budget alone do not determine value"]
    assert out["tables"]["verdicts"][0]["verdict"] == "confirmed"
    text = out["report"].read_text()
    assert text.index("## The published findings on this pool") < text.index("## Ranking")
    assert "**Facility location predicts held-out accuracy best: confirmed.**" in text
