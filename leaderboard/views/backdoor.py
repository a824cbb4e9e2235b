"""Backdoor leaderboard: merging methods under each attack and variant (ASR beside its untriggered floor,
clean accuracy), the no-attack baselines shown as baselines, and the defenses table.

Baselines (``role = 'baseline'``, or attacks named ``clean*``) are never ranked or averaged into the
attacks; on-task and off-task variants are ranked separately. Every choice lives in the URL."""

import pandas as pd
import streamlit as st

from analysis.stats import StatisticsError
from leaderboard import data, tables, ui

TRACK = "backdoor"
ctx = ui.context()
ui.page("Backdoors", "backdoor", "One contributor's fine-tuned model carries a backdoor. Backdoor ASR: share of "
        "triggered test images (true class ≠ target) that the merged model puts in the target class; lower is "
        "better.")

rows = data.backdoor_rows(ctx.db, ctx.suite_hash)
if rows.empty:
    st.info("No backdoor results for this suite yet: `mergesec run --track backdoor`.", icon=":material/info:")
    ui.end_page()
rows = rows.assign(baseline=tables.is_baseline(rows))
attacks_rows, base_rows = rows[~rows.baseline], rows[rows.baseline]

defenses = sorted(rows.defense.unique(), key=lambda d: (d != tables.NO_DEFENSE, d))
defense = ui.choice(f"Defense applied (`{tables.NO_DEFENSE}`: the merged model as is)", {d: d for d in defenses},
                    "defense", default=defenses[0])
PCT = lambda v: tables.fmt_value(v, True)  # noqa: E731


def floors(sub: pd.DataFrame, order: list[str]) -> dict[str, list]:
    """The untriggered floor and what the trigger adds (ASR − floor, pp) per method, where stored."""
    f = tables.floor_columns(sub, order)
    if f.empty or "asr_floor" not in f.columns:
        return {}
    return {"untriggered floor": [PCT(v) for v in f.asr_floor], "ASR − floor": [tables.fmt_pp(v) for v in f.excess]}


def attack_table(attack_names: list[str], variant: str | None, name: str) -> None:
    """Methods ranked by backdoor ASR under the attacks (one variant, or all), clean accuracy beside. The ASR
    ranking resamples the triggered test images, so one setting suffices; clean accuracy has no per-image
    rows, so with fewer than 2 settings it is shown as a mean without an interval."""
    filters = data.freeze({"attack": attack_names, "variant": [variant] if variant else [], "defense": [defense]})
    about = ui.about(page="backdoor", table=name, filters=filters)
    sub = attacks_rows[attacks_rows.attack.isin(attack_names) & (attacks_rows.defense == defense)
                       & ((attacks_rows.variant == variant) if variant else True)]
    means = sub.groupby("method")[["backdoor_asr", "clean_acc"]].mean()
    try:
        asr = data.ranked(ctx.db, ctx.suite_hash, TRACK, "backdoor_asr", filters)
    except StatisticsError as e:
        means = means.sort_values("backdoor_asr").reset_index()
        st.caption(f"Means without intervals or tests: {e}.")
        shown = pd.DataFrame({"method": means.method, "backdoor ASR": means.backdoor_asr.map(PCT),
                              "clean accuracy": means.clean_acc.map(PCT), **floors(sub, means.method.tolist())})
        ui.table(means, f"backdoor_{name}_{defense}", shown, about)
        return
    try:
        acc = data.ranked(ctx.db, ctx.suite_hash, TRACK, "clean_acc", filters)
        acc_note = f"**accuracy 95% CI**: resampling {acc.attrs.get('resampling', 'the settings')}"
        acc = acc.set_index("method").reindex(asr.method)
    except StatisticsError:  # no per-image rows: its interval resamples settings, and there are too few
        acc = pd.DataFrame({"mean": means.clean_acc.reindex(asr.method), "ci_low": float("nan"),
                            "ci_high": float("nan")})
        n = int(asr.n_settings.iat[0])
        acc_note = (f"**clean accuracy**: means without an interval (it has no per-image rows, so its interval "
                    f"resamples settings, and this selection has {n} setting{'s' if n != 1 else ''}; "
                    "*all attacks* has more)")
    ui.significance_note(asr, True)
    shown = tables.ranking_display(asr, True, ctx.suite_hash, data.method_table(ctx.db),
                                   data.badges(ctx.db, ctx.suite_hash))
    shown = shown.rename(columns={"mean": "backdoor ASR", "95% CI": "ASR 95% CI"})
    extra = {"clean accuracy": acc["mean"].map(PCT).to_list(),
             "accuracy 95% CI": [tables.fmt_ci(lo, hi, True) if pd.notna(lo) else "—"
                                 for lo, hi in zip(acc.ci_low, acc.ci_high, strict=True)],
             **floors(sub, asr.method.tolist())}
    for i, (col, vals) in enumerate(extra.items()):
        shown.insert(5 + i, col, vals)
    best = asr[asr["rank"] == asr["rank"].min()].method.tolist()
    st.markdown("Least backdoored (rank 1): " + ", ".join(f"**{m}**" for m in best)
                + f" · mean ASR {tables.fmt_value(asr['mean'].iat[0], True)} "
                  f"{tables.fmt_ci(asr.ci_low.iat[0], asr.ci_high.iat[0], True)}")
    full = asr.drop(columns=["top_group"], errors="ignore").merge(
        acc[["mean", "ci_low", "ci_high"]].add_prefix("clean_acc_").reset_index(), on="method")
    ui.table(full, f"backdoor_{name}_{defense}", shown, about, right=("rank", "settings"))
    st.caption(ui.rank_help(asr) + " · " + acc_note)


