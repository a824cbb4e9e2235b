"""Submissions: manifest schema and errors, content hash, the sandbox on deliberately broken submissions
(each reported as a failed submission with the reason, the database unchanged), the example submissions'
validation, and the CLI. End-to-end submit + reproduce: tests/test_submissions_e2e.py."""

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.store import Store
from benchmark.store.digest import combined
from benchmark.submissions import (
    Limits,
    ManifestError,
    SubmissionError,
    content_hash,
    json_schema,
    list_slugs,
    load_submission,
    parse_manifest,
    register_submission,
)
from benchmark.submissions.check import validate
from benchmark.submissions.manifest import SCHEMA_PATH
from benchmark.submissions.submit import submit

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "submissions"
BROKEN = Path(__file__).parent / "fixtures" / "broken_submissions"
LIMITS = Limits(timeout_s=300, memory_mb=8192)

VALID = {
    "name": "my_method", "kind": "merge", "authors": ["A. Author"], "paper_url": "https://arxiv.org/abs/1",
    "code_url": "https://github.com/a/b", "license": "MIT", "entry_point": "method:merge", "tracks": ["merge"],
    "suites": ["digits"], "hyperparameters": {"scaling_coef": 0.3},
}


# -- manifest ---------------------------------------------------------------------------------------------


def test_valid_manifest_parses():
    m = parse_manifest(VALID)
    assert m.kind == "merge" and m.hyperparameters == {"scaling_coef": 0.3}


@pytest.mark.parametrize(("change", "expected"), [
    ({"kind": "x"}, "field `kind`: expected 'merge' or 'defense', got 'x'"),
    ({"name": None}, "field `name`: required but missing"),
    ({"authors": []}, "field `authors`: must not be empty"),
    ({"authors": "A. Author"}, "field `authors`: expected a valid list"),
    ({"paper_url": "arxiv"}, "field `paper_url`: expected an http(s) URL, got 'arxiv'"),
    ({"entry_point": "method.merge"}, "field `entry_point`: expected 'module:callable'"),
    ({"tracks": ["merge", "bogus"]}, "field `tracks[1]`: expected 'merge', 'transfer' or 'backdoor', got 'bogus'"),
    ({"tracks": ["merge", "merge"]}, "field `tracks`: entries must be unique"),
    ({"hyperparameters": {"lr": [1, 2]}}, "field `hyperparameters.lr`: expected a bool, int, float or string"),
    ({"hyperparameters": {"bad-name": 1}}, "field `hyperparameters`: names must be Python identifiers"),
    ({"autors": ["typo"]}, "field `autors`: unknown field; valid fields: name, kind"),
    ({"license": ""}, "field `license`: must not be empty"),
])
def test_manifest_errors_name_the_field(change, expected):
    data = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    with pytest.raises(ManifestError) as e:
        parse_manifest(data, "submission.toml")
    assert f"submission.toml: {expected}" in str(e.value)


def test_manifest_reports_every_problem_and_bad_toml(tmp_path):
    with pytest.raises(ManifestError) as e:
        load_submission(BROKEN / "bad_manifest")
    msg = str(e.value)
    for field in ("kind", "paper_url", "entry_point", "tracks[1]", "autors"):
        assert f"field `{field}`" in msg
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "submission.toml").write_text('name = "x\n')
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_submission(tmp_path / "x")
    with pytest.raises(ManifestError, match=r"submission\.toml: not found"):
        load_submission(tmp_path)


def test_name_must_match_folder_and_entry_point_must_exist(tmp_path):
    folder = shutil.copytree(EXAMPLES / "model_breadcrumbs", tmp_path / "other_name")
    with pytest.raises(SubmissionError, match="field `name`: expected the folder name 'other_name'"):
        load_submission(folder)
    folder = shutil.copytree(EXAMPLES / "model_breadcrumbs", tmp_path / "model_breadcrumbs")
    (folder / "breadcrumbs.py").unlink()
    with pytest.raises(SubmissionError, match="field `entry_point`: module 'breadcrumbs' not found"):
        load_submission(folder)


def test_json_schema_file_is_current():
    assert json.loads(SCHEMA_PATH.read_text()) == json_schema(), (
        "docs/submission.schema.json is stale: python -m benchmark.submissions"
    )
    assert set(json_schema()["required"]) >= {"name", "kind", "authors", "entry_point", "tracks", "suites"}


def test_content_hash_ignores_docs_only(tmp_path):
    folder = shutil.copytree(EXAMPLES / "model_breadcrumbs", tmp_path / "model_breadcrumbs")
    h = content_hash(folder)
    (folder / "README.md").write_text("edited docs")
    assert content_hash(folder) == h
    (folder / "breadcrumbs.py").write_text((folder / "breadcrumbs.py").read_text() + "\n# changed\n")
    assert content_hash(folder) != h
    (folder / "breadcrumbs.py").rename(folder / "renamed.py")
    assert content_hash(folder) not in (h,)


