"""The network: exact invariance to grid-step rotations about the pole, config round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.checkpoint import load_model, save_model
from model.config import apply_overrides
from model.net import ModelConfig, SphericalCNN, describe, multiply_adds, preset_config
from model.train import TrainConfig
from tests.spherical import random_coefficients, random_rotation, sample_rotated


@pytest.fixture(scope="module", params=["relu", "prelu"])
def small_network(request: pytest.FixtureRequest) -> SphericalCNN:
    """The small network with either activation (PReLU: its slopes drawn, as after training)."""
    torch.manual_seed(0)
    model = SphericalCNN(preset_config("small", n_classes=5, activation=request.param)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.PReLU):
                module.weight.uniform_(-0.5, 0.5)
    # Non-trivial batch-norm statistics, as after training.
    with torch.no_grad():
        model.train()
        model(torch.rand(16, 6, 32, 32))
    return model.eval()


# Exact only for shifts that stay on the coarsest grid (bandwidth 16 -> 4: multiples of 4).
@pytest.mark.parametrize("shift", [4, 8, 20])
def test_polar_rotation_by_grid_steps_leaves_outputs_unchanged(
    small_network: SphericalCNN, shift: int
) -> None:
    maps = torch.rand(3, 6, 32, 32)
    with torch.no_grad():
        logits, descriptor = small_network(maps)
        logits_r, descriptor_r = small_network(torch.roll(maps, shift, dims=-1))
    torch.testing.assert_close(logits_r, logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(descriptor_r, descriptor, rtol=1e-4, atol=1e-4)


def smooth_coefficients(rng: np.random.Generator) -> np.ndarray:
    """Band-limited (b = 8) six-channel inputs; the pointwise ReLUs are not band-limited, so
    the network's invariance to them is approximate."""
    coefficients = random_coefficients(rng, (1, 6), 8) * 0.3
    coefficients[..., 0, 7] += 2.0
    return coefficients


def rotated_maps(coefficients: np.ndarray, rotation: np.ndarray) -> torch.Tensor:
    """The input sampled on the b = 16 grid after ``rotation``: (1, 6, 32, 32)."""
    return torch.tensor(sample_rotated(coefficients, 16, rotation), dtype=torch.float32)


def test_descriptor_is_nearly_invariant_to_arbitrary_rotations(
    small_network: SphericalCNN,
) -> None:
    rng = np.random.default_rng(0)
    coefficients = smooth_coefficients(rng)

    def descriptor(rotation: np.ndarray) -> torch.Tensor:
        maps = rotated_maps(coefficients, rotation)
        with torch.no_grad():
            return small_network(maps)[1][0]

    reference = descriptor(np.eye(3))
    for _ in range(3):
        cosine = float(descriptor(random_rotation(rng)) @ reference)
        assert cosine > 0.99, f"descriptor cosine {cosine:.4f} under a random rotation"


def test_block_summaries_are_nearly_invariant_to_arbitrary_rotations(
    small_network: SphericalCNN,
) -> None:
    """What the novelty score's per-block knn reads: each block's channel means and RMS."""
    rng = np.random.default_rng(1)
    coefficients = smooth_coefficients(rng)

    def summaries(rotation: np.ndarray) -> list[torch.Tensor]:
        maps = rotated_maps(coefficients, rotation)
        with torch.no_grad():
            features, blocks = small_network.features_and_summaries(maps)
        torch.testing.assert_close(features, small_network.features(maps))
        return blocks

    reference = summaries(np.eye(3))
    config = small_network.config
    layers = (*config.branch_layers * config.n_branches, *config.joint_layers)
    names = small_network.summary_names()
    assert names[0] == "branch0.0" and names[-1] == "joint.0" and len(names) == len(layers)
    rotated = summaries(random_rotation(rng))
    for name, (channels, _), a, b in zip(names, layers, reference, rotated, strict=True):
        assert a.shape == (1, 2 * channels)  # each channel's mean and RMS
        cosine = float(torch.nn.functional.cosine_similarity(a, b))
        assert cosine > 0.99, f"{name}: summary cosine {cosine:.4f} under a random rotation"


def test_outputs_have_the_promised_shapes_and_norms(small_network: SphericalCNN) -> None:
    with torch.no_grad():
        logits, descriptor = small_network(torch.rand(4, 6, 32, 32))
    assert logits.shape == (4, 5)
    assert descriptor.shape == (4, small_network.config.descriptor_size)
    torch.testing.assert_close(descriptor.norm(dim=1), torch.ones(4))


def test_paper_network_size_is_reported() -> None:
    model = SphericalCNN(ModelConfig())
    text = describe(model)
    assert "parameters" in text and "multiply-adds" in text
    assert 20e6 < multiply_adds(model) < 60e6


def test_checkpoint_round_trip(tmp_path: object, small_network: SphericalCNN) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "model.pt"
    names = [f"class{i}" for i in range(5)]
    save_model(small_network, names, TrainConfig(), path)
    model, state = load_model(path)
    assert state["class_names"] == names
    assert state["grid"] == {"bandwidth": 16, "name": "driscoll-healy-soft"}
    maps = torch.rand(2, 6, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(maps)[0], small_network(maps)[0])


def test_branch_heads_answer_in_training_only() -> None:
    """``branch_heads``: each branch's logits in training (for the auxiliary loss, which
    reaches the heads and the branches), the plain two outputs in eval (what is exported)."""
    torch.manual_seed(0)
    model = SphericalCNN(preset_config("small", n_classes=5, branch_heads=True))
    maps = torch.rand(4, 6, 32, 32)
    logits, _, branch_logits = model.train()(maps)
    assert logits.shape == (4, 5) and branch_logits.shape == (2, 4, 5)
    branch_logits.sum().backward()
    assert all(head.weight.grad.abs().sum() > 0 for head in model.branch_heads)
    assert model.branches[1][0].conv.anchor_spectra.grad.abs().sum() > 0
    assert model.classifier.weight.grad is None  # the auxiliary loss alone never reaches it
    assert len(model.eval()(maps)) == 2
    assert len(SphericalCNN(preset_config("small", n_classes=5)).train()(maps)) == 2


def test_model_config_refuses_inconsistent_layers() -> None:
    with pytest.raises(ValueError, match="activation"):
        ModelConfig(activation="gelu")
    with pytest.raises(ValueError, match="after bandwidth 8"):
        ModelConfig(bandwidth=8, branch_layers=((16, 16),))
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="unknown architecture"):
        preset_config("huge")


def test_overrides_parse_values_and_refuse_unknown_keys() -> None:
    config = apply_overrides(
        TrainConfig(), ["--epochs=3", "--lr=0.01", "--lr_milestones=[0.5]", "--progress=false"]
    )
    assert (config.epochs, config.lr, config.lr_milestones, config.progress) == (
        3,
        0.01,
        (0.5,),
        False,
    )
    with pytest.raises(ValueError, match="unknown setting 'epoch'"):
        apply_overrides(TrainConfig(), ["--epoch=3"])
    with pytest.raises(ValueError, match="expected --key=value"):
        apply_overrides(TrainConfig(), ["epochs"])
