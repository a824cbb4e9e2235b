"""Claim 6b: defenses reduce backdoor ASR at a small accuracy cost (e.g. IBVS, Pawlak et al., arXiv
2510.08016). Baselines are never attacks; a defended model is paired with its undefended twin on the
setting without the seed (seeds are averaged first)."""

from __future__ import annotations

import pandas as pd

from analysis.claims.backdoor_data import PAIR_KEY, attacks_only
from analysis.claims.clustered import BACKDOOR_CLUSTER, cluster_test, cluster_values, holm_family
from analysis.claims.core import OTHER_METHODS, Claim, Finding, combine, finding, no_data, peq, pp
from analysis.claims.power import ACCURACY_MARGIN, EFFECTS, decide

F7 = Claim(
    "defenses_reduce_asr",
    "Defenses reduce backdoor ASR, at an accuracy cost",
    "Each defense lowers the backdoor ASR of the merged model (e.g. IBVS, Pawlak et al., arXiv 2510.08016), "
    "and its clean-accuracy cost is small.",
)


def _pairs(rows: pd.DataFrame, no_defense: str) -> pd.DataFrame:
    """Defended settings joined to the undefended twin on :data:`PAIR_KEY`: ``asr_reduction`` and
    ``acc_cost``, both without − with."""
    base = rows[rows.defense == no_defense]
    pairs = rows[rows.defense != no_defense].merge(base, on=PAIR_KEY, suffixes=("", "_base"))
    return pairs.assign(
        asr_reduction=pairs.backdoor_asr_base - pairs.backdoor_asr, acc_cost=pairs.clean_acc_base - pairs.clean_acc
    )


HALVES = (("asr", "asr_reduction", 0.0, "two-sided", 1), ("accuracy", "acc_cost", ACCURACY_MARGIN, "less", -1))
"""(half, column, null, alternative, claimed direction): the ASR reduction ≠ 0 (claimed > 0); the accuracy
cost below the margin (non-inferiority)."""


def _tests(pairs: pd.DataFrame, by: list[str], alpha: float) -> pd.DataFrame:
    """Per group of ``by``: both halves' tests over the merging methods, one Holm family over every half of
    every group. ``mean_diff`` is the reduction or the cost (without − with)."""
    rows = []
    for key, g in pairs.groupby(by):
        key = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        for half, col, null, alt, _ in HALVES:
            vals = cluster_values(g, col, BACKDOOR_CLUSTER)
            rows.append({**key, "half": half, "n_pairs": len(g), **cluster_test(vals, null, alpha, alt)})
    tests = holm_family(pd.DataFrame(rows), alpha).rename(columns={"mean": "mean_diff"})
    spec = {h: (null if h == "accuracy" else EFFECTS[F7.key], direction) for h, _, null, _, direction in HALVES}
    tests["verdict"] = [  # a cost significantly above the margin refutes "small cost" whatever the power
        decide(p, e, d, spec[h][0], alpha, spec[h][1], po if h == "accuracy" else None)[0]
        for h, p, e, d, po in zip(tests.half, tests.p_holm, tests.effect, tests.mdd, tests.p_opposite_holm,
                                  strict=True)
    ]
    return tests


def defense_effects(rows: pd.DataFrame, alpha: float = 0.05, no_defense: str = "none") -> Finding:
    """Claim 6b. ``rows``: :func:`analysis.claims.backdoor_data.backdoor_settings`. Per defense, pooled over
    the attacks (no-attack baselines excluded): the ASR reduction tested two-sided (stated effect 10 pp)
    and the accuracy cost tested against the 2 pp margin (H1: cost < margin), over merging methods (each
    method's pairs averaged), Holm over every half of every defense. Per (attack, defense) the same, a
    second family."""
    test = (
        "Defended vs undefended merged models paired on (attack, variant, method, adversary task, target task, "
        "target class), seeds averaged, no-attack baselines excluded; per defense over merging methods (each "
        "method's pairs averaged): two-sided t-test of the ASR reduction (stated effect "
        f"{pp(EFFECTS[F7.key]).lstrip('+')}) and one-sided t-test that the accuracy cost is below "
        f"{pp(ACCURACY_MARGIN).lstrip('+')} (non-inferiority); Holm over both halves of every defense."
    )
    if rows.empty or no_defense not in set(rows.defense) or set(rows.defense) == {no_defense}:
        return no_data(F7, test, f"backdoor results both without (`{no_defense}`) and with a defense are "
                       "needed; run the backdoor track with defenses")
    attacked, n_baseline = attacks_only(rows)
    pairs = _pairs(attacked, no_defense)
    if pairs.empty:
        return no_data(F7, test, "no defended attack setting has a matching undefended setting")
    pooled = _tests(pairs, ["defense"], alpha)
    per_attack = _tests(pairs, ["attack", "defense"], alpha)
    by_defense = pooled.pivot(index="defense", columns="half", values="verdict")
    verdict = combine([combine(list(v)) for v in by_defense.itertuples(index=False)])
    parts = []
    for d, g in pooled.groupby("defense"):
        asr, acc = g[g.half == "asr"].iloc[0], g[g.half == "accuracy"].iloc[0]
        parts.append(
            f"`{d}`: ASR reduction {pp(asr.mean_diff)} (95% CI {pp(asr.ci_low)} to {pp(asr.ci_high)}, "
            f"{peq(asr.p_holm, 'p(Holm)')}, MDD {pp(asr.mdd).lstrip('+')}) → {asr.verdict}; accuracy cost "
            f"{pp(acc.mean_diff)} (95% CI {pp(acc.ci_low)} to {pp(acc.ci_high)}; below "
            f"{pp(ACCURACY_MARGIN).lstrip('+')}: {peq(acc.p_holm, 'p(Holm)')}, MDD {pp(acc.mdd).lstrip('+')}) → "
            f"{acc.verdict}; over {asr.n_clusters} methods ({asr.n_pairs} pairs)"
        )
    result = "Pooled over attacks: " + "; ".join(parts) + "."
    if n_baseline:
        result += f" {n_baseline} no-attack baseline settings excluded."
    numbers = {"accuracy_margin": ACCURACY_MARGIN, "n_baseline_excluded": n_baseline, "n_pairs": len(pairs)}
    for r in pooled.itertuples():
        name = "asr_reduction" if r.half == "asr" else "acc_cost"
        numbers[f"{name}[{r.defense}]"] = r.mean_diff
        numbers[f"{name}_p_holm[{r.defense}]"] = r.p_holm
        numbers[f"{name}_mdd[{r.defense}]"] = r.mdd
    mdd = float(pooled[pooled.half == "asr"].mdd.max())
    return finding(F7, test, verdict, result, "", numbers, {"effects": pooled, "per_attack": per_attack},
                   mdd=mdd, effect=EFFECTS[F7.key],
                   unit=f"{BACKDOOR_CLUSTER} (a merging method; its paired settings averaged)",
                   population=OTHER_METHODS)