# -- the example submissions ----------------------------------------------------------------------------


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@pytest.mark.parametrize("slug", list_slugs(EXAMPLES))
def test_examples_validate_fast(slug):
    """Validation needs no training: < 10 s of CPU (parent + sandbox worker). CPU time, not wall time, so the
    check holds on a loaded CI machine; the wall time is printed (about 4-6 s on an idle 2-core machine)."""
    t0, c0 = time.perf_counter(), _cpu_seconds()
    report = validate(EXAMPLES / slug, LIMITS)
    cpu, wall = _cpu_seconds() - c0, time.perf_counter() - t0
    print(f"validate {slug}: {wall:.1f} s wall, {cpu:.1f} s CPU")
    assert report.submission.slug == slug and len(report.checks) >= 5
    assert cpu < 10
    readme = (EXAMPLES / slug / "README.md").read_text()
    assert "mergesec validate" in readme and "mergesec submit" in readme and "mergesec reproduce" in readme


def test_examples_exist_and_are_not_builtins():
    from benchmark.merging import get_method, list_methods

    slugs = list_slugs(EXAMPLES)
    assert "model_breadcrumbs" in slugs
    builtins = {m for m in list_methods() if get_method(m).source == "builtin"}
    assert not builtins & {load_submission(EXAMPLES / s).name for s in slugs}


def test_breadcrumbs_masks_both_tails():
    sys.path.insert(0, str(EXAMPLES / "model_breadcrumbs"))
    sys.dont_write_bytecode = True  # a __pycache__/ in the folder would be refused by load_submission
    try:
        import breadcrumbs
    finally:
        sys.path.pop(0)
        sys.dont_write_bytecode = False
    tau = torch.arange(1.0, 101.0)  # magnitudes 1..100
    mask = breadcrumbs.breadcrumbs_mask(tau, top_fraction=0.05, bottom_fraction=0.5)
    assert mask.sum() == 45 and not mask[:50].any() and mask[50:95].all() and not mask[95:].any()
    pre = {"w": torch.zeros(100)}
    out = breadcrumbs.merge(pre, [{"w": tau}, {"w": -tau}], scaling_coef=1.0, top_fraction=0.05, bottom_fraction=0.5)
    assert torch.equal(out["w"], torch.zeros(100))  # symmetric task vectors cancel


# -- broken submissions ---------------------------------------------------------------------------------

BROKEN_CASES = {  # case -> what the error message must say
    "raises": "failed (running the method): RuntimeError: boom",
    "timeout": "failed (time limit): exceeded the time limit of",
    "memory": "failed (memory limit)",
    "nan": "has NaN/inf in",
    "wrong_keys": "key mismatch",
    "wrong_shapes": "returned 'class_embedding' as",
    "returns_list": "the returned value is a list, not a dict[str, Tensor]",
    "returns_string": "the returned value is a str, not a dict[str, Tensor]",
    "not_tensors": "is a list, not a torch.Tensor",
    "import_error": "failed (importing the entry point): ModuleNotFoundError",
    "bad_signature": "the entry point must be fn(pretrained, finetuned, **hyperparameters)",
    "crash": "failed (worker crashed): the worker exited with status 3",
    "nondeterministic": "failed (determinism)",
    "pickled_checkpoint": "weights.pt: pickled checkpoints are refused",
    "bad_manifest": "field `kind`: expected 'merge' or 'defense', got 'x'",
}


def _limits(case: str) -> Limits:
    if case == "timeout":
        return Limits(timeout_s=5, memory_mb=8192)
    if case == "memory":
        return Limits(timeout_s=300, memory_mb=6144)  # torch maps ~3.5 GiB; the method asks for 16 GiB more
    return LIMITS


def _broken(case: str, tmp_path: Path) -> Path:
    folder = shutil.copytree(BROKEN / case, tmp_path / case)
    if case == "pickled_checkpoint":
        torch.save({"w": torch.zeros(2)}, folder / "weights.pt")
    return folder


def seeded_db(path: Path) -> Store:
    """A results database that already holds rows: a merge unit, a method, a run and a verdict."""
    store = Store(path)
    store.migrate()
    store.upsert("methods", ["name", "kind"], {
        "name": "task_arithmetic", "kind": "merge", "source": "builtin", "hparams": {"scaling_coef": 0.3},
        "needs": [], "paper": "TA", "code_url": None, "authors": None, "code_hash": None,
        "updated_at": pd.Timestamp("2025-01-01")})
    df = pd.DataFrame([{"suite": "digits", "suite_hash": "h", "method": "task_arithmetic", "hparams": "{}",
                        "seed": 0, "task": "digit", "n": 10, "clean_acc": 0.5, "finetuned_acc": 0.9,
                        "pretrained_acc": 0.2, "normalized_acc": 0.5 / 0.9, "merge_seconds": 0.1}])
    store.write_unit("k1", "merge", "h", "run1", {"method": "task_arithmetic"}, {"merge_eval": df}, 1.0)
    store.add_reproduction({"subject": "x", "suite_hash": "h", "verdict": "reproduced", "max_abs_diff": 0.0,
                            "n_compared": 1, "tolerance": 1e-9, "details": {}, "run_id": "run1"})
    return store


