"""Post-hoc trust: temperature, metrics, the fit's choices and their export into the graph."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import onnx as export_onnx
from model.checkpoint import model_artifact, save_checkpoint
from model.metrics import auroc, expected_calibration_error, pair_auroc
from model.net import SphericalCNN, preset_config
from model.train import TrainConfig
from model.trust import (
    KEEP,
    CalibrationSet,
    FitData,
    TrustedModel,
    bootstrap_temperatures,
    confidence_matching_temperature,
    fit,
    fit_temperature,
    least_like_training,
    pooled_temperature,
    run_fit,
    shrec_halves,
)
from tests.trust_testing import synthetic_fit_data


def test_temperature_recovers_the_scale_of_overconfident_logits() -> None:
    generator = torch.Generator().manual_seed(0)
    true_logits = 2.0 * torch.randn(4000, 5, generator=generator)
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=generator)[:, 0]
    assert fit_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.08)
    assert fit_temperature(0.5 * true_logits, labels) == pytest.approx(0.5, rel=0.08)


def test_confidence_matching_temperature_makes_the_mean_confidence_the_accuracy() -> None:
    generator = torch.Generator().manual_seed(0)
    true_logits = 2.0 * torch.randn(4000, 5, generator=generator)
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=generator)[:, 0]
    accuracy = float((true_logits.argmax(1) == labels).double().mean())
    for scale in (3.0, 0.5):
        temperature = confidence_matching_temperature(scale * true_logits, labels)
        assert temperature == pytest.approx(scale, rel=0.08)
        top = torch.softmax(scale * true_logits / temperature, 1).amax(1).mean()
        assert float(top) == pytest.approx(accuracy, abs=1e-6)


def calibration_set(
    seed: int, meshes: int, copies: int, scale: float, classes: int = 5
) -> CalibrationSet:
    """``meshes`` shapes with logits ``scale`` times their true ones, each in ``copies`` identical
    rows (rotated copies the network answers alike), every row used."""
    generator = torch.Generator().manual_seed(seed)
    true_logits = 2.0 * torch.randn(meshes, classes, generator=generator)
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=generator)[:, 0]
    return CalibrationSet(
        (scale * true_logits).repeat_interleave(copies, 0),
        labels.numpy().repeat(copies),
        [f"mesh{seed}_{i}" for i in range(meshes) for _ in range(copies)],
        np.ones(meshes * copies, dtype=bool),
    )


def test_pooled_temperature_fits_the_used_maps_of_every_set() -> None:
    first, second = calibration_set(0, 300, 1, 3.0), calibration_set(1, 300, 1, 0.5)
    # Rows not used (the half most like training) must not count: make them absurd.
    unused = dataclasses.replace(
        first,
        logits=torch.cat([first.logits, 100.0 * torch.ones(50, 5)]),
        labels=np.concatenate([first.labels, np.zeros(50, dtype=first.labels.dtype)]),
        meshes=[*first.meshes, *(f"near{i}" for i in range(50))],
        used=np.concatenate([first.used, np.zeros(50, dtype=bool)]),
    )
    both = confidence_matching_temperature(
        torch.cat([first.logits, second.logits]),
        torch.as_tensor(np.concatenate([first.labels, second.labels])),
    )
    assert pooled_temperature([unused, second]) == pytest.approx(both, rel=1e-9)
    assert pooled_temperature([unused]) == pytest.approx(
        confidence_matching_temperature(first.logits, torch.as_tensor(first.labels)), rel=1e-9
    )


def test_bootstrap_draws_meshes_with_all_their_copies() -> None:
    """Ten identical copies of 200 meshes are 200 shapes, not 2,000: drawn by mesh, the fitted T
    spreads about as for 200 shapes, about sqrt(10) times as much as for 2,000."""
    copies = np.std(bootstrap_temperatures([calibration_set(0, 200, 10, 1.0)], 100))
    shapes = np.std(bootstrap_temperatures([calibration_set(0, 2000, 1, 1.0)], 100))
    assert copies > 2.0 * shapes


def test_pooling_splits_narrows_the_temperature() -> None:
    one = bootstrap_temperatures([calibration_set(0, 300, 1, 1.0)], 100)
    three = bootstrap_temperatures([calibration_set(s, 300, 1, 1.0) for s in range(3)], 100)
    assert np.std(three) < 0.75 * np.std(one)
    assert bootstrap_temperatures([calibration_set(0, 300, 1, 1.0)], 100) == pytest.approx(one)


def test_ece_and_auroc_on_known_cases() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20000)
    labels = (rng.uniform(size=20000) < confidence).astype(int)  # calibrated by construction
    probabilities = np.stack([1 - confidence, confidence], axis=1)
    assert expected_calibration_error(probabilities, 1 - labels) > 0.5
    assert expected_calibration_error(probabilities, labels) < 0.01
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5
    assert auroc(rng.normal(size=3000), rng.normal(size=3000)) == pytest.approx(0.5, abs=0.03)
    clusters = np.repeat(np.eye(3), 4, axis=0) + 0.01 * rng.normal(size=(12, 3))
    clusters /= np.linalg.norm(clusters, axis=1, keepdims=True)
    assert pair_auroc(clusters, np.repeat(np.arange(3), 4)) == 1.0


def test_shrec_halves_are_disjoint_and_fixed() -> None:
    names = [f"class{i:02d}" for i in range(30)]
    choosing, reporting = shrec_halves(names)
    assert len(choosing) == len(reporting) == 15 and not set(choosing) & set(reporting)
    assert (choosing, reporting) == shrec_halves(list(reversed(names)))


def test_least_like_training_picks_the_shapes_without_a_near_copy() -> None:
    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(50, 16, generator=generator, dtype=torch.float64)
    near = bank[:30] + 0.01 * torch.randn(30, 16, generator=generator, dtype=torch.float64)
    new = torch.randn(30, 16, generator=generator, dtype=torch.float64)
    far = least_like_training(torch.cat([near, new]), bank)
    assert far.sum() == 30 and far[30:].all() and not far[:30].any()
    assert least_like_training(torch.cat([near, new]), bank, share=0.25).sum() == 15


@pytest.fixture(scope="module")
def fitted() -> tuple[SphericalCNN, dict[str, object], FitData]:
    """Synthetic features: three classes around their own centres; strangers in between."""
    torch.manual_seed(0)
    network = SphericalCNN(preset_config("small", n_classes=3)).eval()
    data = synthetic_fit_data(network, ["a", "b", "c"], n_train=600, n_val=400, n_strangers=200)
    post_hoc = fit(network, data, keep=0.9)
    return network, post_hoc, data


def test_fit_threshold_keeps_the_asked_share_and_flags_strangers(
    fitted: tuple[SphericalCNN, dict[str, object], FitData],
) -> None:
    network, post_hoc, data = fitted
    model = TrustedModel(copy.deepcopy(network), post_hoc).double()  # the fixture stays float
    with torch.no_grad():
        _, _, inside = model.head(data.val.features, data.val.summaries)
        _, _, outside = model.head(data.ood.features, data.ood.summaries)
    threshold = post_hoc["novelty"]["threshold"]  # type: ignore[index]
    assert float((inside <= threshold).double().mean()) == pytest.approx(0.9, abs=0.01)
    assert float((outside > threshold).double().mean()) > 0.9
    report = post_hoc["report"]  # type: ignore[index]
    chosen = report["novelty"]["chosen"]
    assert report["novelty"]["candidates"][chosen]["auroc"] == max(
        row["auroc"] for row in report["novelty"]["candidates"].values()
    )


def test_the_temperature_is_fitted_on_the_validation_half_least_like_training(
    fitted: tuple[SphericalCNN, dict[str, object], FitData],
) -> None:
    """Shapes with a near copy in training are right more often than new ones: the
    temperature follows the new ones (here: a tenth of their labels are wrong)."""
    network, _, data = fitted
    far = least_like_training(data.val.features, data.bank.features)
    labels = data.val_labels.clone()
    flipped = np.flatnonzero(far)[::10]
    labels[flipped] = (labels[flipped] + 1) % 3
    post_hoc = fit(network, dataclasses.replace(data, val_labels=labels), keep=0.9)
    with torch.no_grad():
        logits = copy.deepcopy(network).double().classifier(data.val.features)
    temperature = post_hoc["temperature"]
    assert temperature == pytest.approx(
        confidence_matching_temperature(logits[far], labels[far]), rel=1e-6
    )
    assert temperature > 1.1 * confidence_matching_temperature(logits, labels)


def test_the_temperature_pools_other_validation_splits(
    fitted: tuple[SphericalCNN, dict[str, object], FitData],
) -> None:
    """Cross-fitting: another split's shapes (here over-confident ones, T about 3) join the
    fit, and the fit records its own split's T beside the pooled one."""
    network, alone, data = fitted
    with torch.no_grad():
        logits = copy.deepcopy(network).double().classifier(data.val.features)
    far = least_like_training(data.val.features, data.bank.features)
    labels = data.val_labels.numpy()
    other = calibration_set(7, 400, 1, 3.0, classes=3)
    pooled = fit(network, data, keep=0.9, calibrate_also=[other])
    expected = pooled_temperature([CalibrationSet(logits, labels, data.val_meshes, far), other])
    assert pooled["temperature"] == pytest.approx(expected, rel=1e-9)
    assert pooled["temperature"] > alone["temperature"]  # type: ignore[operator]
    record = pooled["report"]["temperature"]
    assert record["splits"] == 2
    assert record["own_split_T"] == pytest.approx(alone["temperature"], rel=1e-9)


