"""End to end in a real browser: `streamlit run` on a loopback port, Debian's headless Chromium loads every
page and a method page of each kind (built-in, merge submission, defense submission) on the synthetic
database of tests/test_leaderboard_data.py, and checks: no traceback anywhere (also while another process
holds the write lock), the not-found page, choices that survive a reload, CI-aware rank and badge columns.

Screenshots go to $MERGESEC_ARTIFACTS (CI uploads that folder) or the test's tmp folder.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leaderboard import headless, warmup
from leaderboard.serve import cache_stats, serving
from tests.test_leaderboard_data import DEFENSE_SUBMISSION, MERGE_SUBMISSION, SUITE_HASH, TOP, build_db

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not headless.available(),
                       reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver);"
                              " `make setup` installs them as root"),
]
RANKING = '[data-testid="stMarkdownContainer"] table'  # rankings and tables are Markdown tables
# page -> (CSS of an element that shows it rendered, text that must be on it)
PAGES = {
    "": (RANKING, "Submit a method"),
    "transfer": (RANKING, "per task, the best value"),
    "backdoor": (RANKING, "Baselines"),
    "tradeoff": ('[data-testid="stMarkdownContainer"] img', "Spearman"),
    f"method?method={TOP}": (RANKING, "Head to head"),
    f"method?method={MERGE_SUBMISSION}": (RANKING, "Head to head"),
    f"method?method={DEFENSE_SUBMISSION}": (RANKING, "Effect on each attack"),
}
BAD = ("Traceback", "Exception:", "Error:", "File \"/")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    out = Path(os.environ.get("MERGESEC_ARTIFACTS") or tmp_path_factory.mktemp("shots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("browser") / "results.duckdb"
    build_db(path)
    return path


@pytest.fixture(scope="module")
def server(db, tmp_path_factory):
    with (tmp_path_factory.mktemp("log") / "streamlit.log").open("w") as log, serving(db, log) as served:
        yield served.url


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency: pip install -e .[dev]")
    with headless.chromium() as driver:
        yield driver


def body(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def column_headers(driver) -> set[str]:
    """Header texts of every table on the page."""
    return set(driver.execute_script("return [...document.querySelectorAll('th')].map(e => e.textContent.trim())"))


def assert_clean(driver, where: str) -> None:
    text = body(driver)
    assert not any(b in text for b in BAD), f"{where}: {next(b for b in BAD if b in text)!r} on the page"
    assert not driver.find_elements("css selector", '[data-testid="stException"]'), where


def external_requests(driver) -> list[str]:
    """URLs the current page (its favicon included) requested from anywhere but the leaderboard's server: a
    reader's browser must not call out (a material-icon favicon is fetched from fonts.gstatic.com)."""
    return driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"
                                 ".filter(u => !u.startsWith(location.origin + '/') && !u.startsWith('data:'))")


def test_every_page_renders_without_a_traceback(server, browser, artifacts):
    for page, (css, text) in PAGES.items():
        headless.load(browser, f"{server}/{page}", css, text, timeout=120)
        time.sleep(0.5)  # let the grids paint
        assert_clean(browser, page or "overview")
        assert external_requests(browser) == [], page or "overview"
        browser.save_screenshot(str(artifacts / f"page_{(page or 'overview').replace('?method=', '_')}.png"))
    headless.load(browser, f"{server}/transfer", RANKING, "Friedman test", timeout=120)
    time.sleep(0.5)
    headers = column_headers(browser)
    assert {"rank", "method", "badge"} <= headers and "top group" not in headers, headers
    assert "★" not in body(browser)


def test_every_row_of_tabs_fits_a_1024_px_window(server, browser):
    browser.set_window_size(headless.NARROW_PX, 1400)
    try:
        for page, (css, text) in PAGES.items():
            headless.load(browser, f"{server}/{page}", css, text, timeout=120)
            assert headless.overflowing_tab_rows(browser) == [], page or "overview"
    finally:
        browser.set_window_size(*map(int, next(f for f in headless.FLAGS if "window-size" in f)
                                     .split("=")[1].split(",")))


def test_unknown_method_gets_the_not_found_page(server, browser):
    headless.load(browser, f"{server}/method?method=no_such_method", "h1", "No such method", timeout=60)
    assert_clean(browser, "not found")
    text = body(browser)
    assert TOP in text and DEFENSE_SUBMISSION in text and "no_such_method" in browser.current_url


def test_choices_survive_a_reload(server, browser):
    url = f"{server}/transfer?attack=fgsm&surrogate=finetuned&suite={SUITE_HASH}"
    headless.load(browser, url, RANKING, "Friedman test", timeout=120)
    browser.refresh()
    headless.load(browser, browser.current_url, RANKING, "Friedman test", timeout=120)
    assert "attack=fgsm" in browser.current_url and "surrogate=finetuned" in browser.current_url
    assert "Mean over 4 settings" in body(browser)  # 4 tasks × fgsm × the fine-tuned surrogate
    tab = "badnets · on_task"
    headless.load(browser, f"{server}/backdoor?attack={tab}&defense=ibvs", RANKING, "Baselines", timeout=120)
    browser.refresh()
    headless.load(browser, browser.current_url, RANKING, "Baselines", timeout=120)
    selected = browser.execute_script(
        "return [...document.querySelectorAll('[role=\"tab\"][aria-selected=\"true\"]')].map(e => e.textContent)")
    assert selected == ["ibvs", tab] and "defense=ibvs" in browser.current_url  # the defense's tabs, the attack's


def test_pages_read_the_last_snapshot_while_a_run_holds_the_lock(db, tmp_path, browser, artifacts):
    copy = tmp_path / "busy.duckdb"
    shutil.copy(db, copy)
    with serving(copy) as served:
        headless.load(browser, served.url, *PAGES[""], timeout=120)  # the server has read the database once
        holder = subprocess.Popen(
            [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', "
             "flush=True); time.sleep(300)", str(copy)], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            os.utime(copy)
            for page in ("transfer", "backdoor", f"method?method={DEFENSE_SUBMISSION}", ""):
                headless.load(browser, f"{served.url}/{page}", *PAGES[page], timeout=120)  # the whole page
                assert "last snapshot" in browser.find_element("css selector", '[data-testid="stAlert"]').text
                assert_clean(browser, f"locked {page}")
            browser.save_screenshot(str(artifacts / "page_locked_overview.png"))
        finally:
            holder.kill()
            holder.wait()


def test_the_first_visit_after_a_start_finds_every_page_computed(db, tmp_path, browser):
    """The warm-up (leaderboard/warmup.py) ran every page before the health check answered: a new visitor's
    first visit to each page computes nothing (no `st.cache_data` miss)."""
    copy = tmp_path / "fresh.duckdb"
    shutil.copy(db, copy)
    with serving(copy) as served:
        after_start = cache_stats(served.url)
        assert after_start.misses > 0  # the warm-up computed the pages' queries and statistics
        for page in warmup.PAGES:
            css, text = PAGES.get(page, (RANKING, "Head to head"))
            headless.load(browser, f"{served.url}/{page}", css, text, timeout=120)
            assert_clean(browser, page or "overview")
        assert cache_stats(served.url).misses == after_start.misses
