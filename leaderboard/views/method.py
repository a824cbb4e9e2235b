"""Method page (`?method=NAME`): a merging method's or a defense's standing (CI-aware rank and interval in
each ranking), badge, escaped metadata, hyperparameters, provenance, stored rows and head-to-head tests.
An unknown name gets a "no such method" page listing the valid ones; every choice lives in the URL."""

import json

import pandas as pd
import streamlit as st

from analysis.ranking_view import metric_spec
from analysis.stats import StatisticsError
from leaderboard import data, downloads, markdown, standing, tables, ui
from leaderboard.sections import defense_page, head_to_head

ctx = ui.context()
merge_names = data.methods(ctx.db, ctx.suite_hash)
meta_all = data.method_table(ctx.db)
registered_defenses = meta_all[meta_all.kind == "defense"].name.tolist()
defense_names = sorted(set(data.defenses(ctx.db, ctx.suite_hash)) | set(registered_defenses))
choices = merge_names + [d for d in defense_names if d not in merge_names]
if not choices:
    st.info("No methods with results in this suite yet: `mergesec run`.")
    ui.end_page()


def directory() -> None:
    """Every merging method and defense of the suite as links to their pages (how a reader picks one)."""
    st.markdown("**Merging methods:** " + ", ".join(f"[{m}]({tables.method_link(m, ctx.suite_hash)})"
                                                    for m in merge_names)
                + ("  \n**Defenses:** " + ", ".join(f"[{d}]({tables.method_link(d, ctx.suite_hash)})"
                                                    for d in defense_names) if defense_names else ""))


wanted = st.query_params.get("method")
if wanted is not None and wanted not in choices:
    st.title("No such method")
    st.warning(f"This suite has no merging method or defense called “{ui.md_escape(wanted)}”.",
               icon=":material/search_off:")
    directory()
    ui.end_page()

is_defense = {d: d not in merge_names for d in choices}
method = wanted or choices[0]
st.query_params["method"] = method  # plain names: the URL holds exactly ?method=NAME
meta = meta_all[(meta_all.name == method) & (meta_all.kind == ("defense" if is_defense[method] else "merge"))]
meta = meta.iloc[0].to_dict() if len(meta) else {}
badge = data.badges(ctx.db, ctx.suite_hash).get(method, "unregistered")
ui.page(method, "method")
ICONS = {"built-in": ":material/deployed_code:", "reproduced": ":material/verified:"}
icon = ICONS.get(badge, ":material/error:" if badge.startswith("reproduction") else ":material/hourglass_empty:")
tags = [markdown.badge(badge).replace("[", f"[{icon} ", 1),
        f":violet-badge[{'defense' if is_defense[method] else 'merging method'}]"]
if meta and meta.get("source", "").startswith("submission:"):
    tags.append(":orange-badge[submission]")
tags += [f":orange-badge[needs {ui.md_escape(need)}]" for need in json.loads(meta.get("needs") or "[]")] if meta else []
st.markdown(" ".join(tags))

# -- standing ---------------------------------------------------------------------------------------------
attack_names = data.backdoor_attack_names(ctx.db, ctx.suite_hash)
rankings = ([("backdoor ASR with this defense", "backdoor", "backdoor_asr",
              {"defense": [method], "attack": attack_names})] if is_defense[method] else
            [("transfer: relative transfer ASR", "transfer", "relative_asr", {}),
             ("transfer: clean accuracy", "transfer", "clean_acc", {}),
             ("backdoor ASR, no defense", "backdoor", "backdoor_asr",
              {"defense": [tables.NO_DEFENSE], "attack": attack_names})])
rows = []
for label, track, metric, flt in rankings:
    try:
        res = data.ranked(ctx.db, ctx.suite_hash, track, metric, data.freeze(flt))
    except StatisticsError:
        continue
    if not is_defense[method]:
        rows.append(standing.standing_row(label, res, method, metric_spec(track, metric)))
