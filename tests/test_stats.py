"""analysis.stats: every statistic checked against an independent computation (scipy, statsmodels,
scikit-posthocs, pingouin or by hand), and a simulation with a known difference."""

import itertools
from math import comb

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
import scipy.stats as ss
import torch
from matplotlib.figure import Figure

from analysis.stats import (
    StatisticsError,
    bootstrap_ci,
    bootstrap_means,
    cd_cliques,
    cd_diagram,
    ci_aware_ranks,
    compact_letters,
    correlation,
    friedman_test,
    mcnemar_by_setting,
    mcnemar_exact,
    minimum_detectable_difference,
    nemenyi_critical_difference,
    nemenyi_q,
    one_sample_vs,
    p_value_matrix,
    paired_difference_ci,
    paired_table,
    paired_test,
    pairwise_from_boot,
    pairwise_wilcoxon,
    rank_methods,
    rank_stability,
    replicates_needed,
    top_group,
)
from benchmark.errors import MergesecError

SETTING = ["task", "attack", "seed"]


def make_results(offsets: dict[str, float], n_tasks=4, n_attacks=3, noise=0.1, rng_seed=0) -> pd.DataFrame:
    """One row per (method, task, attack, seed=0): offset + a task effect + Gaussian noise."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for t, a in itertools.product(range(n_tasks), range(n_attacks)):
        task_effect = rng.normal(0, 1)
        for m, off in offsets.items():
            value = off + task_effect + rng.normal(0, noise)
            rows.append({"task": f"t{t}", "attack": f"a{a}", "seed": 0, "method": m, "asr": value})
    return pd.DataFrame(rows)


def wide_of(df: pd.DataFrame) -> pd.DataFrame:
    return df.pivot_table(index=SETTING, columns="method", values="asr").sort_index(axis=1)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, written out."""
    order = np.argsort(p)
    m = len(p)
    adjusted, running = np.empty(m), 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        adjusted[idx] = running
    return adjusted


def matched_pairs_rbc(x: np.ndarray, y: np.ndarray) -> float:
    """Kerby (2014): (sum of ranks of positive differences - of negative ones) / total rank sum."""
    d = x - y
    d = d[d != 0]
    r = ss.rankdata(np.abs(d))
    return (r[d > 0].sum() - r[d < 0].sum()) / r.sum()


# ---------------------------------------------------------------- complete blocks and errors


def test_paired_table_drops_incomplete_settings_and_counts_them():
    df = make_results({"A": 0, "B": 1, "C": 2})
    df = df.drop(df.index[(df.method == "B") & (df.task == "t0")])  # t0 has 3 attacks -> 3 settings lost
    wide = paired_table(df, "asr", SETTING)
    assert wide.shape == (9, 3)
    assert wide.attrs == {"n_settings": 9, "n_settings_dropped": 3}
    assert "t0" not in wide.index.get_level_values("task")


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d[d.method == "A"], "at least 2 methods"),
        (lambda d: d[(d.task == "t0") & (d.attack == "a0")], "2 complete settings"),
        (lambda d: pd.concat([d, d.iloc[:1]]), r"share a \(method, setting\)"),
        (lambda d: d.drop(columns="attack"), "not in the table"),
    ],
)
def test_paired_statistics_reject_unusable_input(mutate, needle):
    df = mutate(make_results({"A": 0, "B": 1}))
    with pytest.raises(StatisticsError, match=needle) as err:
        friedman_test(df, "asr", SETTING)
    assert isinstance(err.value, MergesecError)


# ---------------------------------------------------------------- Friedman


@pytest.mark.parametrize("discrete", [False, True])
def test_friedman_matches_scipy(discrete):
    df = make_results({"A": 0, "B": 0.05, "C": 0.1, "D": 0.3}, noise=0.2)
    if discrete:  # many ties: both must apply the tie correction
        df["asr"] = (df.asr * 2).round()
    res = friedman_test(df, "asr", SETTING)
    wide = wide_of(df)
    q, p = ss.friedmanchisquare(*(wide[c] for c in wide.columns))
    n, k = wide.shape
    assert res.loc[0, "Q"] == pytest.approx(q, rel=1e-9)
    assert res.loc[0, "p_unc"] == pytest.approx(p, rel=1e-9)
    assert res.loc[0, "W"] == pytest.approx(q / (n * (k - 1)), rel=1e-9)  # Kendall's W from Q
    assert res.loc[0, "ddof1"] == k - 1
    assert res.loc[0, "n_settings"] == n and res.loc[0, "n_settings_dropped"] == 0


# ---------------------------------------------------------------- pairwise Wilcoxon


def test_pairwise_wilcoxon_matches_scipy_and_hand_holm():
    df = make_results({"A": 0, "B": 0.03, "C": 0.08, "D": 0.3}, noise=0.1)
    res = pairwise_wilcoxon(df, "asr", SETTING)
    wide = wide_of(df)
    assert len(res) == 6
    assert list(zip(res.A, res.B, strict=True)) == list(itertools.combinations("ABCD", 2))
    scipy_tests = [ss.wilcoxon(wide[a], wide[b]) for a, b in zip(res.A, res.B, strict=True)]
    expected_p = np.array([t.pvalue for t in scipy_tests])
    np.testing.assert_allclose(res.W_val, [t.statistic for t in scipy_tests])
    np.testing.assert_allclose(res.p_unc, expected_p, rtol=1e-9)
    np.testing.assert_allclose(res.p_corr, holm(expected_p), rtol=1e-9)
    rbc = [
        matched_pairs_rbc(wide[a].to_numpy(), wide[b].to_numpy()) for a, b in zip(res.A, res.B, strict=True)
    ]
    np.testing.assert_allclose(res.RBC, rbc)
    cles = [
        (wide[a].to_numpy()[:, None] > wide[b].to_numpy()).mean() for a, b in zip(res.A, res.B, strict=True)
    ]
    np.testing.assert_allclose(res.CLES, cles)
    assert res.p_corr.ge(res.p_unc).all() and res.p_corr.lt(1).any()
    assert res[["RBC", "CLES"]].notna().all().all()


