"""Overview: the answer first (least and most vulnerable methods per track, with intervals; the papers'
claims with this benchmark's verdicts), then what is measured, the suite, runs, downloads and how to submit."""

import pandas as pd
import streamlit as st

from analysis.ranking_view import metric_spec
from analysis.stats import StatisticsError
from benchmark.errors import MergesecError
from leaderboard import claims, data, export, markdown, tables, ui

ctx = ui.context()
ui.page("mergesec leaderboard", "overview")
st.markdown(
    "How safe is a **merged model**? mergesec merges fine-tuned models with every registered merging method "
    "and measures what an attacker can do to the result, with confidence intervals and significance tests "
    "on every ranking."
)
c = data.counts(ctx.db, ctx.suite_hash)


def extremes(label: str, track: str, metric: str, flt: dict) -> None:
    """Least and most vulnerable methods of one ranking, CI-aware rank-1 ties included."""
    try:
        res = data.ranked(ctx.db, ctx.suite_hash, track, metric, data.freeze(flt))
    except StatisticsError:
        st.caption(f"{label}: not enough results for a ranking yet.")
        return
    spec = metric_spec(track, metric)

    def names(rows: pd.DataFrame) -> str:
        return ", ".join(f"[{r.method}]({tables.method_link(r.method, ctx.suite_hash)}) "
                         f"{tables.fmt_value(r.mean, spec.percent)} {tables.fmt_ci(r.ci_low, r.ci_high, spec.percent)}"
                         for r in rows.itertuples())

    best = res[res["rank"] == res["rank"].min()]
    worst = res[res["rank"] == res["rank"].max()]
    sep = "" if res.attrs.get("separable", True) else " · *the data cannot separate the methods*"
    st.markdown(f"**{label}** ({int(res.n_settings.iat[0])} settings{sep})  \n"
                f":green[least vulnerable] {names(best)}  \n:red[most vulnerable] {names(worst)}")


st.subheader("The answer so far")
left, right = st.columns(2, gap="large")
with left:
    if c["transfer_rows"]:
        extremes("Transfer attacks: relative transfer ASR (lower is better)", "transfer", "relative_asr", {})
    else:
        st.caption("Transfer attacks: no results yet (`mergesec run --track transfer`).")
with right:
    if c["backdoor_rows"]:
        extremes("Backdoors: backdoor ASR without a defense (lower is better)", "backdoor", "backdoor_asr",
                 {"defense": [tables.NO_DEFENSE], "attack": data.backdoor_attack_names(ctx.db, ctx.suite_hash)})
    else:
        st.caption("Backdoors: no results yet (`mergesec run --track backdoor`).")
st.caption("95% CIs in brackets; “least vulnerable” lists every method of CI-aware rank 1 (no method is "
           "significantly better). Click a method for its page.")

st.markdown("**The papers' claims, tested on these results**")
found = claims.stored(ctx.db, ctx.suite, ctx.suite_hash)
verdicts, source = (found[0], f"stored by `mergesec analyze` in `{found[1].parent.name}/`") if found else (None, "")
if verdicts is None:  # an expander computed when opened, not a toggle: no widget code for the browser to load
    box = st.expander("Check the claims now (tens of seconds)", key="claims", on_change="rerun", bind="query-params",
                      icon=":material/fact_check:")
    if box.open:
        try:
            with box, st.spinner("Testing every claim on the stored results…"):
                verdicts, source = claims.computed(ctx.db, data.db_state(ctx.db), ctx.suite_hash), "computed now"
        except MergesecError as e:
            box.info(f"The claims could not be checked on this database: {e}")
if verdicts is not None:
    shown = verdicts[["claim", "verdict", "about"]].rename(columns={"about": "verdict about"})
    ui.table(verdicts, "claims", shown.map(ui.md_escape),
             ui.about(page="overview", table="claims"))
    with st.expander(f"How each claim was tested ({source})"):
        st.markdown("\n\n".join(f"**{ui.md_escape(r.claim)}** — *{ui.md_escape(r.verdict)}*. "
                                 f"{ui.md_escape(r.result)}" for r in verdicts.itertuples()))
elif not found:
    st.caption("No stored findings for this suite beside the database; `mergesec analyze` writes them.")

n_examples = int(c["merge_examples"] + c["transfer_examples"] + c["backdoor_examples"])
st.markdown(f"#### {int(c['methods'])} merging methods · {int(c['transfer_settings'])} transfer settings · "
            f"{int(c['backdoor_settings'])} backdoor settings · {n_examples:,} evaluated examples\n"
            "Transfer settings: task × attack × surrogate × budget; backdoor settings: attack × variant × defense "
            "× task; examples: clean test predictions + attacked + triggered examples. Last update "
            f"{pd.Timestamp(c['last_update']):%Y-%m-%d %H:%M} UTC.")

