"""Every leaderboard page under streamlit.testing.v1.AppTest, on the synthetic database of
tests/test_leaderboard_data.py (no model training)."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis.ranking_view import METRICS, metric_spec, ranked_table
from benchmark.store import Store, open_store
from benchmark.store.digest import combined
from tests.test_leaderboard_data import (
    BASELINE,
    DEFENSE_SUBMISSION,
    MERGE_SUBMISSION,
    PROFILE,
    SUITE_HASH,
    TOP,
    _key,
    build_db,
)

APP = str(Path(__file__).resolve().parent.parent / "leaderboard" / "app.py")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lb") / "results.duckdb"
    build_db(path)
    return path


@pytest.fixture(autouse=True)
def static_serving():
    """Static file serving on, as `mergesec leaderboard` serves the app (leaderboard/serve.py)."""
    from streamlit import config

    from leaderboard import static

    static.DIR.mkdir(exist_ok=True)
    config.set_option("server.enableStaticServing", True)
    yield
    config.set_option("server.enableStaticServing", False)


def open_app(monkeypatch, db: Path, page: str | None = None) -> AppTest:
    monkeypatch.setenv("MERGESEC_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=180).run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]  # the page guard's "could not be shown"
    return at


def download_links(at: AppTest) -> list[str]:
    """The targets of the page's "Download this page's data" links."""
    return re.findall(r"Download this page's data\]\((\S+) ", "\n".join(m.value for m in at.markdown))


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def kinds(at: AppTest) -> list[str]:
    return [type(e).__name__ for e in at.main]


CELL = re.compile(r"(?<!\\)\|")


def md_frame(text: str) -> pd.DataFrame:
    """The first Markdown table in ``text`` as a frame of cell texts."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip().replace("\\|", "|") for c in CELL.split(row)[1:-1]] for row in rows]
    return pd.DataFrame(cells[2:], columns=cells[0])


def tables_md(at: AppTest) -> list[pd.DataFrame]:
    """Every Markdown table on the page, in order, as cell texts."""
    return [md_frame(m.value) for m in at.markdown if re.search(r"^\|-", m.value, re.M)]


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    return next(d for d in [*tables_md(at), *(g.value for g in at.dataframe)] if column in d.columns)


def ranking(at: AppTest) -> pd.DataFrame:
    """The page's first ranking (the table with a CI-aware rank and a badge column)."""
    return next(d for d in tables_md(at) if {"rank", "badge"} <= set(d.columns))


LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")


def names(shown: pd.DataFrame) -> list[str]:
    """Method names of a ranking whose method column links to the method pages."""
    return [parse_qs(urlparse(LINK.fullmatch(u).group(2)).query)["method"][0] for u in shown.method]


def test_overview_leads_with_the_answer(monkeypatch, db):
    at = open_app(monkeypatch, db)
    assert f"{len(PROFILE)} merging methods · 24 transfer settings" in texts(at)
    assert f"`{SUITE_HASH}`" in frame_with(at, "hash")["hash"].tolist()
    body = texts(at)
    assert "Submit a method" in body and "The answer so far" in body
    assert f"[{TOP}](method?method={TOP}&suite={SUITE_HASH})" in body  # least vulnerable, linked
    assert "least vulnerable" in body and "most vulnerable" in body and "★" not in body
    assert not at.selectbox and not at.sidebar.children and f"· {SUITE_HASH[:8]} ·" in texts(at)  # one suite
    assert not at.json  # the suite spec is drawn once its expander is opened
    assert not at.toggle and not at.get("download_button")  # widgets wait in expanders: no code to load first
    at.session_state["suite_spec"] = True
    at.session_state["downloads"] = True
    at.run()
    assert at.json[0].value and not at.exception and len(at.get("download_button")) == 2


def test_stored_claims_say_what_population_each_verdict_is_about(monkeypatch, db, tmp_path):
    """The overview's claims table carries `findings.json`'s population of each verdict (analysis.claims)."""
    shutil.copy(db, tmp_path / "results.duckdb")
    (tmp_path / "report").mkdir()
    findings = [{"title": "Claim A", "verdict": "supported", "population": "this benchmark's tasks", "result": "r"},
                {"title": "Claim B", "verdict": "underpowered", "population": "new tasks", "result": "s"}]
    (tmp_path / "report" / "findings.json").write_text(json.dumps({"suite_hash": SUITE_HASH, "findings": findings}))
    shown = frame_with(open_app(monkeypatch, tmp_path / "results.duckdb"), "verdict about")
    assert shown.set_index("claim")["verdict about"].to_dict() == {
        "Claim A": "this benchmark's tasks", "Claim B": "new tasks"}


