#!/usr/bin/env bash
# Create (or reuse) .venv and install mergesec with pinned torch, torchattacks 3.5.1 and current streamlit.
# Idempotent: a second call with unchanged pyproject.toml/setup.sh returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.mergesec-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q --upgrade pip
# torch first, from the exact pins (on the lab machines these wheels lie on local disk).
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e '.[dev,ray]'
# torchattacks 3.5.1 pins requests~=2.25.1, which would make pip downgrade streamlit (to 1.22) or
# torchattacks (to 3.3.0). Its real needs are already installed by the line above, so install it alone.
python -m pip install -q --no-deps torchattacks==3.5.1
# Headless Chromium for the end-to-end leaderboard test (Debian packages); skipped where apt is unavailable.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "setup: could not install chromium; the browser test will be skipped" >&2
fi
# bubblewrap: the sandbox that submitted code runs in (benchmark/submissions/isolation.py); without it
# mergesec refuses to run submissions unless --no-isolation is passed.
if ! command -v bwrap >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
    || echo "setup: could not install bubblewrap; submissions will refuse to run" >&2
fi
echo "$want" > "$stamp"