left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown(
        "### What the benchmark measures\n\n"
        "- **Transfer attacks** ([*Merge Now, Regret Later*](https://arxiv.org/abs/2509.23689), Gangwal & "
        "Sharma 2025). An attacker crafts adversarial examples on a surrogate (a fine-tuned or the pretrained "
        "model) and sends them to the merged model. Metrics: transfer ASR, **relative transfer ASR** (transfer "
        "ASR ÷ white-box ASR on the surrogate; the default ranking), AASR, clean and normalized accuracy. "
        "Lower attack success is better.\n"
        "- **Backdoors** ([*BadMerging*](https://arxiv.org/abs/2408.07362), Zhang et al. 2024; *Backdoor "
        "Vectors*, Pawlak et al. 2025). One contributor uploads a backdoored model: how often does the trigger "
        "still work after merging (backdoor ASR, beside the no-attack baseline), what is left of clean "
        "accuracy, and how much do defenses help?\n"
        "- **Accuracy vs security.** Is a more accurate merging method also a more vulnerable one?\n\n"
        "**How to read the rankings.** Each method's mean over the settings, with a paired bootstrap 95% CI. "
        "The **CI-aware rank** is 1 + the number of methods significantly better (paired tests); methods the "
        "data cannot tell apart share a rank, and the page says when the settings are too few to separate "
        "anything. The Friedman test says whether the methods differ at all. Details: `docs/leaderboard.md`."
    )
    st.subheader("Download the results")
    box = st.expander("The whole database: DuckDB, or every table as Parquet with a data dictionary",
                      key="downloads", on_change="rerun", bind="query-params", icon=":material/database:")
    if box.open:  # drawn when opened: download buttons are code a new visitor's browser would load first
        with box, st.container(horizontal=True, gap="small"):
            st.download_button("Whole database (DuckDB)", lambda: export.duckdb_bytes(ctx.db), "mergesec.duckdb",
                               "application/octet-stream", key="dl_duckdb", on_click="ignore",
                               icon=":material/database:")
            st.download_button("All tables (Parquet + data dictionary, zip)", lambda: export.parquet_zip(ctx.db),
                               "mergesec_parquet.zip", "application/zip", key="dl_parquet", on_click="ignore",
                               icon=":material/folder_zip:")
    st.caption("Each page's tables: the download link under its title (a zip of CSV and Parquet files and a "
               "manifest of the suite and filters they were taken under).")
with right:
    st.subheader("Suites")
    suites = data.suites(ctx.db)
    shown = suites.rename(columns={"suite_hash": "hash", "last_update": "last update"})
    shown = shown[["suite", "version", "hash", "last update"]]
    when = shown["last update"].map(lambda t: f"{t:%Y-%m-%d %H:%M}")
    ui.table(suites, "suites", shown.assign(hash=shown.hash.map(markdown.code), **{"last update": when}))
    spec = data.suite_spec(ctx.db, ctx.suite_hash)
    if spec:
        box = st.expander(f"Suite spec of `{ctx.suite_hash}`", key="suite_spec", on_change="rerun")
        if box.open:  # drawn when opened: the JSON viewer is a large script for the browser to load
            box.json(spec, expanded=1)
st.subheader("Runs")
runs = data.runs(ctx.db, ctx.suite_hash)
if (runs.status == "running").any():
    st.info("A run is in progress; pages show the results committed so far.", icon=":material/sync:")
shown = runs[["started_at", "status", "units_run", "git_commit", "command"]]
shown = shown.assign(started_at=shown.started_at.map(lambda t: f"{t:%Y-%m-%d %H:%M}"),
                     git_commit=shown.git_commit.str[:10], command=shown.command.map(markdown.code))
ui.table(runs, "runs", shown.rename(columns={"started_at": "started (UTC)", "units_run": "units",
                                             "git_commit": "commit"}), right=("units",))

st.markdown(
    "### Submit a method\n\n"
    "1. Put the method in `submissions/<name>/`: a `submission.toml` (name, paper, code, authors, "
    "hyperparameters, tracks) and the code its `entry_point` names; guide: `submissions/README.md`.\n"
    "2. `mergesec validate submissions/<name>` checks it in seconds on tiny models.\n"
    "3. `mergesec submit submissions/<name>` runs every track it claims and stores the results with provenance; "
    "they show up here, with a page at `method?method=<name>`.\n"
    "4. Open a pull request. `mergesec reproduce <name>` re-runs it from scratch; when every number matches, "
    "the method's badge reads **reproduced**."
)