def test_pairwise_wilcoxon_matches_pingouin_pairwise_tests():
    import pingouin as pg

    df = make_results({"A": 0, "B": 0.03, "C": 0.08, "D": 0.3}, noise=0.1)
    res = pairwise_wilcoxon(df, "asr", SETTING)
    long = df.assign(block=df.task + df.attack)
    pg_res = pg.pairwise_tests(long, dv="asr", within="method", subject="block", parametric=False,
                               padjust="holm", effsize="CLES")
    np.testing.assert_allclose(res.p_unc, pg_res.p_unc, rtol=1e-9)
    np.testing.assert_allclose(res.p_corr, pg_res.p_corr, rtol=1e-9)
    np.testing.assert_allclose(res.CLES, pg_res.CLES)


def test_pairwise_wilcoxon_two_methods_and_identical_methods():
    df = make_results({"A": 0, "B": 0.1}, n_tasks=5)
    df.loc[df.method == "B", "asr"] = df.loc[df.method == "A", "asr"].to_numpy()  # identical everywhere
    res = pairwise_wilcoxon(df, "asr", SETTING)
    assert len(res) == 1
    assert res.loc[0, "p_corr"] == res.loc[0, "p_unc"] == 1.0
    assert res.loc[0, "RBC"] == 0.0 and res.loc[0, "CLES"] == pytest.approx(0.5, abs=0.2)


def test_paired_test_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, 15)
    b = a - rng.normal(0.5, 1, 15)
    res = paired_test(a, b, alternative="greater")
    sp = ss.wilcoxon(a, b, alternative="greater")
    assert res.loc[0, "W_val"] == pytest.approx(sp.statistic)
    assert res.loc[0, "p_val"] == pytest.approx(sp.pvalue, rel=1e-9)
    assert res.loc[0, "RBC"] == pytest.approx(matched_pairs_rbc(a, b))
    assert res.loc[0, "n"] == 15
    with pytest.raises(StatisticsError):
        paired_test(a, b[:-1])


# ---------------------------------------------------------------- McNemar


def test_mcnemar_exact_against_binomial_sum():
    a = np.array([True] * 3 + [True] * 1 + [False] * 7 + [False] * 2)
    b = np.array([True] * 3 + [False] * 1 + [True] * 7 + [False] * 2)
    res = mcnemar_exact(a, b)
    # b = 1 discordant pair favours A, c = 7 favour B: p = 2 * P(X <= 1), X ~ Bin(8, 1/2)
    hand = 2 * (comb(8, 0) + comb(8, 1)) / 2**8
    assert hand == pytest.approx(0.0703125)
    assert res.loc[0, ["n", "b", "c", "statistic"]].tolist() == [13, 1, 7, 1]
    assert res.loc[0, "p_val"] == pytest.approx(hand, rel=1e-12)
    assert mcnemar_exact(a, a).loc[0, "p_val"] == 1.0
    with pytest.raises(StatisticsError):
        mcnemar_exact(a.astype(int), b)


def test_mcnemar_by_setting_pairs_examples_and_holm_corrects():
    rows = []
    # setting t0: A succeeds on 0..9, B on none -> b=10, c=0; setting t1: identical outcomes
    for task, ex in itertools.product(["t0", "t1"], range(12)):
        a_out = ex < 10 if task == "t0" else ex % 2 == 0
        b_out = False if task == "t0" else ex % 2 == 0
        rows += [
            {"task": task, "example_id": ex, "method": "A", "hit": a_out},
            {"task": task, "example_id": ex, "method": "B", "hit": b_out},
        ]
    df = pd.DataFrame([*rows, {"task": "t0", "example_id": 99, "method": "A", "hit": True}])  # unpaired
    res = mcnemar_by_setting(df, "hit", ["task"], "A", "B").set_index("task")
    assert res.loc["t0", ["n", "b", "c"]].tolist() == [12, 10, 0]
    assert res.loc["t0", "p_val"] == pytest.approx(2 / 2**10)
    assert res.loc["t1", "p_val"] == 1.0
    assert res.loc["t0", "p_corr"] == pytest.approx(2 * 2 / 2**10)  # Holm: smallest of 2 p-values x 2
    disjoint = df[(df.method == "A") & (df.task == "t0") | (df.method == "B") & (df.task == "t1")]
    with pytest.raises(StatisticsError, match="share no"):
        mcnemar_by_setting(disjoint, "hit", ["task"], "A", "B")


# ---------------------------------------------------------------- Nemenyi and the CD diagram


def test_nemenyi_q_matches_demsar_table():
    # Demšar (2006), Table 5(a): q_0.05 for k = 2..6, printed to 3 decimals (k = 3 truncated)
    for k, q in zip(range(2, 7), [1.960, 2.343, 2.569, 2.728, 2.850], strict=True):
        assert nemenyi_q(k, 0.05) == pytest.approx(q, abs=1e-3)


