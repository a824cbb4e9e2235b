"""Speed and memory of the Streamlit leaderboard in a real browser: the target is every page within 2 s for
a new visitor, the first visit after a server start included.

    python benchmarks/leaderboard.py [--db results/mergesec.duckdb] [--repeats 3]

Serves the app on a loopback port (as `mergesec leaderboard` does) over the given database (default: the one
`make demo` writes) and loads each page in Debian's headless Chromium. A page counts as rendered when its key
element is shown, its images have loaded, no element is still loading its code and Streamlit's script
has finished running. Prints, in wall-clock seconds:
1. the server's start until its health check answers (which it does once every page ran once:
   `leaderboard.warmup`);
2. each page's first visit after the start by a new visitor (a fresh browser profile: no cache, no cookies,
   no service worker), with what the server computed for it (`st.cache_data` misses and their seconds, from
   Streamlit's /_stcore/metrics: 0 when the warm-up did its job) and the load average at that moment;
3. each page for a new visitor on the now warm server: median and max of `--repeats` fresh profiles;
and each page's worst case against the 2 s target, then the server's resident memory (RSS, from
/proc/<pid>/status) after the visits, and the rows of tabs that do not fit a 1024-px window (none should).
Times are taken by the browser from the navigation's start (see `leaderboard.headless.load`). Each visitor's
browser is launched for that visit and the visit starts once the browser has finished starting
(`leaderboard.headless.wait_idle`; the seconds that took are printed): a real visitor's browser is already
running, on their own machine, while here a browser still starting takes a core from the server on the same
two. A busy machine slows the browser as much as the server, so the same visits to a Streamlit page that
shows one line of text (`floor`) are timed too: no page can be faster than that.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.errors import MissingResourceError, run_main
from benchmark.store import default_db_path
from leaderboard import headless
from leaderboard.serve import cache_stats, serving

TARGET_S = 2.0
# page path -> (CSS of the element that shows it is rendered, text that must be on it)
TABLE = '[data-testid="stMarkdownContainer"] table'
PAGES = {
    "": (TABLE, "Submit a method"),
    "transfer": (TABLE, "per task, the best value"),  # the method × task table, the last element
    "backdoor": (TABLE, "Defenses"),
    "tradeoff": ('[data-testid="stMarkdownContainer"] img', "Spearman"),
    "method": (TABLE, "Head to head"),
}


FLOOR_APP = 'import streamlit as st\n\nst.markdown("floor")\n'


SETTLED: list[float] = []
"""Seconds each visitor's browser took to finish starting (`headless.wait_idle`), for the report."""


def new_visitor(url: str, page: str, key: tuple[str, str] | None = None) -> float:
    """Seconds until `page` is rendered for a visitor with a fresh browser profile (nothing cached), timed
    once the browser has finished starting (it is not the app's time)."""
    with headless.chromium() as driver:
        driver.get("about:blank")
        SETTLED.append(headless.wait_idle(driver))
        return headless.load(driver, f"{url}/{page}", *(key or PAGES[page]), timeout=120)


def floor_s(db: str, repeats: int, folder: Path) -> list[float]:
    """New-visitor times of a Streamlit page that shows one line of text, served like the leaderboard."""
    app = folder / "floor.py"
    app.write_text(FLOOR_APP)
    with serving(db, app=app) as served:
        return [new_visitor(served.url, "", ('[data-testid="stMarkdownContainer"]', "floor"))
                for _ in range(repeats)]


def narrow_overflow(url: str) -> dict[str, list[str]]:
    """Per page, the rows of tabs whose last tab lies out of sight in a 1024-px window."""
    with headless.chromium() as driver:
        driver.set_window_size(headless.NARROW_PX, 1400)
        out = {}
        for page in PAGES:
            headless.load(driver, f"{url}/{page}", *PAGES[page], timeout=120)
            out[page] = headless.overflowing_tab_rows(driver)
        return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=str(default_db_path()), help="results database (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="new visitors per page on the warm server")
    args = ap.parse_args()
    if not Path(args.db).exists():
        raise MissingResourceError(f"no results database at {args.db}; run `make demo` first (or pass --db)")
    if not headless.available():
        raise MissingResourceError("needs Debian's chromium and chromium-driver; run `make setup` as root")

    print(f"database {args.db} ({Path(args.db).stat().st_size / 2**20:.1f} MiB); "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    with serving(args.db) as served:
        print(f"server start to healthy      {time.perf_counter() - t0:6.2f} s (warm-up included); "
              f"RSS {rss_mib(served.pid):.0f} MiB")
        cold, computed, load = {}, {}, {}
        for page in PAGES:
            before = cache_stats(served.url)
            cold[page] = new_visitor(served.url, page)
            after, load[page] = cache_stats(served.url), os.getloadavg()[0]
            computed[page] = (after.misses - before.misses, after.compute_s - before.compute_s)
        warm = {page: [new_visitor(served.url, page) for _ in range(args.repeats)] for page in PAGES}
        rss = rss_mib(served.pid)
        narrow = narrow_overflow(served.url)
    with tempfile.TemporaryDirectory(prefix="mergesec-floor-") as tmp:
        floor = floor_s(args.db, args.repeats, Path(tmp))

    print(f"\n{'page':<10}{'first after start':>18}{'computed then':>15}{'load':>6}{'new visitor median':>20}"
          f"{'max':>7}   target {TARGET_S:.0f} s")
    for page in PAGES:
        worst = max(cold[page], *warm[page])
        n, secs = computed[page]
        print(f"{page or 'overview':<10}{cold[page]:>17.2f}s{f'{n} in {secs:.2f}s':>15}{load[page]:>6.1f}"
              f"{statistics.median(warm[page]):>19.2f}s{max(warm[page]):>6.2f}s   "
              f"{'met' if worst <= TARGET_S else 'MISSED'}")
    print(f"{'floor':<10}{'':>18}{'':>15}{'':>6}{statistics.median(floor):>19.2f}s{max(floor):>6.2f}s   "
          "(a Streamlit page with one line of text: no page can be faster)")
    print(f"each visitor's browser finished starting in {statistics.median(SETTLED):.2f} s (median; "
          f"max {max(SETTLED):.2f} s) before its visit was timed")
    print(f"\nserver resident memory after the visits: {rss:.0f} MiB (one process: `mergesec leaderboard` execs it)")
    for page, rows in narrow.items():
        print(f"{page or 'overview'} at {headless.NARROW_PX} px: "
              + (f"{len(rows)} row(s) of tabs scroll out of sight: {rows}" if rows else "every row of tabs fits"))
    print(f"load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    run_main(main)
