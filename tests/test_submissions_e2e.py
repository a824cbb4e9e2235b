"""End to end on the tiny suite: submit each example submission, re-submit (nothing runs), reproduce from
scratch (fresh cache: the zoo is retrained) and record the verdict; a tampered row fails reproduction with a
diff; a changed submission replaces its old rows. The same on `digits` is scripts/ci_reproduce.sh."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.store import Store
from benchmark.submissions import Limits, list_slugs, load_submission
from benchmark.submissions.reproduce import reproduce
from benchmark.submissions.status import current_verdicts, stored_verdicts
from benchmark.submissions.submit import method_rows, submit
from tests.conftest import tiny_suite_raw, write_suite

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(timeout_s=300, memory_mb=8192)


def tiny_copy(slug: str, tmp: Path) -> Path:
    """The example with 'digits-tiny' added to the suites it claims (and nothing else changed)."""
    folder = shutil.copytree(ROOT / "submissions" / slug, tmp / slug)
    toml = folder / "submission.toml"
    text = toml.read_text()
    assert 'suites = ["digits", "digits-ci"]' in text
    toml.write_text(text.replace('suites = ["digits", "digits-ci"]', 'suites = ["digits", "digits-ci", "digits-tiny"]'))
    return folder


@pytest.fixture(scope="module")
def tiny_suite_path(tmp_path_factory):
    """The tiny suite (same zoo as tests/conftest.py's, so its cache is shared) with a one-attack, one-method
    backdoor section, so the defense example runs too."""
    raw = tiny_suite_raw()
    raw["backdoor"] = {"seeds": [0], "adversary_task": "digit", "methods": ["task_arithmetic"],
                       "attacks": [{"attack": "naive", "variant": "badnets", "target_class": 1}], "defenses": {}}
    path = tmp_path_factory.mktemp("e2e-suite") / "digits-tiny.yaml"
    write_suite(path, raw)
    return path


@pytest.fixture(scope="module")
def tiny_suite(tiny_suite_path):
    from benchmark.suites import load_suite

    return load_suite(tiny_suite_path)


@pytest.fixture(scope="module")
def submitted(tmp_path_factory, tiny_suite_path, tiny_cache):
    """Every example submitted to one database on the tiny suite."""
    tmp = tmp_path_factory.mktemp("e2e")
    db = tmp / "results.duckdb"
    folders, reports = {}, {}
    for slug in list_slugs(ROOT / "submissions"):
        folders[slug] = tiny_copy(slug, tmp)
        reports[slug] = submit(folders[slug], suite=tiny_suite_path, db=db, cache=tiny_cache, limits=LIMITS,
                               progress=False)
    return db, folders, reports


def test_submit_stores_rows_with_provenance(submitted, tiny_suite):
    db, _, reports = submitted
    store = Store(db)
    for slug, r in reports.items():
        sub = r.submission
        assert r.units_run > 0
        methods = store.read("SELECT * FROM methods WHERE name = ?", [sub.name])
        assert methods.kind.tolist() == [sub.kind]
        assert methods.source.tolist() == [f"submission:{slug}"]
        assert methods.code_hash.tolist() == [sub.code_hash]
        assert methods.authors[0] == ", ".join(sub.manifest.authors)
        if sub.kind == "merge":
            n = store.read("SELECT count(*) n FROM merge_eval WHERE method = ?", [sub.name]).n[0]
            assert n == len(tiny_suite.task_names)
        else:
            bd = store.read("SELECT * FROM backdoor_settings WHERE defense = ?", [sub.name])
            assert len(bd) > 0 and set(bd.method) == {"task_arithmetic"}
            assert store.read("SELECT count(*) n FROM backdoor_settings WHERE defense <> ?", [sub.name]).n[0] == 0
        rows = method_rows(store, tiny_suite, sub.name, sub.kind, list(sub.manifest.tracks))
        assert set(rows) and all(len(df) == 1 for df in rows.values())
        run = store.read("SELECT * FROM runs WHERE run_id = ?", [r.run_id])
        assert run.status.tolist() == ["ok"]
        assert run.mergesec_version[0] and '"torch"' in run.packages[0] and "cpu_count" in run.hardware[0]
        assert run.command[0].startswith("mergesec submit")
        units = store.read("SELECT description FROM units_done WHERE run_id = ?", [r.run_id])
        assert len(units) == r.units_run and units.description.str.contains(sub.code_hash).all()


def test_resubmitting_unchanged_code_runs_nothing(submitted, tiny_suite_path, tiny_cache):
    db, folders, _ = submitted
    before = Store(db).read("SELECT count(*) n FROM units_done").n[0]
    for folder in folders.values():
        r = submit(folder, suite=tiny_suite_path, db=db, cache=tiny_cache, limits=LIMITS, progress=False)
        assert r.units_run == 0 and r.units_skipped > 0
    assert Store(db).read("SELECT count(*) n FROM units_done").n[0] == before


def test_reproduce_from_scratch_records_verdict(submitted, tiny_suite_path):
    db, folders, _ = submitted
    verdicts = reproduce(list(folders.values()), suite=tiny_suite_path, db=db, limits=LIMITS, progress=False)
    for v in verdicts:
        assert v.ok, v.diffs.to_string()
        assert v.n_compared > 0 and v.max_abs_diff == 0.0
    stored = Store(db).read("SELECT subject, verdict, details FROM reproductions ORDER BY checked_at")
    assert set(stored.subject) == set(folders) and (stored.verdict == "reproduced").all()
    assert all('"fresh_cache": true' in d for d in stored.details)
    assert (Store(db).read("SELECT rows_digest FROM reproductions").rows_digest.str.len() == 64).all()
    recorded = stored_verdicts(Store(db))
    for slug, folder in folders.items():  # each verdict is for the code it reproduced
        mine = recorded[recorded.subject == slug]
        assert current_verdicts(mine, load_submission(folder).code_hash).verdict.tolist() == ["reproduced"]
        assert current_verdicts(mine, "another-version").empty


def test_tampered_row_fails_reproduction_with_diff(submitted, tiny_suite_path, tiny_cache, tmp_path):
    db, folders, _ = submitted
    copy = tmp_path / "tampered.duckdb"
    shutil.copy(db, copy)
    store = Store(copy)
    with store.connect() as con:
        con.execute("UPDATE merge_eval SET clean_acc = clean_acc + 0.01 WHERE method = 'model_breadcrumbs' "
                    "AND task = 'digit'")
    [v] = reproduce([folders["model_breadcrumbs"]], suite=tiny_suite_path, db=copy, limits=LIMITS,
                    progress=False, cache=tiny_cache)
    assert v.verdict == "failed" and v.max_abs_diff == pytest.approx(0.01, abs=1e-9)
    assert v.diffs.column.tolist() == ["clean_acc"] and "task=digit" in v.diffs.row[0]
    [loose] = reproduce([folders["model_breadcrumbs"]], suite=tiny_suite_path, db=copy, tolerance=0.1,
                        limits=LIMITS, progress=False, cache=tiny_cache)  # values within 0.1, digests not
    assert loose.verdict == "within tolerance" and "changed after they were stored" in loose.reason
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "reproduce", str(folders["model_breadcrumbs"]),
                          "--suite", str(tiny_suite_path), "--db", str(copy), "--quiet"],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 1, out.stderr
    assert "FAILED" in out.stdout and "clean_acc" in out.stdout
    verdicts = store.read("SELECT verdict FROM reproductions WHERE subject = 'model_breadcrumbs' "
                          "ORDER BY checked_at").verdict.tolist()
    assert verdicts[-3:] == ["failed", "within tolerance", "failed"]


def test_changed_submission_replaces_its_rows(submitted, tiny_suite_path, tiny_cache, tmp_path):
    db, folders, _ = submitted
    copy = tmp_path / "changed.duckdb"
    shutil.copy(db, copy)
    folder = shutil.copytree(folders["model_breadcrumbs"], tmp_path / "model_breadcrumbs")
    toml = folder / "submission.toml"
    toml.write_text(toml.read_text().replace("scaling_coef = 0.3", "scaling_coef = 0.5")
                    .replace('tracks = ["merge", "transfer"]', 'tracks = ["merge"]'))
    r = submit(folder, suite=tiny_suite_path, db=copy, cache=tiny_cache, limits=LIMITS, progress=False)
    assert r.replaced > 0
    store = Store(copy)
    rows = store.read("SELECT hparams FROM merge_eval WHERE method = 'model_breadcrumbs'")
    assert len(rows) == 3 and rows.hparams.str.contains('"scaling_coef": 0.5').all()
    assert store.read("SELECT count(*) n FROM transfer_settings WHERE method = 'model_breadcrumbs'").n[0] == 0
    methods = store.read("SELECT code_hash FROM methods WHERE name = 'model_breadcrumbs'")
    assert methods.code_hash.tolist() == [r.submission.code_hash]


def test_reproduce_checks_the_builtin_rows_it_is_ranked_against(submitted, tiny_suite, tiny_suite_path, tiny_cache,
                                                                 tmp_path):
    """A competitor's (built-in) row forged in the database fails the submission's reproduction: reproduce
    re-runs every stored row the ranking uses."""
    from benchmark import runner
    from benchmark.cache import Cache

    db, folders, _ = submitted
    store = Store(shutil.copy(db, tmp_path / "with_builtins.duckdb"))
    runner.run(tiny_suite, ["merge"], store, Cache(tiny_cache), methods=["task_arithmetic"], progress=False)
    with store.connect() as con:
        con.execute("UPDATE merge_eval SET clean_acc = 0.0123 WHERE method = 'task_arithmetic'")
    [v] = reproduce([folders["model_breadcrumbs"]], suite=tiny_suite_path, db=store.path, limits=LIMITS,
                    progress=False, cache=tiny_cache)
    assert v.verdict == "failed" and set(v.diffs.column) == {"clean_acc"}
    assert v.diffs.row.str.contains("method=task_arithmetic").all()


def test_results_are_bitwise_identical_without_isolation(submitted, tiny_suite_path, tiny_cache, tmp_path):
    """The sandbox changes nothing in the numbers: submitting without isolation stores rows with the same
    digests (bitwise-equal values) for every unit."""
    db, folders, _ = submitted
    plain = tmp_path / "plain.duckdb"
    submit(folders["model_breadcrumbs"], suite=tiny_suite_path, db=plain, cache=tiny_cache,
           limits=Limits(LIMITS.timeout_s, LIMITS.memory_mb, isolate=False), progress=False)
    sql = ("SELECT unit_key, rows_digest FROM units_done WHERE json_extract_string(description, '$.method') = "
           "'model_breadcrumbs' ORDER BY unit_key")
    isolated, unisolated = Store(db).read(sql), Store(plain).read(sql)
    assert len(isolated) > 0
    pd.testing.assert_frame_equal(isolated, unisolated)