def test_nemenyi_critical_difference_and_average_ranks():
    df = make_results({"A": 0, "B": 0.1, "C": 0.2, "D": 0.3}, noise=0.2)
    res = nemenyi_critical_difference(df, "asr", SETTING, higher_is_better=False).set_index("method")
    wide = wide_of(df)
    hand_ranks = np.mean([ss.rankdata(row) for row in wide.to_numpy()], axis=0)  # 1 = lowest = best
    np.testing.assert_allclose(res.loc[wide.columns, "avg_rank"], hand_ranks)
    n = len(wide)
    assert res.cd.iat[0] == pytest.approx(2.569 * np.sqrt(4 * 5 / (6 * n)), rel=2e-4)
    assert res.avg_rank.is_monotonic_increasing
    flipped = nemenyi_critical_difference(df, "asr", SETTING, higher_is_better=True).set_index("method")
    np.testing.assert_allclose(flipped.loc[wide.columns, "avg_rank"], 5 - hand_ranks)


def test_cd_cliques_by_hand():
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.2, "d": 3.5, "e": 3.9})
    assert cd_cliques(ranks, cd=1.3) == [["a", "b", "c"], ["d", "e"]]
    assert cd_cliques(ranks, cd=0.6) == [["a", "b"], ["d", "e"]]
    assert cd_cliques(ranks, cd=0.3) == []
    assert cd_cliques(ranks, cd=3.0) == [["a", "b", "c", "d", "e"]]


def test_cd_diagram_draws_every_method_and_the_given_decisions():
    df = make_results({"A": 0, "B": 0.01, "C": 1.0, "D": 1.01, "E": 2.0}, noise=0.3)
    ranks = nemenyi_critical_difference(df, "asr", SETTING, higher_is_better=True)
    wide = paired_table(df, "asr", SETTING)
    expected = sp.posthoc_nemenyi_friedman(wide.to_numpy())
    np.testing.assert_allclose(pd.DataFrame(ranks.attrs["p_values"]).loc[wide.columns, wide.columns], expected)
    fig = cd_diagram(ranks, title="relative ASR")
    assert isinstance(fig, Figure)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for m, r in zip(ranks.method, ranks.avg_rank, strict=True):
        assert m in texts and f"{r:.2f}" in texts
    assert fig.axes[0].get_title() == "relative ASR"
    # with a p-value matrix where nothing differs, one bar joins all methods; where all differ, none
    methods = list(ranks.method)
    same = pd.DataFrame(1.0, index=methods, columns=methods)
    differ = pd.DataFrame(0.0, index=methods, columns=methods)
    n_lines = [len(cd_diagram(ranks, p_values=m).axes[0].lines) for m in (same, differ)]
    assert n_lines[0] == n_lines[1] + 1


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_ci_covers_mean_reproducible_and_seed_dependent():
    x = np.random.default_rng(1).normal(5, 2, 200)
    res = bootstrap_ci(x, n_boot=2000, seed=7)
    assert res.loc[0, "variable"] == "value" and res.loc[0, "mean"] == pytest.approx(x.mean())
    assert res.loc[0, "ci_low"] < x.mean() < res.loc[0, "ci_high"]
    # normal theory half-width 1.96 s / sqrt(n)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert res.loc[0, "ci_high"] - res.loc[0, "ci_low"] == pytest.approx(2 * half, rel=0.1)
    pd.testing.assert_frame_equal(res, bootstrap_ci(x, n_boot=2000, seed=7))
    assert res.loc[0, "ci_low"] != bootstrap_ci(x, n_boot=2000, seed=8).loc[0, "ci_low"]


def test_bootstrap_ci_is_scipy_bca_and_percentile():
    x = np.random.default_rng(2).exponential(1.0, 40)
    for method in ("BCa", "percentile"):
        res = bootstrap_ci(pd.Series(x, name="acc"), n_boot=500, seed=11, ci=0.9, method=method)
        sp_res = ss.bootstrap((x,), np.mean, n_resamples=500, confidence_level=0.9, method=method,
                              rng=np.random.default_rng(11))
        assert res.loc[0, "variable"] == "acc"
        np.testing.assert_allclose(res.loc[0, ["ci_low", "ci_high"]].astype(float), sp_res.confidence_interval)


def test_paired_difference_ci_is_not_the_shift_of_marginal_cis():
    rng = np.random.default_rng(12)
    shared = rng.normal(0, 1, 60)  # a hard/easy component both methods share
    a, b = shared + rng.normal(0, 0.3, 60), shared + 0.2 + rng.normal(0, 0.3, 60)
    diff = paired_difference_ci(a, b, n_boot=1000, seed=0)
    sp_res = ss.bootstrap((a - b,), np.mean, n_resamples=1000, rng=np.random.default_rng(0))
    np.testing.assert_allclose(diff.loc[0, ["ci_low", "ci_high"]].astype(float), sp_res.confidence_interval)
    marginal = bootstrap_ci(pd.DataFrame({"a": a, "b": b}), n_boot=1000, seed=0).set_index("variable")
    shift = marginal.loc["a"] - marginal.loc["b"]
    width_a = marginal.loc["a", "ci_high"] - marginal.loc["a", "ci_low"]
    assert diff.loc[0, "ci_high"] - diff.loc[0, "ci_low"] < 0.5 * width_a
    assert not np.allclose([shift.ci_low, shift.ci_high], diff.loc[0, ["ci_low", "ci_high"]].astype(float))


