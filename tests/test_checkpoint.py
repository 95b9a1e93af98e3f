"""The checkpoint module: atomic writes, refusing files that are not checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import checkpoint_path, load_model, read_checkpoint, save_model
from model.net import SphericalCNN, preset_config
from model.train import TrainConfig


def test_save_is_atomic_and_loads_the_same_network(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = SphericalCNN(preset_config("small", n_classes=3)).eval()
    path = checkpoint_path(tmp_path / "run")
    save_model(network, ["a", "b", "c"], TrainConfig(architecture="small"), path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    model, state = load_model(path)
    assert state["train_config"]["architecture"] == "small"
    maps = torch.rand(2, 6, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(maps)[1], network(maps)[1])


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a checkpoint"):
        read_checkpoint(path)
