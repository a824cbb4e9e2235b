"""Metric definitions shared by the tracks, the analysis and the leaderboard (docs/transfer.md)."""

from benchmark.metrics.transfer import (
    aasr,
    aggregate,
    attack_success_rate,
    counted_mask,
    gradient_cosine,
    input_gradients,
    linear_cka,
    metrics_from_examples,
    relative_asr,
    setting_metrics,
)

__all__ = [
    "aasr",
    "aggregate",
    "attack_success_rate",
    "counted_mask",
    "gradient_cosine",
    "input_gradients",
    "linear_cka",
    "metrics_from_examples",
    "relative_asr",
    "setting_metrics",
]
