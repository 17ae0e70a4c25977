# `make demo` and `make test` each set up .venv from requirements.txt on a fresh clone.
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	PYTHON=$(PYTHON) bash scripts/demo.sh

test: $(VENV)/.installed
	$(PYTHON) -m pytest -q tests

bench: $(VENV)/.installed
	$(PYTHON) benchmarks/bench_spectrograms.py
	$(PYTHON) benchmarks/bench_training.py

clean:
	rm -rf Data/demo Models/demo
