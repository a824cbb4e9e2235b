"""The method page of a defense: what it does to every attack (ASR reduction, accuracy cost) and its rows."""

import pandas as pd
import streamlit as st

from leaderboard import data, standing, tables, ui


def effects(ctx: ui.Context, defense: str) -> None:
    """The defense against no defense, paired per attack, then its stored backdoor rows."""
    rows = data.backdoor_rows(ctx.db, ctx.suite_hash)
    rows = rows[~tables.is_baseline(rows)]
    about = ui.about(page="method", method=defense)
    st.subheader("Effect on each attack")
    eff = data.defense_effects(ctx.db, ctx.suite_hash, defense)
    if eff.empty:
        st.info("No backdoor results with and without this defense to compare yet: `mergesec submit` runs it.")
    else:
        shown = pd.DataFrame({
            "attack": eff.attack, "pairs": eff.n_pairs,
            "ASR reduction": [tables.fmt_pp(v) for v in eff.asr_reduction],
            "95% CI": [f"[{tables.fmt_pp(lo)}, {tables.fmt_pp(hi)}]"
                       for lo, hi in zip(eff.asr_reduction_ci_low, eff.asr_reduction_ci_high, strict=True)],
            "accuracy cost": [tables.fmt_pp(v) for v in eff.acc_cost],
            "cost 95% CI": [f"[{tables.fmt_pp(lo)}, {tables.fmt_pp(hi)}]"
                            for lo, hi in zip(eff.acc_cost_ci_low, eff.acc_cost_ci_high, strict=True)]})
        ui.table(eff, f"{defense}_effects", shown, about, width=900)
        st.caption("ASR without − with the defense (> 0: it helps) and clean accuracy without − with (> 0: it "
                   "costs), in percentage points, paired per method, variant, tasks and seed; bootstrap 95% CIs.")
    st.subheader("Per-setting results")
    mine = rows[rows.defense == defense]
    if mine.empty:
        st.caption("No results.")
    else:
        ui.table(mine, f"{defense}_backdoor", standing.readable(mine), about, height=min(400, 38 + 35 * len(mine)))