def test_transfer_ranking_is_the_rank_table_with_badges_and_links(monkeypatch, db):
    at = open_app(monkeypatch, db, "transfer")
    shown = ranking(at)
    expected = ranked_table(Store(db), SUITE_HASH, "transfer", "relative_asr")
    assert names(shown) == expected.method.tolist()
    assert shown["rank"].astype(int).tolist() == expected["rank"].tolist()
    assert "top group" not in shown.columns and "letters" not in shown.columns
    badges = dict(zip(names(shown), shown.badge, strict=True))
    assert badges[TOP] == ":blue-badge[built-in]" and badges[MERGE_SUBMISSION] == ":gray-badge[not reproduced yet]"
    assert "Friedman test" in texts(at)
    assert not at.dataframe and not at.get("arrow_vega_lite_chart") and not at.get("imgs")  # nothing heavy
    assert download_links(at) and not at.get("download_button")  # one download link for the whole page
    assert texts(at).count(f"**{TOP}** has the lowest mean") == 1


def test_transfer_ranking_matches_mergesec_rank(monkeypatch, db):
    from typer.testing import CliRunner

    from benchmark.cli import app

    at = open_app(monkeypatch, db, "transfer")
    res = CliRunner().invoke(app, ["rank", "--db", str(db), "--suite", SUITE_HASH, "--format", "csv"])
    assert res.exit_code == 0, res.output
    printed = pd.read_csv(io.StringIO(res.stdout.split("\n\n")[0]))
    assert printed.method.tolist() == names(ranking(at))


def test_filters_and_metric_change_the_ranking_and_live_in_the_url(monkeypatch, db):
    at = open_app(monkeypatch, db, "transfer")
    assert not at.button_group  # the filters are drawn when their expander is opened (or the URL sets one)
    at.session_state["filters"] = True
    at.run()
    at.button_group(key="attack").select("fgsm").run()
    assert not at.exception
    shown = ranking(at)
    assert names(shown)[0] == "regmean" and set(shown.settings) == {"4"}  # 4 tasks x fgsm, the fine-tuned surrogate
    at.button_group(key="attack").unselect("fgsm").run()
    at.session_state["metric"] = METRICS["transfer"]["clean_acc"].label  # tabs hold the label shown
    at.run()
    shown = ranking(at)
    assert names(shown)[0] == "surgery_task_arithmetic"  # accuracy: higher first
    assert names(shown) == ranked_table(Store(db), SUITE_HASH, "transfer", "clean_acc").method.tolist()


