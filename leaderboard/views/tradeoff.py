"""Accuracy vs security: each method's clean accuracy against its vulnerability, with rank correlations."""

import pandas as pd
import streamlit as st

from analysis.ranking_view import metric_spec
from analysis.stats import StatisticsError, correlation
from leaderboard import data, plots, tables, ui

ctx = ui.context()
st.title("Accuracy vs security")
st.caption("Does a merging method buy accuracy with vulnerability? One point per method: its mean over all "
           "settings of the suite.")

VULN = {"relative_asr": ("transfer", "relative_asr"), "asr_transfer": ("transfer", "asr_transfer"),
        "aasr": ("transfer", "aasr"), "backdoor_asr": ("backdoor", "backdoor_asr")}
ACC = {"clean_acc": "clean_acc", "normalized_acc": "normalized_acc"}
c = data.counts(ctx.db, ctx.suite_hash)
VULN = {k: v for k, v in VULN.items() if c["transfer_rows" if v[0] == "transfer" else "backdoor_rows"]}
if not VULN or not c["merge_examples"]:
    st.info("Needs clean accuracy (merge track) and transfer or backdoor results: `mergesec run`.")
    st.stop()
c1, c2 = st.columns(2)
vuln = c1.selectbox("Vulnerability", list(VULN), key="tradeoff_vuln",
                    format_func=lambda k: metric_spec(*VULN[k]).label)
acc = c2.selectbox("Accuracy", list(ACC), key="tradeoff_acc", format_func=lambda k: metric_spec("merge", k).label)
v_spec, a_spec = metric_spec(*VULN[vuln]), metric_spec("merge", acc)

v_long = data.settings(ctx.db, ctx.suite_hash, VULN[vuln][0], vuln, ())
a_long = data.settings(ctx.db, ctx.suite_hash, "merge", acc, ())
if VULN[vuln][0] == "backdoor":
    v_long = v_long[v_long.defense == tables.NO_DEFENSE]
frame = pd.concat([tables.method_means(a_long, acc).rename(acc), tables.method_means(v_long, vuln).rename(vuln)],
                  axis=1, join="inner").reset_index()
if len(frame) < 3:
    st.info(f"Need both accuracy and {v_spec.label} for at least 3 methods; found {len(frame)}.")
    st.stop()

try:
    corr = correlation(frame[acc], frame[vuln])
except (StatisticsError, ValueError) as e:
    st.warning(f"No correlation: {e}")
    corr = None

if corr is not None:
    sp = corr.set_index("test").loc["spearman"]
    with st.container(horizontal=True):
        st.metric("Spearman ρ", f"{sp.r:+.2f}", border=True, help=f"95% CI [{sp.CI95[0]:+.2f}, {sp.CI95[1]:+.2f}]")
        st.metric("p-value", tables.fmt_p(sp.p_val), border=True, help="two-sided; H0: no monotone association")
        st.metric("Methods", int(sp.n), border=True)
    st.markdown(f"Across {int(sp.n)} methods, more accurate methods are {'more' if sp.r > 0 else 'less'} "
                f"vulnerable (Spearman ρ = {sp.r:+.2f}, {tables.p_text(sp.p_val)}); "
                + ("significant at α = 0.05." if sp.p_val < 0.05 else "not significant at α = 0.05."))
st.altair_chart(plots.scatter(frame, acc, vuln, a_spec.label, v_spec.label), width="stretch")
ui.downloads(frame, f"tradeoff_{acc}_{vuln}")
if corr is not None:
    shown = corr.assign(CI95=corr.CI95.map(lambda ci: f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"))
    ui.table(shown, "tradeoff_correlation", width=640,
             column_config={"p_val": st.column_config.NumberColumn(format="%.4f"),
                            "r": st.column_config.NumberColumn(format="%+.3f")})
st.caption("Means per method; " + ("backdoor results without a defense. " if VULN[vuln][0] == "backdoor" else "")
           + "Spearman's ρ and Kendall's τ-b (pingouin) with 95% CIs.")
