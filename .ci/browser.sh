#!/usr/bin/env bash
# Debian's Chromium for the viewer's browser tests (tests/viewer/test_viewer.py, driven by Playwright with
# executable_path=/usr/bin/chromium; never `playwright install`). Does nothing if it is installed.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
export DEBIAN_FRONTEND=noninteractive
echo "[setup] installing Debian's chromium for the browser tests (first run only)"
{ apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } > /tmp/misomap-chromium.log 2>&1 ||
  { tail -n 20 /tmp/misomap-chromium.log; echo "[setup] chromium install FAILED (log: /tmp/misomap-chromium.log)"; exit 1; }
