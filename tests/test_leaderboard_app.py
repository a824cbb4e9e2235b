"""Every leaderboard page under streamlit.testing.v1.AppTest, on the synthetic database of
tests/test_leaderboard_data.py (no model training)."""

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis.ranking_view import ranked_table
from benchmark.store import Store, open_store
from tests.test_leaderboard_data import PROFILE, SUITE_HASH, TOP, build_db

APP = str(Path(__file__).resolve().parent.parent / "leaderboard" / "app.py")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lb") / "results.duckdb"
    build_db(path)
    return path


def open_app(monkeypatch, db: Path, page: str | None = None) -> AppTest:
    monkeypatch.setenv("MERGESEC_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=180).run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def kinds(at: AppTest) -> list[str]:
    return [type(e).__name__ for e in at.main]


def test_overview_shows_counts_suites_and_how_to_submit(monkeypatch, db):
    at = open_app(monkeypatch, db)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Merging methods"] == str(len(PROFILE))
    assert metrics["Transfer settings"] == "24"
    assert SUITE_HASH in at.dataframe[0].value["hash"].tolist()
    assert "Submit a method" in texts(at)
    assert at.selectbox(key="suite").value == SUITE_HASH


def test_transfer_ranking_is_the_rank_table(monkeypatch, db):
    at = open_app(monkeypatch, db, "transfer")
    shown = at.dataframe[0].value
    expected = ranked_table(Store(db), SUITE_HASH, "transfer", "relative_asr")
    assert shown.method.tolist() == expected.method.tolist()
    assert shown.method.iloc[0] == TOP and shown["top group"].iloc[0] == "★"
    assert shown["rank"].tolist() == expected["rank"].tolist()
    assert "Friedman test" in texts(at)
    assert kinds(at).count("Image") == 1  # the CD diagram
    assert kinds(at).count("DownloadButton") == 2 * (kinds(at).count("Dataframe") + 2)  # + CD and heatmap
    assert at.metric[0].value == TOP


def test_transfer_ranking_matches_mergesec_rank(monkeypatch, db):
    from typer.testing import CliRunner

    from benchmark.cli import app

    at = open_app(monkeypatch, db, "transfer")
    res = CliRunner().invoke(app, ["rank", "--db", str(db), "--suite", SUITE_HASH, "--format", "csv"])
    assert res.exit_code == 0, res.output
    printed = pd.read_csv(io.StringIO(res.stdout.split("\n\n")[0]))
    assert printed.method.tolist() == at.dataframe[0].value.method.tolist()


def test_filters_and_metric_change_the_ranking(monkeypatch, db):
    at = open_app(monkeypatch, db, "transfer")
    at.multiselect(key="transfer_attack").select("fgsm").run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert shown.method.iloc[0] == "regmean" and set(shown.settings) == {8}
    at.multiselect(key="transfer_attack").unselect("fgsm").run()
    at.selectbox(key="transfer_metric").select("clean_acc").run()
    shown = at.dataframe[0].value
    assert shown.method.iloc[0] == "surgery_task_arithmetic"  # accuracy: higher first
    assert shown.method.tolist() == ranked_table(Store(db), SUITE_HASH, "transfer", "clean_acc").method.tolist()


def test_backdoor_page_ranks_each_attack_and_defenses(monkeypatch, db):
    at = open_app(monkeypatch, db, "backdoor")
    assert [t.label for t in at.tabs] == ["badmerging", "badnets", "all attacks"]
    first = at.dataframe[0].value
    assert first.method.iloc[0] == "weight_averaging" and "clean accuracy" in first.columns
    across = at.dataframe[2].value
    assert across.method.iloc[0] == "weight_averaging" and set(across.settings) == {4}
    defenses = at.dataframe[-1].value
    assert defenses.defense.tolist() == ["ibvs", "ibvs"] and (defenses["ASR reduction"] > 0).all()


def test_tradeoff_page_reports_the_correlation(monkeypatch, db):
    at = open_app(monkeypatch, db, "tradeoff")
    labels = [m.label for m in at.metric]
    assert "Spearman ρ" in labels and "p-value" in labels
    corr = at.dataframe[0].value
    assert corr.test.tolist() == ["spearman", "kendall"] and (corr.n == len(PROFILE)).all()
    at.selectbox(key="tradeoff_vuln").select("backdoor_asr").run()
    assert not at.exception and at.dataframe[0].value.n.iloc[0] == len(PROFILE)


def test_method_page_metadata_badge_and_head_to_head(monkeypatch, db):
    at = open_app(monkeypatch, db, "method")
    at.selectbox(key="method_name").select(TOP).run()
    assert at.title[0].value == TOP
    assert any(m.value.startswith(":green-badge[:material/verified: reproduced") for m in at.markdown)
    at.selectbox(key="method_other").select("weight_averaging").run()
    assert not at.exception
    assert "Wilcoxon signed-rank test" in texts(at) and "differ significantly" in texts(at)
    assert any(m.label == "Wilcoxon p" for m in at.metric)
    mcnemar = at.dataframe[-1].value
    assert {"p_val", "p_corr"} <= set(mcnemar.columns) and len(mcnemar) == 24


def badges(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "-badge[" in m.value]


def test_reproduced_badge_only_for_the_code_that_was_reproduced(monkeypatch, db, tmp_path):
    """After the method's code changes (a new `methods.code_hash`), the old verdict no longer earns the badge;
    a verdict on the new code does."""
    copy = Path(shutil.copy(db, tmp_path / "changed.duckdb"))
    store = Store(copy)
    with store.connect() as con:
        con.execute("UPDATE methods SET code_hash = 'c0dechanged' WHERE name = ?", [TOP])
    at = open_app(monkeypatch, copy, "method")
    at.selectbox(key="method_name").select(TOP).run()
    assert not any("verified" in b for b in badges(at))
    assert ":gray-badge[:material/hourglass_empty: not reproduced since its code changed]" in badges(at)
    store.add_reproduction({"subject": TOP, "suite_hash": SUITE_HASH, "verdict": "failed", "max_abs_diff": 0.5,
                            "n_compared": 12, "tolerance": 1e-9, "details": {"code_hash": "c0dechanged"},
                            "run_id": None})
    at = open_app(monkeypatch, copy, "method")
    at.selectbox(key="method_name").select(TOP).run()
    assert any(b.startswith(":red-badge[:material/error: reproduction: failed") for b in badges(at))


def test_missing_and_empty_database_pages(monkeypatch, tmp_path):
    at = open_app(monkeypatch, tmp_path / "nowhere.duckdb")
    assert "No results yet" in texts(at) and "mergesec run" in texts(at)
    assert not at.dataframe
    empty = tmp_path / "empty.duckdb"
    open_store(empty)
    at = open_app(monkeypatch, empty)
    assert "No results yet" in texts(at) and "has no results yet" in texts(at)
    garbage = tmp_path / "garbage.duckdb"
    garbage.write_text("not a database")
    at = open_app(monkeypatch, garbage)
    assert "Cannot read the results database" in texts(at)


def test_locked_database_still_shows_the_last_committed_results(monkeypatch, db, tmp_path):
    copy = tmp_path / "busy.duckdb"
    shutil.copy(db, copy)
    at = open_app(monkeypatch, copy, "transfer")
    before = at.dataframe[0].value.method.tolist()
    holder = subprocess.Popen(  # a "run" holding DuckDB's write lock
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', "
         "flush=True); time.sleep(120)", str(copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        os.utime(copy)  # the file changed, so every cached query is stale
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.dataframe[0].value.method.tolist() == before
        assert any("A run is writing" in i.value for i in at.info)
    finally:
        holder.kill()
        holder.wait()


def test_downloads_are_csv_and_parquet():
    from leaderboard.ui import parquet_bytes

    df = pd.DataFrame({"method": ["a", "b"], "mean": [0.1, 0.2], "CI95": [[0.0, 0.2], [0.1, 0.3]],
                       "meta": [{"k": 1}, None]})
    back = pd.read_parquet(io.BytesIO(parquet_bytes(df)))
    assert back["mean"].tolist() == [0.1, 0.2] and back.method.tolist() == ["a", "b"]
