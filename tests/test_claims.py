"""The claims' verdict paths on small fixed data, their power statements and the baseline rule.

Independent checks: the MDD is re-derived from the noncentral t distribution, the cluster test from a
t-test on task means computed here, the correlation MDD from Fisher's z by hand, and claims 3 and 4's
default design (the common-set image bootstrap) from a bootstrap written here with numpy."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import claims as C
from analysis.claims.backdoor_data import attacks_only
from analysis.claims.clustered import cluster_test, holm_family
from analysis.claims.power import ACCURACY_MARGIN, EFFECTS, decide, mdd_t, min_detectable_correlation
from analysis.stats import StatisticsError, pairwise_from_boot

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
    """Without per-example rows claim 3 is decided by the task-level t-test (the "new tasks" view), said so."""
    df = _transfer({"surgery_task_arithmetic": 0.9 + gap, "task_arithmetic": 0.9}, task_noise)
    f = C.surgery_more_vulnerable(df, "relative_asr")
    assert f.verdict == verdict, f.result
    assert f.numbers["design"] == "task" and f.numbers["p"] == f.numbers["task_level_p"]
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
    assert f.verdict == C.SUPPORTED and f.numbers["design"] == "task"  # no per-example rows: task-level test
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


# ------------------------------------------- claims 3 and 4 in the default design: the common-set image bootstrap

SURGERY, TA, WA = "surgery_task_arithmetic", "task_arithmetic", "weight_averaging"
SETTING4 = ("task", "attack", "surrogate", "eps")


def _examples(p_fooled: dict[str, float], tasks=("t0", "t1"), attacks=("pgd", "fgsm"), n=40, rng_seed=0,
              wrong: dict[str, int] | None = None) -> pd.DataFrame:
    """Per-example transfer rows (``read_examples``' columns), one seed: each image has a difficulty shared
    by every method and attack; method m is fooled with probability difficulty + p_fooled[m]; the surrogate
    is right on every clean image and fooled on 90% of the adversarial ones; ``wrong[m]``: the first k
    images of each task that m gets wrong on the clean image (they leave the common set)."""
    rng = np.random.default_rng(rng_seed)
    frames = []
    for t in tasks:
        difficulty = rng.uniform(0.0, 0.4, n)
        for a in attacks:
            s_fooled = rng.random(n) < 0.9
            for m, p in p_fooled.items():
                frames.append(pd.DataFrame({
                    "method": m, "task": t, "attack": a, "surrogate": "finetuned", "eps": 8 / 255, "seed": 0,
                    "example_id": np.arange(n), "s_ok": True, "t_ok": np.arange(n) >= (wrong or {}).get(m, 0),
                    "s_fooled": s_fooled, "t_fooled": rng.random(n) < difficulty + p}))
    return pd.concat(frames, ignore_index=True)


def _long(examples: pd.DataFrame) -> pd.DataFrame:
    """Each model on its own counted set, as transfer_long reads them (the task-level view's input)."""
    counted = examples[examples.s_ok & examples.t_ok].groupby(["method", *SETTING4])
    return (counted.t_fooled.mean() / counted.s_fooled.mean()).rename("relative_asr").reset_index()


def _own_boot(examples: pd.DataFrame, methods: list[str], n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An independent image bootstrap of the common-set relative ASR: the full-data method means (methods
    in the given order) and (n_boot × methods) resampled means. Images are drawn within each task (tasks in
    sorted order, images in id order, the draws of numpy's multinomial with ``seed``), the same draw for
    every method and attack; a setting's relative ASR is the target's weighted fooled count over the common
    images ÷ the surrogate's (transfer ASR ÷ white-box ASR); a method's mean is over the settings."""
    ex = examples[examples.method.isin(methods)]
    rng = np.random.default_rng(seed)
    full, boot = [], []
    for t in sorted(ex.task.unique()):
        part = ex[ex.task == t]
        n = part.example_id.nunique()
        w = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)  # (n_boot, images)
        for a in sorted(part.attack.unique()):
            rows = part[part.attack == a]
            t_ok = rows.pivot(index="example_id", columns="method", values="t_ok")[methods].all(axis=1).to_numpy()
            first = rows[rows.method == methods[0]].sort_values("example_id")
            common = t_ok & first.s_ok.to_numpy()
            den = common & first.s_fooled.to_numpy()
            fooled = rows.pivot(index="example_id", columns="method", values="t_fooled")[methods].to_numpy()
            num = fooled * common[:, None]
            full.append(num.sum(axis=0) / den.sum())
            boot.append((w @ num) / (w @ den)[:, None])
    return np.mean(full, axis=0), np.mean(boot, axis=0)


def _sample(examples: pd.DataFrame, **kw) -> C.ImageSample:
    return C.ImageSample(examples, SETTING4, kw.pop("n_boot", 400), kw.pop("seed", 3), **kw)


def test_claim3_is_the_image_bootstrap_of_the_two_methods_computed_here():
    """p, CI and MDD of claim 3 equal a bootstrap written here: common examples of the two methods only
    (a third method's wrong images do not shrink them), Wald z with the bootstrap SE, MDD (z.975 + z.8)·SE."""
    ex = _examples({SURGERY: 0.12, TA: 0.05, WA: 0.0}, wrong={TA: 3, WA: 15})
    f = C.surgery_more_vulnerable(_long(ex), "relative_asr", sample=_sample(ex))
    full, boot = _own_boot(ex, [SURGERY, TA], 400, 3)
    d = boot[:, 0] - boot[:, 1]
    se = d.std(ddof=1)
    diff = full[0] - full[1]
    n = f.numbers
    assert n["design"] == "image" and n["mean"] == pytest.approx(diff) and n["se"] == pytest.approx(se)
    assert n["p"] == pytest.approx(2 * stats.norm.sf(abs(diff / se)))
    assert [n["ci_low"], n["ci_high"]] == pytest.approx(np.quantile(d, [0.025, 0.975]).tolist())
    # statsmodels' power solver finds the root to about 1e-6
    assert f.mdd == n["mdd"] == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * se, rel=1e-5)
    assert n["n_common"] == 2 * 2 * (40 - 3)  # the WA images it gets wrong stay in: not a compared method
    assert f.verdict == decide(n["p"], diff, n["mdd"], EFFECTS["surgery_more_vulnerable"], 0.05)[0]
    assert f.population == C.THESE_TASKS and "Second view, new tasks" in f.result
    assert n["task_level_n_clusters"] == 2  # the task-level t-test is reported beside it, not deciding


def test_claim3_does_not_use_task_means_when_images_are_stored():
    """The task-level values say task arithmetic is far more vulnerable; the images say surgery is: the
    verdict follows the images (a claim that silently tested task means would say "not supported")."""
    ex = _examples({SURGERY: 0.25, TA: 0.0}, tasks=("t0", "t1", "t2"), n=60)
    contradicting = _long(ex).assign(relative_asr=lambda d: np.where(d.method == TA, 0.9, 0.2)
                                     + np.random.default_rng(0).normal(0, 0.01, len(d)))
    f = C.surgery_more_vulnerable(contradicting, "relative_asr", sample=_sample(ex))
    assert f.verdict == C.SUPPORTED and f.numbers["design"] == "image" and f.numbers["mean"] > 0.15
    assert f.numbers["task_level_mean"] < -0.5 and f.numbers["task_level_p"] < 0.05  # the other view disagrees
    task_only = C.surgery_more_vulnerable(contradicting, "relative_asr")
    assert task_only.verdict == C.NOT_SUPPORTED and task_only.numbers["design"] == "task"


def test_claim4_holm_and_mdd_within_its_own_family_on_one_common_set():
    """Weight averaging against each other method on the common set of all of them (the ranking's): the
    p-values are the bootstrap's computed here, Holm over the k − 1 = 3 (statsmodels), MDD at α/3."""
    from statsmodels.stats.multitest import multipletests

    methods = {WA: 0.4, TA: 0.0, "ties": 0.02, "fisher": 0.05}
    ex = _examples(methods, n=60, wrong={"ties": 5})
    f = C.weight_averaging_most_vulnerable(_long(ex), "relative_asr", sample=_sample(ex))
    order = sorted(methods)
    full, boot = _own_boot(ex, order, 400, 3)
    vs = f.tables["vs_weight_averaging"].set_index("other")
    i = order.index(WA)
    p_own = {}
    for j, o in enumerate(order):
        if o == WA:
            continue
        se = (boot[:, i] - boot[:, j]).std(ddof=1)
        assert vs.loc[o, "mean_diff"] == pytest.approx(full[i] - full[j]) and vs.loc[o, "se"] == pytest.approx(se)
        p_own[o] = 2 * stats.norm.sf(abs((full[i] - full[j]) / se))
        mdd = (stats.norm.ppf(1 - 0.05 / 6) + stats.norm.ppf(0.8)) * se  # two-sided at α/3
        assert vs.loc[o, "mdd"] == pytest.approx(mdd, rel=1e-5)
    holm = multipletests(list(p_own.values()), method="holm")[1]
    assert vs.loc[list(p_own), "p_holm"].to_numpy() == pytest.approx(holm)
    assert f.verdict == C.SUPPORTED and f.numbers["rank"] == 1 and f.numbers["design"] == "image"
    assert f.numbers["n_common"] == 2 * 2 * 55  # one common set: ties' wrong images leave every comparison
    with pytest.raises(StatisticsError, match="two different methods"):
        pairwise_from_boot(pd.Series(full, index=order), boot, pairs=[(WA, "regmean")])


def test_claim4_pairs_are_the_rankings_pairs(tmp_path):
    """The report builder reads the per-example rows and passes them: claim 4's comparisons are exactly
    the ranking's pairs with weight averaging (same common set, draws and standard errors)."""
    from analysis.queries import SuiteRef
    from analysis.ranking_view import ranking
    from analysis.report import build_report
    from tests.test_stats import _write_transfer

    ids, rng = np.arange(100), np.random.default_rng(1)
    outcomes = {WA: (ids >= 5, rng.random(100) < 0.6), TA: (ids >= 10, rng.random(100) < 0.3),
                SURGERY: (np.ones(100, bool), rng.random(100) < 0.5)}
    store = _write_transfer(tmp_path / "r.duckdb", outcomes)
    rep = build_report(store, SuiteRef("s", "h"), tmp_path / "out", figures=False, n_boot=300, seed=2)
    f3, f4 = rep.finding(C.F3.key), rep.finding(C.F4.key)
    assert f3.numbers["design"] == f4.numbers["design"] == "image"
    pairs = ranking(store, "h", "transfer", "relative_asr", {"surrogate": ["finetuned"]}, n_boot=300, seed=2,
                    task_level=False).pairs
    pairs = pairs[(pairs.A == WA) | (pairs.B == WA)]
    sign = np.where(pairs.A == WA, 1, -1)
    ref = pd.DataFrame({"other": np.where(pairs.A == WA, pairs.B, pairs.A), "diff": sign * pairs["diff"],
                        "se": pairs.se.to_numpy()}).set_index("other").sort_index()
    vs = f4.tables["vs_weight_averaging"].set_index("other").sort_index()
    assert vs.mean_diff.to_numpy() == pytest.approx(ref["diff"].to_numpy())
    assert vs.se.to_numpy() == pytest.approx(ref.se.to_numpy())


def test_claims_3_and_4_without_images_fall_back_to_the_task_level_test_and_say_so():
    ex = _examples({SURGERY: 0.1, TA: 0.0, WA: 0.0})
    for f in (C.surgery_more_vulnerable(_long(ex), "relative_asr"),
              C.weight_averaging_most_vulnerable(_long(ex), "relative_asr")):
        assert f.numbers["design"] == "task" and f.population == C.NEW_TASKS
        assert "no per-example rows" in f.notes[0] and "new tasks like these" in f.notes[0]
    gated = C.surgery_more_vulnerable(_long(ex), "relative_asr", sample=_sample(
        ex[ex.method != TA], not_ranked={TA: "clean accuracy 0.100 on t0"}))
    assert gated.numbers["design"] == "task" and "utility gate" in gated.notes[0]


def test_claim3_image_interval_covers_a_known_difference_at_the_nominal_rate():
    """Simulation: surgery is fooled with probability 0.1 above task arithmetic on every image (shared image
    difficulty, 2 tasks × 60 images); claim 3's 95% interval covers the true 0.1 in about 95% of 40 runs
    (0.85 is 2.9 standard errors below 0.95)."""
    covered, runs = 0, 40
    for run in range(runs):
        ex = _examples({SURGERY: 0.1, TA: 0.0}, attacks=("pgd",), n=60, rng_seed=100 + run).assign(s_fooled=True)
        n = C.surgery_more_vulnerable(_long(ex), "relative_asr", sample=_sample(ex, n_boot=300, seed=run)).numbers
        covered += n["ci_low"] <= 0.1 <= n["ci_high"]
    assert 0.85 <= covered / runs <= 1.0


def _two_surrogates(shift: float, n=50, tasks=("t0", "t1"), methods=("ta", "ties"), rng_seed=0) -> pd.DataFrame:
    """Per-example rows of two merged methods attacked from both surrogates: the fine-tuned surrogate's
    examples fool the target with probability difficulty + ``shift``, the pretrained one's with the
    difficulty; each surrogate gets some clean images wrong, and each method a few."""
    rng = np.random.default_rng(rng_seed)
    frames = []
    for t in tasks:
        difficulty = rng.uniform(0.1, 0.5, n)
        s_ok = {s: rng.random(n) > 0.1 for s in (C.FINETUNED, "pretrained")}
        for m in methods:
            t_ok = rng.random(n) > 0.1
            for s, p in ((C.FINETUNED, shift), ("pretrained", 0.0)):
                frames.append(pd.DataFrame({
                    "method": m, "task": t, "attack": "pgd", "surrogate": s, "eps": 8 / 255, "seed": 0,
                    "example_id": np.arange(n), "s_ok": s_ok[s], "t_ok": t_ok, "s_fooled": True,
                    "t_fooled": rng.random(n) < difficulty + p}))
    return pd.concat(frames, ignore_index=True)


def test_claim5_compares_the_surrogates_on_the_same_images_as_computed_here():
    """Claim 5's transfer ASR difference: per (method, attack) setting, on the images both surrogates and
    that merged model classify correctly, images resampled within each task with one draw shared by both
    surrogates and both methods; equals a bootstrap written here."""
    ex = _two_surrogates(0.1)
    counted = ex[ex.s_ok & ex.t_ok].groupby(["method", *SETTING4])
    longs = {"asr_transfer": counted.t_fooled.mean().rename("asr_transfer").reset_index()}
    f = C.pretrained_surrogate_transfers_less(longs, sample=_sample(ex))
    rng = np.random.default_rng(3)
    full, boot = [], []
    for t in ("t0", "t1"):
        w = rng.multinomial(50, np.full(50, 1 / 50), size=400)
        for m in ("ta", "ties"):
            g = {s: ex[(ex.task == t) & (ex.method == m) & (ex.surrogate == s)].sort_values("example_id")
                 for s in (C.FINETUNED, "pretrained")}
            common = g[C.FINETUNED].s_ok.to_numpy() & g["pretrained"].s_ok.to_numpy() & g[C.FINETUNED].t_ok.to_numpy()
            asr = {s: (g[s].t_fooled.to_numpy() & common) for s in g}
            full.append((asr[C.FINETUNED].sum() - asr["pretrained"].sum()) / common.sum())
            boot.append((w @ asr[C.FINETUNED] - w @ asr["pretrained"]) / (w @ common))
    d, diff = np.mean(boot, axis=0), np.mean(full)
    n = f.numbers
    assert n["design"] == "image" and n["mean"] == pytest.approx(diff) and n["se"] == pytest.approx(d.std(ddof=1))
    assert [n["ci_low"], n["ci_high"]] == pytest.approx(np.quantile(d, [0.025, 0.975]).tolist())
    assert n["p"] == pytest.approx(2 * stats.norm.sf(abs(diff / d.std(ddof=1))))
    assert f.verdict == C.SUPPORTED and "new tasks" in f.result and n["task_level_n_clusters"] == 2
    relative_first = C.pretrained_surrogate_transfers_less({"relative_asr": longs["asr_transfer"].rename(
        columns={"asr_transfer": "relative_asr"})}, sample=_sample(ex))
    assert relative_first.numbers["design"] == "task"  # the image design tests transfer ASR only: said so


def _own_level(ex: pd.DataFrame, n_boot: int, seed: int) -> tuple[float, np.ndarray]:
    """An independent image bootstrap of the mean per-target relative ASR: each model on its own counted
    set (surrogate and model correct on the clean image), target fooled ÷ surrogate fooled per (model,
    task, attack), the same multinomial image draw per task (tasks sorted) for every model and attack."""
    rng = np.random.default_rng(seed)
    full, boot = [], []
    for t in sorted(ex.task.unique()):
        n = ex[ex.task == t].example_id.nunique()
        w = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)
        for (_, _), g in ex[ex.task == t].groupby(["method", "attack"]):
            g = g.sort_values("example_id")
            counted = (g.s_ok & g.t_ok).to_numpy()
            num, den = counted & g.t_fooled.to_numpy(), counted & g.s_fooled.to_numpy()
            full.append(num.sum() / den.sum())
            boot.append((w @ num) / (w @ den))
    return float(np.mean(full)), np.mean(boot, axis=0)


def test_claim1_is_the_image_bootstrap_of_each_models_own_counted_set():
    """Claim 1's level, CI, p and MDD equal a bootstrap written here (each model on its own counted set,
    not a common set); per method the same, Holm over the methods (statsmodels); the level equals the
    task-level view's mean (a balanced design), so only the design changed, not the quantity."""
    from statsmodels.stats.multitest import multipletests

    ex = _examples({"a": 0.55, "b": 0.5}, wrong={"b": 8})
    long = _long(ex)
    f = C.relative_asr_above(long, sample=_sample(ex))
    mean, boot = _own_level(ex, 400, 3)
    se = boot.std(ddof=1)
    n = f.numbers
    assert n["design"] == "image" and f.population == C.THESE_TASKS
    assert n["mean"] == pytest.approx(mean) and mean == pytest.approx(long.relative_asr.mean())
    assert n["se"] == pytest.approx(se)
    assert [n["ci_low"], n["ci_high"]] == pytest.approx(np.quantile(boot, [0.025, 0.975]).tolist())
    assert n["p"] == pytest.approx(2 * stats.norm.sf(abs((mean - 0.95) / se)))
    assert f.mdd == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * se, rel=1e-5)
    pm = f.tables["per_method"].set_index("method")
    p_own = []
    for m in ("a", "b"):
        m_mean, m_boot = _own_level(ex[ex.method == m], 400, 3)
        assert pm.loc[m, "mean"] == pytest.approx(m_mean) and pm.loc[m, "se"] == pytest.approx(m_boot.std(ddof=1))
        p_own.append(2 * stats.norm.sf(abs((m_mean - 0.95) / m_boot.std(ddof=1))))
    assert pm.loc[["a", "b"], "p_holm"].to_numpy() == pytest.approx(multipletests(p_own, method="holm")[1])
    assert f.verdict == C.NOT_SUPPORTED and n["task_level_n_clusters"] == 2
