"""Complete blocks: the paired (setting × method) table every paired statistic is computed on."""

from collections.abc import Sequence

import pandas as pd

from benchmark.errors import MergesecError

BLOCK = "_block"


class StatisticsError(MergesecError):
    """Input a statistic cannot be computed on (missing columns, duplicates, too few methods or settings)."""


def paired_table(
    df: pd.DataFrame,
    metric: str,
    setting_cols: Sequence[str],
    method_col: str = "method",
    min_methods: int = 2,
    min_settings: int = 2,
) -> pd.DataFrame:
    """Pivot a long table (one row per method × setting) to settings × methods, keeping complete blocks.

    A block (setting) is complete when every method has a non-missing ``metric`` in it; incomplete blocks
    are dropped, as the paired tests of Demšar (2006) require. The result's ``attrs`` hold ``n_settings``
    (kept) and ``n_settings_dropped``. Columns are the methods, sorted; the index is ``setting_cols``.
    """
    setting_cols = list(setting_cols)
    if not setting_cols:
        raise StatisticsError("setting_cols is empty; name the columns that identify a setting")
    missing = [c for c in [*setting_cols, method_col, metric] if c not in df.columns]
    if missing:
        raise StatisticsError(
            f"columns {missing} are not in the table (it has {list(df.columns)}); "
            "pass the metric, setting and method column names the table uses"
        )
    if metric == method_col or metric in setting_cols or method_col in setting_cols:
        raise StatisticsError("metric, method_col and setting_cols must name different columns")
    keys = [method_col, *setting_cols]
    dup = df.duplicated(keys, keep=False)
    if dup.any():
        example = df.loc[dup, keys].iloc[0].to_dict()
        raise StatisticsError(
            f"{int(dup.sum())} rows share a (method, setting), e.g. {example}; aggregate them first "
            "(e.g. average over examples) or add the column that tells them apart to setting_cols"
        )
    values = pd.to_numeric(df[metric], errors="coerce")
    if values[df[metric].notna()].isna().any():
        raise StatisticsError(f"column {metric!r} holds non-numeric values; pass a numeric metric column")
    wide = df.assign(**{metric: values}).pivot(index=setting_cols, columns=method_col, values=metric)
    wide = wide.sort_index(axis=1)
    complete = wide.dropna()
    n_methods, n_settings = complete.shape[1], complete.shape[0]
    if n_methods < min_methods or n_settings < min_settings:
        raise StatisticsError(
            f"need at least {min_methods} methods and {min_settings} complete settings; got {n_methods} "
            f"methods and {n_settings} settings where every method has a value ({len(wide) - n_settings} "
            "incomplete settings dropped); run the missing (method, setting) units or compare fewer methods"
        )
    complete.attrs = {"n_settings": n_settings, "n_settings_dropped": len(wide) - n_settings}
    return complete


def to_long(wide: pd.DataFrame, metric: str, method_col: str) -> pd.DataFrame:
    """The complete blocks back in long form with one integer block id per setting (column ``_block``)."""
    long = wide.reset_index(drop=True).rename_axis(BLOCK).reset_index()
    return long.melt(id_vars=BLOCK, var_name=method_col, value_name=metric)
