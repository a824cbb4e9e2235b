"""Speed of the Streamlit leaderboard in a real browser: the target is the first page within 2 s.

    python benchmarks/leaderboard.py [--db results/mergesec.duckdb] [--repeats 5]

Serves the app on a loopback port (as `mergesec leaderboard` does) over the given database (default: the one
`make demo` writes) and loads each page in Debian's headless Chromium. A page counts as rendered when its key
element is shown and Streamlit's script has finished running. Prints, in wall-clock seconds:
1. the server's start until its health check answers;
2. each page's first visit after the start (cold server: empty `st.cache_data`; cold browser: Streamlit's
   JavaScript not cached yet), in the order a reader clicks through;
3. a new visitor's first page: a fresh Chromium profile (cold browser) on the now warm server, `--repeats`
   times;
4. each page's later visits (a full page load, new session, warm caches): median and max of `--repeats`;
and, for the first page, each case's median against the 2 s target.
Times are taken by the browser from the navigation's start (see `leaderboard.headless.load`). The load
average is printed because a busy machine slows everything.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.store import default_db_path
from leaderboard import headless
from leaderboard.serve import serving

TARGET_S = 2.0
# page path -> (CSS of the element that shows it is rendered, text that must be on it)
PAGES = {
    "": ('[data-testid="stMetric"]', "Merging methods"),
    "transfer": ('[data-testid="stVegaLiteChart"]', "Friedman test"),
    "backdoor": ('[data-testid="stDataFrame"]', "Defenses"),
    "tradeoff": ('[data-testid="stVegaLiteChart"]', "Spearman"),
    "method": ('[data-testid="stDataFrame"]', "Head to head"),
}


def visit(driver, url: str, page: str) -> float:
    """Seconds from navigating to `page` until it is rendered."""
    return headless.load(driver, f"{url}/{page}", *PAGES[page], timeout=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=str(default_db_path()), help="results database (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=5, help="warm visits per page (default: %(default)s)")
    args = ap.parse_args()
    if not Path(args.db).exists():
        sys.exit(f"error: no results database at {args.db}; run `make demo` first (or pass --db).")
    if not headless.available():
        sys.exit("error: needs Debian's chromium and chromium-driver; run `make setup` as root.")

    print(f"database {args.db} ({Path(args.db).stat().st_size / 2**20:.1f} MiB); "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with headless.chromium() as driver:
        driver.get("about:blank")  # the browser's own start is not the app's time
        t0 = time.perf_counter()
        with serving(args.db) as url:
            print(f"server start to healthy      {time.perf_counter() - t0:6.2f} s")
            cold = {page: visit(driver, url, page) for page in PAGES}
            warm = {page: [visit(driver, url, page) for _ in range(args.repeats)] for page in PAGES}
            new_visitor = []
            for _ in range(args.repeats):
                with headless.chromium() as fresh:
                    new_visitor.append(visit(fresh, url, ""))

    print(f"\n{'page':<12}{'first visit':>12}{'warm median':>13}{'warm max':>10}")
    for page in PAGES:
        print(f"{page or 'overview':<12}{cold[page]:>11.2f}s{statistics.median(warm[page]):>12.2f}s"
              f"{max(warm[page]):>9.2f}s")
    print(f"\nfirst page (overview) against the {TARGET_S:.0f} s target:")
    for who, times in (("returning visitor (browser cache warm)", warm[""]),
                       ("new visitor (fresh browser profile)", new_visitor),
                       ("first visit after a server start", [cold[""]])):
        median = statistics.median(times)
        print(f"  {who:<40} median {median:5.2f} s  max {max(times):5.2f} s  "
              f"{'met' if median <= TARGET_S else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