def test_bootstrap_is_paired_across_columns_and_can_resample_groups():
    x = np.random.default_rng(4).normal(0, 1, 30)
    boot = bootstrap_means(np.c_[x, x + 1.0], n_boot=300, seed=0)
    np.testing.assert_allclose(boot[:, 1] - boot[:, 0], 1.0)  # same rows resampled for both columns
    groups = np.repeat(["t0", "t1", "t2"], [5, 10, 15])
    draws = np.random.default_rng(5).integers(0, 3, size=(400, 3))
    labels = np.array(["t0", "t1", "t2"])
    boot = [np.concatenate([x[groups == g] for g in labels[d]]).mean() for d in draws]
    clustered = bootstrap_ci(x, n_boot=400, seed=5, groups=groups)
    np.testing.assert_allclose(
        clustered.loc[0, ["ci_low", "ci_high"]].astype(float), np.quantile(boot, [0.025, 0.975])
    )


# ---------------------------------------------------------------- letters, top group, rankings


def test_compact_letters_hand_example():
    # A > B > C > D; significant: A-C, A-D, B-D
    res = compact_letters(["A", "B", "C", "D"], [("A", "C"), ("D", "A"), ("B", "D")])
    assert res.method.tolist() == ["A", "B", "C", "D"]
    assert res.letters.tolist() == ["a", "ab", "bc", "c"]
    assert compact_letters(["A", "B"], []).letters.tolist() == ["a", "a"]


def test_compact_letters_share_iff_not_significant_and_sweep_leaves_no_redundant_letter():
    """Two methods share a letter exactly when not significant; after Piepho's sweep, removing any one
    letter from any method breaks that."""
    methods = list("ABCDEF")
    pairs = list(itertools.combinations(methods, 2))
    rng = np.random.default_rng(1)
    for _ in range(300):
        significant = {p for p in pairs if rng.random() < 0.4}
        letters = compact_letters(methods, significant).set_index("method").letters.to_dict()
        for a, b in pairs:
            assert (not set(letters[a]) & set(letters[b])) == ((a, b) in significant), (a, b, significant)
        for m, own in letters.items():
            for ch in own:
                reduced = {**letters, m: own.replace(ch, "")}
                ok = all(reduced.values()) and all(
                    (not set(reduced[a]) & set(reduced[b])) == ((a, b) in significant) for a, b in pairs
                )
                assert not ok, (m, ch, letters, significant)


def test_ci_aware_ranks_count_significantly_better_methods():
    ranks = ci_aware_ranks(list("ABCD"), [("A", "C"), ("A", "D"), ("B", "D"), ("C", "D")])
    assert ranks.to_dict() == {"A": 1, "B": 1, "C": 2, "D": 4}


def test_pairwise_from_boot_matches_hand_wald_statsmodels_holm_and_power():
    rng = np.random.default_rng(5)
    boot = rng.normal([0.5, 0.45, 0.3], [0.02, 0.03, 0.02], size=(4000, 3))
    means = pd.Series([0.5, 0.45, 0.3], index=["a", "b", "c"])
    res = pairwise_from_boot(means, boot).set_index(["A", "B"])
    for (i, x), (j, y) in itertools.combinations(enumerate("abc"), 2):
        d = boot[:, i] - boot[:, j]
        row = res.loc[(x, y)]
        assert row["se"] == pytest.approx(d.std(ddof=1))
        assert row["p_unc"] == pytest.approx(2 * ss.norm.sf(abs(means[x] - means[y]) / d.std(ddof=1)))
        assert row["mdd"] == pytest.approx((ss.norm.ppf(0.975) + ss.norm.ppf(0.8)) * d.std(ddof=1), rel=1e-4)
        assert row["mdd_holm"] == pytest.approx((ss.norm.ppf(1 - 0.05 / 6) + ss.norm.ppf(0.8)) * row["se"], rel=1e-4)
    np.testing.assert_allclose(res.p_corr, holm(res.p_unc.to_numpy()))
    assert res.significant.tolist() == [False, True, True]
    mat = p_value_matrix(res.reset_index(), list("abc"))
    assert mat.loc["c", "a"] == mat.loc["a", "c"] == res.loc[("a", "c"), "p_corr"] and mat.loc["b", "b"] == 1


def test_minimum_detectable_difference_and_replicates():
    assert minimum_detectable_difference(1.0) == pytest.approx(ss.norm.ppf(0.975) + ss.norm.ppf(0.8), rel=1e-5)
    # se 0.035 per seed -> mdd 9.8 pp; to detect 5 pp: ceil((9.8 / 5)^2) = 4 seeds
    assert replicates_needed(0.035, 0.05) == int(np.ceil((2.8016 * 0.035 / 0.05) ** 2)) == 4
    assert replicates_needed(0.001, 0.05) == 1


def test_top_group_is_ci_aware_rank_one():
    df = make_results({"A": 1.0, "B": 1.0, "C": 0.2}, n_tasks=5, noise=0.05)
    res = top_group(df, "asr", SETTING, higher_is_better=True, cluster_col=None).set_index("method")
    assert res.top_group.to_dict() == {"A": True, "B": True, "C": False}
    lower = top_group(df, "asr", SETTING, higher_is_better=False, cluster_col=None).set_index("method")
    assert lower.top_group.to_dict() == {"A": False, "B": False, "C": True}


