# The template's own two commands. Both make (or reuse) .venv with every dependency first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= build
DEMO_SLUG := kaggle_solutions

.PHONY: demo test clean

# --no-compile, then compileall on every core: pip byte-compiles the 15,700 .py files one by one (1.5 min); compileall -j 0
# takes 35 s on 2 cores. They must be compiled here: where PYTHONDONTWRITEBYTECODE is set (as on the CI machine) Python
# never caches what it imports, and each test process that imports the solver compiled torch, timm and sklearn again
# (measured: 25 s to import the solver's training modules without the caches, 9-12 s with them). -qq and "|| true": a
# few files of the packages are Python 3.12 syntax (torch's tests) and are never imported.
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
	$(PY) -m compileall -qq -j 0 $(VENV)/lib || true
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
