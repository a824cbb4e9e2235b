"""The claims' verdict paths on small fixed data, their power statements and the baseline rule.

Independent checks: the MDD is re-derived from the noncentral t distribution, the cluster test from a
t-test on task means computed here, the correlation MDD from Fisher's z by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import claims as C
from analysis.claims.backdoor_data import attacks_only
from analysis.claims.clustered import cluster_test, holm_family
from analysis.claims.power import ACCURACY_MARGIN, EFFECTS, mdd_t, min_detectable_correlation

TASKS = ("t0", "t1", "t2", "t3", "t4", "t5")
ATTACKS = ("fgsm", "pgd", "mifgsm")


def _transfer(values: dict[str, float], task_noise: float, rng_seed: int = 0, setting_noise: float = 0.002):
    """Long transfer table: method → mean relative ASR; each task shifts every method by N(0, task_noise)
    (shared), each (method, setting) adds N(0, setting_noise)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for t in TASKS:
        shift = {m: rng.normal(0, task_noise) for m in values}
        for a in ATTACKS:
            for m, v in values.items():
                rows.append({"method": m, "task": t, "attack": a, "surrogate": "finetuned", "eps": 8 / 255,
                             "relative_asr": v + shift[m] + rng.normal(0, setting_noise)})
    return pd.DataFrame(rows)


def test_mdd_is_the_difference_a_t_test_detects_with_80_percent_power():
    sd, n, alpha = 0.04, 6, 0.05
    mdd = mdd_t(sd, n, alpha)
    nc = mdd / sd * math.sqrt(n)  # noncentrality of the one-sample t at the true mean difference mdd
    crit = stats.t.ppf(1 - alpha / 2, n - 1)
    power = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
    assert power == pytest.approx(0.8, abs=1e-4)
    assert mdd_t(sd, 1, alpha) != mdd_t(sd, 1, alpha) and mdd_t(0.0, 6, alpha) == 0.0  # NaN; no variation
    r = min_detectable_correlation(11, 0.05)
    assert r == pytest.approx(math.tanh((1.959964 + 0.841621) / math.sqrt(8)), abs=1e-5)


def test_cluster_test_is_a_t_test_on_task_means_and_holm_is_within_the_family():
    df = _transfer({"a": 0.9}, task_noise=0.03)
    by_task = df.groupby("task").relative_asr.mean().to_numpy()  # the task means, computed here
    r = cluster_test(df.groupby("task").relative_asr.mean(), 0.95)
    ref = stats.ttest_1samp(by_task, 0.95)
    assert r["n_clusters"] == 6 and r["p"] == pytest.approx(ref.pvalue) and r["t"] == pytest.approx(ref.statistic)
    assert r["cohen_d"] == pytest.approx((by_task.mean() - 0.95) / by_task.std(ddof=1)) and r["cohen_d"] < 0
    fam = holm_family(pd.DataFrame([r, {**r, "p": r["p"] / 2}]), 0.05)
    assert fam.p_holm.tolist() == pytest.approx([r["p"], r["p"]])  # Holm: 2·(p/2), then max(p, 1·p)
    assert fam.mdd.iat[0] == pytest.approx(mdd_t(r["sd"], 6, 0.025))  # Holm's first step: α/m


@pytest.mark.parametrize(
    ("gap", "task_noise", "verdict"),
    [(0.05, 0.005, C.SUPPORTED), (0.0, 0.005, C.NOT_SUPPORTED), (0.0, 0.08, C.UNDERPOWERED),
     (-0.05, 0.005, C.NOT_SUPPORTED)],
)
def test_claim3_verdict_paths(gap, task_noise, verdict):
    df = _transfer({"surgery_task_arithmetic": 0.9 + gap, "task_arithmetic": 0.9}, task_noise)
    f = C.surgery_more_vulnerable(df, "relative_asr")
    assert f.verdict == verdict, f.result
    assert f.effect == EFFECTS["surgery_more_vulnerable"] and f.numbers["n_clusters"] == len(TASKS)
    if gap == 0:  # not significant: the power decides between "not supported" and "underpowered"
        assert (f.mdd > f.effect) == (verdict == C.UNDERPOWERED)
    if gap < 0:
        assert "opposite direction" in f.result


