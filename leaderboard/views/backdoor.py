"""Backdoor leaderboard: merging methods under each attack (ASR, clean accuracy), and the defenses table."""

import pandas as pd
import streamlit as st

from analysis.stats import StatisticsError
from leaderboard import data, tables, ui

TRACK = "backdoor"
ctx = ui.context()
st.title("Backdoors")
st.caption("One contributor's fine-tuned model carries a backdoor. Backdoor ASR: share of triggered test images "
           "(true class ≠ target) that the merged model puts in the target class; lower is better.")

rows = data.backdoor_rows(ctx.db, ctx.suite_hash)
if rows.empty:
    st.info("No backdoor results for this suite yet: `mergesec run --track backdoor`.", icon=":material/info:")
    st.stop()

defenses = sorted(rows.defense.unique(), key=lambda d: (d != tables.NO_DEFENSE, d))
defense = st.selectbox("Defense applied", defenses, key="backdoor_defense",
                       help=f"`{tables.NO_DEFENSE}`: the merged model as is")


BARS = {"backdoor ASR": ui.value_column("backdoor ASR", True, lo=0, hi=1),
        "clean accuracy": ui.value_column("clean accuracy", True, lo=0, hi=1)}


def attack_table(attack: str | None) -> None:
    """Methods ranked by backdoor ASR under ``attack`` (None: across all attacks), clean accuracy beside."""
    name = attack or "all_attacks"
    filters = data.freeze({"attack": [attack] if attack else [], "defense": [defense]})
    try:
        asr = data.ranked(ctx.db, ctx.suite_hash, TRACK, "backdoor_asr", filters)
        acc = data.ranked(ctx.db, ctx.suite_hash, TRACK, "clean_acc", filters)
    except StatisticsError as e:
        sub = rows[((rows.attack == attack) if attack else True) & (rows.defense == defense)]
        means = (sub.groupby("method", as_index=False)[["backdoor_asr", "clean_acc"]].mean()
                 .sort_values("backdoor_asr", ignore_index=True))
        st.caption(f"Means without CIs or tests: a ranking needs 2 or more settings every method has ({e}).")
        shown = means.rename(columns={"backdoor_asr": "backdoor ASR", "clean_acc": "clean accuracy"})
        ui.table(means, f"backdoor_{name}_{defense}", shown, key=f"backdoor_table_{name}",
                 height=ui.fit_height(len(means)), column_config=BARS)
        return
    full = asr.merge(acc[["method", "mean", "ci_low", "ci_high"]], on="method", suffixes=("", "_acc"))
    full = full.rename(columns={"mean": "asr", "ci_low": "asr_ci_low", "ci_high": "asr_ci_high",
                                "mean_acc": "clean_acc", "ci_low_acc": "clean_acc_ci_low",
                                "ci_high_acc": "clean_acc_ci_high"})
    shown = tables.ranking_display(asr, percent=True).rename(columns={"mean": "backdoor ASR", "95% CI": "ASR 95% CI"})
    shown.insert(4, "clean accuracy", full.clean_acc.to_numpy())
    shown.insert(5, "accuracy 95% CI", [f"[{lo:.1%}, {hi:.1%}]" for lo, hi in
                                        zip(full.clean_acc_ci_low, full.clean_acc_ci_high, strict=True)])
    st.markdown(f"Least backdoored: **{asr.method.iat[0]}** · top group: "
                + ", ".join(f"`{m}`" for m in asr[asr.top_group].method))
    columns = {**BARS, "top group": st.column_config.TextColumn(
        width="small", help="★ = ASR not significantly above the best (Wilcoxon, Holm)")}
    ui.table(full, f"backdoor_{name}_{defense}", shown, key=f"backdoor_table_{name}",
             height=ui.fit_height(len(full)), column_config=columns)


attacks = sorted(rows.attack.unique())
st.subheader("Merging methods under each attack")
labels = [*attacks, "all attacks"] if len(attacks) > 1 else attacks
for tab, attack in zip(st.tabs(labels), [*attacks, None], strict=False):
    with tab:
        attack_table(attack)

st.subheader("Defenses")
effects = tables.defense_effects(rows)
if effects.empty:
    st.info(f"No defense results to compare with `{tables.NO_DEFENSE}` yet.")
else:
    shown = pd.DataFrame({
        "attack": effects.attack, "defense": effects.defense,
        "ASR reduction": effects.asr_reduction,
        "ASR reduction 95% CI": [f"[{lo:+.1%}, {hi:+.1%}]" for lo, hi in
                                 zip(effects.asr_reduction_ci_low, effects.asr_reduction_ci_high, strict=True)],
        "accuracy cost": effects.acc_cost,
        "accuracy cost 95% CI": [f"[{lo:+.1%}, {hi:+.1%}]" for lo, hi in
                                 zip(effects.acc_cost_ci_low, effects.acc_cost_ci_high, strict=True)],
        "pairs": effects.n_pairs,
    })
    ui.table(effects, "backdoor_defenses", shown, key="defense_table", column_config={
        "ASR reduction": st.column_config.NumberColumn(format="percent", help="ASR without − with the defense"),
        "accuracy cost": st.column_config.NumberColumn(format="percent", help="accuracy without − with"),
    })
    st.caption("Paired with the undefended merge of the same method, variant, tasks and seed; "
               "percentile bootstrap 95% CIs over the pairs. A CI above zero: the defense reliably "
               "lowers the ASR (or costs accuracy).")
