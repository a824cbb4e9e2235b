"""`mergesec analyze` and `mergesec rank` on synthetic databases with planted truths (no model training).

`build_db` writes merge, transfer and backdoor rows through the real writer (`Store.write_unit`). Planted:
- PLANTED: relative ASR 0.96–0.99 for every method, rising with clean accuracy (claims 1 and 2 supported),
  surgery_task_arithmetic 2 points above task_arithmetic (claim 3), weight averaging the *least* vulnerable
  (claim 4 not supported), a pretrained surrogate 25 points less transfer ASR (claim 5), BadMerging ~90% and
  naive ~8% backdoor ASR (claim 6a) and an `ibvs` defense removing 60% of the ASR for 1 point of accuracy
  (6b); no-attack `clean` baseline rows that the backdoor claims must exclude.
- WA_WORST: weight averaging 0.99 and every other method ~0.92 (claim 4 supported, claim 1 not supported).
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis import claims as F
from analysis.report import build_report
from benchmark.cli import app
from benchmark.errors import UnknownNameError
from benchmark.store import Store, open_store

SUITE = "synthetic-analysis"
TASKS = ("digit", "parity", "inverted", "rotated", "ge5", "mod3")
ATTACKS = ("fgsm", "pgd", "mifgsm")
EPS = 8 / 255
# method: (clean accuracy, relative transfer ASR with the fine-tuned surrogate)
PLANTED = {
    "weight_averaging": (0.60, 0.960),
    "task_arithmetic": (0.70, 0.968),
    "ties": (0.72, 0.972),
    "dare_ties": (0.74, 0.975),
    "regmean": (0.78, 0.979),
    "adamerging_layer": (0.82, 0.984),
    "surgery_task_arithmetic": (0.84, 0.988),
}
WA_WORST = {
    m: (acc, 0.99 if m == "weight_averaging" else 0.92 + 0.002 * i)
    for i, (m, (acc, _)) in enumerate(PLANTED.items())
}
FAST = {"n_boot": 200, "seed": 0}


def _key(*parts) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:24]


def build_db(
    path: Path,
    methods: dict,
    *,
    tasks=TASKS,
    attacks=ATTACKS,
    seeds=(0, 1),
    merge=True,
    transfer=True,
    backdoor=True,
    rng_seed=0,
) -> tuple[Store, str]:
    """Write a synthetic suite's results to `path`; returns the store and the suite hash."""
    rng = np.random.default_rng(rng_seed)
    suite_hash = hashlib.sha256(f"{path}{methods}".encode()).hexdigest()[:16]
    store = open_store(path)
    store.upsert(
        "suites",
        ["suite_hash"],
        {
            "suite_hash": suite_hash,
            "suite": SUITE,
            "version": "1.0",
            "spec": {"name": SUITE},
            "registered_at": pd.Timestamp("2025-01-01"),
        },
    )
    common = {"suite": SUITE, "suite_hash": suite_hash}
    tables: dict[str, dict[str, list[pd.DataFrame]]] = {"merge": {}, "transfer": {}, "backdoor": {}}
    for m, (acc, rel) in methods.items():
        if merge:
            tables["merge"].setdefault("merge_eval", []).append(
                pd.DataFrame(
                    [
                        {
                            **common,
                            "method": m,
                            "hparams": "{}",
                            "seed": s,
                            "task": t,
                            "n": 100,
                            "clean_acc": acc + rng.normal(0, 0.005),
                            "finetuned_acc": 0.95,
                            "pretrained_acc": 0.4,
                            "normalized_acc": acc / 0.95,
                            "merge_seconds": 0.1,
                        }
                        for t in tasks
                        for s in seeds
                    ]
                )
            )
        if transfer:
            rows = []
            for t in tasks:
                for a in attacks:
                    for s in seeds:
                        for sur, shift in (("finetuned", 0.0), ("pretrained", -0.25)):
                            wb = 0.9 + rng.normal(0, 0.01)
                            r = rel + shift + rng.normal(0, 0.003)
                            rows.append(
                                {
                                    **common,
                                    "method": m,
                                    "task": t,
                                    "attack": a,
                                    "surrogate": sur,
                                    "seed": s,
                                    "eps": EPS,
                                    "n": 100,
                                    "n_subset": 100,
                                    "clean_acc_surrogate": 0.95,
                                    "clean_acc_target": acc,
                                    "asr_whitebox": wb,
                                    "asr_transfer": r * wb,
                                    "relative_asr": r,
                                    "asr_whitebox_all": wb,
                                    "asr_transfer_all": r * wb,
                                    "grad_cosine": 0.5,
                                    "cka": 0.8,
                                }
                            )
            tables["transfer"].setdefault("transfer_settings", []).append(pd.DataFrame(rows))
        if backdoor:
            rows = []
            attacks_bd = (("badmerging", "on_task", 0.90), ("naive", "badnets", 0.08), ("clean", "none", 0.02))
            for attack, variant, asr in attacks_bd:  # `clean`: the no-attack baseline, never an attack
                for target_task in tasks[:3]:
                    for defense, cut, cost in (("none", 0.0, 0.0), ("ibvs", 0.6, 0.01)):
                        for s in seeds:
                            rows.append(
                                {
                                    **common,
                                    "attack": attack,
                                    "variant": variant,
                                    "method": m,
                                    "defense": defense,
                                    "adversary_task": tasks[0],
                                    "target_task": target_task,
                                    "target_class": 1,
                                    "seed": s,
                                    "clean_acc": acc - cost + rng.normal(0, 0.002),
                                    "backdoor_asr": float(
                                        np.clip(asr * (1 - cut) + rng.normal(0, 0.02), 0, 1)
                                    ),
                                    "n_asr": 90,
                                }
                            )
            tables["backdoor"].setdefault("backdoor_settings", []).append(pd.DataFrame(rows))
    for track, frames in tables.items():
        if frames:
            store.write_unit(
                _key(path, track),
                track,
                suite_hash,
                "run0",
                {"track": track},
                {t: pd.concat(f, ignore_index=True) for t, f in frames.items()},
                1.0,
            )
    return store, suite_hash


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted database and its report, written by `mergesec analyze` (the CLI path end to end)."""
    tmp = tmp_path_factory.mktemp("planted")
    store, suite_hash = build_db(tmp / "planted.duckdb", PLANTED)
    res = CliRunner().invoke(
        app,
        [
            "analyze",
            "--suite",
            SUITE,
            "--out",
            str(tmp / "report"),
            "--db",
            str(store.path),
            "--n-boot",
            str(FAST["n_boot"]),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp / "report" / "findings.json").read_text())
    return store, suite_hash, tmp / "report", doc, res.stdout


def _verdicts(doc) -> dict[str, str]:
    return {f["key"]: f["verdict"] for f in doc["findings"]}


def _numbers(doc, key: str) -> dict:
    return next(f["numbers"] for f in doc["findings"] if f["key"] == key)


def test_planted_verdicts_and_numbers(planted):
    *_, doc, stdout = planted
    v = _verdicts(doc)
    assert "Representation Surgery increases vulnerability: supported" in stdout
    assert v["relative_asr_above_95"] == F.SUPPORTED
    f1 = _numbers(doc, "relative_asr_above_95")
    assert f1["n_clusters"] == len(TASKS)  # tasks, not the 18 settings: settings are not replicates
    assert 0.95 < f1["mean"] < 0.99 and f1["p"] < 0.001 and f1["cohen_d"] > 0
    assert f1["n_methods_supported"] == f1["n_methods"] == len(PLANTED)

    assert v["stronger_more_vulnerable"] == F.SUPPORTED
    f2 = _numbers(doc, "stronger_more_vulnerable")
    assert f2["spearman_r"] == pytest.approx(1.0) and f2["kendall_r"] == pytest.approx(1.0)
    assert f2["n_pairs"] == 21 and f2["n_cases"] == 21 * len(TASKS)
    assert f2["n_decreased_or_stayed"] + f2["n_increased"] == f2["n_cases"]
    assert f2["accuracy_source"] == "merge_eval.clean_acc"

    assert v["surgery_more_vulnerable"] == F.SUPPORTED
    f3 = _numbers(doc, "surgery_more_vulnerable")
    assert f3["mean"] == pytest.approx(0.988 - 0.968, abs=0.003) and f3["n_clusters"] == len(TASKS)

    assert v["weight_averaging_most_vulnerable"] == F.NOT_SUPPORTED
    f4 = _numbers(doc, "weight_averaging_most_vulnerable")
    assert f4["rank"] == len(PLANTED) and f4["n_significantly_less_vulnerable_than"] == len(PLANTED) - 1

    assert v["pretrained_surrogate_transfers_less"] == F.SUPPORTED
    f5 = _numbers(doc, "pretrained_surrogate_transfers_less")
    assert f5["metric"] == "asr_transfer" and f5["mean"] == pytest.approx(0.25 * 0.9, abs=0.01)

    assert v["backdoor_survives_merging"] == F.SUPPORTED
    assert v["defenses_reduce_asr"] == F.SUPPORTED
    f7 = _numbers(doc, "defenses_reduce_asr")
    assert f7["asr_reduction[ibvs]"] == pytest.approx(0.6 * (0.90 + 0.08) / 2, abs=0.02)
    assert f7["acc_cost[ibvs]"] == pytest.approx(0.01, abs=0.002)
    assert f7["n_pairs"] == len(PLANTED) * 2 * 3  # paired without the seed: seeds are averaged first
    assert f7["n_baseline_excluded"] == len(PLANTED) * 3 * 2  # the `clean` rows, with and without ibvs
    for f in doc["findings"]:  # every verdict carries its power (findings.json schema 2, docs/analysis.md)
        assert f["verdict"] in F.VERDICTS and f["mdd"] is not None and f["effect"] is not None and f["unit"]
        assert f["population"] in (F.THESE_TASKS, F.NEW_TASKS, F.OTHER_METHODS)


def test_report_files_figures_and_json(planted):
    _, suite_hash, out, doc, _ = planted
    md = (out / "report.md").read_text()
    assert suite_hash in md and "**Verdict: supported**" in md and "**Verdict: not supported**" in md
    assert "minimum detectable (80% power)" in md and "p < 0.001" in md and "Kendall's W" in md
    assert f"of {21 * len(TASKS)} (stronger/weaker method pair × task) cases" in md
    summary = md.split("## Summary")[1].split("Verdicts:")[0].strip().splitlines()
    assert len(summary) == 2 + 7 and {row.count("|") for row in summary} == {7}  # no cell splits a row
    figures = ["transfer_heatmap.png", "cd_diagram_finetuned.png", "cd_diagram_pretrained.png",
               "accuracy_vs_vulnerability.png", "backdoor_asr.png"]
    for name in figures:
        png = out / name
        assert png.exists() and png.stat().st_size > 5000, name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md
    assert set(doc["figures"].values()) == set(figures) and doc["schema"] == 2


def test_report_ranks_each_surrogate_with_the_leaderboards_table(planted):
    """One ranking per surrogate, never pooled, each exactly ranked_table's with that surrogate's filter."""
    from analysis.ranking_view import ranked_table

    store, suite_hash, out, doc, _ = planted
    md = (out / "report.md").read_text()
    for sur in ("finetuned", "pretrained"):
        assert f"### Surrogate `{sur}`" in md and f"--surrogate {sur}" in md
        assert "and the leaderboard" not in md  # 200 resamples: not the leaderboard's table
        csv = pd.read_csv(out / "tables" / f"transfer_ranking_{sur}.csv")
        ref = ranked_table(store, suite_hash, "transfer", "relative_asr", {"surrogate": [sur]}, n_boot=FAST["n_boot"])
        assert csv.method.tolist() == ref.method.tolist()
        assert csv["mean"].to_numpy() == pytest.approx(ref["mean"].to_numpy())
    assert doc["surrogate"] == "finetuned" and doc["surrogates_ranked"] == ["finetuned", "pretrained"]


def test_ranking_section_reads_ci_aware_ranks_and_their_mdd(planted, tmp_path):
    """The section shows ranked_table's CI-aware ``rank`` (no ``top_group``) and its ``mdd`` attr."""
    import analysis.ranking_view as RV
    from analysis.report.ranking import RankingInputs, surrogate_ranking

    store, suite_hash, *_ = planted
    inputs = RankingInputs(store, suite_hash, SUITE, "relative_asr", "relative ASR", 0.05, 2000, 0)
    text, fig = surrogate_ranking(inputs, "finetuned", tmp_path, tmp_path, draw=False)
    table = RV.ranked_table(store, suite_hash, "transfer", "relative_asr", {"surrogate": ["finetuned"]})
    assert "top_group" not in table.columns and table.attrs["mdd"] > 0
    assert fig is None and "top_group" not in text and "1 + the number of methods" in text
    assert "and the leaderboard with surrogate `finetuned`" in text  # the leaderboard's bootstrap defaults
    assert f"at 80% power: {100 * table.attrs['mdd']:.1f} pp" in text
    assert (tmp_path / "transfer_ranking_finetuned.csv").exists()


