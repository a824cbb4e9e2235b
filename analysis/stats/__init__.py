"""Significance-backed statistics for mergesec results; every function returns a tidy DataFrame.

Inputs are long tables with one row per (method, setting); paired statistics use only the complete
settings (see :func:`paired_table`). Methods: docs/statistics.md.
"""

from analysis.stats.blocks import StatisticsError, paired_table
from analysis.stats.bootstrap import bootstrap_ci, bootstrap_means, paired_difference_ci
from analysis.stats.cd_diagram import cd_diagram
from analysis.stats.correlation import correlation
from analysis.stats.decisions import ci_aware_ranks, p_value_matrix, pairwise_from_boot
from analysis.stats.friedman import friedman_test
from analysis.stats.letters import compact_letters
from analysis.stats.mcnemar import mcnemar_by_setting, mcnemar_exact
from analysis.stats.nemenyi import cd_cliques, nemenyi_critical_difference, nemenyi_q
from analysis.stats.onesample import one_sample_vs
from analysis.stats.pairwise import paired_test, pairwise_wilcoxon
from analysis.stats.power import minimum_detectable_difference, replicates_needed
from analysis.stats.ranking import rank_from_boot, rank_methods, rank_stability, stability_from_boot, top_group

__all__ = [
    "StatisticsError",
    "bootstrap_ci",
    "bootstrap_means",
    "cd_cliques",
    "cd_diagram",
    "ci_aware_ranks",
    "compact_letters",
    "correlation",
    "friedman_test",
    "mcnemar_by_setting",
    "mcnemar_exact",
    "minimum_detectable_difference",
    "nemenyi_critical_difference",
    "nemenyi_q",
    "one_sample_vs",
    "p_value_matrix",
    "paired_difference_ci",
    "paired_table",
    "paired_test",
    "pairwise_from_boot",
    "pairwise_wilcoxon",
    "rank_from_boot",
    "rank_methods",
    "rank_stability",
    "replicates_needed",
    "stability_from_boot",
    "top_group",
]
