# Everything a developer or CI runs. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS_VENV := .venv-tools
CARGO ?= cargo

.PHONY: help venv tools-venv

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

venv: $(VENV)/.installed ## moto (AWS emulator) in .venv

$(VENV)/.installed: tools/requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-test.txt
	touch $@

tools-venv: $(TOOLS_VENV)/.installed ## cfn-lint, cargo-lambda, zig in .venv-tools

$(TOOLS_VENV)/.installed: tools/requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-tools.txt
	touch $@
