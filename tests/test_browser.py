"""End to end in a real browser: `streamlit run` on a loopback port, Debian's headless Chromium loads it.

Screenshots go to $MERGESEC_ARTIFACTS (CI uploads that folder) or the test's tmp_path.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_leaderboard_data import TOP, build_db

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
APP = Path(__file__).resolve().parent.parent / "leaderboard" / "app.py"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--window-size=1440,2200", "--hide-scrollbars"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
                       reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver);"
                              " `make setup` installs them as root"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@pytest.fixture
def artifacts(tmp_path) -> Path:
    out = Path(os.environ.get("MERGESEC_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def server(tmp_path):
    db = tmp_path / "results.duckdb"
    build_db(db)
    port = _free_port()
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer", "--", "--db", str(db)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MERGESEC_DB": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency: pip install -e .[dev]")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager go online
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for(driver, css: str, text: str | None = None, timeout: float = 60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):  # the element is there, the text too, and the script has finished (no status widget)
        found = d.find_elements(By.CSS_SELECTOR, css)
        body = d.find_element(By.TAG_NAME, "body").text
        running = d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        return found and (text is None or text in body) and not running

    WebDriverWait(driver, timeout, poll_frequency=0.2).until(ready)


def test_leaderboard_renders_in_chromium(server, browser, artifacts):
    from selenium.webdriver.common.by import By

    t0 = time.monotonic()
    browser.get(server)
    _wait_for(browser, '[data-testid="stMetric"]', "Merging methods")
    first_page_s = time.monotonic() - t0
    time.sleep(0.5)
    browser.save_screenshot(str(artifacts / "leaderboard_overview.png"))

    browser.get(f"{server}/transfer")
    _wait_for(browser, '[data-testid="stDataFrame"]', "Friedman test", timeout=120)
    _wait_for(browser, '[data-testid="stVegaLiteChart"]', timeout=60)
    time.sleep(1.0)  # let the data grid and charts paint
    body = browser.find_element(By.TAG_NAME, "body").text
    shot = artifacts / "leaderboard_transfer.png"
    browser.save_screenshot(str(shot))
    assert "Transfer attacks" in body
    assert TOP in body, f"top method {TOP!r} not on the rendered page"
    assert "Traceback" not in body and "Error" not in body.split("Friedman")[0]
    assert shot.stat().st_size > 10_000
    print(f"first page rendered in {first_page_s:.2f} s; screenshots in {artifacts}")
    assert first_page_s < 30  # generous for loaded CI machines; ~1-2 s on an idle 2-core box
