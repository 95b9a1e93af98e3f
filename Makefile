# The project's commands. `make serve` and `make test` are the two a newcomer runs.
VENV ?= .venv
PY := $(VENV)/bin/python
# The project's command line (the console script of pyproject.toml).
CLI := $(VENV)/bin/spherical-shapes
# onnxruntime flavour: cpu (default) or gpu. Never both: the two wheels overwrite each other.
ORT ?= cpu

.PHONY: setup test lint format serve data train evaluate export gallery trust bench

$(VENV)/.installed-$(ORT): pyproject.toml setup.py raymap/_kernels.c
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,$(ORT),dev]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(VENV)/.installed-$(ORT)

# axe-core for the browser test's accessibility check, at the version the lock file pins.
tests/browser/node_modules/.package-lock.json: tests/browser/package-lock.json
	npm ci --prefix tests/browser --ignore-scripts --no-audit --no-fund

test: setup tests/browser/node_modules/.package-lock.json
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .

serve: setup
	$(CLI) serve

# Spherical maps at bandwidth 16 (cached under ~/.cache/spherical-shapes; resumable): ModelNet10
# for training and testing, upright for the gallery, SHREC'11 as out-of-class shapes.
# SO3 training: SO3_COPIES rotated copies of each mesh, each stretched along its own axes by
# factors in [1/(1+STRETCH), 1+STRETCH]; its validation meshes unstretched (the plain copies).
SO3_COPIES ?= 10
STRETCH ?= 0.25
data: setup
	$(CLI) data --dataset modelnet10 --split train --bandwidth 16 --rotation so3 --copies $(SO3_COPIES) --stretch $(STRETCH)
	$(CLI) data --dataset modelnet10 --split train --bandwidth 16 --rotation so3 --copies $(SO3_COPIES)
	$(CLI) data --dataset modelnet10 --split test --bandwidth 16 --rotation so3 --copies 1
	$(CLI) data --dataset modelnet10 --split train --bandwidth 16 --rotation z --copies 1
	$(CLI) data --dataset modelnet10 --split test --bandwidth 16 --rotation z --copies 1
	$(CLI) data --dataset modelnet10 --split train --bandwidth 16 --rotation none --copies 1
	$(CLI) data --dataset modelnet10 --split test --bandwidth 16 --rotation none --copies 1
	$(CLI) data --dataset shrec11 --split train --bandwidth 16 --rotation so3 --copies 1
	$(CLI) data --dataset shrec11 --split test --bandwidth 16 --rotation so3 --copies 1

# Three seeds of each protocol (resumable: re-run after an interruption). Each run keeps 10 %
# of the training meshes for validation, which picks its epoch (runs/NAME/best.pt). The
# spherical blocks use PReLU (the paper's); runs/so3-s* and runs/z-s* are the ReLU recipe's.
SEEDS ?= 0 1 2
RECIPE := --architecture=small --bandwidth=16 --label_smoothing=0.1 --weight_decay=1e-4 --average=ema --activation=prelu --threads=1
# The SO3 recipe again on CALIBRATION_SPLITS other validation splits (--val_seed), the same
# seeds each: the shipped temperature is fitted on their splits' validation meshes and its own
# together (cross-fitting; docs/results/preregistered-five-split-temperature.md).
CALIBRATION_SPLITS ?= 1 2 3 4
SO3 := $(RECIPE) --train_copies=$(SO3_COPIES) --train_stretch=$(STRETCH) --epochs=12
# JOBS runs at a time, each on one thread (--threads=1): JOBS=3 on 2 cores trains three runs
# in about the time of two alone; on a GPU many fit side by side (README, Benchmarks, Training
# speed). With JOBS > 1 each run writes its log to runs/NAME.log and this prints when it starts
# and ends; any run that fails fails the target (the others finish first).
JOBS ?= 1
train: data
	{ for s in $(SEEDS); do echo "so3-prelu-s$$s $(SO3) --seed=$$s"; done; \
	  for v in $(CALIBRATION_SPLITS); do for s in $(SEEDS); do echo "so3-prelu-v$$v-s$$s $(SO3) --val_seed=$$v --seed=$$s"; done; done; \
	  for s in $(SEEDS); do echo "z-prelu-s$$s $(RECIPE) --train_rotation=z --test_rotation=z --epochs=12 --seed=$$s"; done; } \
	| xargs -L 1 -P $(JOBS) sh -c '$(if $(filter 1,$(JOBS)),$(CLI) train "$$@" --out=runs/$$0,mkdir -p runs && echo "started runs/$$0 (log: runs/$$0.log)" && $(CLI) train "$$@" --out=runs/$$0 --progress=False >runs/$$0.log 2>&1 && echo "finished runs/$$0" || { echo "FAILED runs/$$0 (log: runs/$$0.log)"; exit 1; })'

# Mean and std over the seeds (docs/results/results.md).
evaluate: setup
	$(CLI) evaluate --z $(foreach s,$(SEEDS),runs/z-prelu-s$(s)/best.pt) --so3 $(foreach s,$(SEEDS),runs/so3-prelu-s$(s)/best.pt) --out=docs/results

# The shipped model: the SO3 seeds as one ensemble (model.ensemble: mean logits, features side
# by side, the seed best on validation first) with its post-hoc fit (temperature, descriptor
# transform, novelty score and threshold; models/modelnet10.pt), its ONNX, the default
# gallery, then the trust figures of the shipped files on the test split.
# Raised whenever the shipped model changes: a gallery of another version is refused.
MODEL_VERSION := 7
comma := ,
space := $(subst ,, )
# One calibration split's runs as one --calibrate-with group: A.pt,B.pt,C.pt.
split_runs = $(subst $(space),$(comma),$(foreach s,$(SEEDS),runs/so3-prelu-v$(1)-s$(s)/best.pt))
export: setup
	$(PY) -m model.trust fit --ensemble $(foreach s,$(SEEDS),runs/so3-prelu-s$(s)/best.pt) --calibrate-with $(foreach v,$(CALIBRATION_SPLITS),$(call split_runs,$(v))) --out models/modelnet10.pt
	$(CLI) export models/modelnet10.pt --out models/model.onnx --version $(MODEL_VERSION)
	$(PY) -m export.parity models/modelnet10.pt models/model.onnx

gallery: setup
	$(CLI) gallery build --dataset modelnet10 --model models/model.onnx --out models/gallery.npz

trust: setup
	$(PY) -m model.trust report --model models/model.onnx --gallery models/gallery.npz --out docs/results

bench: setup
	$(PY) bench/sht.py
	$(PY) bench/raycast.py --dataset modelnet10 --split test --bandwidth 32
