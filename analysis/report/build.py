"""`mergesec analyze`: test the published claims on whatever the database holds and write a report.

:func:`build_report` reads the suite's results (analysis.queries, analysis.claims.backdoor_data), runs every
claim (analysis.claims), ranks the methods per surrogate (analysis.report.ranking), draws the figures
(analysis.figures) and writes, into one folder: ``report.md``, ``findings.json`` (schema: docs/analysis.md),
``*.png`` and ``tables/*.csv``. A section whose data is absent says so ("No data: ...") instead of failing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import claims as C
from analysis import queries as Q
from analysis.claims.backdoor_data import backdoor_settings
from analysis.claims.clustered import cluster_test
from analysis.claims.image_design import ImageSample
from analysis.report.document import Settings, markdown
from analysis.report.ranking import RankingInputs, surrogate_ranking
from analysis.report.tables import backdoor_floor_table, claim2_views, fmt_table, section
from benchmark.errors import MergesecError
from benchmark.store import Store

ASR_METRICS = ("relative_asr", "asr_transfer", "aasr")
FIGURES = {"heatmap": "transfer_heatmap.png", "scatter": "accuracy_vs_vulnerability.png",
           "backdoor": "backdoor_asr.png"}
"""Fixed figure names; the CD diagrams are ``cd_diagram_<surrogate>.png``."""
NUMBERS = dict(zip([c.key for c in C.CLAIMS], ["1", "2", "3", "4", "5", "6a", "6b"], strict=True))


@dataclass
class Report:
    """What :func:`build_report` wrote: the folder, the findings, the figure files and the markdown."""

    out_dir: Path
    suite: Q.SuiteRef
    findings: list[C.Finding]
    figures: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""
    notes: list[str] = field(default_factory=list)

    def verdicts(self) -> dict[str, str]:
        return {f.key: f.verdict for f in self.findings}

    def finding(self, key: str) -> C.Finding:
        return next(f for f in self.findings if f.key == key)


def backdoor_bar_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean backdoor ASR per (attack/variant, method, defense) over its target settings (seeds already
    averaged), with the t-interval over those settings (the mean itself when there is one)."""
    out = []
    for (a, v, m, d), g in rows.groupby(["attack", "variant", "method", "defense"]):
        r = cluster_test(g.backdoor_asr.to_numpy())
        out.append({"attack_variant": f"{a}/{v}", "method": m, "defense": d, "n": len(g), "backdoor_asr": r["mean"],
                    "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
    return pd.DataFrame(out)


def _safe(claim: C.Claim, fn, *args) -> C.Finding:
    """Run one claim; data it cannot handle gives an "inconclusive" section with the error, no crash."""
    try:
        return fn(*args)
    except Exception as e:  # one odd table must not take the whole report down
        msg = f"analysis error: {type(e).__name__}: {e}"
        return C.Finding(*claim, "(not run)", C.INCONCLUSIVE, result=f"The analysis failed on these data ({msg}).",
                         notes=[msg])


def _claim_surrogate(present: list[str], surrogate: str | None, notes: list[str]) -> str | None:
    """The one surrogate claims 1–4 use: ``surrogate`` if present, else the fine-tuned one, else the first."""
    if not present:
        return None
    if surrogate in present:
        return surrogate
    pick = C.FINETUNED if C.FINETUNED in present else present[0]
    notes.append(f"Claims 1–4 use surrogate `{pick}` (asked: `{surrogate or 'all'}`; present: "
                 f"{', '.join(present)}); surrogates are never pooled, the ranking shows each.")
    return pick


@dataclass(frozen=True)
class ImageSamples:
    """The per-example rows the claims test in the default design, with the ranking's bootstrap settings:
    ``level``, the claims' surrogate, every method (claim 1: each model on its own counted set); ``compare``,
    the claims' surrogate after the ranking's utility gate (claims 3, 4); ``surrogates``, every surrogate
    after the gate (claim 5). A sample is None without a claims surrogate."""

    level: ImageSample | None
    compare: ImageSample | None
    surrogates: ImageSample


def image_samples(
    store: Store, suite_hash: str, surrogate: str | None, metric: str, n_boot: int, seed: int
) -> ImageSamples:
    """Read the per-example rows once and split them as :class:`ImageSamples` says."""
    from analysis.chance_gate import apply_gate, describe
    from analysis.common_set import read_examples
    from analysis.ranking_view import metric_spec

    rows = read_examples(store, "suite_hash = ?", [suite_hash])
    kept, gated = apply_gate(rows, Q.task_classes(store, suite_hash), Q.split_counts(store, suite_hash))
    why, transfer = describe(gated), metric_spec("transfer", "asr_transfer").settings
    every = ImageSample(kept, transfer, n_boot, seed, why)
    if surrogate is None:
        return ImageSamples(None, None, every)
    level = ImageSample(rows[rows.surrogate == surrogate], transfer, n_boot, seed)
    compare = ImageSample(kept[kept.surrogate == surrogate], metric_spec("transfer", metric).settings, n_boot,
                          seed, why)
    return ImageSamples(level, compare, every)


def build_report(
    store: Store, suite: str | Q.SuiteRef, out_dir: Path | str, *, metric: str = "relative_asr",
    surrogate: str | None = C.FINETUNED, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0,
    tol: float = 0.01, figures: bool = True,
) -> Report:
    """Run every claim on ``suite``'s results in ``store`` and write the report into ``out_dir``.

    ``metric`` (a transfer ASR metric) is the vulnerability measure of claims 2–4, the rankings and the
    figures; claim 1 uses relative ASR, claim 5 transfer ASR. Claims 1–4 use one surrogate (``surrogate``,
    else the fine-tuned one); the ranking is given per surrogate. ``n_boot``/``seed``: the image
    bootstrap of the rankings and of claims 1, 3, 4 and 5 (their per-example rows: :func:`image_samples`).
    ``tol``: the "stayed" band of claim 2's case count. ``figures=False`` skips the PNGs.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from analysis import figures as G
    from analysis.ranking_view import metric_spec

    if metric not in ASR_METRICS:
        raise MergesecError(f"--metric {metric!r} is not a transfer ASR metric; use one of {', '.join(ASR_METRICS)}")
    ref = suite if isinstance(suite, Q.SuiteRef) else Q.resolve_suite(store, suite)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*FIGURES.values(), *(p.name for p in out.glob("cd_diagram*.png"))]:
        (out / stale).unlink(missing_ok=True)  # never leave a stale figure from an earlier run
    csv_dir = out / "tables"
    shutil.rmtree(csv_dir, ignore_errors=True)
    csv_dir.mkdir()
    label = metric_spec("transfer", metric).label
    notes: list[str] = []
    rows = {v: Q.count_rows(store, v, ref.hash) for v in ("merge_eval", "transfer_metrics", "backdoor_metrics")}
    if ref.note:
        notes.append(ref.note[0].upper() + ref.note[1:] + ".")
    if ref.other_hashes:
        notes.append(f"The database also holds results of {len(ref.other_hashes)} other version(s) of suite "
                     f"`{ref.name}` ({', '.join(ref.other_hashes)}); they are not used.")
    present = Q.surrogates(store, ref.hash)
    sur = _claim_surrogate(present, None if surrogate == "all" else surrogate, notes)
    long = Q.transfer_long(store, ref.hash, metric, sur)
    long_rel = long if metric == "relative_asr" else Q.transfer_long(store, ref.hash, "relative_asr", sur)
    both = {m: Q.transfer_long(store, ref.hash, m) for m in ("asr_transfer", "relative_asr")}
    bd = backdoor_settings(store, ref.hash)
    samples = image_samples(store, ref.hash, sur, metric, n_boot, seed)
    fs = [
        _safe(C.F1, C.relative_asr_above, long_rel, 0.95, alpha, samples.level),
        _safe(C.F2, C.stronger_more_vulnerable, long, Q.merge_accuracy(store, ref.hash), metric, alpha, tol),
        _safe(C.F3, C.surgery_more_vulnerable, long, metric, alpha, C.SURGERY, C.TASK_ARITHMETIC, samples.compare),
        _safe(C.F4, C.weight_averaging_most_vulnerable, long, metric, alpha, C.WEIGHT_AVERAGING, samples.compare),
        _safe(C.F5, C.pretrained_surrogate_transfers_less, both, alpha, samples.surrogates),
        _safe(C.F6, C.backdoor_asr_after_merging, bd, alpha),
        _safe(C.F7, C.defense_effects, bd, alpha),
    ]
    by_key = {f.key: f for f in fs}

    figs: dict[str, Path] = {}
    inputs = RankingInputs(store, ref.hash, ref.name, metric, label, alpha, n_boot, seed)
    ranking_parts = []
    for s in sorted(present, key=lambda s: (s != sur, s)):
        text, cd = surrogate_ranking(inputs, s, csv_dir, out, figures)
        ranking_parts.append(text)
        if cd:
            figs[f"cd[{s}]"] = cd
    ranking_md = "\n\n".join(ranking_parts) or "No data: no transfer results; run `mergesec run --track transfer`."
    if figures and not long.empty:
        heat = G.heatmap(long, metric, label, _task_order(ref), surrogate=sur)
        figs["heatmap"] = G.save(heat, out / FIGURES["heatmap"])
        by_key[C.F3.key].figures.append(FIGURES["heatmap"])
    f2 = by_key[C.F2.key]
    if figures and f2.verdict != C.NO_DATA and len(f2.tables.get("per_method", [])) >= 2:
        fig = G.accuracy_vs_vulnerability(f2.tables["per_method"], metric, label, f2.tables["correlation"])
        figs["scatter"] = G.save(fig, out / FIGURES["scatter"])
        f2.figures.append(FIGURES["scatter"])
    if figures and not bd.empty:
        figs["backdoor"] = G.save(G.backdoor_bars(backdoor_bar_table(bd)), out / FIGURES["backdoor"])
        by_key[C.F6.key].figures.append(FIGURES["backdoor"])

    floor = backdoor_floor_table(Q.backdoor_rows(store, ref.hash, baselines=True))
    if not floor.empty:
        floor.to_csv(csv_dir / "backdoor_floor.csv", index=False)
    backdoor_md = fmt_table(floor, pct_cols=["backdoor_asr", "asr_floor"], pp_cols=["asr_minus_floor"], max_rows=None)
    settings = Settings(metric, label, f"surrogate `{sur}`" if sur else "no surrogate", alpha, n_boot, seed, tol)
    body = [section(f, NUMBERS[f.key], claim2_views(f, metric) if f.key == C.F2.key else {}, csv_dir) for f in fs]
    md = markdown(ref, store, fs, NUMBERS, ranking_md, body, rows, notes, settings, "heatmap" in figs,
                  "" if floor.empty else backdoor_md)
    (out / "report.md").write_text(md)
    doc = {"schema": 2, "suite": ref.name, "suite_hash": ref.hash, "metric": metric, "surrogate": sur,
           "surrogates_ranked": present, "alpha": alpha, "n_boot": n_boot, "seed": seed, "rows": rows,
           "notes": notes, "findings": [f.as_dict() for f in fs], "figures": {k: v.name for k, v in figs.items()}}
    (out / "findings.json").write_text(json.dumps(doc, indent=1, default=str))
    return Report(out, ref, fs, figs, md, notes)


def _task_order(ref: Q.SuiteRef) -> list[str] | None:
    try:
        from benchmark.suites import load_suite

        s = load_suite(ref.name)
        return list(s.task_names) if s.hash == ref.hash else None
    except MergesecError:
        return None
