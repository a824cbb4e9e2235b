"""Method page: metadata, provenance, reproduced badge, per-setting results, head-to-head paired tests."""

import json

import streamlit as st

from analysis.ranking_view import METRICS, metric_spec
from analysis.stats import StatisticsError
from benchmark.submissions.status import current_verdicts
from leaderboard import data, tables, ui

ctx = ui.context()
names = data.methods(ctx.db, ctx.suite_hash)
if not names:
    st.info("No methods with results in this suite yet.")
    st.stop()
wanted = st.query_params.get("method")
head = st.container()
method = st.selectbox("Method", names, key="method_name", index=names.index(wanted) if wanted in names else 0,
                      label_visibility="collapsed")
st.query_params["method"] = method

meta = data.method_meta(ctx.db, method) or {}
repro = data.reproductions(ctx.db, ctx.suite_hash, method)
current = current_verdicts(repro, meta.get("code_hash"))  # a verdict holds only for the code it was reached on
head.title(method)
with st.container(horizontal=True, gap="small"):
    if current.empty:
        st.badge("not reproduced yet" if repro.empty else "not reproduced since its code changed",
                 icon=":material/hourglass_empty:", color="gray")
    elif current.verdict.iat[0] == "reproduced":
        st.badge(f"reproduced {current.checked_at.iat[0]:%Y-%m-%d}", icon=":material/verified:", color="green")
    else:
        st.badge(f"reproduction: {current.verdict.iat[0]}", icon=":material/error:", color="red")
    if meta:
        st.badge(f"{meta['kind']} · {meta['source']}", color="blue")
        for need in json.loads(meta.get("needs") or "[]"):
            st.badge(f"needs {need}", color="orange")

left, right = st.columns(2, gap="large")
with left:
    st.subheader("About")
    if meta:
        paper, code = meta.get("paper") or "", meta.get("code_url") or ""
        paper = f"[{paper}]({paper})" if paper.startswith("http") else paper
        code = f"[{code}]({code})" if code.startswith("http") else code
        st.markdown(
            f"**Paper:** {paper or '–'}  \n"
            f"**Code:** {code or '–'}  \n"
            f"**Authors:** {meta.get('authors') or '–'}  \n"
            f"**Code hash:** `{meta.get('code_hash') or '–'}` · registered {meta['updated_at']:%Y-%m-%d}"
        )
    else:
        st.markdown("No metadata registered for this method.")
    ran = [json.loads(h) for h in data.method_hparams(ctx.db, ctx.suite_hash, method)]
    defaults = json.loads(meta.get("hparams") or "{}") if meta else {}
    with st.container(horizontal=True):
        with st.container():
            st.markdown("**Hyperparameters on this suite**")
            st.json(ran[0] if len(ran) == 1 else ran, expanded=True)
        if defaults:
            with st.container():
                st.markdown("**Registered defaults**")
                st.json(defaults, expanded=True)
with right:
    st.subheader("Provenance")
    runs = data.method_runs(ctx.db, ctx.suite_hash, method)
    ui.table(runs, f"{method}_runs", runs[["run_id", "started_at", "status", "git_commit", "mergesec_version",
                                           "units"]],
             column_config={"started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm")})
    if not repro.empty:
        st.markdown("**Reproductions**")
        ui.table(repro, f"{method}_reproductions", repro.drop(columns=["suite_hash"]))

st.subheader("Per-setting results")
views = {"Transfer": "transfer_metrics", "Clean accuracy": "merge_eval", "Backdoor": "backdoor_metrics"}
for tab, view in zip(st.tabs(list(views)), views.values(), strict=True):
    with tab:
        rows = data.method_rows(ctx.db, ctx.suite_hash, view, method)
        if rows.empty:
            st.caption("No results.")
        else:
            ui.table(rows, f"{method}_{view}", height=min(400, 38 + 35 * len(rows)))

st.subheader("Head to head")
others = [m for m in names if m != method]
c1, c2 = st.columns(2)
other = c1.selectbox("Against", others, key="method_other")
c = data.counts(ctx.db, ctx.suite_hash)
has = {"transfer_metrics": c["transfer_rows"], "merge_eval": c["merge_examples"],
       "backdoor_metrics": c["backdoor_rows"]}
choices = [(t, m) for t in ("transfer", "backdoor") for m in METRICS[t] if has[metric_spec(t, m).source]]
if not choices:
    st.info("No results to compare yet.")
    st.stop()
track, metric = c2.selectbox("Metric", choices, key="method_metric",
                             format_func=lambda tm: f"{tm[0]}: {metric_spec(*tm).label}")
spec = metric_spec(track, metric)
filters = data.freeze({"defense": [tables.NO_DEFENSE]}) if track == "backdoor" else ()
try:
    summary, per_setting = data.head_to_head(ctx.db, ctx.suite_hash, track, metric, filters, method, other)
except StatisticsError as e:
    st.info(f"No paired comparison: {e}")
    st.stop()
s = summary.iloc[0]
better = "lower" if not spec.higher_is_better else "higher"
with st.container(horizontal=True):
    st.metric(f"{method} {better} in", f"{s.a_better} of {int(s.n_settings)} settings", border=True)
    st.metric(f"Mean difference ({method} − {other})", tables.fmt_value(s.mean_diff, spec.percent), border=True,
              help=f"95% CI [{tables.fmt_value(s.diff_ci_low, spec.percent)}, "
                   f"{tables.fmt_value(s.diff_ci_high, spec.percent)}]")
    st.metric("Wilcoxon p", tables.fmt_p(s.p_val), border=True,
              help=f"signed-rank test across settings; W = {s.W_val:.1f}, rank-biserial r = {s.RBC:+.2f}")
st.markdown(f"**Wilcoxon signed-rank test** across {int(s.n_settings)} settings: "
            + ("the two methods differ significantly" if s.p_val < 0.05 else "no significant difference")
            + f" ({tables.p_text(s.p_val)}, α = 0.05).")
ui.table(summary, f"{method}_vs_{other}_{metric}_wilcoxon", tables.head_to_head_display(summary, spec), width=640)
with st.expander("Per-setting values"):
    ui.table(per_setting, f"{method}_vs_{other}_{metric}_settings")

if spec.source == "transfer_metrics" or metric == "backdoor_asr":
    st.markdown("**McNemar test per setting** (exact, on the examples both methods were attacked on; "
                + ("outcome: the merged model is fooled" if track == "transfer" else "outcome: the trigger hits")
                + "; Holm-corrected across settings)")
    try:
        mc = data.mcnemar(ctx.db, ctx.suite_hash, track, method, other)
    except StatisticsError as e:
        st.info(f"No McNemar tests: {e}")
    else:
        mc = mc.rename(columns={"b": f"only_{method}", "c": f"only_{other}"})
        st.caption(f"{int((mc.p_corr < 0.05).sum())} of {len(mc)} settings differ significantly. "
                   f"`only_{method}`: examples where only {method}'s outcome is true.")
        ui.table(mc, f"{method}_vs_{other}_mcnemar", height=min(400, 38 + 35 * len(mc)),
                 column_config={"p_val": st.column_config.NumberColumn(format="%.4f"),
                                "p_corr": st.column_config.NumberColumn(format="%.4f")})
else:
    st.caption("McNemar tests need per-example outcomes; the merge track stores per-task accuracies only.")
