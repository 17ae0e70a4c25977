# `make demo` and `make test` each set up .venv from requirements.txt on a fresh clone.
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: demo test browser bench clean

# The install skips byte-compiling (--no-compile, below), so Python must be free to cache the modules it compiles on
# first import: with PYTHONDONTWRITEBYTECODE set (some images and CI runners set it), every one of the many processes
# the demo and the tests start recompiled torch and the rest from source (import 7.8 s of CPU against 3.5 s), and the
# tests took 60 % more CPU. Empty means unset to Python.
export PYTHONDONTWRITEBYTECODE :=

$(VENV)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	# --no-compile: byte-compiling every installed module took half the install (152 s -> 76 s without it);
	# Python compiles the modules a script imports on first use instead.
	$(PYTHON) -m pip install -q --no-compile --disable-pip-version-check -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	PYTHON=$(PYTHON) bash scripts/demo.sh

test: $(VENV)/.installed browser
	$(PYTHON) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests  # longest files first: tests/conftest.py

# tests/test_app.py drives the web demo in headless Chromium: installed from apt where it is missing and we may
# (CI: a fresh Debian, as root); anywhere else that one test skips, so a failed install only warns.
browser:
	@if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then \
	    if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	            || echo "warning: could not install chromium chromium-driver; the web demo's browser test will skip"; \
	    else \
	        echo "note: chromium/chromedriver not found (apt-get install chromium chromium-driver); the web demo's browser test will skip"; \
	    fi; \
	fi

bench: $(VENV)/.installed
	$(PYTHON) benchmarks/bench_spectrograms.py
	$(PYTHON) benchmarks/bench_training.py

clean:
	rm -rf Data/demo Models/demo