def test_rank_methods_table():
    df = make_results({"wa": 1.0, "ta": 0.99, "ties": 0.3, "ada": 0.0}, n_tasks=5, noise=0.05)
    df = df.drop(df.index[(df.method == "ada") & (df.task == "t4") & (df.attack == "a2")])
    res = rank_methods(df, "asr", SETTING, higher_is_better=True, n_boot=500, seed=3, cluster_col=None)
    assert res.columns.tolist() == ["method", "mean", "ci_low", "ci_high", "n_settings", "rank", "letters"]
    assert res.method.tolist() == ["wa", "ta", "ties", "ada"] and res["rank"].tolist() == [1, 1, 3, 4]
    assert res.attrs["n_settings_dropped"] == 1 and (res.n_settings == 14).all()
    assert res.letters.tolist() == ["a", "a", "b", "c"]
    assert res.attrs["separable"] and res.attrs["resampling"].startswith("complete settings")
    wide = paired_table(df, "asr", SETTING)
    boot = bootstrap_means(wide[res.method], n_boot=500, seed=3)
    np.testing.assert_allclose(res[["ci_low", "ci_high"]], np.quantile(boot, [0.025, 0.975], axis=0).T)
    lower = rank_methods(df, "asr", SETTING, higher_is_better=False, n_boot=200)
    assert lower.method.tolist() == ["ada", "ties", "ta", "wa"]
    assert lower.attrs["resampling"].startswith("tasks with all their settings")


def test_rank_methods_clusters_by_task_widen_the_interval():
    """Settings of one task share a task effect: resampling tasks (the default) gives wider CIs than
    treating the settings as independent."""
    rng = np.random.default_rng(0)
    rows = []
    for t in range(6):
        effect = rng.normal(0, 0.3)  # the same for every attack of the task, and favours A or B per task
        for a in range(6):
            key = {"task": f"t{t}", "attack": f"a{a}", "seed": 0}
            rows += [{**key, "method": "A", "asr": effect + rng.normal(0, 0.02)},
                     {**key, "method": "B", "asr": -effect + rng.normal(0, 0.02)}]
    df = pd.DataFrame(rows)
    naive = rank_methods(df, "asr", SETTING, True, n_boot=1000, cluster_col=None)
    clustered = rank_methods(df, "asr", SETTING, True, n_boot=1000)
    width = lambda r: (r.ci_high - r.ci_low).mean()  # noqa: E731
    assert width(clustered) > 1.8 * width(naive)
    assert clustered.attrs["mdd"] > 1.8 * naive.attrs["mdd"]


def test_ranks_and_letters_come_from_the_same_decisions():
    df = make_results({"A": 0.0, "B": 0.05, "C": 0.1, "D": 0.3, "E": 0.31}, n_tasks=8, noise=0.1)
    res = rank_methods(df, "asr", SETTING, higher_is_better=True, n_boot=1000, cluster_col=None)
    for a, b in itertools.combinations(res.itertuples(), 2):
        share = bool(set(a.letters) & set(b.letters))
        if not share:  # significantly different: the better one's rank is strictly lower
            assert a.rank < b.rank
    first = res[res["rank"] == 1]
    assert all(set(first.letters.iat[0]) & set(x) for x in first.letters)


def test_bootstrap_interval_covers_a_known_difference_at_the_nominal_rate():
    """Simulation: two methods on 60 images of 2 tasks with a known difference of 0.1 in success
    probability; the image bootstrap (within task) 95% interval of the difference covers it ~95% of runs
    (80 runs: 0.86 is 3.7 standard errors below 0.95)."""
    from analysis.common_set import common_set

    rng = np.random.default_rng(7)
    covered, n_runs = 0, 80
    for _ in range(n_runs):
        rows = []
        for t in range(2):
            p_img = rng.uniform(0.2, 0.6, 60)  # image difficulty shared by both methods
            for m, shift in (("A", 0.0), ("B", 0.1)):
                fooled = rng.random(60) < p_img + shift
                rows.append(pd.DataFrame({"method": m, "task": f"t{t}", "attack": "pgd", "surrogate": "finetuned",
                                          "eps": 0.03, "seed": 0, "example_id": np.arange(60), "s_ok": True,
                                          "t_ok": True, "s_fooled": True, "t_fooled": fooled}))
        cs = common_set(pd.concat(rows), "asr_transfer", ["task", "attack", "surrogate", "eps"])
        boot = cs.boot(400, seed=int(rng.integers(1 << 30)))
        low, high = np.quantile(boot[:, 1] - boot[:, 0], [0.025, 0.975])
        covered += low <= 0.1 <= high
    assert covered / n_runs >= 0.86


def test_rank_stability_dominant_method_and_unstable_pair():
    df = make_results({"best": 5.0, "x": 0.0, "y": 0.0}, n_tasks=6, noise=0.3)
    res = rank_stability(df, "asr", SETTING, higher_is_better=True, n_boot=500, seed=0).set_index("method")
    assert res.loc["best", ["rank", "p_same_rank", "mean_rank", "p_rank1"]].tolist() == [1, 1.0, 1.0, 1.0]
    assert res.loc[["x", "y"], "p_same_rank"].lt(1.0).all()  # x and y swap places across task resamples
    assert res.loc[["x", "y"], "p_rank1"].eq(0).all()
    assert res.attrs["n_groups"] == 6
    with pytest.raises(StatisticsError):
        rank_stability(df, "asr", SETTING, higher_is_better=True, resample_col="dataset")