def test_calibrating_with_the_same_validation_split_is_refused(tmp_path: Path) -> None:
    same = {"train_config": {"val_seed": 3}}
    with pytest.raises(SystemExit, match="val_seed 3"):
        run_fit(same, "a checkpoint", tmp_path / "out.pt", KEEP, False, [same])
    assert not (tmp_path / "out.pt").exists()


def test_fit_chooses_block_summaries_by_retrieval_among_strangers(
    fitted: tuple[SphericalCNN, dict[str, object], FitData],
) -> None:
    """Among the candidates that keep validation ranking, the one that retrieves the
    strangers' own classes best; it is what the descriptor carries."""
    _, post_hoc, _ = fitted
    section = post_hoc["report"]["summaries"]  # type: ignore[index]
    rows, plain = section["candidates"], section["candidates"]["none"]
    kept = [
        name
        for name, row in rows.items()
        if row["val_mAP"] >= plain["val_mAP"] - 0.01
        and row["val_pair_auroc"] >= plain["val_pair_auroc"] - 0.001
    ]
    assert len(rows) == 13 and section["chosen"] in kept
    assert rows[section["chosen"]]["ood_mAP"] == max(rows[name]["ood_mAP"] for name in kept)
    summaries = post_hoc["descriptor"]["summaries"]  # type: ignore[index]
    if section["chosen"] != "none":
        assert summaries["size"] == 8 * len(summaries["blocks"])  # 8 numbers per fixture block


