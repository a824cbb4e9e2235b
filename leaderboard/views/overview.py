"""Overview: what mergesec measures, the suite and its hash, counts, last update, how to submit.

Cheap on purpose (a few SQL counts, no statistics): it is the first page a visitor sees.
"""

import pandas as pd
import streamlit as st

from leaderboard import data, ui

ctx = ui.context()
st.title("mergesec leaderboard")
st.markdown(
    "How safe is a **merged model**? mergesec merges fine-tuned models with every registered merging method "
    "and measures what an attacker can do to the result, with confidence intervals and significance tests "
    "on every ranking."
)

c = data.counts(ctx.db, ctx.suite_hash)
with st.container(horizontal=True):
    st.metric("Merging methods", int(c["methods"]), border=True)
    st.metric("Transfer settings", int(c["transfer_settings"]), border=True,
              help="task × attack × surrogate × budget combinations")
    st.metric("Backdoor settings", int(c["backdoor_settings"]), border=True,
              help="attack × variant × defense × task combinations")
    n_examples = int(c["merge_examples"] + c["transfer_examples"] + c["backdoor_examples"])
    st.metric("Evaluated examples", f"{n_examples:,}", border=True,
              help="clean test predictions + attacked examples + triggered examples")
    st.metric("Last update", f"{pd.Timestamp(c['last_update']):%Y-%m-%d %H:%M}", border=True,
              help="when the newest unit of work finished (UTC)")

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("What the benchmark measures")
    st.markdown(
        "- **Transfer attacks** (*Merge Now, Regret Later*, Gangwal & Sharma 2025). An attacker crafts "
        "adversarial examples on a surrogate (a fine-tuned or the pretrained model) and sends them to the "
        "merged model. Metrics: transfer ASR, **relative transfer ASR** (transfer ASR ÷ white-box ASR on the "
        "surrogate; the default ranking), AASR (transfer ASR averaged over attacks), clean and "
        "normalized accuracy. "
        "Lower attack success is better.\n"
        "- **Backdoors** (*BadMerging*, Zhang et al. 2024; *Backdoor Vectors*, Pawlak et al. 2025). One "
        "contributor uploads a backdoored model; how often does the trigger still work after merging "
        "(backdoor ASR), what is left of clean accuracy, and how much do defenses help?\n"
        "- **Accuracy vs security.** Is a more accurate merging method also a more vulnerable one?"
    )
    st.markdown(
        "**How to read the rankings.** Each method's mean over the settings, with a paired bootstrap 95% CI; "
        "the Friedman test says whether the methods differ at all; ★ marks the *top group*, the methods not "
        "significantly worse than the best (Wilcoxon signed-rank, Holm-corrected); methods sharing a letter "
        "do not differ significantly. Details: `docs/leaderboard.md`, `docs/statistics.md`."
    )
with right:
    st.subheader("Suites")
    suites = data.suites(ctx.db)
    shown = suites.rename(columns={"suite_hash": "hash", "last_update": "last update"})
    ui.table(suites, "suites", shown[["suite", "version", "hash", "last update"]],
             column_config={"last update": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})
    spec = data.suite_spec(ctx.db, ctx.suite_hash)
    if spec:
        with st.expander(f"Suite spec of `{ctx.suite_hash}`"):
            st.json(spec, expanded=1)
    st.subheader("Runs")
    runs = data.runs(ctx.db, ctx.suite_hash)
    if (runs.status == "running").any():
        st.info("A run is in progress; pages show the results committed so far.", icon=":material/sync:")
    ui.table(runs, "runs", runs[["run_id", "status", "started_at", "units_run", "git_commit"]],
             column_config={"started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm")})

st.subheader("Submit a method")
st.markdown(
    "1. Put the method in `submissions/<name>/`: a `submission.toml` (name, paper, code, authors, "
    "hyperparameters, tracks) and the code its `entry_point` names; guide: `submissions/README.md`.\n"
    "2. `mergesec validate submissions/<name>` checks it in seconds on tiny models.\n"
    "3. `mergesec submit submissions/<name>` runs every track it claims and stores the results with provenance; "
    "they show up here.\n"
    "4. Open a pull request. `mergesec reproduce <name>` re-runs it from scratch; when every number matches, the "
    "method page shows the **reproduced** badge."
)