def test_weight_averaging_planted_most_vulnerable(tmp_path):
    store, _ = build_db(tmp_path / "wa.duckdb", WA_WORST, backdoor=False, seeds=(0,))
    rep = build_report(store, SUITE, tmp_path / "r", figures=False, **FAST)
    f4 = rep.finding("weight_averaging_most_vulnerable")
    assert f4.verdict == F.SUPPORTED and f4.numbers["rank"] == 1
    assert f4.numbers["n_significantly_more_vulnerable_than"] == len(WA_WORST) - 1
    assert rep.verdicts()["relative_asr_above_95"] == F.NOT_SUPPORTED  # mean ≈ 0.93


def test_few_tasks_and_missing_tracks_noted(tmp_path):
    store, _ = build_db(
        tmp_path / "few.duckdb",
        {m: (acc, 0.97) for m, (acc, _) in PLANTED.items()},  # no true difference between methods
        tasks=TASKS[:2],
        attacks=ATTACKS[:2],
        merge=False,
        backdoor=False,
        seeds=(0,),
    )
    rep = build_report(store, SUITE, tmp_path / "r", **FAST)  # figures on: partial data must draw or skip
    v = rep.verdicts()
    f3 = rep.finding("surgery_more_vulnerable")
    assert f3.numbers["n_clusters"] == 2 and f3.numbers["p"] >= 0.05  # no true difference; a t with 1 df
    assert v["surgery_more_vulnerable"] == (F.UNDERPOWERED if f3.mdd > f3.effect else F.NOT_SUPPORTED)
    assert v["backdoor_survives_merging"] == v["defenses_reduce_asr"] == F.NO_DATA
    # no merge track: clean accuracy falls back to the transfer targets' accuracy
    assert (
        rep.finding("stronger_more_vulnerable").numbers["accuracy_source"]
        == "transfer_metrics.clean_acc_target"
    )
    md = (tmp_path / "r" / "report.md").read_text()
    assert "No data: no backdoor results" in md and f"**Verdict: {f3.verdict}** (minimum detectable" in md
    assert not (tmp_path / "r" / "backdoor_asr.png").exists()


