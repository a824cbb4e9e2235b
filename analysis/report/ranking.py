"""The report's transfer ranking: one table per surrogate (rankings of different surrogates disagree, so
they are never pooled), each exactly :func:`analysis.ranking_view.ranked_table`, the function the
leaderboard and `mergesec rank` call, with its Friedman test and critical-difference diagram."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import claims as C
from analysis.report.tables import fmt_table
from benchmark.store import Store

SHOWN = ("method", "mean", "ci_low", "ci_high", "n_settings", "rank", "letters", "per_target")
"""The ranking's columns shown (``rank`` is CI-aware; ``per_target``: each method on its own counted set)."""


@dataclass(frozen=True)
class RankingInputs:
    """What one surrogate's ranking needs: the suite, metric, its label and the ranking's statistics."""

    store: Store
    suite_hash: str
    suite_name: str
    metric: str
    label: str
    alpha: float
    n_boot: int
    seed: int


def surrogate_ranking(
    r: RankingInputs, surrogate: str, csv_dir: Path, out: Path, draw: bool
) -> tuple[str, Path | None]:
    """Markdown of ``surrogate``'s ranking and the CD figure written (or None). The text names the leaderboard
    as showing the same table only when the bootstrap settings are ranked_table's defaults (the
    leaderboard's)."""
    from analysis import figures as G
    from analysis.ranking_view import ranked_table, ranking
    from analysis.stats import StatisticsError, friedman_test, nemenyi_critical_difference, p_value_matrix

    cmd = (f"mergesec rank --suite {r.suite_name} --track transfer --metric {r.metric} --surrogate {surrogate} "
           f"--n-boot {r.n_boot} --seed {r.seed}")
    try:
        # the same values and decisions as ranked_table (the leaderboard's table): Friedman and the average
        # ranks on its per-setting values, the CD diagram's bars from its Holm-corrected pairwise decisions
        rk = ranking(r.store, r.suite_hash, "transfer", r.metric, {"surrogate": [surrogate]},
                     n_boot=r.n_boot, seed=r.seed, alpha=r.alpha, task_level=False)
        ranked, settings = rk.table, rk.table.attrs["settings"]
        fr = friedman_test(rk.long, r.metric, settings).iloc[0]
        ranks = nemenyi_critical_difference(rk.long, r.metric, settings, higher_is_better=False, alpha=r.alpha)
        decisions = p_value_matrix(rk.pairs, list(ranked.method))
    except StatisticsError as e:
        return f"### Surrogate `{surrogate}`\n\nNo ranking: {e}", None
    ranked.to_csv(csv_dir / f"transfer_ranking_{surrogate}.csv", index=False)
    shown = ranked[[c for c in SHOWN if c in ranked]]
    rank_text = "`rank` = 1 + the number of methods significantly less vulnerable (ties share a rank)"
    mdd = ranked.attrs.get("mdd")
    defaults = inspect.signature(ranked_table).parameters
    same = (r.n_boot, r.seed, r.alpha) == tuple(defaults[k].default for k in ("n_boot", "seed", "alpha"))
    where = f"`{cmd}`" + (f" and the leaderboard with surrogate `{surrogate}`" if same else "")
    lines = [
        f"### Surrogate `{surrogate}`",
        "",
        f"Methods ranked by mean {r.label} over {int(ranked.n_settings.iat[0])} complete settings (surrogate "
        f"`{surrogate}`, seeds averaged); **rank 1 = least vulnerable**. {rank_text}; methods sharing a letter do "
        f"not differ. The same table as {where} (analysis.ranking_view.ranked_table).",
        "",
        fmt_table(shown, pct_cols=["mean", "ci_low", "ci_high"]),
        "",
        f"Friedman test: χ²({int(fr.ddof1)}) = {fr.Q:.2f}, {C.peq(fr.p_unc)}, Kendall's W = {fr.W:.2f} over "
        f"{int(fr.n_settings)} settings."
        + (f" Minimum detectable difference between two methods at 80% power: {C.pp(mdd).lstrip('+')}."
           if isinstance(mdd, float) and pd.notna(mdd) else ""),
    ]
    lines += [f"\nNot ranked (utility gate, docs/statistics.md): `{m}`, {why}."
              for m, why in ranked.attrs.get("not_ranked", {}).items()]
    fig_path = None
    if draw:
        name = f"cd_diagram_{surrogate}.png"
        title = f"{r.label}, surrogate {surrogate}: average rank (1 = least vulnerable)"
        fig_path = G.save(G.cd(ranks, title, decisions), out / name)
        lines += ["", f"![critical-difference diagram, surrogate {surrogate}]({name})", "",
                  "Critical-difference diagram: average rank over the settings, least vulnerable on the left; "
                  "methods joined by a bar do not differ by the same Holm-corrected pairwise tests as the ranks "
                  "and letters above."]
    return "\n".join(lines), fig_path
