"""Transfer leaderboard: CI-aware ranking with intervals, Friedman test, CD diagram, method × task heatmap.

Every choice (metric, filters) lives in the URL, so a link or a reload shows the same selection."""

import streamlit as st

from analysis.ranking_view import FILTERS, METRICS, metric_spec
from analysis.stats import StatisticsError
from leaderboard import data, downloads, markdown, plots, tables, ui

TRACK = "transfer"
ctx = ui.context()
ui.page("Transfer attacks", "transfer", "Adversarial examples crafted on a surrogate model, sent to the merged "
        "model. Lower attack success = less vulnerable; higher accuracy = better.")

metric = ui.choice("Rank by", {m: METRICS[TRACK][m].label for m in METRICS[TRACK]}, "metric")
spec = metric_spec(TRACK, metric)
values = data.filter_values(ctx.db, ctx.suite_hash, TRACK, "relative_asr")
LABELS = {"task": "task", "attack": "attack", "surrogate": "surrogate (threat model)", "eps": "budget ε"}
fmt = {"eps": tables.fmt_eps}
names = [f for f in FILTERS[TRACK] if f != "seed"]
chosen = [n for n in names if n in st.query_params]
box = st.expander("Filters: " + (", ".join(f"{LABELS[n]} = {', '.join(st.query_params.get_all(n))}" for n in chosen)
                                 if chosen else "none, every setting (threat model: " + ", ".join(LABELS.values())
                                 + ")"), key="filters", on_change="rerun", bind="query-params",
                  icon=":material/filter_alt:")
filters = {}
if box.open or chosen:  # drawn when opened or set by the URL: pills are code a new visitor's browser would load
    with box, st.container(horizontal=True, gap="medium"):  # none chosen = all
        for name in names:
            filters[name] = st.pills(LABELS[name], values.get(name, []), selection_mode="multi", key=name,
                                     format_func=fmt.get(name, str), bind="query-params",
                                     help="none selected: all") or []
frozen = data.freeze(filters)
about = ui.about(page="transfer", metric=metric, filters=frozen)

counts = data.counts(ctx.db, ctx.suite_hash)
if spec.source == "transfer_metrics" and not counts["transfer_rows"]:
    st.info("No transfer results for this suite yet: `mergesec run --track transfer`."
            + (" Clean and normalized accuracy (merge track) can be ranked: choose them under *Rank by*."
               if counts["merge_examples"] else ""), icon=":material/info:")
    ui.end_page()
try:
    res = data.ranked(ctx.db, ctx.suite_hash, TRACK, metric, frozen)
except StatisticsError as e:
    ui.unranked(data.settings(ctx.db, ctx.suite_hash, TRACK, metric, frozen), spec, str(e), "transfer", about)
    ui.end_page()
if res.attrs.get("filters_ignored"):
    st.caption(f"{spec.label.capitalize()} comes from the merge track; the "
               f"{', '.join(res.attrs['filters_ignored'])} filter does not apply to it.")

try:
    fr = data.friedman(ctx.db, ctx.suite_hash, TRACK, metric, frozen).iloc[0]
except StatisticsError:  # one setting: the ranking resamples its images, but there is nothing to rank across
    fr = None
best, worst = res.iloc[0], res.iloc[-1]
best_word = "highest" if spec.higher_is_better else "lowest"
first = res[res["rank"] == res["rank"].min()].method.tolist()
if fr is None:
    friedman = (f"The filters leave {int(res.n_settings.iat[0])} setting: no Friedman test (it ranks methods "
                "across settings); the intervals resample that setting's test images.")
else:
    friedman = (f"**Friedman test:** χ²({int(fr.ddof1)}) = {fr.Q:.2f}, {tables.p_text(fr.p_unc)}, Kendall's W = "
                f"{fr.W:.2f} over {int(fr.n_settings)} complete settings"
                + (f" ({int(fr.n_settings_dropped)} incomplete dropped)" if fr.n_settings_dropped else "")
                + ". " + ("The methods differ significantly (α = 0.05)." if fr.p_unc < 0.05
                          else "No significant difference between the methods (α = 0.05)."))
st.markdown(
    f"**{best.method}** has the {best_word} mean {spec.label} "
    f"({tables.fmt_value(best['mean'], spec.percent)}, 95% CI "
    f"{tables.fmt_ci(best.ci_low, best.ci_high, spec.percent)}); **{worst.method}** the "
    f"{'lowest' if spec.higher_is_better else 'highest'} ({tables.fmt_value(worst['mean'], spec.percent)}, "
    f"{tables.fmt_ci(worst.ci_low, worst.ci_high, spec.percent)}). "
    + (f"CI-aware rank 1 is shared by {len(first)}: {', '.join(first)}. " if len(first) > 1 else "") + friedman
)
ui.significance_note(res, spec.percent)
ui.ranking(res, spec, f"transfer_ranking_{metric}", about)
st.caption(f"Mean over {int(res.n_settings.iat[0])} settings (seeds averaged); the same table as `mergesec rank`. "
           + ui.rank_help(res))

st.subheader("Critical-difference diagram")
try:
    ranks, decisions = data.cd_inputs(ctx.db, ctx.suite_hash, TRACK, metric, frozen)
    png = plots.cd_png(ranks, decisions)
    st.markdown(markdown.png_markdown(png, "critical-difference diagram"))
    st.caption("Average rank per method (1 = best) across the ranking's settings; methods joined by a bar do "
               "not differ by the same Holm-corrected pairwise tests as the CI-aware ranks above (a method's "
               "average rank over settings can order it differently from its mean).")
    downloads.offer(ranks, f"transfer_average_ranks_{metric}", about)
except StatisticsError as e:
    st.info("No CD diagram: it ranks methods across settings, and the filters leave one." if fr is None
            else f"No CD diagram: {e}")

st.subheader("Method × task")
long = data.ranking(ctx.db, ctx.suite_hash, TRACK, metric, frozen).long  # the ranking's values, not pooled
grid = tables.by_method_task(long, spec.name, res.method.tolist())
wide = grid.pivot(index="method", columns="task", values="value").reindex(res.method)
st.markdown(markdown.best_worst_table(wide, spec.higher_is_better, spec.percent))
surrogate = res.attrs.get("surrogate")
st.caption(f"Mean {spec.label} per method and task over the ranking's own settings and values"
           + (f" (surrogate `{surrogate}`, its common examples)" if surrogate else "")
           + "; methods in ranking order; per task, the best value on green and the worst on red.")
downloads.offer(wide.reset_index(), f"transfer_method_task_{metric}", about)
