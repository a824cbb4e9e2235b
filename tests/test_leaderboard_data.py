"""A synthetic results database for the leaderboard tests (no model training), and tests of the shared
ranking (analysis.ranking_view) that both `mergesec rank` and the leaderboard use.

`build_db` writes several methods × tasks × attacks × surrogates through the real writer
(`Store.write_unit`), with `ties` clearly the least vulnerable method overall and `regmean` the least
vulnerable under `fgsm` only, so a filter changes the order.
"""

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.ranking_view import METRICS, filter_values, ranked_table, settings_table, suite_hashes
from benchmark.errors import MergesecError
from benchmark.store import Store, open_store
from benchmark.store.digest import combined

SUITE, SUITE_HASH = "synthetic", "5e5e5e5e5e5e5e5e"
EPS = 8 / 255
# method: (relative transfer ASR, clean accuracy, backdoor ASR)
PROFILE = {
    "ties": (0.55, 0.80, 0.90),
    "regmean": (0.80, 0.85, 0.60),
    "task_arithmetic": (0.85, 0.78, 0.80),
    "dare_ties": (0.88, 0.76, 0.85),
    "weight_averaging": (0.95, 0.65, 0.20),
    "surgery_task_arithmetic": (0.92, 0.88, 0.70),
    "my_merge": (0.90, 0.74, 0.75),
}
TOP = "ties"
MERGE_SUBMISSION, DEFENSE_SUBMISSION = "my_merge", "tv_trim_defense"
BASELINE = "clean"
"""Backdoor rows of the no-attack baseline (the trigger on an honest merge); never ranked."""


def _key(*parts) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:24]


def _per_example(keys: list[dict], cols: dict[str, list[np.ndarray]], n: int) -> pd.DataFrame:
    """Per-example rows: each setting's key columns repeated `n` times beside the outcome arrays."""
    frame = pd.DataFrame(keys)
    frame = frame.loc[frame.index.repeat(n)].reset_index(drop=True)
    frame["example_id"] = np.tile(np.arange(n), len(keys))
    frame["label"] = frame["example_id"] % 10
    for c, arrays in cols.items():
        frame[c] = np.concatenate(arrays)
    return frame.assign(suite_hash=SUITE_HASH, seed=frame.get("seed", 0))


