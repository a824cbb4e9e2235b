"""Claim 6a: BadMerging survives merging; a naive backdoor does not (Zhang et al., CCS 2024)."""

from __future__ import annotations

import pandas as pd

from analysis.claims.backdoor_data import attacks_only
from analysis.claims.clustered import BACKDOOR_CLUSTER, cluster_test, cluster_values, holm_family
from analysis.claims.core import OTHER_METHODS, Claim, Finding, combine, finding, no_data, pct, peq, pp
from analysis.claims.power import EFFECTS, decide

BADMERGING, NAIVE = "badmerging", "naive"
DIRECTION = {BADMERGING: 1, NAIVE: -1}
"""The claim's direction per attack: BadMerging above the threshold, the naive backdoor below it."""

F6 = Claim(
    "backdoor_survives_merging",
    "BadMerging survives merging; a naive backdoor does not",
    "BadMerging keeps a high attack success rate after merging, while prior (naive BadNets-style) backdoors "
    "are diluted to below 20% ASR (Zhang et al., CCS 2024).",
)


def backdoor_asr_after_merging(
    rows: pd.DataFrame, alpha: float = 0.05, threshold: float = 0.20, defense: str = "none"
) -> Finding:
    """Claim 6a. ``rows``: :func:`analysis.claims.backdoor_data.backdoor_settings`. Without a defense and
    without the no-attack baselines: per BadMerging / naive variant, the merged models' ASR (one value per
    merging method, its target settings averaged) against ``threshold``, two-sided t-test, Holm over the
    variants; stated effect 10 pp from the threshold."""
    effect = EFFECTS[F6.key]
    test = (
        f"Per {BADMERGING} / {NAIVE} variant: two-sided one-sample t-test of backdoor ASR − {threshold:.0%} over "
        f"merging methods (each method's value = the mean over its target settings, seeds averaged, defense "
        f"`{defense}`, no-attack baselines excluded), Holm over the variants; stated effect "
        f"{pp(effect).lstrip('+')} from {threshold:.0%}."
    )
    base, n_baseline = attacks_only(rows[rows.defense == defense]) if not rows.empty else (rows, 0)
    if base.empty:
        return no_data(F6, test, f"no backdoor results without a defense (`{defense}`); run "
                       "`mergesec run --track backdoor`")
    per_method = (base.groupby(["attack", "variant", "method"], as_index=False)
                  .agg(n=("backdoor_asr", "size"), backdoor_asr=("backdoor_asr", "mean"),
                       clean_acc=("clean_acc", "mean")))
    deciding = base[base.attack.isin(DIRECTION)]
    tests = [{"attack": a, "variant": v, **cluster_test(cluster_values(g, "backdoor_asr", BACKDOOR_CLUSTER),
                                                        threshold, alpha)}
             for (a, v), g in deciding.groupby(["attack", "variant"])]
    if not tests:
        return no_data(F6, test, f"no `{BADMERGING}` or `{NAIVE}` results without a defense")
    per_attack = holm_family(pd.DataFrame(tests), alpha)
    per_attack["verdict"] = [
        decide(p, e, d, effect, alpha, DIRECTION[a])[0]
        for a, p, e, d in zip(per_attack.attack, per_attack.p_holm, per_attack.effect, per_attack.mdd, strict=True)
    ]
    verdict = combine(per_attack.verdict.tolist())
    parts = [
        f"{r.attack}/{r.variant}: mean {pct(r.mean)} over {r.n_clusters} methods, {peq(r.p_holm, 'p(Holm)')}, "
        f"d = {r.cohen_d:+.2f}, MDD {pp(r.mdd).lstrip('+')} → {r.verdict}"
        for r in per_attack.itertuples()
    ]
    result = f"Backdoor ASR after merging (defense `{defense}`) against {threshold:.0%}: " + "; ".join(parts) + "."
    if n_baseline:
        result += f" {n_baseline} no-attack baseline settings excluded."
    numbers = {"threshold": threshold, "n_settings": len(base), "n_baseline_excluded": n_baseline,
               "mdd": float(per_attack.mdd.max())}
    for r in per_attack.itertuples():
        numbers[f"mean_asr[{r.attack}/{r.variant}]"] = r.mean
        numbers[f"p_holm[{r.attack}/{r.variant}]"] = r.p_holm
    return finding(F6, test, verdict, result, "", numbers, {"per_attack": per_attack, "per_method": per_method},
                   mdd=float(per_attack.mdd.max()), effect=effect,
                   unit=f"{BACKDOOR_CLUSTER} (a merged model; its target settings averaged)", population=OTHER_METHODS)
