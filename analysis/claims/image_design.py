"""The default inference design of the transfer claims: "this benchmark's tasks" (docs/statistics.md,
"The inference design"; docs/analysis.md, "The inference unit").

A comparison is tested exactly as the ranking tests a pair: the methods' metric is recomputed on their
common examples (:func:`analysis.common_set.common_set`), the test images are resampled within each task
(tasks fixed; one draw per task shared by every compared method, attack, budget and seed,
``CommonSet.boot(level="image")``), and the difference gets a Wald z-test with its bootstrap standard error,
Holm within the claim's own family and the MDD at 80% power from that standard error
(:func:`analysis.stats.decisions.pairwise_from_boot`). The task-level t-test over task means
(:mod:`analysis.claims.clustered`) answers the other question, "new tasks", and is reported beside it.
A level test (claim 1) is the same test against a constant column, on each model's own counted set
(:func:`analysis.common_set.level_set`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.claims.clustered import TRANSFER_SETTING
from analysis.claims.core import peq, pp
from analysis.claims.power import decide
from analysis.common_set import CommonSet, CommonSetError, common_set, level_set
from analysis.stats.blocks import paired_table
from analysis.stats.decisions import pairwise_from_boot

IMAGE_UNIT = ("test image within a task (tasks fixed; one draw per task shared by the compared arms, attacks, "
              "budgets and seeds)")
TASK_UNIT = "task (settings averaged within a task)"


@dataclass(frozen=True)
class ImageSample:
    """What the image design needs, read by the report builder: ``rows``, per-example transfer rows
    (:func:`analysis.common_set.read_examples`; one surrogate, or both for claim 5), without the methods
    the utility gate leaves out where a claim compares methods (``not_ranked``: method → why,
    :mod:`analysis.chance_gate`); ``settings``, the metric's setting
    columns; the bootstrap's ``n_boot`` and ``seed`` (the ranking's, so a claim's pair is the ranking's)."""

    rows: pd.DataFrame
    settings: tuple[str, ...] = tuple(TRANSFER_SETTING)
    n_boot: int = 2000
    seed: int = 0
    not_ranked: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImagePairs:
    """The tested pairs (:func:`pairwise_from_boot`'s columns), the method means on the common set (most
    vulnerable first) and the common set itself."""

    pairs: pd.DataFrame
    means: pd.Series
    common: CommonSet

    def describe(self) -> str:
        cs = self.common
        n_tasks = cs.long.task.nunique() if "task" in cs.long else 0
        n_settings = len(cs.long.drop_duplicates(cs.settings))
        return f"{cs.n_common} common images summed over {n_settings} settings, {n_tasks} tasks"


def image_test(what: str, sample: ImageSample | None, family: str, task_test: str) -> str:
    """The test description of an image-design claim: ``what`` is compared, ``family`` names its Holm
    family (empty for one test), ``task_test`` describes the second view."""
    holm = f", Holm over {family}" if family else ""
    at = " at Holm's first step" if family else ""
    boot = f"{sample.n_boot} resamples, seed {sample.seed}" if sample else "the report's resamples"
    return (
        f"Default view, this benchmark's tasks (decides the verdict): {what}, the metric recomputed on the "
        "common examples of the compared methods (images the surrogate and each of them classify correctly), "
        "test images resampled within each task (tasks fixed, one draw per task shared by the methods, "
        f"attacks, budgets and seeds; {boot}); Wald z of the difference with its bootstrap standard error"
        f"{holm}; MDD at 80% power{at} from that standard error. Second view, new tasks: {task_test}"
    )


def image_pairs(
    sample: ImageSample | None, metric: str, methods: Sequence[str], family: Sequence[tuple[str, str]],
    alpha: float,
) -> tuple[ImagePairs | None, str]:
    """(the image-design test of ``family`` (pairs (A, B), A − B) on the common set of ``methods``, "") or
    (None, why it cannot be run: no per-example rows, a method left out by the utility gate or without rows,
    a common set too small)."""
    if sample is None or sample.rows.empty:
        return None, "no per-example rows are stored for these results"
    gated = [m for m in methods if m in sample.not_ranked]
    if gated:
        return None, "; ".join(f"`{m}` is left out by the utility gate ({sample.not_ranked[m]})" for m in gated)
    missing = sorted(set(methods) - set(sample.rows.method))
    if missing:
        return None, f"no per-example rows for {', '.join(missing)}"
    try:
        cs = common_set(sample.rows[sample.rows.method.isin(methods)], metric, sample.settings)
    except CommonSetError as e:
        return None, str(e)
    means = paired_table(cs.long, metric, cs.settings, min_settings=1).mean()
    pairs = pairwise_from_boot(means, cs.boot(sample.n_boot, sample.seed), alpha, pairs=family)
    return ImagePairs(pairs, means.sort_values(ascending=False, kind="stable"), cs), ""


THRESHOLD = "threshold"
"""The constant column a level test is paired with (:func:`image_levels`)."""


def image_levels(
    sample: ImageSample | None, metric: str, value: float, groups: Mapping[str, Sequence[str]], alpha: float
) -> tuple[pd.DataFrame | None, str]:
    """The image design's level tests of ``metric`` − ``value``, one per group (name → the merging methods
    whose per-target values it averages, :func:`analysis.common_set.level_set`), Holm over the groups: a
    one-sample test is :func:`pairwise_from_boot`'s paired test against a constant column, so each row has
    its ``mean`` (the level), ``diff`` (level − value), ``se, ci_low, ci_high`` (of the excess), ``z,
    p_unc, p_corr, mdd_holm`` and ``n_common``. (None, why) when the rows cannot support a group."""
    if sample is None or sample.rows.empty:
        return None, "no per-example rows are stored for these results"
    means, boots, n_common = {}, [], {}
    for name, methods in groups.items():
        rows = sample.rows[sample.rows.method.isin(methods)]
        if rows.empty:
            return None, f"no per-example rows for {', '.join(methods)}"
        try:
            cs = level_set(rows, metric, sample.settings)
        except CommonSetError as e:
            return None, str(e)
        means[name], n_common[name] = float(cs.long[metric].mean()), cs.n_common
        boots.append(cs.boot(sample.n_boot, sample.seed)[:, 0])
    boot = np.column_stack([*boots, np.full(len(boots[0]), value)])
    pairs = pairwise_from_boot(pd.Series({**means, THRESHOLD: value}), boot, alpha,
                               pairs=[(name, THRESHOLD) for name in groups])
    return pairs.assign(mean=pairs.A.map(means), n_common=pairs.A.map(n_common)), ""


def one_pair(img: ImagePairs, where: str, what: str, effect: float, alpha: float) -> tuple[str, str, dict]:
    """(verdict, result sentence, numbers) of a claim that is one image-design pair: the difference
    ``what`` on the common examples described by ``where``, :func:`analysis.claims.power.decide` with the
    stated ``effect``; numbers: :func:`image_numbers`, ``design`` and ``n_common``."""
    n = image_numbers(img.pairs.iloc[0])
    verdict, remark = decide(n["p"], n["mean"], n["mdd"], effect, alpha)
    text = (f"{where} ({img.describe()}): {what} = {pp(n['mean'])} (95% bootstrap CI {pp(n['ci_low'])} to "
            f"{pp(n['ci_high'])}), z = {n['z']:.2f}, {peq(n['p'])}; minimum detectable difference at 80% power "
            f"{pp(n['mdd']).lstrip('+')}." + (f" ({remark}.)" if remark else ""))
    return verdict, text, {"design": "image", **n, "n_common": img.common.n_common}


def image_numbers(row: pd.Series) -> dict[str, float]:
    """The headline numbers of one image-design pair: ``mean`` (the difference), ``se, ci_low, ci_high, z,
    p`` (unadjusted), ``p_holm`` and ``mdd`` (at Holm's first step of the family)."""
    return {"mean": float(row["diff"]), "se": float(row.se), "ci_low": float(row.ci_low),
            "ci_high": float(row.ci_high), "z": float(row.z), "p": float(row.p_unc), "p_holm": float(row.p_corr),
            "mdd": float(row.mdd_holm)}


def gate_notes(sample: ImageSample | None) -> list[str]:
    """One note per method the utility gate left out of the image design."""
    return [f"Not compared (utility gate, docs/statistics.md): `{m}`, {why}."
            for m, why in (sample.not_ranked if sample else {}).items()]


def task_level(r: dict, prefix: str = "task_level_") -> dict:
    """A task-level test's numbers (:func:`analysis.claims.clustered.cluster_test`) under ``prefix``."""
    return {f"{prefix}{k}": v for k, v in r.items()}


def t_summary(r: dict, fmt=pp, what: str = "difference") -> str:
    """A task-level test's interval, t, p, signed Cohen's d and MDD (``fmt`` formats the mean's interval):
    ``(95% CI a to b); t(df) = t, p = …, d = +d; minimum detectable {what} at 80% power m.``"""
    return (f"(95% CI {fmt(r['ci_low'])} to {fmt(r['ci_high'])}); t({r['n_clusters'] - 1}) = {r['t']:.2f}, "
            f"{peq(r['p'])}, d = {r['cohen_d']:+.2f}; minimum detectable {what} at 80% power "
            f"{pp(r['mdd']).lstrip('+')}.")


def task_level_text(r: dict, what: str) -> str:
    """One sentence on the task-level view of a difference, said to be the second view."""
    return (f"Second view, new tasks (t-test over {r['n_clusters']} task means, not the verdict): {what} = "
            f"{pp(r['mean'])} (95% CI {pp(r['ci_low'])} to {pp(r['ci_high'])}), t({r['n_clusters'] - 1}) = "
            f"{r['t']:.2f}, {peq(r['p'])}, minimum detectable difference {pp(r['mdd']).lstrip('+')}.")


def fallback_note(why: str) -> str:
    """The note of a claim decided by its task-level test because the image design could not run."""
    return (f"The default design (common-set image bootstrap) could not run: {why}. The verdict uses the "
            "task-level t-test instead, whose population is new tasks like these, not these tasks.")
