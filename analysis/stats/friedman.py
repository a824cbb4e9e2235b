"""Friedman test over paired settings (Friedman 1937; Demšar 2006, §3.2.2) with Kendall's W."""

from collections.abc import Sequence

import pandas as pd
import pingouin as pg

from analysis.stats.blocks import BLOCK, paired_table, to_long


def friedman_test(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], method_col: str = "method"
) -> pd.DataFrame:
    """Do the methods differ? ``pingouin.friedman`` on the complete settings (blocks).

    Returns one row: ``Source, W`` (Kendall's W, the effect size), ``ddof1, Q`` (tie-corrected
    chi-square), ``p_unc``, ``n_settings, n_settings_dropped``.
    """
    wide = paired_table(df, metric, setting_cols, method_col)
    res = pg.friedman(to_long(wide, metric, method_col), dv=metric, within=method_col, subject=BLOCK)
    return res.reset_index(drop=True).assign(**wide.attrs)
