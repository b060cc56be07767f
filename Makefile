# The template's own two commands. Both make (or reuse) .venv with every dependency first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= build
DEMO_SLUG := kaggle_solutions

.PHONY: demo test clean

# --no-compile: the 15,700 .py files of the test environment take 1.5 min to byte-compile; Python compiles what it imports.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --no-compile -r requirements.txt
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
