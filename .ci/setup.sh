#!/usr/bin/env bash
# Set up what misomap's two commands need, once: a virtual environment from requirements.lock
# (PyTorch 2.14.1 and torchvision 0.29.1 come from local disk). Prints each step and its time.
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}
t0=$SECONDS
step() { printf '[setup %3ds] %s\n' "$((SECONDS - t0))" "$*"; }
if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
step "installing misomap and its pinned dependencies into $VENV (first run: about 3 minutes)"
log="$VENV/install.log"
if ! "$VENV/bin/pip" install --disable-pip-version-check -c requirements.lock -e '.[test]' 2>&1 | tee "$log" |
    awk '/^Collecting /{n++; printf "\r  %d packages resolved", n; fflush()}
         /^Installing collected/{printf "\n  unpacking into the environment...\n"; fflush()}'; then
  echo; tail -n 30 "$log"; step "install FAILED (full log: $log)"; exit 1
fi
step "done: $("$VENV/bin/misomap" --version)"
