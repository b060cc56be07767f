# The template's own two commands. Both make (or reuse) .venv with every dependency first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= build
DEMO_SLUG := kaggle_solutions

.PHONY: demo test clean

# Each module is byte-compiled once, the first time a process imports it, and its .pyc kept. Where
# PYTHONDONTWRITEBYTECODE is set (as on the CI machine) Python would keep none, and every test process would compile
# torch, timm and sklearn again (measured: 25 s to import the solver's training modules without the caches, 9-12 s
# with them). Compiling ahead costs more than it saves: the tests import about 4,900 of the venv's 15,700 .py files
# (30 s of one core, the first time), while pip's byte-compiling of all of them took 1.5 min and compileall -j 0
# 35-60 s on 2 cores. Hence pip --no-compile, and this (empty: Python writes the .pyc) for every recipe here.
export PYTHONDONTWRITEBYTECODE :=

# requirements-compiled.txt (sdists, 60 s of compiling with a cold pip cache) builds on the other core meanwhile; its
# log is printed only when it fails.
$(VENV)/.installed: requirements.txt requirements-compiled.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	rm -rf $(VENV)/compiled
	$(PY) -m pip wheel --no-deps -r requirements-compiled.txt -w $(VENV)/compiled > $(VENV)/compiled.log 2>&1 & build=$$!; \
	$(PY) -m pip install --no-compile -r requirements.txt; installed=$$?; \
	wait $$build || { cat $(VENV)/compiled.log; exit 1; }; \
	exit $$installed
	$(PY) -m pip install --no-index --no-deps --no-compile $(VENV)/compiled/*.whl
	touch $@

# Bake the template with its defaults into build/, install the baked repo into .venv, run its demo.
demo: $(VENV)/.installed
	rm -rf $(BUILD)/$(DEMO_SLUG)
	$(VENV)/bin/cookiecutter --no-input . --output-dir $(BUILD)
	$(MAKE) -C $(BUILD)/$(DEMO_SLUG) install demo VENV=$(abspath $(VENV)) PIP_FLAGS=--no-deps

# Hook tests, bake tests of every choice (each baked repo's own tests, the demo end to end once).
test: $(VENV)/.installed
	$(PY) -m pytest tests

clean:
	rm -rf $(BUILD) $(VENV)