def test_export_bakes_the_fit_into_the_graph(
    fitted: tuple[SphericalCNN, dict[str, object], FitData], tmp_path: Path
) -> None:
    network, post_hoc, _ = fitted
    rng = np.random.default_rng(0)
    d = network.config.descriptor_size
    every = {
        **post_hoc,
        "temperature": 2.5,
        "descriptor": {
            **post_hoc["descriptor"],  # type: ignore[dict-item]
            # summaries: 32 numbers in branch0.0, 128 in joint.0
            "summaries": {"blocks": ["branch0.0", "joint.0"], "weight": 0.3, "size": 160},
            "familiarity": {"weight": 0.4, "centre": 0.3, "scale": 2.0},
        },
        "novelty": {
            **post_hoc["novelty"],  # type: ignore[dict-item]
            "components": [
                "msp",
                "max_logit",
                "energy",
                "mahalanobis",
                "knn",
                "knn:branch1.2",
                "knn:joint.0",
            ],
            "loc": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
            "scale": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
            "projection": rng.normal(size=(d, d)),
            "class_means": rng.normal(size=(3, d)),
            "bank": rng.normal(size=(20, d)),
            # a block's summary: mean and RMS of its channels (32 in branch1.2, 64 in joint.0)
            "layer_banks": {
                "branch1.2": rng.normal(size=(20, 64)),
                "joint.0": rng.normal(size=(30, 128)),
            },
        },
    }
    config = TrainConfig(architecture="small", bandwidth=16)
    checkpoint = tmp_path / "checkpoint.pt"
    save_checkpoint(
        {**model_artifact(network, ["a", "b", "c"], config), "post_hoc": every}, checkpoint
    )
    out = tmp_path / "model.onnx"
    assert export_onnx.main([str(checkpoint), "--out", str(out), "--check-batches", "1,5"]) == 0
    model = onnx.load(str(out))
    metadata = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert metadata["trust"]["temperature"] == 2.5
    assert metadata["novelty_threshold"] == post_hoc["novelty"]["threshold"]  # type: ignore[index]
    assert metadata["descriptor_size"] == d + 160 + 1  # block summaries, familiarity
    maps = rng.standard_normal((4, 6, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probabilities, descriptor, novelty = session.run(list(export_onnx.OUTPUT_NAMES), {"maps": maps})
    # A float32 copy: the module-scoped fixture network is shared by the tests of this file.
    reference = copy.deepcopy(network).float().eval()
    with torch.no_grad():
        expected = TrustedModel(reference, every)(torch.from_numpy(maps))
    np.testing.assert_allclose(probabilities, expected[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(descriptor, expected[1].numpy(), atol=1e-5)
    assert descriptor.shape == (4, d + 161)
    np.testing.assert_allclose(np.linalg.norm(descriptor, axis=1), 1.0, atol=1e-5)
    assert novelty.shape == (4, 1)
    np.testing.assert_allclose(novelty[:, 0], expected[2].numpy(), rtol=1e-4)
    # The temperature is in the graph: not the plain softmax of the network.
    with torch.no_grad():
        plain = torch.softmax(reference(torch.from_numpy(maps))[0], 1).numpy()
    assert np.abs(probabilities - plain).max() > 1e-3


def test_familiarity_coordinate_lowers_a_strangers_matches(
    fitted: tuple[SphericalCNN, dict[str, object], FitData],
) -> None:
    network, post_hoc, _ = fitted
    w = 0.4
    familiarity = {"weight": w, "centre": 0.0, "scale": 1e-3}
    sharp = {**post_hoc["descriptor"], "summaries": None, "familiarity": familiarity}  # type: ignore[dict-item]
    model = TrustedModel(copy.deepcopy(network), {**post_hoc, "descriptor": sharp}).double()
    assert model.descriptor_size == network.config.descriptor_size + 1
    rng = np.random.default_rng(0)
    a, b = (torch.from_numpy(v / np.linalg.norm(v)) for v in rng.normal(size=(2, 64)))
    cosine = float(a @ b)
    familiar, stranger = torch.tensor([-1.0]), torch.tensor([1.0])  # novelty below/above 0
    a_known = model.with_familiarity(a[None], familiar)[0]
    b_known = model.with_familiarity(b[None], familiar)[0]
    a_stranger = model.with_familiarity(a[None], stranger)[0]
    for vector in (a_known, a_stranger):
        assert float(vector.norm()) == pytest.approx(1.0)
    assert float(a_known @ b_known) == pytest.approx((1 - w * w) * cosine + w * w)
    assert float(a_stranger @ b_known) == pytest.approx(np.sqrt(1 - w * w) * cosine)
    assert float(a_stranger @ a_known) < float(a_known @ a_known)  # even its own twin, if known


def test_block_summaries_join_the_retrieval_descriptor(
    fitted: tuple[SphericalCNN, dict[str, object], FitData],
) -> None:
    """Two shapes with the same descriptor but different early-block summaries are told apart:
    their cosine is the weighted mean of the descriptor's and each block's."""
    network, post_hoc, _ = fitted
    weight, blocks = 0.5, network.summary_names()[:2]
    summaries = {"blocks": blocks, "weight": weight, "size": 64}
    descriptor = {**post_hoc["descriptor"], "summaries": summaries, "familiarity": None}  # type: ignore[dict-item]
    model = TrustedModel(copy.deepcopy(network), {**post_hoc, "descriptor": descriptor}).double()
    assert model.needs_summaries and model.descriptor_size == network.config.descriptor_size + 64
    rng = np.random.default_rng(0)
    d = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(1, 64))), dim=1)
    own = [torch.from_numpy(rng.normal(size=(2, 32))) for _ in network.summary_names()]
    first, second = model.with_summaries(d.expand(2, 64), own)
    unit = [torch.nn.functional.normalize(s, dim=1) for s in own[:2]]
    cosines = [float(u[0] @ u[1]) for u in unit]
    assert float(first.norm()) == pytest.approx(1.0)
    assert float(first @ second) == pytest.approx((1 + weight * sum(cosines)) / (1 + 2 * weight))
    assert float(first @ second) < 1 - 1e-3
    none = {**descriptor, "summaries": None}
    plain = TrustedModel(copy.deepcopy(network), {**post_hoc, "descriptor": none}).double()
    assert torch.equal(plain.with_summaries(d, own), d)


def test_the_layers_score_reads_every_block_summary(
    fitted: tuple[SphericalCNN, dict[str, object], FitData],
) -> None:
    """``layers``: the descriptor's knn plus each block's, standardized on validation."""
    network, post_hoc, data = fitted
    report = post_hoc["report"]  # type: ignore[index]
    assert "layers" in report["novelty"]["candidates"]
    blocks = network.summary_names()
    names = ["knn", *(f"knn:{block}" for block in blocks)]
    novelty = {
        **post_hoc["novelty"],  # type: ignore[dict-item]
        "components": names,
        "loc": [0.0] * len(names),
        "scale": [1.0] * len(names),
        "bank": torch.nn.functional.normalize(data.bank.features, dim=1).numpy(),
        "layer_banks": {
            block: torch.nn.functional.normalize(s, dim=1).numpy()
            for block, s in zip(blocks, data.bank.summaries, strict=True)
        },
    }
    plain = {**post_hoc["descriptor"], "familiarity": None}  # type: ignore[dict-item]
    model = TrustedModel(
        copy.deepcopy(network), {**post_hoc, "novelty": novelty, "descriptor": plain}
    )
    model = model.double()
    with torch.no_grad():
        _, _, on_bank = model.head(data.bank.features, data.bank.summaries)
        _, _, on_val = model.head(data.val.features, data.val.summaries)
    np.testing.assert_allclose(on_bank.numpy(), 0.0, atol=1e-5)  # each is its own neighbour
    expected = sum(
        1.0 - (torch.nn.functional.normalize(s, dim=1) @ torch.from_numpy(bank).T).amax(1)
        for s, bank in zip(data.val.summaries, novelty["layer_banks"].values(), strict=True)
    )
    expected = (
        expected
        + 1.0
        - (
            torch.nn.functional.normalize(data.val.features, dim=1)
            @ torch.from_numpy(novelty["bank"]).T
        ).amax(1)
    )
    np.testing.assert_allclose(on_val.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