def test_claim3_inconclusive_without_variation():
    df = _transfer({"surgery_task_arithmetic": 0.92, "task_arithmetic": 0.9}, 0.0, setting_noise=0.0)
    assert C.surgery_more_vulnerable(df, "relative_asr").verdict == C.INCONCLUSIVE


def test_claim1_keeps_the_sign_of_cohens_d():
    below = C.relative_asr_above(_transfer({"a": 0.90, "b": 0.91}, 0.01))
    assert below.verdict == C.NOT_SUPPORTED and below.numbers["cohen_d"] < 0
    above = C.relative_asr_above(_transfer({"a": 0.98, "b": 0.985}, 0.005))
    assert above.verdict == C.SUPPORTED and above.numbers["cohen_d"] > 0


def test_claim4_tests_weight_averaging_against_every_other_method():
    methods = {"weight_averaging": 0.95, "ties": 0.90, "regmean": 0.91, "fisher": 0.92}
    f = C.weight_averaging_most_vulnerable(_transfer(methods, 0.005), "relative_asr")
    assert f.verdict == C.SUPPORTED
    vs = f.tables["vs_weight_averaging"]
    assert sorted(vs.other) == ["fisher", "regmean", "ties"] and (vs.p_holm < 0.05).all()
    worse = C.weight_averaging_most_vulnerable(_transfer({**methods, "ties": 0.97}, 0.005), "relative_asr")
    assert worse.verdict == C.NOT_SUPPORTED and "ties" in worse.result  # one method is more vulnerable


def _backdoor(cost: float, cut: float, baseline: str | None, rng_seed: int = 0) -> pd.DataFrame:
    """Seed-averaged backdoor settings of 5 methods × 2 attacks, with and without `ibvs`; plus no-attack
    baseline rows (`attack='clean'`, or a `role` column when ``baseline == 'role'``) whose ASR the defense
    raises, so counting them would flip the ASR half."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    attacks = [("badmerging", "on_task", 0.9), ("naive", "badnets", 0.3)]
    attacks += [("clean_fixed_trigger" if baseline == "role" else "clean", "none", 0.02)] if baseline else []
    for m in ("wa", "ta", "ties", "regmean", "ada"):
        for a, v, asr in attacks:
            is_base = a.startswith("clean")
            for d in ("none", "ibvs"):
                defended = d == "ibvs"
                rows.append({"attack": a, "variant": v, "method": m, "defense": d, "adversary_task": "digit",
                             "target_task": "digit", "target_class": 1, "n_seeds": 1,
                             "backdoor_asr": (asr + 0.5 if is_base and defended else asr * (1 - cut * defended))
                             + rng.normal(0, 0.02),
                             "clean_acc": 0.8 - cost * defended + rng.normal(0, 0.002)})
    df = pd.DataFrame(rows)
    if baseline == "role":
        df["role"] = np.where(df.attack.str.startswith("clean"), "baseline", "attack")
    return df


@pytest.mark.parametrize("baseline", ["clean", "role"])
def test_claim6b_excludes_baselines_and_tests_the_accuracy_margin(baseline):
    rows = _backdoor(cost=0.005, cut=0.6, baseline=baseline)
    kept, dropped = attacks_only(rows)
    assert dropped == 10 and not kept.attack.str.startswith("clean").any()
    f = C.defense_effects(rows)
    assert f.verdict == C.SUPPORTED, f.result
    assert f.numbers["n_baseline_excluded"] == 10 and f.numbers["n_pairs"] == 10  # 5 methods × 2 attacks
    assert f.numbers["acc_cost[ibvs]"] == pytest.approx(0.005, abs=0.002)
    costly = C.defense_effects(_backdoor(cost=0.05, cut=0.6, baseline=baseline))
    acc = costly.tables["effects"].set_index("half").loc["accuracy"]
    assert costly.verdict == C.NOT_SUPPORTED and acc.verdict == C.NOT_SUPPORTED
    assert acc.mean_diff == pytest.approx(0.05, abs=0.003) and acc.alternative == "less"
    raw = _backdoor(cost=0.05, cut=0.6, baseline=baseline)
    wide = raw[~raw.attack.str.startswith("clean")].pivot_table(
        index=["method", "attack"], columns="defense", values="clean_acc")
    per_method = (wide["none"] - wide["ibvs"]).groupby("method").mean()  # each method's cost, computed here
    assert acc.p == pytest.approx(stats.ttest_1samp(per_method, ACCURACY_MARGIN, alternative="less").pvalue)


def test_claim6b_underpowered_and_6a_directions():
    noisy = _backdoor(cost=0.0, cut=0.0, baseline="clean").assign(
        backdoor_asr=lambda d: d.backdoor_asr + np.random.default_rng(1).normal(0, 0.3, len(d)))
    assert C.defense_effects(noisy).verdict == C.UNDERPOWERED
    f6 = C.backdoor_asr_after_merging(_backdoor(cost=0.0, cut=0.0, baseline="clean"))
    per = f6.tables["per_attack"].set_index("attack")
    assert per.loc["badmerging", "verdict"] == C.SUPPORTED and f6.numbers["n_baseline_excluded"] == 5
    assert per.loc["naive", "verdict"] == C.NOT_SUPPORTED  # 30%: significantly above 20%, the wrong way
    assert f6.verdict == C.NOT_SUPPORTED and per.loc["naive", "cohen_d"] > 0


def test_docs_state_the_effects_in_code():
    """docs/analysis.md's table of stated effects is analysis.claims.power's EFFECTS and ACCURACY_MARGIN."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "analysis.md").read_text()
    table = doc.split("### Power and the stated effects")[1].split("### Verdicts")[0]
    stated = {}
    for key, text in re.findall(r"^\| \w+ `(\w+)` \| (.+) \|$", table, flags=re.M):
        pps = [float(v) / 100 for v in re.findall(r"([\d.]+) pp", text)]
        stated[key] = pps or [float(re.search(r"of ([\d.]+)", text).group(1))]
    assert {k: v[0] for k, v in stated.items()} == pytest.approx(EFFECTS)
    assert stated["defenses_reduce_asr"][1] == pytest.approx(ACCURACY_MARGIN)


