"""leaderboard.headless's idle wait: `benchmarks/leaderboard.py` times a visit only once the visitor's freshly
launched browser has finished starting, so its CPU accounting must see the whole process tree."""

import os
import subprocess
import sys
import time

import pytest

from leaderboard import headless

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\ntime.sleep(30)\n"


def test_tree_cpu_counts_a_grandchild_that_burns_cpu():
    # a child (sh) whose own child burns 0.6 CPU-s: the tree's total must include the grandchild
    shell = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "$0"; :', BURN])
    try:
        before = headless._tree_cpu_s(shell.pid)
        time.sleep(1.5)  # the burn (0.6 CPU-s) ends well within this on a loaded 2-core machine
        grown = headless._tree_cpu_s(shell.pid) - before
        assert grown >= 0.4, grown
        assert headless._tree_cpu_s(os.getpid()) >= grown  # this process is the tree's root's parent
    finally:
        subprocess.run(["pkill", "-P", str(shell.pid)], check=False)
        shell.kill()
        shell.wait()


@pytest.mark.browser
@pytest.mark.skipif(not headless.available(), reason="needs Debian's chromium and chromium-driver")
def test_wait_idle_returns_once_the_browser_is_idle():
    pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency: pip install -e .[dev]")
    with headless.chromium() as driver:
        driver.get("about:blank")
        waited = headless.wait_idle(driver, timeout=30)
        assert waited < 30  # it found the browser idle before giving up
        root = driver.service.process.pid
        before = headless._tree_cpu_s(root)
        time.sleep(0.5)
        assert headless._tree_cpu_s(root) - before < 0.25  # and it is idle: under half a core
