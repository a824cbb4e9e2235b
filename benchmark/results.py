"""Result tables read from the store, shared by the CLI, the analysis and the leaderboard."""

import pandas as pd

from benchmark.errors import UnknownNameError
from benchmark.store import Store
from benchmark.suites import Suite


def merge_table(store: Store, suite: Suite) -> pd.DataFrame:
    """Method x task clean accuracy, with the mean accuracy and mean normalized accuracy per method,
    plus the pretrained and fine-tuned reference rows; sorted by mean accuracy."""
    df = store.read("SELECT * FROM merge_eval WHERE suite_hash = ?", [suite.hash])
    if df.empty:
        return df
    order = [t for t in suite.task_names if t in set(df.task)]
    acc = df.pivot_table(index="method", columns="task", values="clean_acc", aggfunc="mean")[order]
    acc["avg_acc"] = acc[order].mean(axis=1)
    acc["avg_normalized_acc"] = df.groupby("method").normalized_acc.mean()
    acc["merge_seconds"] = df.groupby("method").merge_seconds.mean()
    refs = pd.DataFrame([
        {**df.groupby("task").pretrained_acc.mean()[order].to_dict(), "method": "(pretrained)"},
        {**df.groupby("task").finetuned_acc.mean()[order].to_dict(), "method": "(fine-tuned)"},
    ]).set_index("method")
    refs["avg_acc"] = refs[order].mean(axis=1)
    refs["avg_normalized_acc"] = refs["avg_acc"] / refs.loc["(fine-tuned)", "avg_acc"]
    out = pd.concat([acc.sort_values("avg_acc", ascending=False), refs])
    return out.reset_index().rename(columns={"index": "method"})


def transfer_table(store: Store, suite: Suite) -> pd.DataFrame:
    """Per method and surrogate, over tasks and attacks: mean relative ASR, relative AASR, AASR (transfer,
    white-box), mean clean accuracy of targets and surrogates, mean gradient cosine and CKA; most
    vulnerable (highest transfer AASR) first within each surrogate. Definitions: docs/transfer.md."""
    from benchmark.metrics import aggregate

    df = store.read("SELECT * FROM transfer_metrics WHERE suite_hash = ?", [suite.hash])
    if df.empty:
        return df
    out = aggregate(df, ["surrogate", "method"])
    return out.sort_values(["surrogate", "aasr_transfer"], ascending=[True, False]).reset_index(drop=True)


def backdoor_table(store: Store, suite: Suite) -> pd.DataFrame:
    """Per attack (with the clean baseline), variant, target and merge method: clean accuracy `acc[d]` and
    backdoor ASR `asr[d]` under each defense d (`none` first). Definitions: docs/backdoor.md."""
    from benchmark.tracks.backdoor import summary_table

    df = store.read("SELECT * FROM backdoor_metrics WHERE suite_hash = ?", [suite.hash])
    return summary_table(df, list(suite.merge_methods))


TRACK_TABLES = {"merge": merge_table, "transfer": transfer_table, "backdoor": backdoor_table}


def track_table(store: Store, suite: Suite, track: str) -> pd.DataFrame:
    """The summary table of `track` for `suite`."""
    if track not in TRACK_TABLES:
        raise UnknownNameError("track", track, list(TRACK_TABLES))
    return TRACK_TABLES[track](store, suite)