# ---------------------------------------------------------------- one-sample tests and correlation


def test_one_sample_vs_matches_scipy():
    rng = np.random.default_rng(8)
    df = pd.DataFrame(
        {
            "method": np.repeat(["m1", "m2"], 14),
            "rel_asr": np.r_[rng.normal(0.97, 0.02, 14), rng.normal(0.9, 0.05, 14)],
        }
    )
    res = one_sample_vs(df, "rel_asr", value=0.95, alternative="greater").set_index("method")
    for m, x in df.groupby("method").rel_asr:
        w = ss.wilcoxon(x - 0.95, alternative="greater")
        t = ss.ttest_1samp(x, 0.95, alternative="greater")
        assert res.loc[m, "W_val"] == pytest.approx(w.statistic)
        assert res.loc[m, "p_wilcoxon"] == pytest.approx(w.pvalue, rel=1e-9)
        assert res.loc[m, "T"] == pytest.approx(t.statistic) and res.loc[m, "p_ttest"] == pytest.approx(
            t.pvalue
        )
        assert res.loc[m, "cohen_d"] == pytest.approx(abs(x.mean() - 0.95) / x.std(ddof=1))
        assert res.loc[m, "RBC"] == pytest.approx(matched_pairs_rbc(x.to_numpy() - 0.95, np.zeros(len(x))))
    assert res.loc["m1", "p_wilcoxon"] < 0.05 < res.loc["m2", "p_wilcoxon"]


def test_correlation_matches_scipy():
    rng = np.random.default_rng(9)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    res = correlation(x, y).set_index("test")
    rho, p_rho = ss.spearmanr(x, y)
    tau, p_tau = ss.kendalltau(x, y)
    assert res.loc["spearman", "r"] == pytest.approx(rho) and res.loc["spearman", "p_val"] == pytest.approx(
        p_rho
    )
    assert res.loc["kendall", "r"] == pytest.approx(tau) and res.loc["kendall", "p_val"] == pytest.approx(
        p_tau
    )
    assert (res.n == 30).all()


# ---------------------------------------------------------------- common examples (issue 13) from the store


def _write_transfer(path, outcomes: dict[str, tuple[np.ndarray, np.ndarray]], tasks=("t0", "t1"), n=100,
                    seeds=(0,)):
    """A store with one unit per (method, task, seed): ``outcomes[m] = (clean_correct, fooled)`` per image
    (the same for every seed); the surrogate is correct on every clean image and fooled on every adversarial
    one (white-box ASR 1). The per-target metrics are each model's share fooled among its own counted images."""
    from benchmark.store import open_store

    store = open_store(path)
    for m, (clean, fooled) in outcomes.items():
        for t, seed in itertools.product(tasks, seeds):
            key = f"{m}-{t}-{seed}"
            setting = {"method": m, "task": t, "attack": "pgd", "surrogate": "finetuned", "seed": seed}
            asr = float(fooled[clean].mean())
            settings = pd.DataFrame([{**setting, "suite": "s", "suite_hash": "h", "eps": 8 / 255,
                                      "n": int(clean.sum()),
                                      "n_subset": n, "clean_acc_surrogate": 1.0, "clean_acc_target": clean.mean(),
                                      "asr_whitebox": 1.0, "asr_transfer": asr, "relative_asr": asr,
                                      "asr_whitebox_all": 1.0, "asr_transfer_all": float((fooled | ~clean).mean()),
                                      "grad_cosine": 0.5, "cka": 0.5}])
            rows = pd.DataFrame({**setting, "suite_hash": "h", "example_id": np.arange(n), "label": 0,
                                 "surrogate_clean_correct": True, "target_clean_correct": clean,
                                 "surrogate_adv_correct": False, "target_adv_correct": ~fooled})
            tables = {"transfer_settings": settings, "transfer_outcomes": rows}
            store.write_unit(key, "transfer", "h", "r", {}, tables, 1)
    return store


def test_ranking_follows_the_common_examples_not_the_per_target_denominators(tmp_path):
    """A is right on every clean image and fooled on the 40 images B gets wrong anyway plus 5 more (45/100);
    B is right on images 40-99 and fooled on 20 of them (20/60). Per target, B looks less vulnerable
    (0.33 < 0.45); on the 60 common images A is fooled on 5 (0.08) and B on 20 (0.33): A is less vulnerable."""
    from analysis.ranking_view import ranked_table

    ids = np.arange(100)
    outcomes = {"A": (np.ones(100, bool), ids < 45), "B": (ids >= 40, (ids >= 40) & (ids < 60))}
    store = _write_transfer(tmp_path / "c.duckdb", outcomes)
    res = ranked_table(store, "h", "transfer", "relative_asr", n_boot=300).set_index("method")
    assert res.index.tolist() == ["A", "B"]
    assert res.loc["A", "mean"] == pytest.approx(5 / 60) and res.loc["B", "mean"] == pytest.approx(20 / 60)
    assert res.loc["A", "per_target"] == pytest.approx(0.45) and res.loc["B", "per_target"] == pytest.approx(20 / 60)
    assert res.loc["A", "rank"] == 1 and res.loc["B", "rank"] == 2  # 15 vs 40 of 120 common images: significant
    assert res.attrs["n_common"] == 120 and res.attrs["n_common_min"] == 60 and res.attrs["surrogate"] == "finetuned"
    assert "images within each task" in res.attrs["resampling"]
    from analysis.common_set import common_set, read_examples

    cs = common_set(read_examples(store, "surrogate = 'finetuned'", []), "relative_asr",
                    ["task", "attack", "surrogate", "eps"])
    same = rank_methods(cs.long, "relative_asr", cs.settings, False, boot=cs.boot(300), resampling="images")
    pd.testing.assert_frame_equal(same, res.reset_index()[same.columns], check_like=False)
    one_task = ranked_table(store, "h", "transfer", "relative_asr", {"task": ["t0"]}, n_boot=50)
    assert one_task.attrs["n_common"] == 60
    with pytest.raises(MergesecError, match="never pooled"):
        ranked_table(store, "h", "transfer", "relative_asr", {"surrogate": ["finetuned", "pretrained"]})


