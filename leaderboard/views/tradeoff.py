"""Accuracy vs security: each method's clean accuracy against its vulnerability, with rank correlations."""

import pandas as pd
import streamlit as st

from analysis.ranking_view import metric_spec
from analysis.stats import StatisticsError, correlation
from leaderboard import data, downloads, markdown, plots, tables, ui

ctx = ui.context()
ui.page("Accuracy vs security", "tradeoff", "Does a merging method buy accuracy with vulnerability? One point "
        "per method: its mean over all settings of the suite.")

VULN = {"relative_asr": ("transfer", "relative_asr"), "asr_transfer": ("transfer", "asr_transfer"),
        "aasr": ("transfer", "aasr"), "backdoor_asr": ("backdoor", "backdoor_asr")}
ACC = {"clean_acc": "clean_acc", "normalized_acc": "normalized_acc"}
c = data.counts(ctx.db, ctx.suite_hash)
VULN = {k: v for k, v in VULN.items() if c["transfer_rows" if v[0] == "transfer" else "backdoor_rows"]}
if not VULN or not c["merge_examples"]:
    st.info("Needs clean accuracy (merge track) and transfer or backdoor results: `mergesec run`.")
    ui.end_page()
vuln = ui.choice("Vulnerability", {k: metric_spec(*VULN[k]).label for k in VULN}, "vulnerability")
acc = ui.choice("Accuracy", {k: metric_spec("merge", k).label for k in ACC}, "accuracy")
v_spec, a_spec = metric_spec(*VULN[vuln]), metric_spec("merge", acc)

# backdoor: attacks only (the no-attack baselines are not a vulnerability), merged models without a defense
v_filters = (data.freeze({"defense": [tables.NO_DEFENSE], "attack": data.backdoor_attack_names(ctx.db, ctx.suite_hash)})
             if VULN[vuln][0] == "backdoor" else ())
v_long = data.settings(ctx.db, ctx.suite_hash, VULN[vuln][0], vuln, v_filters)
a_long = data.settings(ctx.db, ctx.suite_hash, "merge", acc, ())
about = ui.about(page="tradeoff", vulnerability=vuln, accuracy=acc, filters=v_filters)
frame = pd.concat([tables.method_means(a_long, acc).rename(acc), tables.method_means(v_long, vuln).rename(vuln)],
                  axis=1, join="inner").reset_index()
if len(frame) < 3:
    st.info(f"Need both accuracy and {v_spec.label} for at least 3 methods; found {len(frame)}.")
    ui.end_page()

try:
    corr = correlation(frame[acc], frame[vuln])
except (StatisticsError, ValueError) as e:
    st.warning(f"No correlation: {e}")
    corr = None

if corr is not None:
    sp = corr.set_index("test").loc["spearman"]
    st.markdown(f"Across {int(sp.n)} methods, more accurate methods are {'more' if sp.r > 0 else 'less'} "
                f"vulnerable (Spearman ρ = {sp.r:+.2f}, 95% CI [{sp.CI95[0]:+.2f}, {sp.CI95[1]:+.2f}], "
                f"{tables.p_text(sp.p_val)}); "
                + ("significant at α = 0.05." if sp.p_val < 0.05 else "not significant at α = 0.05."))
png = plots.scatter_png(frame, acc, vuln, a_spec.label, v_spec.label)
st.markdown(markdown.png_markdown(png, f"{a_spec.label} against {v_spec.label}, one point per method"))
downloads.offer(frame, f"tradeoff_{acc}_{vuln}", about)
if corr is not None:
    shown = pd.DataFrame({"test": corr.test.map({"spearman": "Spearman ρ", "kendall": "Kendall τ-b"}),
                          "methods": corr.n, "coefficient": corr.r.map(lambda r: f"{r:+.3f}"),
                          "95% CI": corr.CI95.map(lambda ci: f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"),
                          "p (two-sided)": corr.p_val.map(tables.fmt_p)})
    ui.table(corr, "tradeoff_correlation", shown, about, right=("methods", "coefficient", "p (two-sided)"))
st.caption("Means per method; " + ("backdoor attacks without a defense (no-attack baselines excluded). "
                                    if VULN[vuln][0] == "backdoor" else "")
           + "Spearman's ρ and Kendall's τ-b (pingouin) with 95% CIs.")
