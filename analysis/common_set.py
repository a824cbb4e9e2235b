"""Transfer metrics on common examples, and the image bootstrap of their method means (docs/transfer.md,
"Comparing methods: common examples"; docs/statistics.md).

A target's own counted set ("surrogate and target correct on the clean image") differs between merged
models and tracks their clean accuracy, so per-target ASRs compare methods on different images. Here a
setting's **common set** is the images the surrogate and *every compared method* classify correctly on the
clean image, computed at query time from the stored per-example rows (`transfer_examples`): adding a method
never re-runs anything, and comparing two methods uses their own common examples.

The bootstrap resamples test images within each task (tasks fixed), the same draw for every method and for
every attack, surrogate, budget and seed of that task, and recomputes each setting's metric from the
resampled images; the task-level view resamples tasks, then images within the drawn tasks.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.errors import MergesecError
from benchmark.store import Store

UNIT = ("task", "attack", "surrogate", "eps", "seed")
"""One stored transfer unit per method: the rows a setting's metric is computed from."""
MIN_COMMON = 10
"""A setting whose common set holds fewer images (summed over seeds) is left out of the comparison."""
COMMON_METRICS = {
    # metric: (examples counted, denominator, attacks averaged)
    "relative_asr": ("common", "surrogate_fooled", False),
    "asr_transfer": ("common", "common", False),
    "aasr": ("common", "common", True),
    "asr_transfer_all": ("present", "present", False),
}
"""Transfer metrics recomputed from per-example rows; numerator = counted images the target gets wrong."""
BACKDOOR_UNIT = ("attack", "variant", "defense", "adversary_task", "target_task", "target_class", "seed")
"""One stored backdoor unit per method."""
DEFINITIONS = {
    "common": "common examples (the surrogate and every ranked method correct on the clean image)",
    "present": "all subset images (present for every ranked method)",
    "triggered": "the triggered test images of the target task (the same for every ranked method)",
}


class CommonSetError(MergesecError):
    """The common set cannot support a comparison (too few images, methods or settings)."""


def read_examples(store: Store, where: str, params: list) -> pd.DataFrame:
    """Per-example transfer rows matching ``where`` (a WHERE clause over the columns of `transfer_examples`,
    eps included): ``method``, the :data:`UNIT` columns, ``example_id, s_ok, t_ok, s_fooled, t_fooled``.
    Joins the tables itself, so a database written before `transfer_examples` carried eps reads too."""
    return store.read(
        f"""SELECT method, {", ".join(UNIT)}, example_id, surrogate_clean_correct AS s_ok,
        target_clean_correct AS t_ok, NOT surrogate_adv_correct AS s_fooled, NOT target_adv_correct AS t_fooled
        FROM (SELECT o.*, s.eps FROM transfer_outcomes o JOIN transfer_settings s
              USING (unit_key, suite_hash, method, task, attack, surrogate, seed))
        WHERE {where}""",
        params,
    )


@dataclass
class _Task:
    """One task's images × (units, methods) counts, ready to be reweighted by a bootstrap draw."""

    num: np.ndarray  # (images, units, methods): counted images the target gets wrong
    den: np.ndarray  # (images, units): the denominator images
    setting_of_unit: np.ndarray  # (units,) index into this task's settings


@dataclass
class CommonSet:
    """The common-set metric of every (method, setting) and the means' bootstrap (:meth:`boot`)."""

    metric: str
    settings: list[str]
    methods: list[str]
    long: pd.DataFrame
    """One row per (method, setting): ``method``, the setting columns, the metric, ``n_common``."""
    n_common: int
    n_common_min: int
    n_settings_dropped: int
    tasks: list[_Task] = field(repr=False, default_factory=list)

    def boot(self, n_boot: int = 2000, seed: int = 0, level: str = "image") -> np.ndarray:
        """(n_boot × methods) resampled method means, methods in :attr:`methods` (sorted) order.

        ``level="image"``: images are drawn with replacement within each task (tasks fixed), one draw per
        task shared by every method and setting of that task. ``level="task"``: tasks are drawn with
        replacement, then each drawn task gets its own image draw."""
        if level not in ("image", "task"):
            raise MergesecError(f"bootstrap level {level!r} is not 'image' or 'task'")
        rng = np.random.default_rng(seed)
        per_task = []
        for t in self.tasks:
            weights = rng.multinomial(t.num.shape[0], np.full(t.num.shape[0], 1 / t.num.shape[0]), size=n_boot)
            per_task.append(_setting_values(t, weights))  # (n_boot, settings, methods)
        if level == "image":
            return _nanmean(np.concatenate(per_task, axis=1), axis=1)
        task_means = np.stack([_nanmean(v, axis=1) for v in per_task], axis=1)  # (n_boot, tasks, methods)
        sizes = np.array([v.shape[1] for v in per_task], dtype=float)
        picks = rng.integers(0, len(per_task), size=(n_boot, len(per_task)))
        replicate = rng.integers(0, n_boot, size=(n_boot, len(per_task)))
        drawn = task_means[replicate, picks]  # each drawn task with an independent image resample
        w = sizes[picks][:, :, None] * ~np.isnan(drawn)
        return np.nansum(drawn * w, axis=1) / w.sum(axis=1)


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    count = (~np.isnan(x)).sum(axis=axis)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, np.nansum(x, axis=axis) / np.maximum(count, 1), np.nan)


