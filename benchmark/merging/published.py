"""Where every built-in default comes from: the one record of each merge hyperparameter's value and source.

The registry declares each method's defaults where the method is defined; this record states, separately,
what the cited source uses. `tests/test_merging_defaults.py` fails when the two differ, when a suite fixes
a value that is neither the published one nor a deviation listed in `SUITE_DEVIATIONS`, and when
docs/merging.md's defaults table (`python -m benchmark.merging.published`) is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FB = "FusionBench (tanganke/fusion_bench)"
ADA = "AdaMerging official code (EnnengYang/AdaMerging, `main_*_adamerging.py`)"
MERGESEC = "mergesec choice"


@dataclass(frozen=True)
class Source:
    """A default `value` and where it comes from (`source`: a paper's table/section or a reference file;
    `MERGESEC` for knobs no source fixes that only bound memory or replace a validation search)."""

    value: Any
    source: str


PUBLISHED: dict[str, dict[str, Source]] = {
    "weight_averaging": {},
    "task_arithmetic": {
        "scaling_coef": Source(0.3, f"{FB} config/method/task_arithmetic.yaml `scaling_factor: 0.3`; AdaMerging "
                               "Table 2 (λ = 0.3 on CLIP ViT-B/32)"),
    },
    "ties": {
        "scaling_coef": Source(0.3, f"{FB} config/method/ties_merging.yaml `scaling_factor: 0.3`; AdaMerging and "
                               "BadMerging CLIP runs"),
        "keep_ratio": Source(0.2, f"{FB} config/method/ties_merging.yaml `threshold: 20` (top-20%)"),
        "merge_func": Source("sum", f"{FB} config/method/ties_merging.yaml `merge_func: sum`; BadMerging's code "
                             "(the TIES paper's disjoint mean goes with λ tuned near 1)"),
    },
    "dare_task_arithmetic": {
        "scaling_coef": Source(0.3, f"{FB} config/method/dare/task_arithmetic.yaml `scaling_factor: 0.3`"),
        "drop_rate": Source(0.5, f"{FB} config/method/dare/task_arithmetic.yaml `sparsity_ratio: 0.5`, "
                            "`rescale: true`"),
    },
    "dare_ties": {
        "scaling_coef": Source(0.5, f"{FB} config/method/dare/ties_merging.yaml `scaling_factor: 0.5`"),
        "keep_ratio": Source(0.2, f"{FB} config/method/dare/ties_merging.yaml `threshold: 20`"),
        "merge_func": Source("sum", f"{FB} config/method/dare/ties_merging.yaml `merge_func: sum`"),
        "drop_rate": Source(0.5, f"{FB} config/method/dare/ties_merging.yaml `sparsity_ratio: 0.5`"),
    },
    "fisher": {
        "n_examples": Source(256, f"{FB} config/method/fisher_merging/clip_fisher_merging.yaml "
                             "`num_fisher_examples: 256`"),
        "fisher_floor": Source(1e-6, f"{FB} clip_fisher_merging.yaml `minimal_fisher_weight: 1e-6`"),
        "normalize": Source(True, f"{FB} clip_fisher_merging.yaml `normalize_fisher_weight: true`; "
                            "mmatena/model_merging `normalize_fishers`"),
        "batch_size": Source(8, f"{MERGESEC}: per-example gradients held at once (memory only)"),
    },
    "regmean": {
        "alpha": Source(0.1, "BadMerging code (jzhang538/BadMerging) RegMean off-diagonal scale 0.1 on CLIP "
                        "ViT-B/32 (RegMean paper: 0.9; FusionBench clip_regmean.yaml: 0.95)"),
        "n_examples": Source(256, f"{FB} config/method/regmean/clip_regmean.yaml `num_regmean_examples: 256`"),
        "batch_size": Source(32, f"{FB} clip_regmean.yaml `batch_size: 32`"),
    },
    "adamerging_task": {
        "init_coef": Source(0.3, f"{ADA} `prior = 0.3`"),
        "lr": Source(1e-3, f"{ADA} `torch.optim.Adam(lr=1e-3)`"),
        "steps": Source(500, f"{ADA} `epochs = 500`"),
        "batch_size": Source(16, f"{ADA} test-time loaders, batch size 16"),
        "batches_per_step": Source(2, f"{ADA} inner loop `if i > 0: # Execute only one step` / `break` after "
                                   "batches 0 and 1 of each task"),
    },
    "surgery_task_arithmetic": {
        "scaling_coef": Source(0.3, "Representation Surgery (Yang et al., ICML 2024) on task arithmetic λ = 0.3"),
        "rank": Source(16, "Representation Surgery official code (EnnengYang/RepresentationSurgery) rank 16"),
        "steps": Source(1000, "Representation Surgery official code: 500 iterations × 2 batches per task"),
        "lr": Source(1e-3, "Representation Surgery official code Adam lr 1e-3"),
        "batch_size": Source(16, "Representation Surgery official code batch size 16"),
    },
    "consensus_ta": {
        "scaling_coef": Source(0.3, "Task arithmetic's λ = 0.3 (Consensus TA applies it to the masked sum)"),
        "tall_mask_lambda": Source(0.4, f"{MERGESEC}: middle of the TALL-masks paper's validation grid "
                                   "{0.2, …, 0.6} (data-free, no search)"),
        "min_agreement": Source(2, "TALL masks (Wang et al., ICML 2024) Sec. 4: k = 2"),
    },
    "tsv_m": {
        "scaling_coef": Source(1.0, f"{FB} config/method/task_singular_vector/TaskSingularVectorMerging.yaml "
                               "`alpha: 1`"),
    },
    "iso_c": {
        "scaling_coef": Source(1.0, f"{FB} config/method/isotropic_merging/iso_c.yaml `scaling_factor: 1.0`"),
    },
    "iso_cts": {
        "scaling_coef": Source(1.0, f"{FB} config/method/isotropic_merging/iso_cts.yaml `scaling_factor: 1.0`"),
        "common_space_fraction": Source(0.8, f"{FB} iso_cts.yaml `common_space_fraction: 0.8`"),
    },
    "wudi": {
        "steps": Source(400, f"{FB} config/method/wudi/wudi.yaml `iter_num: 400`"),
        "lr": Source(1e-5, f"{FB} fusion_bench/method/wudi/wudi.py `Adam(lr=1e-5, weight_decay=0)`"),
    },
}
PUBLISHED["adamerging_layer"] = dict(PUBLISHED["adamerging_task"])

SUITE_DEVIATIONS: dict[str, dict[str, dict[str, Source]]] = {
    "digits-ci": {
        name: {"steps": Source(100, "CI's reproducibility configuration (scripts/ci_reproduce.sh): 500 steps per "
                               "merge would take the check past CI's time limit; its numbers are never ranked")}
        for name in ("adamerging_task", "adamerging_layer")
    },
}
"""Values a suite fixes that differ from `PUBLISHED`, each with its reason."""


def _cell(value: Any) -> str:
    return f'`"{value}"`' if isinstance(value, str) else f"`{value}`"


def defaults_table() -> str:
    """docs/merging.md's table of defaults: one row per (method, hyperparameter), then the suites' deviations."""
    lines = ["| method | hyperparameter | default | source |", "| --- | --- | --- | --- |"]
    for method, params in sorted(PUBLISHED.items()):
        if not params:
            lines.append(f"| `{method}` | – | – | no hyperparameters |")
        lines += [f"| `{method}` | `{p}` | {_cell(s.value)} | {s.source} |" for p, s in params.items()]
    lines += ["", "| suite | method | hyperparameter | value | reason |", "| --- | --- | --- | --- | --- |"]
    for suite, methods in sorted(SUITE_DEVIATIONS.items()):
        for method, params in sorted(methods.items()):
            lines += [f"| {suite} | `{method}` | `{p}` | {_cell(s.value)} | {s.source} |" for p, s in params.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(defaults_table(), end="")
