"""Transfer leaderboard: ranking with CIs and top group, Friedman test, CD diagram, method × task heatmap."""

import streamlit as st

from analysis.ranking_view import FILTERS, METRICS, metric_spec
from analysis.stats import StatisticsError
from leaderboard import data, plots, tables, ui

TRACK = "transfer"
ctx = ui.context()
st.title("Transfer attacks")
st.caption("Adversarial examples crafted on a surrogate model, sent to the merged model. "
           "Lower attack success = less vulnerable; higher accuracy = better.")

metric = st.selectbox("Rank by", list(METRICS[TRACK]), key="transfer_metric",
                      format_func=lambda m: METRICS[TRACK][m].label)
spec = metric_spec(TRACK, metric)
values = data.filter_values(ctx.db, ctx.suite_hash, TRACK, "relative_asr")
fmt = {"eps": tables.fmt_eps}
filters = {}
cols = st.columns(4)
for col, name in zip(cols, [f for f in FILTERS[TRACK] if f != "seed"], strict=True):
    filters[name] = col.multiselect(name, values.get(name, []), key=f"transfer_{name}", placeholder="all",
                                    format_func=fmt.get(name, str))
frozen = data.freeze(filters)

counts = data.counts(ctx.db, ctx.suite_hash)
if spec.source == "transfer_metrics" and not counts["transfer_rows"]:
    st.info("No transfer results for this suite yet: `mergesec run --track transfer`."
            + (" Clean and normalized accuracy (merge track) can be ranked: choose them under *Rank by*."
               if counts["merge_examples"] else ""), icon=":material/info:")
    st.stop()
try:
    res = data.ranked(ctx.db, ctx.suite_hash, TRACK, metric, frozen)
except StatisticsError as e:
    st.warning(f"No ranking for this selection: {e}", icon=":material/filter_alt_off:")
    st.stop()
if res.attrs.get("filters_ignored"):
    st.caption(f"{spec.label.capitalize()} comes from the merge track; the "
               f"{', '.join(res.attrs['filters_ignored'])} filter does not apply to it.")

fr = data.friedman(ctx.db, ctx.suite_hash, TRACK, metric, frozen).iloc[0]
differ = fr.p_unc < 0.05
top = res[res.top_group].method.tolist()
best = res.iloc[0]
with st.container(horizontal=True):
    st.metric("Best", best.method, border=True,
              help=f"lowest mean {spec.label}" if not spec.higher_is_better else f"highest mean {spec.label}")
    st.metric(f"Mean {spec.label}", tables.fmt_value(best["mean"], spec.percent), border=True,
              help=f"95% CI [{tables.fmt_value(best.ci_low, spec.percent)}, "
                   f"{tables.fmt_value(best.ci_high, spec.percent)}]")
    st.metric("Top group", f"{len(top)} of {len(res)}", border=True,
              help="methods not significantly worse than the best: " + ", ".join(top))
    st.metric("Friedman p", tables.fmt_p(fr.p_unc), border=True,
              help=f"Q = {fr.Q:.2f}, df = {int(fr.ddof1)}, Kendall's W = {fr.W:.2f}")
verdict = ("The methods differ significantly" if differ
           else "No significant difference between the methods")
st.markdown(
    f"**Friedman test:** χ²({int(fr.ddof1)}) = {fr.Q:.2f}, {tables.p_text(fr.p_unc)}, Kendall's W = "
    f"{fr.W:.2f} over {int(fr.n_settings)} complete settings"
    + (f" ({int(fr.n_settings_dropped)} incomplete dropped)" if fr.n_settings_dropped else "")
    + f". {verdict} (α = 0.05)."
)

shown = tables.ranking_display(res, spec.percent)
columns = {
    "rank": st.column_config.NumberColumn("rank", width="small"),
    "mean": ui.value_column(f"mean {spec.label}", spec.percent, spec.help, res.ci_low.min(), res.ci_high.max()),
    "top group": st.column_config.TextColumn("top group", width="small",
                                             help="★ = not significantly worse than the best (Wilcoxon, Holm)"),
    "letters": st.column_config.TextColumn("letters", width="small",
                                           help="methods sharing a letter do not differ significantly"),
}
ui.table(res, f"transfer_ranking_{metric}", shown, key="transfer_ranking", height=ui.fit_height(len(res)),
         column_config=columns)
st.caption(f"Mean over {int(res.n_settings.iat[0])} settings (seeds averaged) with a paired bootstrap 95% CI; "
           "rank 1 = best. The same table as `mergesec rank`.")

st.subheader("Critical-difference diagram")
try:
    ranks = data.nemenyi(ctx.db, ctx.suite_hash, TRACK, metric, frozen)
    png = plots.cd_png(ranks)
    st.image(png, width=min(1100, int(plots.png_width(png) / 1.6)))
    st.caption("Average rank per method (1 = best) across settings; methods joined by a bar do not differ "
               f"by Nemenyi's test (CD = {ranks.cd.iat[0]:.2f}). Read it only when the Friedman test rejects.")
    ui.downloads(ranks, f"transfer_nemenyi_{metric}")
except StatisticsError as e:
    st.info(f"No CD diagram: {e}")

st.subheader("Method × task")
long = data.settings(ctx.db, ctx.suite_hash, TRACK, metric, frozen)
grid = tables.by_method_task(long, metric, res.method.tolist())
st.altair_chart(plots.heatmap(grid, spec.label, spec.higher_is_better, spec.percent, res.method.tolist()),
                width="stretch")
st.caption(f"Mean {spec.label} per method and task over the selected attacks and surrogates; "
           "methods in ranking order.")
ui.downloads(grid.pivot(index="method", columns="task", values="value").reset_index(),
             f"transfer_method_task_{metric}")
