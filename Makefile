# The project's commands. `make serve` and `make test` are the two a newcomer runs.
VENV ?= .venv
PY := $(VENV)/bin/python
# The project's command line (the console script of pyproject.toml).
CLI := $(VENV)/bin/spherical-shapes
# onnxruntime flavour: cpu (default) or gpu. Never both: the two wheels overwrite each other.
ORT ?= cpu

.PHONY: setup test lint format serve data train evaluate export gallery bench

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
	$(CLI) serve

# Spherical maps of ModelNet10 at bandwidth 32 (cached under ~/.cache/spherical-shapes; resumable).
data: setup
	$(CLI) data --dataset modelnet10 --split train --bandwidth 32 --rotation so3 --copies 5
	$(CLI) data --dataset modelnet10 --split test --bandwidth 32 --rotation so3 --copies 1
	$(CLI) data --dataset modelnet10 --split train --bandwidth 32 --rotation z --copies 1
	$(CLI) data --dataset modelnet10 --split test --bandwidth 32 --rotation z --copies 1

# The two models of the paper's protocols (resumable: re-run after an interruption).
train: data
	$(CLI) train --epochs=15 --threads=1 --train_copies=5 --label_smoothing=0.1 --weight_decay=1e-4 --out=runs/modelnet10-so3-c5
	$(CLI) train --epochs=30 --threads=1 --train_rotation=z --test_rotation=z --out=runs/modelnet10-z

evaluate: setup
	$(CLI) evaluate --z=runs/modelnet10-z/checkpoint.pt --so3=runs/modelnet10-so3-c5/checkpoint.pt --out=docs/results

# The shipped model: ONNX with its evaluation in the metadata, then the default gallery.
export: setup
	$(CLI) export runs/modelnet10-so3-c5/checkpoint.pt --out models/model.onnx --accuracy docs/results/results.json
	$(PY) -m export.parity runs/modelnet10-so3-c5/checkpoint.pt models/model.onnx

gallery: setup
	$(CLI) gallery build --dataset modelnet10 --model models/model.onnx --out models/gallery.npz

bench: setup
	$(PY) bench/sht.py
	$(PY) bench/raycast.py --dataset modelnet10 --split test --bandwidth 32
