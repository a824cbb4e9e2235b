"""Claim 5: a pretrained surrogate transfers less than a fine-tuned one (seeds/000, result 3)."""

from __future__ import annotations

import pandas as pd

from analysis.claims.clustered import TRANSFER_CLUSTER, cluster_test, holm_family, paired_cluster_diff
from analysis.claims.core import Claim, Finding, finding, no_data, peq, pp
from analysis.claims.power import EFFECTS, decide

FINETUNED, PRETRAINED = "finetuned", "pretrained"
_KEY = ["method", "task", "attack", "eps"]

F5 = Claim(
    "pretrained_surrogate_transfers_less",
    "A pretrained surrogate transfers less than a fine-tuned one",
    "Adversarial examples crafted on the pretrained model transfer less to the merged model than those "
    "crafted on a fine-tuned model (seeds/000, result 3).",
)


def _test(long: pd.DataFrame, metric: str, alpha: float) -> dict:
    diff = paired_cluster_diff(long, metric, FINETUNED, PRETRAINED, _KEY, TRANSFER_CLUSTER, by="surrogate")
    return cluster_test(diff, 0.0, alpha)


def pretrained_surrogate_transfers_less(longs: dict[str, pd.DataFrame], alpha: float = 0.05) -> Finding:
    """Claim 5. ``longs``: metric → transfer settings of both surrogates (the first metric decides).

    Per task: the mean over (method, attack, eps) of fine-tuned − pretrained surrogate; two-sided t-test
    over tasks; per method the same, Holm over methods; stated effect 5 pp."""
    metrics, effect = list(longs), EFFECTS[F5.key]
    test = (
        f"Two-sided paired t-test over tasks of {metrics[0]} with a fine-tuned − a pretrained surrogate (each "
        "task's value = the mean over merging methods, attacks and budgets, seeds averaged); per method the "
        f"same, Holm over methods; stated effect {pp(effect).lstrip('+')}."
        + (f" Secondary metric: {', '.join(metrics[1:])}." if len(metrics) > 1 else "")
    )
    overall = []
    for metric, long in longs.items():
        if long.empty or not {FINETUNED, PRETRAINED} <= set(long.surrogate):
            continue
        overall.append({"metric": metric, **_test(long, metric, alpha)})
    if not overall or overall[0]["metric"] != metrics[0] or overall[0]["n_clusters"] < 2:
        return no_data(F5, test, "transfer results with both a `finetuned` and a `pretrained` surrogate on 2 "
                       "or more tasks are needed")
    primary = metrics[0]
    long = longs[primary]
    pm = pd.DataFrame([{"method": m, **_test(g, primary, alpha)} for m, g in long.groupby("method")])
    pm = holm_family(pm[pm.n_clusters >= 2], alpha).rename(columns={"mean": "mean_diff"}) if not pm.empty else pm
    r = overall[0]
    verdict, remark = decide(r["p"], r["effect"], r["mdd"], effect, alpha)
    result = (
        f"{primary} over {r['n_clusters']} tasks: fine-tuned − pretrained surrogate = {pp(r['mean'])} (95% CI "
        f"{pp(r['ci_low'])} to {pp(r['ci_high'])}); t({r['n_clusters'] - 1}) = {r['t']:.2f}, {peq(r['p'])}, "
        f"d = {r['cohen_d']:+.2f}; minimum detectable difference {pp(r['mdd']).lstrip('+')}."
    )
    if not pm.empty:
        n_sig = int(((pm.p_holm < alpha) & (pm.mean_diff > 0)).sum())
        result += f" Per method, the fine-tuned surrogate transfers significantly more for {n_sig} of {len(pm)} (Holm)."
    for o in overall[1:]:
        result += f" Secondary ({o['metric']}): {pp(o['mean'])}, {peq(o['p'])}."
    notes = []
    if primary == "asr_transfer":
        notes.append("Absolute transfer ASR decides: relative ASR divides by each surrogate's own white-box "
                     "ASR, so it compares transfer *efficiency*, not how often the merged model is fooled.")
    tables = {"overall": pd.DataFrame(overall).rename(columns={"mean": "mean_diff"}), "per_method": pm}
    return finding(F5, test, verdict, result, remark, {"metric": primary, **r}, tables, mdd=r["mdd"],
                   effect=effect, unit=f"{TRANSFER_CLUSTER} (methods, attacks and budgets averaged within a task)",
                   notes=notes)
