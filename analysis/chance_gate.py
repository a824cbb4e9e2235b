"""The utility gate of the transfer ranking: a merged model no better than chance on a task is not ranked
(docs/statistics.md, "Utility gate").

A merge that guesses on a task classifies few clean images correctly, so it empties that task's common set
(images every compared method gets right, :mod:`analysis.common_set`) for *every* method it is ranked with,
and its own transfer ASR then measures a broken model rather than robustness to transfer. RobustBench shows
robust accuracy only beside clean accuracy for the same reason. A method is gated when one of its merged
models (one per seed) is, on some task of the selection, not shown above chance: the one-sided exact
binomial test (:func:`scipy.stats.binomtest`) of its clean correct count against chance 1/K (K classes) does
not reject at :data:`ALPHA`. The count is the model's on the whole test split (the merge track's
``merge_eval`` row of that method, task and seed) where stored, else on that seed's transfer subset: on
digits' 99-image subsets a merge with 56 of 99 right on a binary task is "at chance" (p = 0.11), the same
rate over the 297 test images is not (p = 0.014).
"""

import pandas as pd
from scipy.stats import binomtest

ALPHA = 0.05
"""Level of the one-sided test "clean accuracy > 1/K"; a merge it cannot show above chance is gated."""
MODEL = ["method", "task", "seed"]
COLUMNS = [*MODEL, "n", "correct", "accuracy", "chance", "p", "images"]
SPLIT, SUBSET = "test split", "attack subset"
"""Values of ``images``: where a model's clean count comes from."""


def below_chance(examples: pd.DataFrame, n_classes: dict[str, int], split: pd.DataFrame | None = None,
                 alpha: float = ALPHA) -> pd.DataFrame:
    """One row per merged model (method, task, seed) of ``examples`` whose clean accuracy is not
    significantly above chance: :data:`COLUMNS`, with ``n, correct`` its images and correct ones, ``chance``
    1/K, ``p`` (exact binomial, alternative "greater") and ``images`` where they come from: ``split`` rows
    (``method, task, seed, n, correct``: the whole test split, :func:`analysis.queries.split_counts`) where
    they have the model, else its subset images in ``examples`` (:func:`analysis.common_set.read_examples`
    rows; a target's clean correctness of an image is the same for every attack and surrogate, so each image
    counts once). Tasks missing from ``n_classes`` (or with K < 2) are never gated."""
    per_image = examples.drop_duplicates([*MODEL, "example_id"])
    counts = per_image.groupby(MODEL).t_ok.agg(correct="sum", n="count").reset_index().assign(images=SUBSET)
    if split is not None and not split.empty:
        whole = split[[*MODEL, "n", "correct"]].assign(images=SPLIT)
        counts = pd.concat([whole.merge(counts[MODEL], on=MODEL), counts], ignore_index=True)
        counts = counts.drop_duplicates(MODEL, keep="first")  # the whole split where stored
    rows = []
    for r in counts.itertuples(index=False):
        k = int(n_classes.get(r.task, 0))
        if k < 2 or r.n == 0:
            continue
        p = binomtest(int(r.correct), int(r.n), 1 / k, alternative="greater").pvalue
        if p >= alpha:
            rows.append([r.method, r.task, int(r.seed), int(r.n), int(r.correct), r.correct / r.n, 1 / k, p,
                         r.images])
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(MODEL, ignore_index=True)


def apply_gate(examples: pd.DataFrame, n_classes: dict[str, int], split: pd.DataFrame | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the examples of the methods the gate keeps, :func:`below_chance`'s rows of those it leaves out)."""
    gated = below_chance(examples, n_classes, split)
    return (examples[~examples.method.isin(gated.method)] if not gated.empty else examples), gated


def describe(gated: pd.DataFrame) -> dict[str, str]:
    """Per gated method, one line naming its worst model, e.g. ``"clean accuracy 0.081 on inverted (seed 1,
    297 test-split images), not above chance 0.100 (binomial p = 0.78)"``."""
    out = {}
    for method, part in gated.groupby("method", sort=True):
        worst = part.sort_values(["accuracy", "task", "seed"]).iloc[0]
        more = len(part) - 1
        out[method] = (f"clean accuracy {worst.accuracy:.3f} on {worst.task} (seed {worst.seed}, {worst.n} "
                       f"{worst.images.replace(' ', '-')} images), not above chance {worst.chance:.3f} "
                       f"(binomial p = {worst.p:.2f})"
                       + (f"; {more} more task/seed{'s' if more > 1 else ''} like it" if more else ""))
    return out
