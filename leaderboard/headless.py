"""Debian's headless Chromium driven by Selenium (a dev dependency): what the browser test and
`benchmarks/leaderboard.py` load the app with. Selenium Manager is kept offline."""

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--window-size=1440,2200", "--hide-scrollbars")


def available() -> bool:
    """Whether chromium and chromedriver are installed (`make setup` installs them as root)."""
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


@contextmanager
def chromium(page_load_timeout: float = 60) -> Iterator:
    """A headless Chromium WebDriver, quit when the block ends."""
    from selenium import webdriver

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager go online
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(page_load_timeout)
    try:
        yield driver
    finally:
        driver.quit()


_RENDERED_JS = """
const [css, text, timeoutMs, done] = arguments;
const ok = () => document.querySelector(css) && (!text || document.body.textContent.includes(text))
    && !document.querySelector('[data-testid="stStatusWidget"], [data-testid="stSkeleton"]')
    && [...document.images].every(i => i.complete);
if (ok()) return done(performance.now());
let finished = false;
const finish = (at) => { if (!finished) { finished = true; obs.disconnect(); clearInterval(poll); done(at); } };
const check = () => { if (ok()) finish(performance.now()); };
const obs = new MutationObserver(check);  // DOM changes; an image's load changes no DOM: polled below
obs.observe(document.body, {childList: true, subtree: true, characterData: true});
const poll = setInterval(check, 25);
setTimeout(() => finish(null), timeoutMs);
"""


def load(driver, url: str, css: str, text: str | None = None, timeout: float = 60) -> float:
    """Open `url` and wait until an element matching `css` (and `text` on the page) is shown, every image has
    loaded, no element is still loading its code (Streamlit's skeleton placeholder) and Streamlit's script
    has finished (its status widget is gone). Returns the seconds from the
    navigation's start to that moment, timed by the browser itself (checked on every DOM change and every
    25 ms); raises TimeoutError after `timeout` s."""
    driver.set_script_timeout(timeout + 5)
    driver.get(url)
    at_ms = driver.execute_async_script(_RENDERED_JS, css, text, int(timeout * 1000))
    if at_ms is None:
        raise TimeoutError(f"{url} did not show {css!r}{f' with {text!r}' if text else ''} within {timeout} s")
    return at_ms / 1000


def _tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of process `root` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def wait_idle(driver, busy_below: float = 0.1, window_s: float = 0.3, timeout: float = 15) -> float:
    """Wait until the browser (chromedriver and every process it started) has used less than `busy_below` of
    one core over the last `window_s` seconds, i.e. it has finished starting up; returns the seconds waited
    (`timeout` at most, then it returns anyway). A visitor's browser is running before they open a page, so
    a benchmark that launches one per visit waits here: on a small machine a browser still starting competes
    with the page it is asked to load."""
    root, t0 = driver.service.process.pid, time.perf_counter()
    last = _tree_cpu_s(root)
    while time.perf_counter() - t0 < timeout:
        time.sleep(window_s)
        now = _tree_cpu_s(root)
        if now - last < busy_below * window_s:
            break
        last = now
    return time.perf_counter() - t0


NARROW_PX = 1024
"""The window width at which every row of tabs must show all its tabs (a laptop; the issue's layout check)."""

_OVERFLOW_JS = """
return [...document.querySelectorAll('[role="tablist"]')].flatMap(row => {
  const tabs = [...row.querySelectorAll('[role="tab"]')];
  const right = tabs.length ? tabs[tabs.length - 1].getBoundingClientRect().right : 0;
  return right > row.getBoundingClientRect().right + 1 ? [tabs.map(t => t.textContent).join(" | ")] : [];
});
"""


def overflowing_tab_rows(driver) -> list[str]:
    """The rows of tabs on the current page whose last tab lies past the row's right edge (it scrolls out of
    sight), each as its tabs' labels joined by `` | ``."""
    return driver.execute_script(_OVERFLOW_JS)