def snapshot(store: Store) -> dict[str, pd.DataFrame]:
    tables = store.read("SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'")
    return {t: store.read(f"SELECT * FROM {t} ORDER BY ALL") for t in sorted(tables.table_name)}


def assert_unchanged(before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame]) -> None:
    assert before.keys() == after.keys()
    for t in before:
        pd.testing.assert_frame_equal(before[t], after[t], obj=t)


@pytest.mark.parametrize("case", sorted(BROKEN_CASES))
def test_broken_submission_fails_with_reason_and_db_unchanged(case, tmp_path, tiny_suite_path, tiny_cache):
    """`mergesec submit` on each broken submission: a SubmissionError naming the reason; the database's rows
    are exactly as before. (Every case but one fails in validation, before any unit runs.)"""
    folder = _broken(case, tmp_path)
    store = seeded_db(tmp_path / "results.duckdb")
    before = snapshot(store)
    with pytest.raises(SubmissionError) as e:
        submit(folder, suite=tiny_suite_path, db=store.path, cache=tiny_cache, limits=_limits(case), progress=False)
    assert BROKEN_CASES[case] in str(e.value), str(e.value)
    assert_unchanged(before, snapshot(store))


@pytest.mark.parametrize("case", ["nan", "wrong_shapes", "returns_list", "raises"])
def test_sandboxed_method_fails_through_merge_api(case, tmp_path):
    """The tracks merge through benchmark.merging.merge; a registered submission's fn runs in the sandbox and
    its failure surfaces there as a SubmissionError with the same reason."""
    from benchmark.merging import merge

    sub = load_submission(_broken(case, tmp_path))
    register_submission(sub, LIMITS)
    g = torch.Generator().manual_seed(0)
    pre = {"class_embedding": torch.randn(8, generator=g), "proj": torch.randn(8, 4, generator=g)}
    fts = [{k: v + 0.01 for k, v in pre.items()} for _ in range(2)]
    with pytest.raises(SubmissionError) as e:
        merge(sub.name, pre, fts)
    assert BROKEN_CASES[case] in str(e.value)


@pytest.mark.slow
def test_failure_on_real_models_leaves_db_unchanged(tmp_path, tiny_suite_path, tiny_cache):
    """A submission that passes validation but fails inside the tracks on the real zoo: the run's staging
    database is discarded, the results database is untouched."""
    folder = _broken("fails_on_real_models", tmp_path)
    validate(folder, LIMITS)  # passes on the tiny 1-block smoke models
    store = seeded_db(tmp_path / "results.duckdb")
    before = snapshot(store)
    with pytest.raises(SubmissionError, match="only 1-block encoders are supported"):
        submit(folder, suite=tiny_suite_path, db=store.path, cache=tiny_cache, limits=LIMITS, progress=False)
    assert_unchanged(before, snapshot(store))


def renamed_copy(slug: str, name: str, parent: Path) -> Path:
    """A copy of example `slug` as submission `name` (folder and manifest name)."""
    folder = shutil.copytree(EXAMPLES / slug, parent / name)
    toml = folder / "submission.toml"
    toml.write_text(toml.read_text().replace(f'name = "{slug}"', f'name = "{name}"'))
    return folder


@pytest.mark.parametrize(("slug", "name", "kind"), [("model_breadcrumbs", "ties", "merge method"),
                                                     ("tv_trim_defense", "ibvs", "defense")])
def test_name_clash_with_builtin_is_refused(slug, name, kind, tmp_path):
    with pytest.raises(SubmissionError, match=f"'{name}' is already the name of the {kind} from builtin"):
        register_submission(load_submission(renamed_copy(slug, name, tmp_path)), LIMITS)


def test_defense_submission_registers_with_provenance():
    from benchmark.defenses import Defense, get_defense

    sub = load_submission(EXAMPLES / "tv_trim_defense")
    first = register_submission(sub, LIMITS)
    again = register_submission(sub, LIMITS)  # the same slug replaces itself
    assert get_defense(sub.name) is again and isinstance(again, Defense) and again is not first
    assert (again.stage, again.code_hash, again.slug, again.source) == ("merge", sub.code_hash, sub.slug,
                                                                        "submission:tv_trim_defense")