def _setting_values(t: _Task, weights: np.ndarray) -> np.ndarray:
    """(draws, settings, methods): per-unit ratio of weighted counts, averaged over the units of a setting."""
    num = np.einsum("be,euk->buk", weights, t.num)
    den = weights @ t.den
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(den[:, :, None] > 0, num / den[:, :, None], np.nan)
    n_settings = int(t.setting_of_unit.max()) + 1
    onehot = np.eye(n_settings)[t.setting_of_unit]  # (units, settings)
    ok = ~np.isnan(unit)
    total = np.einsum("buk,us->bsk", np.where(ok, unit, 0.0), onehot)
    count = np.einsum("buk,us->bsk", ok.astype(float), onehot)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def common_set(
    examples: pd.DataFrame, metric: str, settings: Sequence[str], min_common: int = MIN_COMMON
) -> CommonSet:
    """The common-set values of ``metric`` (a key of :data:`COMMON_METRICS`) per (method, setting).

    Units (task × attack × surrogate × eps × seed) lacking any method are dropped; a setting's common set is
    the images present for every method with ``s_ok`` and every method's ``t_ok``; settings holding fewer
    than ``min_common`` of them are dropped. Raises :class:`CommonSetError` when fewer than 2 methods or no
    setting remain, naming the sizes."""
    if metric not in COMMON_METRICS:
        raise MergesecError(f"{metric!r} has no common-set definition; use one of {', '.join(COMMON_METRICS)}")
    counted, denominator, _ = COMMON_METRICS[metric]
    settings = list(settings)
    methods = sorted(examples.method.unique())
    if len(methods) < 2:
        raise CommonSetError(f"a comparison needs 2 or more methods with per-example rows; got {methods}")
    keys = [*UNIT, "example_id"]
    wide = examples.set_index([*keys, "method"])[["t_ok", "t_fooled"]].unstack("method")
    present = wide["t_ok"].notna().reindex(columns=methods, fill_value=False)
    complete_units = present.groupby(level=list(UNIT)).any().all(axis=1)
    surrogate = examples.groupby(keys)[["s_ok", "s_fooled"]].first().reindex(wide.index)
    all_present = present.all(axis=1)
    target_ok = wide["t_ok"].reindex(columns=methods).fillna(False).astype(bool).all(axis=1)
    common = all_present & surrogate.s_ok.astype(bool) & target_ok
    mask = {"common": common, "present": all_present}[counted]
    den = {"common": common, "present": all_present,
           "surrogate_fooled": common & surrogate.s_fooled.astype(bool)}[denominator]
    fooled = wide["t_fooled"].reindex(columns=methods).fillna(False).astype(bool)
    frame = pd.DataFrame({"mask": mask, "den": den}).join(fooled.mul(mask, axis=0).add_prefix("m:"))
    frame = frame[complete_units.reindex(frame.droplevel("example_id").index).to_numpy()].reset_index()
    return _assemble(frame, list(UNIT), "task", settings, methods, metric, min_common,
                     f"images that the surrogate and all {len(methods)} methods classify correctly")


LEVEL_ARM = "level"
"""The one arm of :func:`level_set`."""


def level_set(examples: pd.DataFrame, metric: str, settings: Sequence[str], min_common: int = 1) -> CommonSet:
    """Each model's per-target ``metric`` (``relative_asr`` or ``asr_transfer``) on its own counted set
    (images the surrogate and that model classify correctly, as `transfer_metrics` stores it), as the one
    arm :data:`LEVEL_ARM` of a :class:`CommonSet`: every (model, setting) is a setting of its own (the
    merging method is the setting column ``model``), so :meth:`CommonSet.boot` resamples the images within
    each task with one draw shared by every model, attack, surrogate, budget and seed, and its mean is the
    mean of the per-target values over the (model, setting)s. Raises :class:`CommonSetError` when no
    setting holds ``min_common`` counted images."""
    if metric not in ("relative_asr", "asr_transfer"):
        raise MergesecError(f"{metric!r} has no per-target level definition; use relative_asr or asr_transfer")
    counted = examples.s_ok.astype(bool) & examples.t_ok.astype(bool)
    den = counted & examples.s_fooled.astype(bool) if metric == "relative_asr" else counted
    frame = examples.rename(columns={"method": "model"}).assign(
        mask=counted, den=den, **{f"m:{LEVEL_ARM}": counted & examples.t_fooled.astype(bool)})
    return _assemble(frame, [*UNIT, "model"], "task", [*settings, "model"], [LEVEL_ARM], metric, min_common,
                     "images that the surrogate and the model classify correctly")


