# The two commands of misomap (see README.md):
#   make demo   the whole pipeline on the embedded demo region
#   make test   the test suite
# Either sets up what it needs on first use (.venv from requirements.lock; Chromium for the browser
# tests) and does nothing more on a ready machine. Extra arguments: make demo ARGS="--seed 1".
PYTHON ?= python3
VENV   := .venv
READY  := $(VENV)/.misomap-ready

.PHONY: demo test setup

demo: $(READY)
	@$(VENV)/bin/misomap demo $(ARGS)

test: $(READY)
	@bash .ci/browser.sh
	@$(VENV)/bin/pytest $(ARGS)

setup: $(READY)

# Reinstalls only when the lock file or the project's metadata changed.
$(READY): requirements.lock pyproject.toml
	@bash .ci/setup.sh $(PYTHON) $(VENV)
	@touch $@