def build_db(path: Path, *, tasks=("digit", "parity", "inverted", "rotated"), attacks=("fgsm", "pgd", "mifgsm"),
             surrogates=("finetuned", "pretrained"), n_examples: int = 30, methods: dict | None = None,
             seed: int = 0) -> Store:
    """Write a synthetic suite's merge, transfer and backdoor results plus metadata to `path`."""
    rng = np.random.default_rng(seed)
    methods = methods or PROFILE
    store = open_store(path)
    store.upsert("suites", ["suite_hash"], {"suite_hash": SUITE_HASH, "suite": SUITE, "version": "1.0",
                                            "spec": {"name": SUITE}, "registered_at": pd.Timestamp("2025-01-01")})
    run_id = "run0000000000001"
    store.upsert("runs", ["run_id"], {
        "run_id": run_id, "suite": SUITE, "suite_hash": SUITE_HASH, "tracks": "merge,transfer,backdoor",
        "command": "mergesec run --suite synthetic", "config_hash": "c0ffee", "git_commit": "abc1234",
        "mergesec_version": "0.1.0", "packages": {"torch": "2.14.1"}, "hardware": {"cpu_count": 2},
        "started_at": pd.Timestamp("2025-01-01 10:00"), "ended_at": pd.Timestamp("2025-01-01 10:05"),
        "status": "ok", "units_total": 3 * len(methods), "units_run": 3 * len(methods)})
    meta = pd.DataFrame({"name": list(methods), "kind": "merge",
                         "source": [f"submission:{m}" if m == MERGE_SUBMISSION else "builtin" for m in methods],
                         "hparams": '{"scaling_coef": 0.3}', "needs": "[]", "authors": "A. Author, B. Author",
                         "paper": [f"https://arxiv.org/abs/0000.{i:05d}" for i in range(len(methods))],
                         "code_hash": [_key("code", m)[:12] for m in methods],
                         "updated_at": pd.Timestamp("2025-01-01")})
    meta.loc[len(meta)] = {"name": DEFENSE_SUBMISSION, "kind": "defense", "source": f"submission:{DEFENSE_SUBMISSION}",
                           "hparams": '{"keep_ratio": 0.5}', "needs": "[]",
                           "authors": "<script>alert(1)</script> ![x](https://example.com/x.png)",
                           "paper": "Norm clipping (https://arxiv.org/abs/1911.07963)",
                           "code_hash": _key("code", DEFENSE_SUBMISSION)[:12], "updated_at": pd.Timestamp("2025-01-01")}
    with store.connect() as con:
        con.execute("INSERT INTO methods BY NAME SELECT * FROM meta")
    surrogate_fooled = {(t, a, s): rng.random(n_examples) < 0.9 for t in tasks for a in attacks for s in surrogates}
    tables: dict[str, dict[str, list[pd.DataFrame]]] = {"merge": {}, "transfer": {}, "backdoor": {}}
    for name, (rel, acc, bd) in methods.items():
        merge = pd.DataFrame([{
            "suite": SUITE, "suite_hash": SUITE_HASH, "method": name, "hparams": "{}", "seed": 0, "task": t,
            "n": 100, "clean_acc": acc + rng.normal(0, 0.02), "finetuned_acc": 0.95, "pretrained_acc": 0.4,
            "normalized_acc": (acc + rng.normal(0, 0.02)) / 0.95, "merge_seconds": 0.1} for t in tasks])
        tables["merge"].setdefault("merge_eval", []).append(merge)
        settings, keys, cols = [], [], {"surrogate_adv_correct": [], "target_adv_correct": [],
                                        "target_clean_correct": []}
        for t in tasks:
            for a in attacks:
                for s in surrogates:
                    r = (0.40 if name == "regmean" and a == "fgsm" else rel) + rng.normal(0, 0.02)
                    wb = 0.9 + rng.normal(0, 0.01)
                    settings.append({
                        "suite": SUITE, "suite_hash": SUITE_HASH, "method": name, "task": t, "attack": a,
                        "surrogate": s, "seed": 0, "eps": EPS, "n": n_examples, "n_subset": n_examples,
                        "clean_acc_surrogate": 0.95, "clean_acc_target": acc, "asr_whitebox": wb,
                        "asr_transfer": r * wb, "relative_asr": r, "asr_whitebox_all": wb,
                        "asr_transfer_all": r * wb, "grad_cosine": 0.5, "cka": 0.8})
                    keys.append({"method": name, "task": t, "attack": a, "surrogate": s})
                    cols["surrogate_adv_correct"].append(~surrogate_fooled[t, a, s])
                    cols["target_adv_correct"].append(rng.random(n_examples) >= r * wb)
                    cols["target_clean_correct"].append(rng.random(n_examples) < 0.95)
        tables["transfer"].setdefault("transfer_settings", []).append(pd.DataFrame(settings))
        tables["transfer"].setdefault("transfer_outcomes", []).append(
            _per_example(keys, cols, n_examples).assign(surrogate_clean_correct=True))
        bd_rows, keys, cols = [], [], {"hit": []}
        defenses = (("none", 0.0, 0.0), ("ibvs", 0.6, 0.02), (DEFENSE_SUBMISSION, 0.3, 0.01))
        for attack, scale in (("badmerging", 1.0), ("badnets", 0.4), (BASELINE, 0.05)):
            for variant, target_task in (("on_task", tasks[0]), ("off_task", tasks[-1])):
                for defense, cut, cost in defenses:
                    for adversary, s in itertools.product(tasks[:2], (0, 1)):
                        asr = float(np.clip(bd * scale * (1 - cut) + rng.normal(0, 0.03), 0, 1))
                        bd_rows.append({
                            "suite": SUITE, "suite_hash": SUITE_HASH, "attack": attack, "variant": variant,
                            "method": name, "defense": defense, "adversary_task": adversary,
                            "target_task": target_task, "target_class": 1, "seed": s,
                            "clean_acc": acc - cost + rng.normal(0, 0.01), "backdoor_asr": asr, "n_asr": n_examples})
                        if adversary == tasks[0]:  # per-example outcomes of one adversary keep the fixture small
                            keys.append({"attack": attack, "variant": variant, "method": name,
                                         "defense": defense, "seed": s})
                            cols["hit"].append(rng.random(n_examples) < asr)
        tables["backdoor"].setdefault("backdoor_settings", []).append(pd.DataFrame(bd_rows))
        tables["backdoor"].setdefault("backdoor_outcomes", []).append(
            _per_example(keys, cols, n_examples).assign(label=0, triggered_pred=1))
    for track, frames in tables.items():  # one unit per track keeps the fixture fast; real runs write many
        store.write_unit(_key(track), track, SUITE_HASH, run_id, {"track": track},
                         {t: pd.concat(f, ignore_index=True) for t, f in frames.items()}, 1.0)
    digests = dict(store.read("SELECT unit_key, rows_digest FROM units_done").itertuples(index=False))
    store.add_reproduction({"subject": TOP, "suite_hash": SUITE_HASH, "verdict": "reproduced",
                            "max_abs_diff": 0.0, "n_compared": 12, "tolerance": 1e-6,
                            "details": {"code_hash": _key("code", TOP)[:12], "unit_keys": sorted(digests)},
                            "run_id": run_id, "rows_digest": combined(digests)})  # what `reproduce` records
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return build_db(tmp_path_factory.mktemp("lb") / "synthetic.duckdb")