def test_task_clustered_interval_covers_the_true_difference_at_the_nominal_rate():
    """Simulated paired differences with a shared task effect (ICC ≈ 0.7, the digits database's 0.66): the
    interval over task means covers the true difference in about 95% of runs; treating the 36 settings as
    replicates covers it far less often (why the claims cluster)."""
    rng = np.random.default_rng(0)
    true, n_tasks, n_attacks, runs = 0.03, 6, 6, 400
    task = rng.normal(0, 0.05, (runs, n_tasks, 1))
    diffs = true + task + rng.normal(0, 0.033, (runs, n_tasks, n_attacks))
    clustered = naive = 0
    for d in diffs:
        r = cluster_test(pd.Series(d.mean(axis=1)), 0.0)
        clustered += r["ci_low"] <= true <= r["ci_high"]
        ci = stats.ttest_1samp(d.ravel(), 0.0).confidence_interval(0.95)
        naive += ci.low <= true <= ci.high
    assert 0.91 <= clustered / runs <= 0.98
    assert naive / runs < 0.8


def test_claim6b_cost_above_the_margin_is_not_supported_even_when_noisy():
    """A cost significantly above the margin refutes "small cost" whatever the power of the one-sided test."""
    rows = _backdoor(cost=0.10, cut=0.6, baseline="clean").assign(
        clean_acc=lambda d: d.clean_acc + np.random.default_rng(2).normal(0, 0.01, len(d)))
    acc = C.defense_effects(rows).tables["effects"].set_index("half").loc["accuracy"]
    assert acc.p_holm > 0.5 and acc.p_opposite_holm < 0.05 and acc.verdict == C.NOT_SUPPORTED


def test_cluster_means_test_equals_cluster_robust_ols_on_a_balanced_design():
    """docs/analysis.md: with equal cluster sizes, the t-test over cluster means has the standard error of
    statsmodels' cluster-robust (CR1) OLS intercept, t with G − 1 degrees of freedom."""
    import statsmodels.api as sm

    df = _transfer({"a": 0.9}, task_noise=0.04)
    y, groups = df.relative_asr.to_numpy(), pd.factorize(df.task)[0]
    ols = sm.OLS(y, np.ones(len(y))).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    r = cluster_test(df.groupby("task").relative_asr.mean(), 0.0)
    assert r["sd"] / math.sqrt(r["n_clusters"]) == pytest.approx(ols.bse[0], rel=1e-9)
    assert r["p"] == pytest.approx(ols.pvalues[0], rel=1e-6)