def test_empty_database_writes_a_report_of_notes(tmp_path):
    store = open_store(tmp_path / "empty.duckdb")
    store.upsert(
        "suites",
        ["suite_hash"],
        {
            "suite_hash": "0123456789abcdef",
            "suite": SUITE,
            "version": "1",
            "spec": {},
            "registered_at": pd.Timestamp("2025-01-01"),
        },
    )
    rep = build_report(store, "0123456789abcdef", tmp_path / "r", **FAST)
    assert set(rep.verdicts().values()) == {F.NO_DATA} and rep.figures == {}
    assert json.loads((tmp_path / "r" / "findings.json").read_text())["findings"][0]["mdd"] is None
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.count("No data:") >= len(rep.findings)


def _independent_ranking(store: Store, suite_hash: str, surrogate: str) -> list[str]:
    """rank_methods on transfer_metrics read and seed-averaged here, without analysis.ranking_view."""
    from analysis.stats import rank_methods

    df = store.read("SELECT * FROM transfer_metrics WHERE suite_hash = ?", [suite_hash])
    df = df[df.surrogate == surrogate]
    long = df.groupby(["method", "task", "attack", "surrogate", "eps"], as_index=False).relative_asr.mean()
    res = rank_methods(
        long,
        "relative_asr",
        ["task", "attack", "surrogate", "eps"],
        higher_is_better=False,
        n_boot=200,
        seed=0,
    )
    return res.method.tolist()


