# The project's commands. `make serve` and `make test` are the two a newcomer runs.
VENV ?= .venv
PY := $(VENV)/bin/python
# onnxruntime flavour: cpu (default) or gpu. Never both: the two wheels overwrite each other.
ORT ?= cpu

.PHONY: setup test lint format serve data train export bench

$(VENV)/.installed-$(ORT): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,$(ORT),dev]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(VENV)/.installed-$(ORT)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .

serve: setup
	$(PY) -m service

bench: setup
	$(PY) bench/sht.py
