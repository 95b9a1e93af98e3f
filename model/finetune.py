"""Fine-tuning: a new classifier head on the pretrained layers of another run's checkpoint.

Everything of the source network but its last linear layer (the spherical convolutions, their
batch norms, the embedding that makes the descriptor) is copied; the classifier is new, sized
for the new classes. From an ensemble (the shipped checkpoint is one) the first member, the
one best on validation, is fine-tuned. The architecture and bandwidth are the source's, so
the maps must be built at its bandwidth.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from model.ensemble import is_ensemble, member_weights
from model.net import ModelConfig, SphericalCNN

# The class-specific layers: the classifier, and the branch heads of an auxiliary loss.
HEADS = ("classifier.", "branch_heads.")

# What a folder dataset fine-tunes from unless told otherwise (``--init_from=auto``): the shipped
# ModelNet10 checkpoint, relative to the working directory (the repository root). On SHREC'11 it
# is 10 points more accurate than training from scratch in the same time (README,
# bench/finetune_shrec.py).
SHIPPED_SOURCE = Path("models") / "modelnet10.pt"


def resolve_source(init_from: str | None, folder: str | None) -> str | None:
    """The checkpoint a run starts from, or None for a run from scratch.

    ``auto`` fine-tunes a folder dataset from ``SHIPPED_SOURCE`` and trains a named dataset
    from scratch; ``none`` (or None) always trains from scratch; anything else is a path.
    """
    if init_from is None or init_from.lower() == "none":
        return None
    if init_from.lower() != "auto":
        return init_from
    if folder is None:
        return None
    if not SHIPPED_SOURCE.is_file():
        raise FileNotFoundError(
            f"a folder dataset is fine-tuned from {SHIPPED_SOURCE} by default, and there is no "
            f"such file under {Path.cwd()}: run from the repository root, pass "
            "--init_from=CHECKPOINT, or --init_from=none to train from scratch"
        )
    return str(SHIPPED_SOURCE)


def finetune_config(source: dict[str, Any], n_classes: int, dropout: float) -> ModelConfig:
    """The source's architecture with ``n_classes`` outputs and this run's dropout."""
    config = ModelConfig.from_dict(source["model_config"])
    return dataclasses.replace(config, n_classes=n_classes, dropout=dropout)


def network_weights(source: dict[str, Any]) -> dict[str, Any]:
    """The weights of the source's network: its own, or an ensemble's first member's (the
    member best on validation, ``model.ensemble``; the shipped checkpoint is an ensemble)."""
    return member_weights(source) if is_ensemble(source) else source["weights"]


def load_pretrained(model: SphericalCNN, source: dict[str, Any]) -> int:
    """Copy every weight of ``source``'s network (``network_weights``) except the head into
    ``model``; the number of tensors."""
    weights = {k: v for k, v in network_weights(source).items() if not k.startswith(HEADS)}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any(not name.startswith(HEADS) for name in missing):
        raise ValueError(
            f"the source checkpoint does not fit this network: missing {missing}, "
            f"unexpected {unexpected}"
        )
    return len(weights)


def pretrained_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters copied from the source (frozen while ``freeze_epochs`` last)."""
    return [p for name, p in model.named_parameters() if not name.startswith(HEADS)]


def source_summary(path: str | Path, source: dict[str, Any]) -> dict[str, Any]:
    """What the recipe records of the source: file, digest, classes, its own recipe."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {
        "path": str(path),
        "sha256": digest,
        "class_names": list(source.get("class_names", [])),
        "train_config": source.get("train_config"),
        "recipe": source.get("recipe"),
    }
