"""The utility gate of the transfer ranking: a merged model no better than chance on a task is not ranked
(docs/statistics.md, "Utility gate").

A merge that guesses on a task classifies few clean images correctly, so it empties that task's common set
(images every compared method gets right, :mod:`analysis.common_set`) for *every* method it is ranked with,
and its own transfer ASR then measures a broken model rather than robustness to transfer. RobustBench shows
robust accuracy only beside clean accuracy for the same reason. A method is gated when, on some task of the
selection, the one-sided exact binomial test (:func:`scipy.stats.binomtest`) of its clean accuracy against
chance 1/K (K classes) does not reject at :data:`ALPHA`. The test pools the task's seeds: each (seed, image)
of the selection is one trial of that seed's merged model. With digits' disjoint subsets (2.3) that is every
test image once; one 99-image seed alone would leave a merge at 0.57 on a binary task "at chance" (p = 0.11).
"""

import pandas as pd
from scipy.stats import binomtest

ALPHA = 0.05
"""Level of the one-sided test "clean accuracy > 1/K"; a merge it cannot show above chance is gated."""
COLUMNS = ["method", "task", "seeds", "n", "correct", "accuracy", "chance", "p"]


def below_chance(examples: pd.DataFrame, n_classes: dict[str, int], alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (method, task) whose clean accuracy, pooled over the selection's seeds, is not
    significantly above chance: ``method, task, seeds`` (how many), ``n`` (trials: one per seed and subset
    image), ``correct, accuracy, chance`` (1/K) and ``p`` (exact binomial, alternative "greater").
    ``examples`` are :func:`analysis.common_set.read_examples` rows; a target's clean correctness of an image
    is the same for every attack and surrogate, so each (seed, image) counts once. Tasks missing from
    ``n_classes`` (or with K < 2) are never gated."""
    per_image = examples.drop_duplicates(["method", "task", "seed", "example_id"])
    counts = per_image.groupby(["method", "task"]).agg(correct=("t_ok", "sum"), n=("t_ok", "count"),
                                                       seeds=("seed", "nunique")).reset_index()
    rows = []
    for r in counts.itertuples(index=False):
        k = int(n_classes.get(r.task, 0))
        if k < 2 or r.n == 0:
            continue
        p = binomtest(int(r.correct), int(r.n), 1 / k, alternative="greater").pvalue
        if p >= alpha:
            rows.append([r.method, r.task, int(r.seeds), int(r.n), int(r.correct), r.correct / r.n, 1 / k, p])
    return pd.DataFrame(rows, columns=COLUMNS)


def apply_gate(examples: pd.DataFrame, n_classes: dict[str, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the examples of the methods the gate keeps, :func:`below_chance`'s rows of those it leaves out)."""
    gated = below_chance(examples, n_classes)
    return (examples[~examples.method.isin(gated.method)] if not gated.empty else examples), gated


def describe(gated: pd.DataFrame) -> dict[str, str]:
    """Per gated method, one line naming its worst task, e.g. ``"clean accuracy 0.110 on digit (297 subset
    images over 3 seeds), not above chance 0.100 (binomial p = 0.37)"``."""
    out = {}
    for method, part in gated.groupby("method", sort=True):
        worst = part.sort_values(["accuracy", "task"]).iloc[0]
        more, seeds = len(part) - 1, f"{worst.seeds} seed{'s' if worst.seeds > 1 else ''}"
        out[method] = (f"clean accuracy {worst.accuracy:.3f} on {worst.task} ({worst.n} subset images over {seeds}), "
                       f"not "
                       f"above chance {worst.chance:.3f} (binomial p = {worst.p:.2f})"
                       + (f"; {more} more task{'s' if more > 1 else ''} like it" if more else ""))
    return out
