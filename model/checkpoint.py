"""Checkpoints: the one file format that training writes and everything else reads.

A checkpoint is a dict saved with ``torch.save``. What rebuilds the network without guessing
(``model_artifact``): the weights, the architecture (``model_config``), the class names, the
map grid, the per-pixel features and their version, and the training settings. A training run
adds what resumes it exactly (optimizer, random state, epoch, history, seconds); post-hoc fits
(``model.trust``) add a ``post_hoc`` entry; an ensemble's checkpoint (``model.ensemble``) adds
its members. Export, evaluation, the benchmarks and the tests load
checkpoints only through this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from model.ensemble import Ensemble, build_ensemble, is_ensemble
from model.net import ModelConfig, SphericalCNN
from raymap import FEATURE_NAMES, FEATURES_VERSION
from raymap.grid import GridSpec

FILE_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"


def checkpoint_path(out: str | Path) -> Path:
    """Where a training run with ``--out=out`` keeps its checkpoint (the last epoch, resumable)."""
    return Path(out) / FILE_NAME


def best_path(out: str | Path) -> Path:
    """The model a run chose on its validation split; ``selection`` says which epoch."""
    return Path(out) / BEST_NAME


def _as_dict(config: object) -> dict[str, Any]:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"expected a dataclass instance or a mapping, got {type(config).__name__}")


def model_artifact(
    model: SphericalCNN, class_names: list[str], train_config: object
) -> dict[str, Any]:
    """What export and evaluation need to rebuild the model; ``train_config``: dataclass or dict."""
    return {
        "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "model_config": model.config.to_dict(),
        "class_names": list(class_names),
        "grid": dataclasses.asdict(GridSpec(model.config.bandwidth)),
        "feature_names": list(FEATURE_NAMES),
        "features_version": FEATURES_VERSION,
        "train_config": _as_dict(train_config),
    }


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically: a reader or an interruption never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(state), tmp)
    tmp.replace(path)
    return path


def save_model(
    model: SphericalCNN, class_names: list[str], train_config: object, path: str | Path
) -> Path:
    """A checkpoint with the model only (no training state)."""
    return save_checkpoint(model_artifact(model, class_names, train_config), path)


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict as saved (the file is trusted: it holds numpy and Python objects)."""
    state = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(state, dict) or "weights" not in state or "model_config" not in state:
        raise ValueError(f"{path} is not a checkpoint of this project (no weights/model_config)")
    return state


def build_model(
    state: Mapping[str, Any], device: str | torch.device = "cpu"
) -> SphericalCNN | Ensemble:
    """The network of a checkpoint dict (an ``Ensemble`` for an ensemble's), in eval mode."""
    if is_ensemble(state):
        return build_ensemble(state).to(device).eval()
    model = SphericalCNN(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["weights"])
    return model.to(device).eval()


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[SphericalCNN | Ensemble, dict[str, Any]]:
    """A checkpoint file -> the network in eval mode and the checkpoint dict."""
    state = read_checkpoint(path, device)
    return build_model(state, device), state
