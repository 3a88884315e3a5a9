#!/usr/bin/env bash
# Debian's Chromium for the viewer's browser tests (tests/test_viewer.py, driven by Playwright with
# executable_path=/usr/bin/chromium; never `playwright install`). Does nothing if it is installed.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }
