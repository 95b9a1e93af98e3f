"""Several seeds as one network: its outputs, its checkpoint, its fit and its export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import onnx as export_onnx
from model.checkpoint import load_model, model_artifact, save_checkpoint
from model.ensemble import Ensemble, ensemble_state, is_ensemble
from model.finetune import finetune_config, load_pretrained
from model.net import SphericalCNN, preset_config
from model.train import TrainConfig
from model.trust import TrustedModel, fit, read_group
from spherical_shapes.card import render_card
from tests.trust_testing import synthetic_fit_data

CLASSES = ["a", "b", "c"]


def _network(seed: int) -> SphericalCNN:
    torch.manual_seed(seed)
    network = SphericalCNN(preset_config("small", n_classes=3, activation="prelu"))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # batch norms that do something, as after training
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.3 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return network.eval()


def _run_state(seed: int, val_acc: float, **settings: object) -> dict[str, object]:
    """A training run's best.pt: the model, its settings and the epoch its validation chose."""
    config = TrainConfig(architecture="small", bandwidth=16, seed=seed, **settings)  # type: ignore[arg-type]
    return {
        **model_artifact(_network(seed), CLASSES, config),
        "selection": {"epoch": seed + 3, "val_acc": val_acc, "val_loss": 0.3},
        "history": [{"epoch": 1, "test_acc": 0.5}],
    }


@pytest.fixture(scope="module")
def maps() -> torch.Tensor:
    return torch.randn(5, 6, 32, 32, generator=torch.Generator().manual_seed(7))


