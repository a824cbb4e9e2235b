"""The method page of a defense: what it does to every attack (ASR reduction, accuracy cost) and its rows."""

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
        shown = tables.effects_display(eff).drop(columns=["defense"])
        ui.table(eff, f"{defense}_effects", shown, about, right=("pairs",))
        st.caption("ASR without − with the defense (> 0: it helps) and clean accuracy without − with (> 0: it "
                   "costs), in percentage points, paired per method, variant, tasks and seed; bootstrap 95% CIs.")
    mine = rows[rows.defense == defense]
    box = st.expander(f"Per-setting results ({len(mine)} stored rows)", key="rows", on_change="rerun",
                      bind="query-params", icon=":material/table_rows:")
    if box.open and not mine.empty:  # drawn when opened
        with box:
            ui.grid(mine, f"{defense}_backdoor", standing.readable(mine), about, height=min(400, 38 + 35 * len(mine)))
