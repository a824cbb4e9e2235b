"""`mergesec analyze`: the findings report (build), its ranking section, tables and markdown document."""

from analysis.report.build import ASR_METRICS, FIGURES, Report, backdoor_bar_table, build_report

__all__ = ["ASR_METRICS", "FIGURES", "Report", "backdoor_bar_table", "build_report"]