def _assemble(frame: pd.DataFrame, unit: list[str], task_col: str, settings: list[str], methods: list[str],
              metric: str, min_common: int, what: str) -> CommonSet:
    """The :class:`CommonSet` of a per-(unit, image) frame with columns ``mask`` (image counted), ``den``
    (in the denominator) and ``m:<method>`` (counted and a success for the method); images are resampled
    within ``task_col``."""
    frame = frame.copy()
    frame["n_in_setting"] = frame.groupby(settings)["mask"].transform("sum")
    n_settings_all = frame[settings].drop_duplicates().shape[0]
    frame = frame[frame.n_in_setting >= min_common]
    kept = frame[settings].drop_duplicates()
    if len(kept) < 1:
        raise CommonSetError(
            f"the common set is too small to rank: {len(kept)} of {n_settings_all} settings hold at least "
            f"{min_common} {what}; compare fewer methods (the weakest merge shrinks the common set most) or "
            "run a larger subset"
        )
    tasks, rows = [], []
    for _, part in frame.groupby(task_col, sort=True):
        ex_codes, _ = pd.factorize(part.example_id, sort=True)
        unit_codes = part.groupby(unit, sort=True).ngroup().to_numpy()
        units = part[unit].drop_duplicates().sort_values(unit)
        setting_codes = units.groupby(settings, sort=True).ngroup().to_numpy()
        block = units[settings].drop_duplicates().sort_values(settings).reset_index(drop=True)
        num = np.zeros((ex_codes.max() + 1, len(units), len(methods)))
        np.add.at(num, (ex_codes, unit_codes), part[[f"m:{m}" for m in methods]].to_numpy(dtype=float))
        dens = np.zeros((ex_codes.max() + 1, len(units)))
        np.add.at(dens, (ex_codes, unit_codes), part["den"].to_numpy(dtype=float))
        t = _Task(num, dens, setting_codes)
        tasks.append(t)
        values = _setting_values(t, np.ones((1, num.shape[0])))[0]
        n_common = part.groupby(settings, sort=True)["mask"].sum().to_numpy()
        for j, m in enumerate(methods):
            rows.append(block.assign(method=m, **{metric: values[:, j]}, n_common=n_common))
    long = pd.concat(rows, ignore_index=True)[["method", *settings, metric, "n_common"]]
    n_per_setting = long.drop_duplicates(settings).n_common
    return CommonSet(metric, settings, methods, long, int(n_per_setting.sum()), int(n_per_setting.min()),
                     n_settings_all - len(kept), tasks)


BACKDOOR_ROLE = "coalesce(s.role, CASE WHEN s.attack LIKE 'clean%' THEN 'baseline' ELSE 'attack' END)"
"""A backdoor row's role as the `backdoor_metrics` view defines it (rows stored before the column existed)."""


def read_backdoor_examples(store: Store, where: str, params: list) -> pd.DataFrame:
    """Per-example backdoor rows matching ``where`` (over `backdoor_metrics` columns): ``method``, the
    setting columns, ``seed, example_id, hit`` (triggered image classified as the target class)."""
    return store.read(
        f"""SELECT method, {", ".join(BACKDOOR_UNIT)}, example_id, hit
        FROM (SELECT o.example_id, o.hit, s.* REPLACE ({BACKDOOR_ROLE} AS role)
              FROM backdoor_outcomes o JOIN backdoor_settings s
              USING (unit_key, suite_hash, attack, variant, method, defense, seed))
        WHERE {where}""",
        params,
    )


def backdoor_set(examples: pd.DataFrame, settings: Sequence[str], min_common: int = MIN_COMMON) -> CommonSet:
    """Backdoor ASR per (method, setting) from per-example hits, images resampled within the target task.

    Every method is scored on the same triggered images (those present for all methods in a unit); units
    lacking a method are dropped. Raises :class:`CommonSetError` as :func:`common_set` does."""
    settings = list(settings)
    methods = sorted(examples.method.unique())
    if len(methods) < 2:
        raise CommonSetError(f"a comparison needs 2 or more methods with per-example rows; got {methods}")
    unit = [*settings, "seed"]
    wide = examples.set_index([*unit, "example_id", "method"])["hit"].unstack("method").reindex(columns=methods)
    present = wide.notna()
    complete_units = present.groupby(level=unit).any().all(axis=1)
    mask = present.all(axis=1)
    hits = wide.fillna(False).astype(bool).mul(mask, axis=0).add_prefix("m:")
    frame = pd.DataFrame({"mask": mask, "den": mask}).join(hits)
    frame = frame[complete_units.reindex(frame.droplevel("example_id").index).to_numpy()].reset_index()
    return _assemble(frame, unit, "target_task", settings, methods, "backdoor_asr", min_common,
                     "triggered images evaluated for every method")