def test_rank_cli_json_matches_rank_methods(planted):
    store, suite_hash, *_ = planted
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "rank",
            "--track",
            "transfer",
            "--metric",
            "relative_asr",
            "--suite",
            SUITE,
            "--surrogate",
            "finetuned",
            "--format",
            "json",
            "--n-boot",
            "200",
            "--pairwise",
            "--db",
            str(store.path),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    order = [r["method"] for r in doc["ranking"]]
    assert order == _independent_ranking(store, suite_hash, "finetuned")
    assert order[0] == "weight_averaging" and order[-1] == "surgery_task_arithmetic"  # lower ASR ranks first
    assert doc["higher_is_better"] is False and doc["friedman"]["p_unc"] < 0.05
    assert len(doc["pairwise"]) == 21 and {"diff", "se", "p_corr", "mdd"} <= set(doc["pairwise"][0])
    assert doc["design"]["surrogate"] == "finetuned"
    assert doc["design"]["n_common"] is None and "no per-example rows" in doc["design"]["definition"]


def test_rank_cli_other_tracks_and_formats(planted):
    store, suite_hash, *_ = planted
    runner = CliRunner()
    base = ["--suite", suite_hash, "--db", str(store.path), "--n-boot", "100"]
    merge = runner.invoke(app, ["rank", "--track", "merge", "--format", "json", *base])
    assert merge.exit_code == 0, merge.output
    assert (
        json.loads(merge.stdout)["ranking"][0]["method"] == "surgery_task_arithmetic"
    )  # higher accuracy first
    bd = runner.invoke(app, ["rank", "--track", "backdoor", "--format", "json", *base])
    doc = json.loads(bd.stdout)
    assert doc["filters"] == {"defense": ["none"]} and doc["higher_is_better"] is False
    table = runner.invoke(app, ["rank", "--track", "transfer", "--attack", "fgsm,pgd", *base])
    assert table.exit_code == 0 and "Friedman test" in table.stdout and "attack=fgsm,pgd" in table.stdout
    csv = runner.invoke(app, ["rank", "--format", "csv", *base])
    assert csv.stdout.splitlines()[0] == "method,mean,ci_low,ci_high,n_settings,rank,letters"
    md = runner.invoke(app, ["rank", "--format", "markdown", *base])
    assert "| method" in md.stdout


