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

SHOWN = ("method", "mean", "ci_low", "ci_high", "n_settings", "rank", "top_group", "letters")
"""The ranking's columns shown (``rank`` is CI-aware once analysis.ranking_view has it; ``top_group`` is
shown while it exists)."""


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
    from analysis.queries import transfer_long
    from analysis.ranking_view import ranked_table
    from analysis.stats import StatisticsError, friedman_test, nemenyi_critical_difference

    cmd = (f"mergesec rank --suite {r.suite_name} --track transfer --metric {r.metric} --surrogate {surrogate} "
           f"--n-boot {r.n_boot} --seed {r.seed}")
    try:
        ranked = ranked_table(r.store, r.suite_hash, "transfer", r.metric, {"surrogate": [surrogate]},
                              n_boot=r.n_boot, seed=r.seed, alpha=r.alpha)
        long = transfer_long(r.store, r.suite_hash, r.metric, surrogate)
        fr = friedman_test(long, r.metric, C.clustered.TRANSFER_SETTING).iloc[0]
        ranks = nemenyi_critical_difference(long, r.metric, C.clustered.TRANSFER_SETTING, higher_is_better=False,
                                            alpha=r.alpha)
    except StatisticsError as e:
        return f"### Surrogate `{surrogate}`\n\nNo ranking: {e}", None
    ranked.to_csv(csv_dir / f"transfer_ranking_{surrogate}.csv", index=False)
    shown = ranked[[c for c in SHOWN if c in ranked]]
    rank_text = ("`rank` = 1 + the number of methods significantly less vulnerable (ties share a rank)"
                 if "top_group" not in ranked else
                 "`top_group` = not significantly more vulnerable than the best")
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
    fig_path = None
    if draw:
        name = f"cd_diagram_{surrogate}.png"
        fig_path = G.save(G.cd(ranks, f"{r.label}, surrogate {surrogate}: average rank (1 = least vulnerable)"),
                          out / name)
        lines += ["", f"![critical-difference diagram, surrogate {surrogate}]({name})", "",
                  f"Critical-difference diagram (Nemenyi, CD = {ranks.cd.iat[0]:.2f}): least vulnerable on the "
                  "left; methods joined by a bar do not differ significantly."]
    return "\n".join(lines), fig_path