def test_a_link_with_choices_opens_on_them(monkeypatch, db):
    """Every choice is bound to the URL (`bind="query-params"`): a link or a reload restores it
    (tests/test_browser.py checks the address bar of a real browser)."""
    monkeypatch.setenv("MERGESEC_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["attack"] = "fgsm"
    at.query_params["metric"] = METRICS["transfer"]["asr_transfer"].label  # the URL holds what the reader sees
    at.run()
    at.switch_page("views/transfer.py").run()
    assert at.button_group(key="attack").value == ["fgsm"] and "Filters: attack = fgsm" in at.expander[0].label
    assert at.session_state["metric"] == METRICS["transfer"]["asr_transfer"].label
    assert names(ranking(at))[0] == "regmean"


def test_the_method_task_table_shows_the_rankings_own_values(monkeypatch, db):
    """The transfer page's method × task table averages the ranking's values (one surrogate, its common
    examples), not every surrogate's per-target values pooled."""
    from analysis.ranking_view import ranking as full_ranking

    at = open_app(monkeypatch, db, "transfer")
    assert not at.exception
    assert "(surrogate `finetuned`, its common examples)" in " ".join(c.value for c in at.caption)
    heat = next(m.value for m in at.markdown if "background[" in m.value)
    long = full_ranking(Store(db), SUITE_HASH, "transfer", "relative_asr", task_level=False).long
    cells = long.groupby(["method", "task"]).relative_asr.mean()
    for (method, task), v in cells.items():
        row = next(r for r in heat.splitlines() if r.startswith(f"| {method} |"))
        assert f"{100 * v:.1f}%" in row, (method, task)


def test_a_single_setting_gives_means_and_the_right_advice(monkeypatch, db):
    monkeypatch.setenv("MERGESEC_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in {"task": "digit", "attack": "fgsm", "surrogate": "finetuned"}.items():
        at.query_params[k] = v
    at.run()
    at.switch_page("views/transfer.py").run()
    assert not at.exception and not at.error
    # one setting is still ranked (its test images are resampled), but no Friedman test runs across settings
    assert "The filters leave 1 setting" in texts(at) and "run the missing" not in texts(at)
    assert len(ranking(at)) == len(PROFILE)


def test_backdoor_page_separates_variants_and_baselines(monkeypatch, db):
    at = open_app(monkeypatch, db, "backdoor")
    defenses = {"none", "ibvs", DEFENSE_SUBMISSION}  # the defense is chosen with tabs too, first
    assert at.tabs[0].label == "none" and {t.label for t in at.tabs[:3]} == defenses
    labels = [t.label for t in at.tabs[3:]]
    assert labels == ["badmerging · off_task", "badmerging · on_task", "badnets · off_task", "badnets · on_task",
                      "all attacks"]
    assert not any(BASELINE in label for label in labels)
    first = ranking(at)
    assert names(first)[0] == "weight_averaging" and "clean accuracy" in first.columns and "badge" in first.columns
    assert sum("badge" in d.columns for d in tables_md(at)) == 1  # only the open tab's ranking is sent
    at.session_state["attack"] = "all attacks"
    at.run()
    across = ranking(at)
    assert set(across.settings) == {"8"}  # 2 attacks × 2 variants × 2 adversary tasks; no baseline
    base = next(d for d in tables_md(at) if d.columns[0] == "method" and len(d.columns) > 1
                and all(c.startswith(f"{BASELINE} · ") for c in d.columns[1:]))  # baseline · variant: ASR
    assert len(base) == len(PROFILE)
    defenses = frame_with(at, "ASR reduction")
    assert {LINK.fullmatch(d).group(1) for d in defenses.defense} == {"ibvs", DEFENSE_SUBMISSION}
    assert (defenses["ASR reduction"].str.removesuffix(" pp").astype(float) > 0).all()
    assert BASELINE not in set(defenses.attack)
    assert download_links(at) and not at.get("download_button")


def test_tradeoff_page_reports_the_correlation_without_baselines(monkeypatch, db):
    at = open_app(monkeypatch, db, "tradeoff")
    assert "Spearman ρ = " in texts(at) and "95% CI" in texts(at)
    corr = frame_with(at, "test")
    assert corr.test.tolist() == ["Spearman ρ", "Kendall τ-b"] and (corr.methods == str(len(PROFILE))).all()
    at.session_state["vulnerability"] = metric_spec("backdoor", "backdoor_asr").label
    at.run()
    assert not at.exception and frame_with(at, "test").methods.iloc[0] == str(len(PROFILE))
    assert "baselines excluded" in texts(at)


def method_page(monkeypatch, db: Path, name: str) -> AppTest:
    monkeypatch.setenv("MERGESEC_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["method"] = name
    at.run()
    at.switch_page("views/method.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def badges(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "-badge[" in m.value]


def test_method_page_standing_badge_and_head_to_head(monkeypatch, db):
    at = method_page(monkeypatch, db, TOP)
    assert at.title[0].value == TOP
    assert any("built-in" in b for b in badges(at)) and not any("not reproduced" in b for b in badges(at))
    standing = frame_with(at, "ranking")
    assert standing["CI-aware rank"].iloc[0].split()[0] == "1" and standing["of"].iloc[0] == str(len(PROFILE))
    assert not at.json and not at.dataframe  # hyperparameters are a table, not JSON; long grids wait for a click
    assert "parameter" in frame_with(at, "parameter").columns
    at.session_state["rows"] = True  # the per-setting rows, drawn once their expander is opened
    at.run()
    assert "unit_key" not in texts(at) and at.dataframe and not any("unit_key" in d.value.columns
                                                                    for d in at.dataframe)
    assert not at.selectbox and not at.button_group  # tabs: no widget code for the browser to load
    at.session_state["opponent"] = "weight_averaging"
    at.run()
    assert not at.exception
    assert "Wilcoxon signed-rank test" in texts(at) and "differ significantly" in texts(at)
    assert "across 12 settings (surrogate `finetuned`)" in texts(at)  # one threat model, as the rankings
    assert "Wilcoxon W" in set(frame_with(at, "statistic").statistic)
    at.session_state["h2h_surrogate"] = "pretrained"
    at.run()
    assert "across 12 settings (surrogate `pretrained`)" in texts(at)
    at.session_state["h2h_mcnemar"] = True
    at.run()
    mcnemar = at.dataframe[-1].value
    assert {"p", "p (Holm)"} <= set(mcnemar.columns) and len(mcnemar) == 24
    assert not (mcnemar["p"] == "0.0000").any()


def test_merge_submission_and_defense_submission_pages(monkeypatch, db):
    at = method_page(monkeypatch, db, MERGE_SUBMISSION)
    assert at.title[0].value == MERGE_SUBMISSION
    assert any("not reproduced yet" in b for b in badges(at)) and any("submission" in b for b in badges(at))
    at = method_page(monkeypatch, db, DEFENSE_SUBMISSION)
    assert at.title[0].value == DEFENSE_SUBMISSION
    effects = frame_with(at, "ASR reduction")
    assert set(effects.attack) == {"badmerging", "badnets"}
    about = "\n".join(m.value for m in at.markdown if "Authors" in m.value)
    assert "<script>" not in about and "![x](" not in about and "\\<script\\>" in about  # escaped, literal


def test_unknown_method_gets_a_not_found_page(monkeypatch, db):
    at = method_page(monkeypatch, db, "no_such_thing")
    assert at.title[0].value == "No such method"
    body = texts(at)
    assert all(f"[{m}](method?method={m}" in body for m in PROFILE) and DEFENSE_SUBMISSION in body


def test_reproduced_badge_only_for_the_code_that_was_reproduced(monkeypatch, db, tmp_path):
    """A "reproduced" verdict earns the badge only with the digest of the rows it checked, as stored now (a
    verdict inserted by hand without one does not); after the submission's code changes (a new
    `methods.code_hash`), the old verdict no longer counts; a verdict on the new code does."""
    copy = Path(shutil.copy(db, tmp_path / "changed.duckdb"))
    store = Store(copy)
    code = _key("code", MERGE_SUBMISSION)[:12]
    verdict = {"subject": MERGE_SUBMISSION, "suite_hash": SUITE_HASH, "verdict": "reproduced", "max_abs_diff": 0.0,
               "n_compared": 12, "tolerance": 1e-9, "run_id": None}
    store.add_reproduction({**verdict, "details": {"code_hash": code}})  # forged: no rows, no digest
    at = method_page(monkeypatch, copy, MERGE_SUBMISSION)
    assert any("not verified" in b for b in badges(at)) and not any("verified: reproduced" in b for b in badges(at))
    with store.connect() as con:
        units = dict(con.execute("SELECT unit_key, rows_digest FROM units_done").fetchall())  # the rows checked
    assert units and all(units.values())
    store.add_reproduction({**verdict, "details": {"code_hash": code, "unit_keys": sorted(units)},
                            "rows_digest": combined(units)})
    at = method_page(monkeypatch, copy, MERGE_SUBMISSION)
    assert any("verified: reproduced" in b for b in badges(at))
    with store.connect() as con:
        con.execute("UPDATE methods SET code_hash = 'c0dechanged' WHERE name = ?", [MERGE_SUBMISSION])
    at = method_page(monkeypatch, copy, MERGE_SUBMISSION)
    assert not any("verified" in b for b in badges(at))
    assert any("not reproduced since its code changed" in b for b in badges(at))
    store.add_reproduction({"subject": MERGE_SUBMISSION, "suite_hash": SUITE_HASH, "verdict": "failed",
                            "max_abs_diff": 0.5, "n_compared": 12, "tolerance": 1e-9,
                            "details": {"code_hash": "c0dechanged"}, "run_id": None})
    at = method_page(monkeypatch, copy, MERGE_SUBMISSION)
    assert any("reproduction failed" in b for b in badges(at))


def test_missing_empty_and_corrupt_database_pages(monkeypatch, tmp_path):
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


def hold_lock(path: Path) -> subprocess.Popen:
    """A "run" holding DuckDB's write lock on `path` until killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', "
         "flush=True); time.sleep(120)", str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_locked_database_shows_the_last_snapshot_on_every_page(monkeypatch, db, tmp_path):
    copy = tmp_path / "busy.duckdb"
    shutil.copy(db, copy)
    at = open_app(monkeypatch, copy, "transfer")
    before = names(ranking(at))
    holder = hold_lock(copy)
    try:
        os.utime(copy)  # the file changed, so every cached query is stale
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert names(ranking(at)) == before
        assert any("last snapshot" in i.value for i in at.info)
        for page in ("backdoor", "method", "tradeoff"):  # never read before the lock: the snapshot serves them
            at.switch_page(f"views/{page}.py").run()
            assert not at.exception and not at.error, page
            assert any("last snapshot" in i.value for i in at.info), page
    finally:
        holder.kill()
        holder.wait()


def test_locked_before_any_read_says_so(monkeypatch, db, tmp_path):
    copy = tmp_path / "busy_from_start.duckdb"
    shutil.copy(db, copy)
    holder = hold_lock(copy)
    try:
        at = open_app(monkeypatch, copy)
        assert not at.error and "writing to the results database right now" in texts(at)
    finally:
        holder.kill()
        holder.wait()


def test_downloads_record_their_filters():
    from leaderboard.downloads import csv_bytes

    df = pd.DataFrame({"method": ["a"], "mean": [0.1]})
    raw = csv_bytes(df, {"suite": "digits", "filters": "attack=fgsm"}).decode()
    assert raw.startswith("# suite: digits\n# filters: attack=fgsm\n")
    assert pd.read_csv(io.StringIO(raw), comment="#").equals(df)


def test_downloads_are_csv_and_parquet():
    from leaderboard.downloads import parquet_bytes

    df = pd.DataFrame({"method": ["a", "b"], "mean": [0.1, 0.2], "CI95": [[0.0, 0.2], [0.1, 0.3]],
                       "meta": [{"k": 1}, None]})
    back = pd.read_parquet(io.BytesIO(parquet_bytes(df)))
    assert back["mean"].tolist() == [0.1, 0.2] and back.method.tolist() == ["a", "b"]


def test_a_page_download_is_one_zip_of_its_tables_with_their_filters(monkeypatch, db):
    """The transfer page links one zip, published as a static file named by its content: each table shown (full
    precision, CSV and Parquet) and a manifest with the suite, the URL's choices and each table's filters.
    The same page again links the same file; other filters, another file."""
    from leaderboard import static

    monkeypatch.setenv("MERGESEC_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["attack"] = "fgsm"
    at.run()
    at.switch_page("views/transfer.py").run()
    (link,) = download_links(at)
    assert link.startswith(f"{static.URL}/") and link.endswith("/mergesec_synthetic_transfer.zip")
    with zipfile.ZipFile(static.DIR / link.removeprefix(f"{static.URL}/")) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        ranking_csv = pd.read_csv(io.BytesIO(zf.read("transfer_ranking_relative_asr.csv")), comment="#")
        ranking_pq = pd.read_parquet(io.BytesIO(zf.read("transfer_ranking_relative_asr.parquet")))
        assert zf.read("transfer_ranking_relative_asr.csv").startswith(b"# source: mergesec leaderboard\n")
    assert manifest["page"] == "transfer" and manifest["suite_hash"] == SUITE_HASH
    table = manifest["tables"]["transfer_ranking_relative_asr"]
    assert manifest["url_choices"]["attack"] == "fgsm" and table["filters"] == "attack=fgsm"
    assert table["rows"] == len(ranking_csv) == len(PROFILE) and names(ranking(at)) == ranking_csv.method.tolist()
    assert ranking_pq["mean"].tolist() == pytest.approx(ranking_csv["mean"].tolist())  # full precision
    at.run()
    assert download_links(at) == [link]  # built once: the same tables, the same file
    at.button_group(key="attack").unselect("fgsm").run()
    assert download_links(at) != [link]


@pytest.mark.parametrize("page", ["overview", "transfer", "backdoor", "tradeoff", "method"])
def test_a_new_visitor_gets_no_widget_code_to_load(monkeypatch, db, page):
    """Select boxes, toggles, download buttons and button groups load their own code in the browser
    (benchmarks/leaderboard.py): a page's first view has none (choices are tabs, the rest waits in expanders)
    and one download link."""
    at = open_app(monkeypatch, db, page)
    assert not (at.selectbox or at.toggle or at.button_group or at.dataframe or at.get("download_button"))
    assert len(download_links(at)) == 1 and not at.exception


def test_figures_are_static_files_linked_from_markdown(monkeypatch, db):
    """The CD diagram is a PNG in the static folder, linked from the page's Markdown (no data URI)."""
    from leaderboard import static

    at = open_app(monkeypatch, db, "transfer")
    (img,) = [m.value for m in at.markdown if m.value.startswith("![critical-difference diagram](")]
    path = static.DIR / img.split("](", 1)[1].rstrip(")").removeprefix(f"{static.URL}/")
    assert path.read_bytes().startswith(b"\x89PNG") and "data:" not in img


def test_without_static_serving_a_page_falls_back_to_a_button_and_an_inline_figure(monkeypatch, db):
    """A bare `streamlit run leaderboard/app.py` serves no static files: the download is a button again and
    the CD diagram a data URI, so nothing links to a file that is not served."""
    from streamlit import config

    config.set_option("server.enableStaticServing", False)
    at = open_app(monkeypatch, db, "transfer")
    assert len(at.get("download_button")) == 1 and not download_links(at)
    assert any(m.value.startswith("![critical-difference diagram](data:image/png;base64,") for m in at.markdown)


def test_server_command_listens_on_loopback_and_hides_error_details():
    from leaderboard.serve import streamlit_command

    cmd = streamlit_command("x.duckdb", 8501)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--client.showErrorDetails") + 1] == "none"
    assert streamlit_command("x.duckdb", 1, address="0.0.0.0")[cmd.index("--server.address") + 1] == "0.0.0.0"


def test_the_friedman_test_and_cd_diagram_beside_a_ranking_use_its_values_and_decisions(db):
    """One page never says two things: the transfer page's Friedman test runs on the ranking's own
    per-setting values (its methods, its common-example values) and the CD diagram's bars are the ranking's
    Holm-corrected pairwise p-values, not Nemenyi's."""
    from analysis.stats import friedman_test, nemenyi_critical_difference
    from leaderboard import data

    args = (str(db), SUITE_HASH, "transfer", "relative_asr", data.freeze({}))
    rk = data.ranking(*args)
    settings = rk.table.attrs["settings"]
    expected = friedman_test(rk.long, "relative_asr", settings).iloc[0]
    got = data.friedman(*args).iloc[0]
    assert (got.Q, got.ddof1, got.n_settings) == (expected.Q, len(rk.table) - 1, rk.table.n_settings.iat[0])
    ranks, decisions = data.cd_inputs(*args)
    assert ranks.equals(nemenyi_critical_difference(rk.long, "relative_asr", settings, False))
    assert sorted(decisions.index) == sorted(rk.table.method) and len(rk.pairs)
    for a, b, p in rk.pairs[["A", "B", "p_corr"]].itertuples(index=False):
        assert decisions.loc[a, b] == decisions.loc[b, a] == p


def test_a_ranking_that_cannot_be_computed_is_cached_like_a_result(monkeypatch, db):
    """Too little data for a ranking is an answer too: the second visit does not recompute it."""
    from analysis import ranking_view
    from analysis.stats import StatisticsError
    from leaderboard import data

    calls = []
    real = ranking_view.ranking
    monkeypatch.setattr(ranking_view, "ranking", lambda *a, **k: calls.append(a) or real(*a, **k))
    flt = data.freeze({"attack": ["no_such_attack"]})
    for _ in range(2):
        with pytest.raises(StatisticsError):
            data.ranked(str(db), SUITE_HASH, "transfer", "relative_asr", flt)
    assert len(calls) == 1


def test_few_settings_warn_of_low_power_only_where_the_intervals_resample_settings():
    def script():
        import pandas as pd

        from leaderboard import ui

        for n_common in (None, 297):  # a settings bootstrap, then an image bootstrap, over 1 setting
            res = pd.DataFrame({"method": ["a", "b"], "n_settings": [1, 1]})
            res.attrs.update(separable=True, mdd=0.05, n_common=n_common)
            ui.significance_note(res, True)

    at = AppTest.from_function(script).run()
    assert not at.exception and len(at.warning) == 1 and "Low power" in at.warning[0].value


def test_methods_left_out_by_the_utility_gate_are_named_beside_the_ranking():
    def script():
        import pandas as pd

        from leaderboard import ui

        res = pd.DataFrame({"method": ["a", "b"], "n_settings": [36, 36]})
        res.attrs.update(separable=True, mdd=0.1, not_ranked={"wudi": "clean accuracy 0.120 on inverted (seed 0)"})
        ui.significance_note(res, True)

    at = AppTest.from_function(script).run()
    assert not at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert "**Not ranked**" in shown and "`wudi`, clean accuracy 0.120 on inverted (seed 0)" in shown