def test_too_small_a_common_set_is_reported_instead_of_ranked(tmp_path):
    from analysis.common_set import CommonSetError
    from analysis.ranking_view import ranked_table

    ids = np.arange(100)
    store = _write_transfer(tmp_path / "s.duckdb", {"A": (ids < 50, ids < 10), "B": (ids >= 45, ids > 90)})
    with pytest.raises(CommonSetError, match="too small to rank: 0 of 2 settings hold at least 10"):
        ranked_table(store, "h", "transfer", "relative_asr", n_boot=50)


def test_a_merge_at_chance_is_gated_out_of_the_transfer_ranking_and_named(tmp_path):
    """C is right on 10 of 100 images of a 10-class task (chance): ranked with A and B it leaves 9 common
    images per setting, too few to rank anyone; with the suite's class counts stored, C is not ranked and
    the note says why, with the exact binomial p-value (computed here from the pmf)."""
    from math import comb

    from analysis.chance_gate import below_chance
    from analysis.common_set import CommonSetError, read_examples
    from analysis.ranking_view import ranked_table

    ids = np.arange(100)
    outcomes = {"A": (np.ones(100, bool), ids < 30), "B": (ids >= 5, ids < 50), "C": (ids % 10 == 0, ids < 100)}
    store = _write_transfer(tmp_path / "g.duckdb", outcomes)
    with pytest.raises(CommonSetError, match="all 3 methods"):  # common: ids 10, 20, …, 90
        ranked_table(store, "h", "transfer", "relative_asr", n_boot=50)
    spec = {"name": "s", "tasks": [{"name": "t0", "n_classes": 10}, {"name": "t1", "n_classes": 10}]}
    store.upsert("suites", ["suite_hash"], {"suite_hash": "h", "suite": "s", "version": "1", "spec": spec,
                                            "registered_at": pd.Timestamp("2026-01-01")})
    gated = ranked_table(store, "h", "transfer", "relative_asr", n_boot=50)
    assert gated.method.tolist() == ["A", "B"] and gated.attrs["n_common"] == 2 * 95
    assert list(gated.attrs["not_ranked"]) == ["C"] and "0.100 on t0 (seed 0, 100 attack-subset images)" in \
        gated.attrs["not_ranked"]["C"]
    rows = below_chance(read_examples(store, "true", []), {"t0": 10, "t1": 10})
    p_exact = sum(comb(100, k) * 0.1**k * 0.9 ** (100 - k) for k in range(10, 101))
    assert rows.method.tolist() == ["C", "C"] and rows.p.tolist() == pytest.approx([p_exact] * 2, rel=1e-9)
    assert below_chance(read_examples(store, "true", []), {"t0": 2, "t1": 2}).method.tolist() == ["C", "C"]
    assert below_chance(read_examples(store, "true", []), {}).empty


def test_the_utility_gate_tests_each_merged_model_on_its_whole_test_split(tmp_path):
    """56 of 99 right on a binary task in each seed's attack subset is not above chance (p = 0.11); the same
    rate over the 297 test-split images is (p = 0.014; the binomial tails computed here, docs/statistics.md
    and the gate's docstring quote both). So with the merge track's whole-split counts B is ranked; without
    them it is gated; C, at chance on the whole split in seed 1 only, is gated, named with that seed."""
    from pathlib import Path

    from analysis.chance_gate import SPLIT, SUBSET, below_chance, describe
    from analysis.common_set import read_examples

    ids = np.arange(99)
    outcomes = {"A": (np.ones(99, bool), ids < 30), "B": (ids < 56, ids < 20), "C": (ids < 60, ids < 10)}
    store = _write_transfer(tmp_path / "s.duckdb", outcomes, tasks=("t0",), n=99, seeds=(0, 1, 2))
    tail = lambda n, c: sum(comb(n, k) for k in range(c, n + 1)) / 2**n  # noqa: E731
    assert (round(tail(99, 56), 2), round(tail(297, 168), 3)) == (0.11, 0.014)
    doc = " ".join((Path(__file__).parents[1] / "docs" / "statistics.md").read_text().split())
    assert "56 of 99 right on a binary task is \"at chance\" (p = 0.11)" in doc and "(p = 0.014)" in doc
    examples, classes = read_examples(store, "true", []), {"t0": 2}
    subset = below_chance(examples, classes)
    assert subset.method.tolist() == ["B"] * 3 and set(subset.images) == {SUBSET}
    assert subset.p.tolist() == pytest.approx([tail(99, 56)] * 3, rel=1e-9)
    split = pd.DataFrame([{"method": m, "task": "t0", "seed": s, "n": 297, "correct": c}
                          for m, c in (("A", 297), ("B", 168), ("C", 200)) for s in (0, 1, 2)])
    split.loc[(split.method == "C") & (split.seed == 1), "correct"] = 150
    whole = below_chance(examples, classes, split)
    assert whole[["method", "seed", "n", "correct", "images"]].values.tolist() == [["C", 1, 297, 150, SPLIT]]
    assert whole.p.item() == pytest.approx(tail(297, 150), rel=1e-9)
    assert describe(whole)["C"].startswith("clean accuracy 0.505 on t0 (seed 1, 297 test-split images)")
    partial = below_chance(examples, classes, split[split.seed != 2])  # seed 2 not in the merge track
    assert partial[["method", "seed", "images"]].values.tolist() == [["B", 2, SUBSET], ["C", 1, SPLIT]]


