"""The method page's head-to-head section: paired Wilcoxon test over shared settings and per-setting
McNemar tests, against an opponent and on a metric both methods have results for (both in the URL)."""

import streamlit as st

from analysis.ranking_view import DEFAULT_SURROGATE, METRICS, metric_spec
from analysis.stats import StatisticsError
from leaderboard import data, standing, tables, ui


def _metrics_both_have(ctx: ui.Context, a: str, b: str) -> list[tuple[str, str]]:
    """(track, metric) pairs whose results view holds rows of both methods."""
    have = {view: set(data.method_names_in(ctx.db, ctx.suite_hash, view)) for view in data.RESULT_VIEWS}
    return [(t, m) for t in ("transfer", "backdoor") for m in METRICS[t]
            if {a, b} <= have[metric_spec(t, m).source]]


def section(ctx: ui.Context, method: str, names: list[str], attack_names: list[str]) -> None:
    st.subheader("Head to head")
    others = [m for m in names if m != method]
    if not others:
        st.caption("No other method to compare with.")
        return
    other = ui.choice("Against", {m: m for m in others}, "opponent")
    choices = _metrics_both_have(ctx, method, other)
    if not choices:
        st.info(f"{method} and {other} have no results on a common track.")
        return
    codes = [f"{t}:{m}" for t, m in choices]
    code = ui.choice("Metric", {c: f"{c.split(':')[0]}: {metric_spec(*c.split(':')).label}" for c in codes},
                     "h2h_metric")
    track, metric = code.split(":")
    spec = metric_spec(track, metric)
    flt = {"defense": [tables.NO_DEFENSE], "attack": attack_names} if track == "backdoor" else {}
    if spec.source == "transfer_metrics":  # one threat model at a time, as the rankings: never pooled
        surrogates = data.filter_values(ctx.db, ctx.suite_hash, track, metric).get("surrogate", [])
        if surrogates:
            flt["surrogate"] = [ui.choice("Surrogate (threat model)", {s: s for s in surrogates}, "h2h_surrogate",
                                          DEFAULT_SURROGATE if DEFAULT_SURROGATE in surrogates else None)]
    about = ui.about(page="method", method=method, opponent=other, metric=code, filters=data.freeze(flt))
    try:
        summary, per_setting = data.head_to_head(ctx.db, ctx.suite_hash, track, metric, data.freeze(flt), method,
                                                 other)
    except StatisticsError as e:
        st.info(f"No paired comparison: {e}")
        return
    s = summary.iloc[0]
    better = "lower" if not spec.higher_is_better else "higher"
    where = f" (surrogate `{flt['surrogate'][0]}`)" if "surrogate" in flt else ""
    st.markdown(f"**Wilcoxon signed-rank test** across {int(s.n_settings)} settings{where}: "
                + ("the two methods differ significantly" if s.p_val < 0.05 else "no significant difference")
                + f" ({tables.p_text(s.p_val)}, α = 0.05). {method} is better ({better}) in {s.a_better} of "
                f"{int(s.n_settings)} settings; mean difference {tables.fmt_pp(s.mean_diff, spec.percent)}.")
    shown = tables.head_to_head_display(summary, spec)
    ui.table(summary, f"{method}_vs_{other}_{metric}_wilcoxon",
             shown.assign(statistic=shown.statistic.map(ui.md_escape)), about)
    box = st.expander("Per-setting values", key="h2h_settings", on_change="rerun")
    if box.open:  # drawn when opened
        with box:
            ui.grid(per_setting, f"{method}_vs_{other}_{metric}_settings", standing.readable(per_setting), about)
    if spec.source == "merge_eval" or metric != spec.name or (track == "backdoor" and metric != "backdoor_asr"):
        st.caption("McNemar tests need per-example outcomes: transfer and backdoor ASR only.")
        return
    st.markdown("**McNemar test per setting** (exact, on the examples both methods were attacked on; "
                + ("outcome: the merged model is fooled" if track == "transfer" else "outcome: the trigger hits")
                + "; Holm-corrected across settings)")
    try:
        mc = data.mcnemar(ctx.db, ctx.suite_hash, track, method, other)
    except StatisticsError as e:
        st.info(f"No McNemar tests: {e}")
        return
    shown = mc.rename(columns={"b": f"only {method}", "c": f"only {other}", "p_val": "p", "p_corr": "p (Holm)"})
    for col in ("p", "p (Holm)"):
        shown[col] = shown[col].map(tables.fmt_p)
    st.caption(f"{int((mc.p_corr < 0.05).sum())} of {len(mc)} settings differ significantly. "
               f"“only {method}”: examples where only {method}'s outcome is true.")
    box = st.expander(f"McNemar tests of the {len(mc)} settings", key="h2h_mcnemar", on_change="rerun")
    if box.open:  # drawn when opened
        with box:
            ui.grid(mc, f"{method}_vs_{other}_mcnemar", shown, about, height=min(400, 38 + 35 * len(mc)))