st.subheader("Merging methods under each attack")
if attacks_rows.empty:
    st.info("Only no-attack baselines are stored for this suite; run an attack: `mergesec run --track backdoor`.")
else:
    combos = attacks_rows[["attack", "variant"]].drop_duplicates().sort_values(["attack", "variant"])
    labels = [f"{a} · {v}" for a, v in combos.itertuples(index=False)]
    all_label = "all attacks"
    tab_labels = [*labels, all_label] if len(labels) > 1 else labels
    for tab, label in zip(st.tabs(tab_labels, key="attack", bind="query-params"), tab_labels, strict=True):
        if tab.open is False:  # only the open tab is computed and sent; a click on another reruns the page
            continue
        with tab:
            if label == all_label:
                st.caption("Every attack and variant as separate settings of one ranking (baselines excluded).")
                attack_table(sorted(combos.attack.unique()), None, "all_attacks")
            else:
                a, v = combos.iloc[labels.index(label)]
                attack_table([a], v, f"{a}_{v}")

st.subheader("Baselines: the trigger without an attack")
if base_rows.empty:
    st.caption("No baseline rows stored (a merge of honest models with the trigger applied at test time).")
else:
    st.caption("The trigger applied to a merge of honest models: the ASR an attack has to beat. Backdoor ASR "
               "per method (rows) and baseline · variant (columns); never ranked and never averaged into the "
               "attacks.")
    sub = base_rows[base_rows.defense == defense]
    means = sub.groupby(["attack", "variant", "method"], as_index=False)[["backdoor_asr", "clean_acc"]].mean()
    wide = means.assign(baseline=means.attack + " · " + means.variant).pivot(
        index="method", columns="baseline", values="backdoor_asr")
    shown = wide.map(PCT).reset_index()
    ui.table(means, f"backdoor_baselines_{defense}", shown,
             ui.about(page="backdoor", table="baselines", defense=defense))

st.subheader("Defenses")
effects = data.defense_effects(ctx.db, ctx.suite_hash)
if effects.empty:
    st.info(f"No defense results to compare with `{tables.NO_DEFENSE}` yet.")
else:
    shown = tables.effects_display(effects, ctx.suite_hash)
    ui.table(effects, "backdoor_defenses", shown, ui.about(page="backdoor", table="defenses"), right=("pairs",))
    st.caption("ASR reduction: ASR without − with the defense (> 0: it helps); accuracy cost: clean accuracy "
               "without − with (> 0: it costs); percentage points, paired with the undefended merge of the same "
               "method, variant, tasks and seed, with percentile bootstrap 95% CIs over the pairs. A CI above "
               "zero: the defense reliably lowers the ASR (or costs accuracy). Click a defense for its page.")