def test_rank_cli_method_filter_ranks_only_those_and_names_unknown_ones(planted):
    store, suite_hash, *_ = planted
    runner = CliRunner()
    base = ["--suite", suite_hash, "--db", str(store.path), "--n-boot", "100", "--format", "json"]
    res = runner.invoke(app, ["rank", "--methods", "ties,regmean,weight_averaging", *base])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert sorted(r["method"] for r in doc["ranking"]) == ["regmean", "ties", "weight_averaging"]
    assert doc["filters"]["method"] == ["ties", "regmean", "weight_averaging"]
    bad = runner.invoke(app, ["rank", "--methods", "ties,no_such_merge", *base])
    assert isinstance(bad.exception, UnknownNameError)  # the CLI's main() turns it into one line, exit 2
    assert "no_such_merge" in str(bad.exception) and "regmean" in str(bad.exception)


def test_suite_resolution_falls_back_to_the_stored_version(tmp_path):
    from analysis.queries import resolve_suite

    store = open_store(tmp_path / "old.duckdb")
    old = "00000000000000aa"
    store.upsert(
        "suites",
        ["suite_hash"],
        {
            "suite_hash": old,
            "suite": "digits",
            "version": "0.9",
            "spec": {},
            "registered_at": pd.Timestamp("2025-01-01"),
        },
    )
    store.write_unit("u1", "merge", old, "run0", {}, {}, 1.0)
    ref = resolve_suite(store, "digits")  # the shipped digits suite hashes differently now
    assert ref.hash == old and "most recently stored version" in ref.note
    assert resolve_suite(store, old).hash == old