def test_symlinks_and_disguised_pickles_are_refused(tmp_path):
    import pickle

    folder = shutil.copytree(EXAMPLES / "model_breadcrumbs", tmp_path / "model_breadcrumbs")
    (folder / "data.safetensors").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(SubmissionError, match=r"data\.safetensors: pickled checkpoints are refused"):
        load_submission(folder)
    (folder / "data.safetensors").unlink()
    (folder / "link.py").symlink_to(folder / "breadcrumbs.py")
    with pytest.raises(SubmissionError, match="symbolic links are not allowed"):
        load_submission(folder)


# -- CLI ------------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_cli_validate_reports_errors_with_exit_2():
    out = _cli("validate", str(BROKEN / "bad_manifest"))
    assert out.returncode == 2
    assert "field `kind`: expected 'merge' or 'defense', got 'x'" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_validate_example():
    out = _cli("validate", "submissions/model_breadcrumbs")
    assert out.returncode == 0, out.stderr
    assert "is valid" in out.stdout and "ok  entry point breadcrumbs:merge imports" in out.stdout


def test_a_missing_submission_folder_names_where_it_looked_and_the_known_slugs(tmp_path):
    with pytest.raises(SubmissionError) as by_path:
        load_submission(tmp_path / "nowhere")
    assert f"(looked at {tmp_path / 'nowhere'});" in str(by_path.value)  # an absolute path: one place
    with pytest.raises(SubmissionError) as by_slug:
        load_submission("nowhere")
    assert "(looked at nowhere and " in str(by_slug.value) and "model_breadcrumbs" in str(by_slug.value)


def test_cli_reproduce_without_results_is_an_error(tmp_path):
    out = _cli("reproduce", "model_breadcrumbs", "--db", str(tmp_path / "none.duckdb"))
    assert out.returncode == 2 and "run `mergesec submit` first" in out.stderr


def _submissions_root(tmp: Path) -> Path:
    """The two examples, one submission whose module would leave a marker file if it were ever imported, and
    one with a broken manifest."""
    root = tmp / "submissions"
    for slug in list_slugs(EXAMPLES):
        shutil.copytree(EXAMPLES / slug, root / slug)
    touchy = renamed_copy("model_breadcrumbs", "touchy", root)
    (touchy / "breadcrumbs.py").write_text(f"open({str(tmp / 'imported')!r}, 'w').close()\n")
    shutil.copytree(BROKEN / "bad_manifest", root / "bad_manifest")
    return root


def test_cli_list_submissions_reads_manifests_and_current_verdicts(tmp_path):
    root = _submissions_root(tmp_path)
    store = seeded_db(tmp_path / "results.duckdb")
    store.upsert("suites", ["suite_hash"], {"suite_hash": "h", "suite": "digits", "version": "1", "spec": {},
                                            "registered_at": pd.Timestamp("2025-01-01")})
    hashes = {slug: content_hash(root / slug) for slug in ("model_breadcrumbs", "tv_trim_defense", "touchy")}
    digests = dict(store.read("SELECT unit_key, rows_digest FROM units_done").itertuples(index=False))
    for slug, code_hash, digest in (("model_breadcrumbs", hashes["model_breadcrumbs"], combined(digests)),
                                    ("tv_trim_defense", "0ld", combined(digests)),
                                    ("touchy", hashes["touchy"], None)):  # a verdict inserted by hand
        store.add_reproduction({"subject": slug, "suite_hash": "h", "verdict": "reproduced", "max_abs_diff": 0.0,
                                "n_compared": 1, "tolerance": 1e-9, "run_id": "run1", "rows_digest": digest,
                                "details": {"code_hash": code_hash, "unit_keys": sorted(digests)}})
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "list", "submissions", "--format", "json",
                          "--db", str(store.path)], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "MERGESEC_SUBMISSIONS": str(root)})
    assert out.returncode == 0, out.stderr
    rows = {r["submission"]: r for r in json.loads(out.stdout.split("\n", 1)[1])}
    assert set(rows) == {"bad_manifest", "model_breadcrumbs", "touchy", "tv_trim_defense"}
    assert rows["model_breadcrumbs"] == {
        "submission": "model_breadcrumbs", "kind": "merge method", "tracks": "merge, transfer",
        "suites": "digits, digits-ci", "code_hash": hashes["model_breadcrumbs"], "reproduced": "digits: reproduced"}
    assert rows["tv_trim_defense"]["kind"] == "defense" and rows["tv_trim_defense"]["tracks"] == "backdoor"
    assert rows["tv_trim_defense"]["reproduced"].startswith("no: the code changed")  # verdict on other code
    assert rows["touchy"]["reproduced"] == "digits: not verified" and rows["bad_manifest"]["kind"].startswith("invalid")
    assert not (tmp_path / "imported").exists()  # manifests only: no submitted code ran