def test_power_plan_seed_formula_matches_simulated_subset_counts():
    """se with k seeds = se1 √((1 − f)/k + f): the variance of a mean over k random n-of-N subsets
    (Σ w², w = image counts / (k n)), relative to one subset, checked by simulation; with disjoint subsets
    se1 √(1/k), checked on the blocks the transfer track draws."""
    from analysis.power_plan import se_after

    rng = np.random.default_rng(0)
    n_test, n_sub = 297, 200
    for k in (1, 3, 10):
        sums = [np.bincount(np.concatenate([rng.choice(n_test, n_sub, replace=False) for _ in range(k)]),
                            minlength=n_test) for _ in range(400)]
        var_ratio = np.mean([(c / (k * n_sub)) @ (c / (k * n_sub)) for c in sums]) * n_sub
        assert se_after(1.0, k, n_sub / n_test) ** 2 == pytest.approx(var_ratio, rel=0.02)
    assert se_after(1.0, 1, 0.5) == 1.0 and se_after(1.0, 10**9, 0.25) == pytest.approx(0.5)
    # disjoint blocks (transfer.subsets: disjoint): the counts of k blocks of one permutation
    from benchmark.tracks.transfer_cache import transfer_subset

    n_sub = 99
    for k in (1, 2, 3):
        c = np.bincount(torch.cat([transfer_subset(n_test, n_sub, s, "disjoint") for s in range(k)]).numpy(),
                        minlength=n_test)
        assert c.max() == 1 and se_after(1.0, k, n_sub / n_test, "disjoint") ** 2 == pytest.approx(
            (c / (k * n_sub)) @ (c / (k * n_sub)) * n_sub)
    assert se_after(1.0, 3, 1 / 3, "disjoint") == se_after(1.0, 10**9, 1 / 3, "disjoint") == pytest.approx(3**-0.5)
    # docs/statistics.md's comparison of digits 2.2 (3 independent 200-image draws) and 2.3 (3 disjoint 99s)
    from pathlib import Path

    doc = " ".join((Path(__file__).parents[1] / "docs" / "statistics.md").read_text().split())
    old, new = se_after(1.0, 3, 200 / 297), (200 / 297) ** 0.5  # in units of se₁(200); 2.3 uses all 297
    assert f"from `se₁(200) · {old:.3f}` to the whole split's `se₁(200) · {new:.3f}`" in doc
    assert f"cover about {100 * (1 - (97 / 297) ** 3):.1f}% of them" in doc
    assert f"({100 * 297 / 600:.1f}%)" in doc


@pytest.mark.skipif("MERGESEC_TEST_DB" not in __import__("os").environ,
                    reason="needs a digits results database: MERGESEC_TEST_DB=results/mergesec.duckdb")
def test_statistics_doc_seed_numbers_have_not_drifted():
    """The numbers between the power_plan markers of docs/statistics.md are what the command prints."""
    import os
    from pathlib import Path

    from analysis.power_plan import plan, render_markdown
    from benchmark.store import Store

    doc = (Path(__file__).parents[1] / "docs" / "statistics.md").read_text()
    block = doc.split("<!-- power_plan:begin -->\n")[1].split("<!-- power_plan:end -->")[0]
    assert block == render_markdown(plan(Store(os.environ["MERGESEC_TEST_DB"]), "digits"))


def test_backdoor_ranking_resamples_triggered_images_and_averages_the_per_example_hits(tmp_path):
    from analysis.common_set import backdoor_set
    from analysis.ranking_view import ranking
    from tests.test_leaderboard_data import SUITE_HASH, build_db

    store = build_db(tmp_path / "b.duckdb", tasks=("digit", "parity"), attacks=("fgsm",), n_examples=40)
    rk = ranking(store, SUITE_HASH, "backdoor", "backdoor_asr", {"defense": ["none"]}, n_boot=200)
    expected = store.read(
        """SELECT method, avg(asr) AS asr FROM (SELECT method, attack, variant, avg(asr) AS asr FROM (
               SELECT method, attack, variant, seed, avg(hit::INT) AS asr FROM backdoor_examples
               WHERE defense = 'none' AND attack NOT LIKE 'clean%' GROUP BY ALL) GROUP BY ALL) GROUP BY method"""
    ).set_index("method").asr
    table = rk.table.set_index("method")
    np.testing.assert_allclose(table["mean"], expected.loc[table.index])
    assert "images within each task" in rk.table.attrs["resampling"] and rk.table.attrs["n_common"] > 0
    with pytest.raises(MergesecError, match="2 or more methods"):
        backdoor_set(pd.DataFrame({"method": ["a"], "hit": [True]}), [])