if not is_defense[method]:
    st.subheader("Standing")
    if rows:
        frame = pd.DataFrame(rows)
        ui.table(frame, f"{method}_standing", frame.rename(columns={"rank": "CI-aware rank"}),
                 ui.about(page="method", method=method), right=("of",))
        st.caption("CI-aware rank: 1 + the number of methods significantly better (paired tests); methods the "
                   "data cannot tell apart share a rank.")
    else:
        st.caption("Not enough results for a ranking yet.")

st.subheader("About")
if meta:
    paper_url, code = tables.paper_url(meta.get("paper")), meta.get("code_url") or ""
    about = (
        f"**Paper:** {ui.md_escape(meta.get('paper') or '–')}"
        + (f" · [open]({paper_url})" if paper_url else "") + "  \n"
        "**Code:** " + (f"[{ui.md_escape(code)}]({code})" if code.startswith("http") else "–") + "  \n"
        f"**Authors:** {ui.md_escape(meta.get('authors') or '–')}  \n"
        f"**Code hash:** `{meta.get('code_hash') or '–'}` · registered {meta['updated_at']:%Y-%m-%d}")
else:
    about = "No metadata registered for this name."
ran = [] if is_defense[method] else data.method_hparams(ctx.db, ctx.suite_hash, method)
hp = standing.hparam_table(ran, meta.get("hparams") if meta else None)
st.markdown(about + "\n\n**Hyperparameters**" + (": none" if hp.empty else "\n\n" + markdown.table(
    hp.assign(**{c: hp[c].map(ui.md_escape) for c in hp.columns}))))
if not hp.empty:
    downloads.offer(hp, f"{method}_hyperparameters", ui.about(page="method", method=method))
st.subheader("Provenance")
runs = data.method_runs(ctx.db, ctx.suite_hash, method, is_defense[method])
shown = runs.assign(hardware=runs.hardware.map(ui.hardware_text), git_commit=runs.git_commit.str[:10])[
    ["started_at", "git_commit", "mergesec_version", "hardware", "command", "units"]]
shown = shown.assign(started_at=shown.started_at.map(lambda t: f"{t:%Y-%m-%d %H:%M}"),
                     command=shown.command.map(markdown.code))
ui.table(runs, f"{method}_runs", shown.rename(columns={
    "started_at": "started (UTC)", "git_commit": "commit", "mergesec_version": "version",
    "command": "command (reproduces it)"}), ui.about(page="method", method=method), right=("units",))
repro = data.reproductions(ctx.db, ctx.suite_hash, method)
if not repro.empty:
    st.markdown("**Reproductions** (`mergesec reproduce`)")
    shown = repro[["checked_at", "verdict", "max_abs_diff", "n_compared", "code_hash"]]
    ui.table(repro, f"{method}_reproductions", shown.assign(checked_at=shown.checked_at.map(
        lambda t: f"{t:%Y-%m-%d}")).rename(columns={"checked_at": "checked", "max_abs_diff": "largest difference",
                                                    "n_compared": "numbers compared"}),
             ui.about(page="method", method=method), right=("largest difference", "numbers compared"))

if is_defense[method]:
    defense_page.effects(ctx, method)
    st.subheader("Other methods and defenses")
    directory()
    ui.end_page()

box = st.expander("Per-setting results (every stored row of this method)", key="rows", on_change="rerun",
                  bind="query-params", icon=":material/table_rows:")
if box.open:  # read and drawn when opened: long grids cost a new visitor's browser the most
    views = {"Transfer": "transfer_metrics", "Clean accuracy": "merge_eval", "Backdoor": "backdoor_metrics"}
    with box:
        for tab, view in zip(st.tabs(list(views), key="results", bind="query-params"), views.values(), strict=True):
            if tab.open is False:  # only the open tab is read and sent
                continue
            with tab:
                got = data.method_rows(ctx.db, ctx.suite_hash, view, method)
                if got.empty:
                    st.caption("No results.")
                else:
                    ui.grid(got, f"{method}_{view}", standing.readable(got), ui.about(page="method", method=method),
                            height=min(400, 38 + 35 * len(got)))

head_to_head.section(ctx, method, merge_names, attack_names)
st.subheader("Other methods and defenses")
directory()
