"""The backdoor rows the claims read, averaged over seeds exactly as analysis.ranking_view does, and the rule
that no-attack baselines are never attacks."""

from __future__ import annotations

import pandas as pd

from benchmark.store import Store

CLEAN_BASELINE = "clean"
"""The no-attack baseline's ``attack`` value before the backdoor track gained a ``role`` column."""
SETTING = ["attack", "variant", "method", "defense", "adversary_task", "target_task", "target_class"]
"""A backdoor setting (seeds averaged). Without ``defense``: the key a defended model is paired on."""
PAIR_KEY = [c for c in SETTING if c != "defense"]


def backdoor_settings(store: Store, suite_hash: str) -> pd.DataFrame:
    """One row per backdoor setting of every defense: :data:`SETTING`, ``backdoor_asr`` and ``clean_acc``
    averaged over seeds (:func:`analysis.ranking_view.settings_table`, NULLs skipped as SQL ``avg`` does),
    ``n_seeds`` and, when the view has it, ``role`` (``baseline`` for no-attack rows)."""
    from analysis.ranking_view import settings_table

    # the backdoor leaderboard's default is defense `none` and attacks only; the claims need every defense, and
    # the baselines so that they can say how many they set aside
    everything = {"defense": [], "role": ["attack", "baseline"]}
    asr = settings_table(store, suite_hash, "backdoor", "backdoor_asr", everything)
    acc = settings_table(store, suite_hash, "backdoor", "clean_acc", everything)
    if asr.empty:
        return pd.DataFrame(columns=[*SETTING, "backdoor_asr", "clean_acc", "n_seeds"])
    rows = asr.merge(acc[[*SETTING, "clean_acc"]], on=SETTING, how="outer")
    if "role" in store.read("SELECT * FROM backdoor_metrics LIMIT 0").columns:
        roles = store.read(
            "SELECT DISTINCT attack, variant, role FROM backdoor_metrics WHERE suite_hash = ?", [suite_hash]
        )
        rows = rows.merge(roles, on=["attack", "variant"], how="left")
    return rows


def attacks_only(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``rows`` without the no-attack baselines (``role == 'baseline'`` where a ``role`` column exists, else
    ``attack == 'clean'``) and how many rows were dropped."""
    baseline = rows.role.eq("baseline") if "role" in rows else rows.attack.eq(CLEAN_BASELINE)
    return rows[~baseline].reset_index(drop=True), int(baseline.sum())
