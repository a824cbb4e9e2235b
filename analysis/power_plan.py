"""How many seeds the transfer leaderboard needs to separate a given difference (docs/statistics.md, "Seeds").

Run: ``python -m analysis.power_plan --db results/mergesec.duckdb --suite digits [--difference 0.05]``.

From one stored run of k seeds it takes, per surrogate, the median standard error of a paired difference of
two methods' mean relative ASR under the image bootstrap (tasks fixed), as the leaderboard ranks them (the
utility gate applied). Each seed attacks a subset of ``n`` of the ``N`` test images (f = n/N). With
``transfer.subsets: independent`` each seed draws its own subset, so the image-sampling variance of the
seed-averaged metric is σ²((1 − f)/(k n) + 1/N) (subset counts of k independent draws): the standard error
is ``se₁ √((1 − f)/k + f)``. With ``disjoint`` subsets (block s of one permutation for seed s) every image is
attacked once, so it is ``se₁ √(1/k)`` up to k = N/n seeds, where the split is used up. Either way it never
falls below ``se₁ √f``: seeds cannot make the test split bigger. ``se₁`` (one seed) is inferred from the
stored k. Seed-to-seed variation of fine-tuning, merging and attack is only partly resampled, so the seeds
printed are a lower bound. It also prints how many test images per task (all of them evaluated) would
separate the difference: σ₁ = se₁ √n per image, so ⌈(mdd factor · σ₁ / difference)²⌉.
"""

import argparse
import json
import math

import numpy as np

from analysis import queries as Q
from analysis.stats.power import mdd_factor
from benchmark.store import Store


def se_after(se_one: float, seeds: int, f: float, design: str = "independent") -> float:
    """Image-sampling standard error with ``seeds`` subsets of a fraction ``f`` of the test split, drawn
    independently or as disjoint blocks (``design``; disjoint blocks beyond 1/f seeds do not exist, and the
    error stays at the whole split's)."""
    if design == "disjoint":
        return se_one * math.sqrt(max(1 / seeds, f))
    return se_one * math.sqrt((1 - f) / seeds + f)


def plan(store: Store, suite: str, difference: float = 0.05, alpha: float = 0.05, n_boot: int = 2000,
         max_seeds: int = 50) -> list[dict]:
    """One row per surrogate: the design's numbers and the seeds needed (None: not reachable by seeds)."""
    from analysis.ranking_view import ranking

    ref = Q.resolve_suite(store, suite)
    spec = Q.suite_spec(store, ref.hash)
    n_test, design = int(spec["data"]["splits"]["test"]), spec["transfer"].get("subsets", "independent")
    n_sub = int(store.read("SELECT max(n_subset) AS n FROM transfer_metrics WHERE suite_hash = ?",
                           [ref.hash]).n.iat[0])
    f = min(1.0, n_sub / n_test)
    if design == "disjoint":  # seed k needs block k of the split
        max_seeds = min(max_seeds, n_test // n_sub)
    k = int(store.read("SELECT count(DISTINCT seed) AS k FROM transfer_metrics WHERE suite_hash = ?",
                       [ref.hash]).k.iat[0])
    rows = []
    for surrogate in Q.surrogates(store, ref.hash):
        rk = ranking(store, ref.hash, "transfer", "relative_asr", {"surrogate": [surrogate]}, n_boot=n_boot)
        m = len(rk.pairs)
        row = {"surrogate": surrogate, "methods": len(rk.table), "not_ranked": len(rk.table.attrs["not_ranked"]),
               "settings": int(rk.table.n_settings.iat[0]), "seeds": k, "n_common": rk.table.attrs["n_common"],
               "subset": n_sub, "test_images": n_test}
        se_k = float(np.median(rk.pairs.se))
        se1 = se_k / se_after(1.0, k, f, design)
        se_task = float(np.median(rk.task_pairs.se))
        row.update(se_stored=se_k, se_task_level=se_task, image_share=(se_k / se_task) ** 2 if se_task else None)
        for label, a in (("", alpha), ("_holm", alpha / m)):
            factor = mdd_factor(a)
            row[f"mdd_stored{label}"] = factor * se_k
            row[f"mdd_floor{label}"] = factor * se_after(se1, 10**9, f, design)
            row[f"seeds_needed{label}"] = next(
                (k for k in range(1, max_seeds + 1) if factor * se_after(se1, k, f, design) <= difference), None)
            row[f"test_images_needed{label}"] = math.ceil((factor * se1 * math.sqrt(n_sub) / difference) ** 2)
        rows.append(row)
    return rows


COLUMNS = {
    "surrogate": "surrogate", "methods": "methods ranked", "not_ranked": "not ranked (at chance)",
    "settings": "settings", "seeds": "seeds", "n_common": "common images",
    "se_stored": "SE of a difference", "se_task_level": "SE, task-level view",
    "mdd_stored": "MDD", "mdd_stored_holm": "MDD at Holm's first step",
    "mdd_floor": "MDD floor (any number of seeds)", "seeds_needed": "seeds to separate the difference",
    "seeds_needed_holm": "seeds, Holm's first step",
    "test_images_needed": "test images per task to separate it (all used)",
}


def render_markdown(rows: list[dict]) -> str:
    """The rows as the markdown table docs/statistics.md shows (pp for differences; "—" = not reachable)."""
    def cell(key: str, value) -> str:
        if value is None:
            return "— (not by seeds)"
        return f"{100 * value:.1f} pp" if key.startswith(("se_", "mdd_")) else str(value)

    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(k, r[k]) for k in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m analysis.power_plan", description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="results/mergesec.duckdb")
    parser.add_argument("--suite", default="digits")
    parser.add_argument("--difference", type=float, default=0.05, help="difference to separate (0.05 = 5 pp)")
    parser.add_argument("--json", action="store_true", help="one JSON object per surrogate instead of markdown")
    args = parser.parse_args(argv)
    rows = plan(Store(args.db), args.suite, args.difference)
    if args.json:
        for row in rows:
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
    else:
        print(render_markdown(rows), end="")


if __name__ == "__main__":
    main()
