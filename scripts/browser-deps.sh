#!/usr/bin/env bash
# What the report.html browser test needs (tests/reports/test_html.py): Debian's
# chromium and chromium-driver, and selenium in the project's virtual environment.
# Idempotent: installs only what is missing. Run as root (CI is root).
#
#   bash scripts/browser-deps.sh [PYTHON]      # PYTHON defaults to .venv/bin/python
set -euo pipefail

python="${1:-.venv/bin/python}"

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

if ! "$python" -c "import selenium" 2>/dev/null; then
  "$python" -m pip install -q "selenium>=4.10,<5"
fi

chromium --version 2>/dev/null | head -n 1
chromedriver --version | head -n 1
"$python" -c "import selenium; print('selenium', selenium.__version__)"