def test_ranked_table_puts_the_clearly_best_method_first(store):
    res = ranked_table(store, SUITE_HASH, "transfer", "relative_asr", n_boot=200)
    assert res.method.iloc[0] == TOP and res["rank"].iloc[0] == 1
    assert list(res.columns) == ["method", "mean", "ci_low", "ci_high", "n_settings", "rank", "letters", "per_target"]
    assert res.n_settings.iloc[0] == 4 * 3  # one surrogate (the fine-tuned one, named): surrogates are never pooled
    assert res.attrs["surrogate"] == "finetuned" and res.attrs["n_common"] > 0
    assert res["rank"].is_monotonic_increasing and res["rank"].iloc[-1] > 1  # CI-aware: ties share a rank
    assert res.attrs["higher_is_better"] is False and res.attrs["filters_ignored"] == []


def test_filters_change_the_ranking_and_are_parameters(store):
    res = ranked_table(store, SUITE_HASH, "transfer", "relative_asr", {"attack": ["fgsm"]}, n_boot=200)
    assert res.method.iloc[0] == "regmean" and res.n_settings.iloc[0] == 4
    # a hostile filter value is a value, never SQL
    evil = settings_table(store, SUITE_HASH, "transfer", "relative_asr", {"task": ["x') OR 1=1 --"]})
    assert evil.empty
    with pytest.raises(MergesecError, match="cannot filter"):
        settings_table(store, SUITE_HASH, "transfer", "relative_asr", {"1=1; DROP TABLE runs; --": ["x"]})


def test_clean_accuracy_ranks_higher_first_and_skips_attack_filters(store):
    res = ranked_table(store, SUITE_HASH, "transfer", "clean_acc", {"attack": ["pgd"]}, n_boot=200)
    assert res.method.iloc[0] == "surgery_task_arithmetic"
    assert res.attrs["filters_ignored"] == ["attack"]


def test_every_metric_ranks_and_filter_values_are_listed(store):
    for track, metrics in METRICS.items():
        for metric in metrics:
            assert len(ranked_table(store, SUITE_HASH, track, metric, n_boot=50)) == len(PROFILE)
    vals = filter_values(store, SUITE_HASH, "transfer")
    assert vals["attack"] == ["fgsm", "mifgsm", "pgd"] and vals["eps"] == [EPS]
    assert suite_hashes(store) == [SUITE_HASH]


def test_aasr_averages_over_attacks_and_still_filters_by_attack(store):
    res = ranked_table(store, SUITE_HASH, "transfer", "aasr", n_boot=100)
    assert res.n_settings.iloc[0] == 4 and res.method.iloc[0] == TOP
    fgsm = ranked_table(store, SUITE_HASH, "transfer", "aasr", {"attack": ["fgsm"]}, n_boot=100)
    assert fgsm.method.iloc[0] == "regmean" and fgsm.attrs["filters_ignored"] == []