def test_the_ensemble_averages_logits_and_puts_features_side_by_side(maps: torch.Tensor) -> None:
    members = [_network(0), _network(1), _network(2)]
    ensemble = Ensemble(members).eval()
    with torch.no_grad():
        logits, descriptor = ensemble(maps)
        outputs = [m(maps) for m in members]
        features, summaries = ensemble.features_and_summaries(maps)
        first_features, first_summaries = members[0].features_and_summaries(maps)
    expected = torch.stack([o[0] for o in outputs]).mean(0)
    torch.testing.assert_close(logits, expected)
    assert ensemble.config.descriptor_size == 3 * 64 and descriptor.shape == (5, 192)
    torch.testing.assert_close(descriptor.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(features[:, :64], first_features)
    torch.testing.assert_close(features[:, 64:128], members[1].features(maps).detach())
    # The block summaries (novelty banks, retrieval) are the first member's alone.
    assert ensemble.summary_names() == members[0].summary_names()
    for got, want in zip(summaries, first_summaries, strict=True):
        torch.testing.assert_close(got, want)


def test_networks_of_other_inputs_make_no_ensemble() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        Ensemble([_network(0)])
    other = SphericalCNN(preset_config("small", n_classes=4))
    with pytest.raises(ValueError, match="differ in input or classes"):
        Ensemble([_network(0), other])


def test_the_checkpoint_orders_members_by_validation_and_loads_back(
    tmp_path: Path, maps: torch.Tensor
) -> None:
    states = [_run_state(0, 0.90), _run_state(1, 0.95), _run_state(2, 0.93)]
    sources = [Path(f"runs/s{i}/best.pt") for i in range(3)]
    state = ensemble_state(states, sources)
    members = state["ensemble"]["members"]
    assert [m["seed"] for m in members] == [1, 2, 0]  # best on validation first
    assert members[0]["source"] == "runs/s1/best.pt" and "history" not in state
    network, loaded = load_model(save_checkpoint(state, tmp_path / "ensemble.pt"))
    assert isinstance(network, Ensemble) and loaded["ensemble"] == state["ensemble"]
    direct = Ensemble([_network(1), _network(2), _network(0)]).eval()
    with torch.no_grad():
        torch.testing.assert_close(network(maps)[0], direct(maps)[0])
        torch.testing.assert_close(network(maps)[1], direct(maps)[1])


@pytest.mark.parametrize(
    ("setting", "value"), [("val_seed", 1), ("train_stretch", 0.4), ("dataset", "shrec11")]
)
def test_members_trained_on_other_data_are_refused(setting: str, value: object) -> None:
    """The fit measures the ensemble on the validation split: a member trained on another
    split (or other maps) would have seen some of it."""
    states = [_run_state(0, 0.9), _run_state(1, 0.9, **{setting: value})]
    with pytest.raises(ValueError, match=setting):
        ensemble_state(states, [Path("a.pt"), Path("b.pt")])


def test_a_fitted_ensemble_exports_with_parity_and_names_its_members(tmp_path: Path) -> None:
    """The fit takes the ensemble as it takes one network; the graph computes every member
    (the export's own check against PyTorch at batches 1 and 4 passes), and the metadata
    and the model card say which seeds it holds."""
    state = ensemble_state([_run_state(0, 0.9), _run_state(1, 0.95)], [Path("a"), Path("b")])
    ensemble = Ensemble([_network(1), _network(0)]).eval()
    ensemble.load_state_dict(state["weights"])
    data = synthetic_fit_data(ensemble, CLASSES, n_train=300, n_val=200, n_strangers=100)
    post_hoc = fit(ensemble, data, keep=0.9)
    assert post_hoc["novelty"]["threshold"] is not None
    state["weights"] = {k: v.clone() for k, v in ensemble.state_dict().items()}
    checkpoint = save_checkpoint({**state, "post_hoc": post_hoc}, tmp_path / "ensemble.pt")
    out = tmp_path / "model.onnx"
    assert export_onnx.main([str(checkpoint), "--out", str(out), "--check-batches", "1,4"]) == 0
    metadata = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert [m["seed"] for m in metadata["ensemble"]] == [1, 0]
    assert metadata["training_data"]["seed"] == [1, 0]
    assert metadata["model_config"]["descriptor_size"] == 64  # each member's
    assert metadata["accuracy"]["top1"] is None  # no member's history stands for the ensemble
    maps = np.random.default_rng(0).standard_normal((3, 6, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probabilities, descriptor, _ = session.run(list(export_onnx.OUTPUT_NAMES), {"maps": maps})
    with torch.no_grad():
        expected = TrustedModel(ensemble, post_hoc)(torch.from_numpy(maps))
    np.testing.assert_allclose(probabilities, expected[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(descriptor, expected[1].numpy(), atol=1e-5)
    assert descriptor.shape[1] > 2 * 64  # both members' features, then summaries, familiarity
    card = render_card(metadata)
    assert "An ensemble of 2 networks" in card and "seed 1 (epoch 4, validation 0.9500)" in card
    assert "Test accuracy: not in the metadata" in card and "accuracy None" not in card


def test_fine_tuning_from_an_ensemble_starts_from_its_first_member() -> None:
    """A folder dataset fine-tunes from the shipped checkpoint, an ensemble: the network is
    its member best on validation, with a new head for the new classes."""
    state = ensemble_state([_run_state(0, 0.9), _run_state(1, 0.95)], [Path("a"), Path("b")])
    model = SphericalCNN(finetune_config(state, n_classes=5, dropout=0.3))
    assert load_pretrained(model, state) > 0
    best = _network(1).state_dict()
    for name, value in model.state_dict().items():
        if name.startswith("classifier."):
            assert value.shape[0] == 5
        else:
            torch.testing.assert_close(value, best[name])


def test_a_comma_joined_calibration_group_is_one_ensemble_of_its_runs(tmp_path: Path) -> None:
    """``--calibrate-with A,B,C``: one validation split's runs taken as one ensemble."""
    paths = []
    for seed in (0, 1):
        path = tmp_path / f"s{seed}.pt"
        save_checkpoint(_run_state(seed, 0.9, val_seed=3), path)
        paths.append(str(path))
    group = read_group(",".join(paths))
    assert is_ensemble(group) and len(group["ensemble"]["members"]) == 2
    assert group["train_config"]["val_seed"] == 3
    assert not is_ensemble(read_group(paths[0]))
    with pytest.raises(ValueError, match="no checkpoint"):
        read_group(",")
