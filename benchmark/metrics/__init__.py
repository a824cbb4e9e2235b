"""Metric definitions shared by the tracks, the analysis and the leaderboard (docs/transfer.md)."""

from benchmark.metrics.transfer import (
    aasr,
    aggregate,
    attack_success_rate,
    clean_pass,
    counted_mask,
    example_cosines,
    gradient_cosine,
    linear_cka,
    mean_cosine,
    metrics_from_examples,
    relative_asr,
    setting_metrics,
)

__all__ = [
    "aasr",
    "aggregate",
    "attack_success_rate",
    "clean_pass",
    "counted_mask",
    "example_cosines",
    "gradient_cosine",
    "linear_cka",
    "mean_cosine",
    "metrics_from_examples",
    "relative_asr",
    "setting_metrics",
]
