"""ONNX export: a plain graph, a dynamic batch axis, complete metadata, parity on real maps.

One small untrained network (``small`` preset, 30 SHREC'11 classes, batch-norm statistics
randomized so that the folding of every layer matters) is exported once per session through
the CLI; ``tests/test_runtime.py`` reuses it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import raymap
from export import onnx as export_onnx
from export import parity
from model.checkpoint import model_artifact, read_checkpoint, save_checkpoint
from model.data import load_maps
from model.net import SphericalCNN, preset_config
from model.train import TrainConfig
from model.trust import identity_post_hoc
from raymap.contract import REQUIRED_KEYS, ModelContract

BANDWIDTH = 16
# The SHREC'11 test split that ``model.train`` evaluates on (its seed, 0 by default).
TEST_SEED = 0


@dataclass(frozen=True)
class Exported:
    checkpoint: Path
    path: Path
    model: onnx.ModelProto
    network: SphericalCNN
    maps: np.ndarray  # (N, 6, 32, 32) SHREC'11 test maps
    labels: np.ndarray  # (N,)
    class_names: list[str]


def _randomize_batch_norm(network: SphericalCNN, generator: torch.Generator) -> None:
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.3 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
            module.bias.data.copy_(0.2 * torch.randn(n, generator=generator))


_EXPORTED: dict[Path, Exported] = {}


def export_once(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The shared export, built once per session however many modules use the fixture."""
    base = tmp_path_factory.getbasetemp()
    if base not in _EXPORTED:
        _EXPORTED[base] = _export(tmp_path_factory.mktemp("export"))
    return _EXPORTED[base]


def _export(folder: Path) -> Exported:
    data = load_maps("shrec11", "test", BANDWIDTH, "so3", seed=TEST_SEED, progress=False)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    network = SphericalCNN(preset_config("small", n_classes=len(data.class_names)))
    with torch.no_grad():
        _randomize_batch_norm(network, generator)
    network.eval()
    config = TrainConfig(dataset="shrec11", architecture="small", bandwidth=BANDWIDTH)
    state = {
        **model_artifact(network, data.class_names, config),
        "history": [{"epoch": 1, "test_acc": 0.25}],
    }
    checkpoint = save_checkpoint(state, folder / "checkpoint.pt")
    path = folder / "model.onnx"
    code = export_onnx.main(
        [str(checkpoint), "--out", str(path), "--name", "test-net", "--check-batches", "1,7"]
    )
    assert code == 0
    return Exported(
        checkpoint=checkpoint,
        path=path,
        model=onnx.load(path),
        network=network,
        maps=data.maps.numpy(),
        labels=data.labels.numpy(),
        class_names=list(data.class_names),
    )


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return export_once(tmp_path_factory)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """PyTorch eager on one thread: much faster than two on a busy two-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def metadata_of(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def test_the_model_file_is_readable_by_other_users(exported: Exported) -> None:
    """The image's service runs as a non-root user: a private (0600) model would not load."""
    assert exported.path.stat().st_mode & 0o777 == 0o644


def test_graph_holds_only_standard_ops(exported: Exported) -> None:
    assert export_onnx.check_graph(exported.model) == []
    ops = export_onnx.op_counts(exported.model)
    assert ops.get("MatMul", 0) >= 5 * 11  # five products per spectral layer, 11 layers
    assert not set(ops) & {"DFT", "STFT", "Loop", "Scan", "If"}


def test_a_prelu_network_exports_with_parity(exported: Exported, tmp_path: Path) -> None:
    """``--activation=prelu`` (the paper's): a standard PRelu node, and the export's own
    parity check against PyTorch passes."""
    torch.manual_seed(1)
    network = SphericalCNN(
        preset_config("small", n_classes=len(exported.class_names), activation="prelu")
    )
    with torch.no_grad():
        _randomize_batch_norm(network, torch.Generator().manual_seed(1))
        for module in network.modules():
            if isinstance(module, torch.nn.PReLU):
                module.weight.uniform_(-0.5, 0.5)
    network.eval()
    config = TrainConfig(
        dataset="shrec11", architecture="small", bandwidth=BANDWIDTH, activation="prelu"
    )
    checkpoint = save_checkpoint(
        {**model_artifact(network, exported.class_names, config), "history": []},
        tmp_path / "checkpoint.pt",
    )
    path = tmp_path / "model.onnx"
    code = export_onnx.main([str(checkpoint), "--out", str(path), "--check-batches", "1,7"])
    assert code == 0
    model = onnx.load(path)
    assert export_onnx.check_graph(model) == []
    assert export_onnx.op_counts(model).get("PRelu", 0) == 11  # one per spherical block


def test_filters_are_folded_into_constants(exported: Exported) -> None:
    """No node computes from constants alone: the degree weights are not recomputed per call."""
    assert export_onnx.constant_nodes(exported.model) == []


def test_check_graph_catches_what_is_not_plain() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("DFT", ["x"], ["f"], name="fft"),
        helper.make_node("Gelu", ["f"], ["g"], name="custom", domain="com.microsoft"),
        helper.make_node("Erf", ["g"], ["y"], name="erf"),
    ]
    graph = helper.make_graph(nodes, "bad", [x], [y])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
    )
    problems = "\n".join(export_onnx.check_graph(model))
    assert "domain 'com.microsoft'" in problems
    assert "forbidden op DFT" in problems
    assert "op Erf is not in the allow-list" in problems
    assert "com.microsoft::Gelu" in problems


def test_batch_axis_is_dynamic(exported: Exported) -> None:
    graph = exported.model.graph
    (maps,) = graph.input
    dims = maps.type.tensor_type.shape.dim
    assert maps.name == export_onnx.INPUT_NAME
    assert dims[0].dim_param and not dims[0].dim_value
    assert [d.dim_value for d in dims[1:]] == [6, 2 * BANDWIDTH, 2 * BANDWIDTH]
    outputs = {o.name: o.type.tensor_type.shape.dim for o in graph.output}
    assert set(outputs) == set(export_onnx.OUTPUT_NAMES)
    assert outputs["probabilities"][0].dim_param == dims[0].dim_param
    assert outputs["probabilities"][1].dim_value == len(exported.class_names)
    assert outputs["descriptor"][1].dim_value == exported.network.config.descriptor_size


def test_metadata_carries_what_the_service_needs(exported: Exported) -> None:
    metadata = metadata_of(exported.model)
    assert set(REQUIRED_KEYS) <= set(metadata)
    contract = ModelContract.from_metadata(metadata)  # what the runtime reads back
    assert contract.output_names == export_onnx.OUTPUT_NAMES
    assert contract.input_name == export_onnx.INPUT_NAME
    values = {key: json.loads(value) for key, value in metadata.items()}  # all JSON
    assert values["class_names"] == exported.class_names
    assert values["bandwidth"] == BANDWIDTH
    assert values["grid"] == {"bandwidth": BANDWIDTH, "name": raymap.grid.GRID_NAME}
    assert values["feature_names"] == list(raymap.FEATURE_NAMES)
    assert values["features_version"] == raymap.FEATURES_VERSION
    assert values["descriptor_size"] == exported.network.config.descriptor_size
    assert values["model_name"] == "test-net"
    assert values["model_version"] == "1"
    assert values["training_data"]["dataset"] == "shrec11"
    assert values["protocol"]["name"] == "so3/so3"
    assert values["accuracy"]["top1"] == 0.25
    assert "epoch 1" in values["accuracy"]["source"]
    assert values["source_commit"] == "unknown" or re.fullmatch(
        r"[0-9a-f]{40}", values["source_commit"]
    )
    exported_at = datetime.datetime.fromisoformat(values["exported_at"])
    assert exported_at.tzinfo is not None
    assert abs(datetime.datetime.now(datetime.UTC) - exported_at).total_seconds() < 3600


# (batch size, maps): every test map at 32 per call, fewer at the slow small batches.
@pytest.mark.parametrize(("batch", "n_maps"), [(1, 24), (7, 63), (32, 120)])
def test_parity_on_real_maps(exported: Exported, batch: int, n_maps: int) -> None:
    """Traced at batch 2, run at 1, 7 and 32 on SHREC'11 test maps, against PyTorch."""
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])

    def run(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        names = ["probabilities", "descriptor"]
        probabilities, descriptor = session.run(names, {export_onnx.INPUT_NAME: maps})
        return probabilities, descriptor

    with one_torch_thread():
        result = parity.measure(exported.network, run, exported.maps[:n_maps], batch)
    assert result.samples == n_maps <= len(exported.maps)
    assert result.passed, (
        f"batch {batch}: max |dprob| {result.max_probability_error:.2e}, "
        f"{result.top1_disagreements} top-1 differences, "
        f"min cosine {result.min_descriptor_cosine:.8f}"
    )
    assert result.max_descriptor_norm_error < 1e-5
    if n_maps == len(exported.maps):
        # A network that gave one class for every map would make top-1 agreement vacuous.
        assert len(np.unique(result.torch_top1)) > 1


def test_graph_optimizations_do_not_change_results(exported: Exported) -> None:
    maps = exported.maps[:8]
    outputs = []
    for level in (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    ):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(
            str(exported.path), options, providers=["CPUExecutionProvider"]
        )
        outputs.append(session.run(None, {export_onnx.INPUT_NAME: maps}))
    for plain, optimized in zip(*outputs, strict=True):
        np.testing.assert_allclose(optimized, plain, atol=1e-6)


def test_parity_cli_passes(exported: Exported, capsys: pytest.CaptureFixture[str]) -> None:
    code = parity.main(
        [
            str(exported.checkpoint),
            str(exported.path),
            "--batches=7",
            "--limit=21",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| 7 | 21 |" in out and "PASS" in out


def test_accuracy_metadata_sources(tmp_path: Path) -> None:
    state = {"train_config": {"dataset": "modelnet10", "test_rotation": "so3"}}
    assert export_onnx.read_accuracy("0.9", state)["top1"] == 0.9
    assert export_onnx.read_accuracy(None, state)["top1"] is None
    report = tmp_path / "eval.json"
    report.write_text(json.dumps({"top1": 0.88, "map": 0.7}))
    assert export_onnx.read_accuracy(str(report), state)["map"] == 0.7
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 88"):
        export_onnx.read_accuracy("88", state)
    with pytest.raises(ValueError, match="'high'"):
        export_onnx.read_accuracy("high", state)


def test_an_export_of_the_same_descriptors_keeps_the_older_models_space(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new version that computes the older model's descriptors (here the same network with
    a temperature: only its probabilities change) declares that model's descriptor space, so
    galleries and stores made with the older model stay valid for it; a network that computes
    other descriptors is refused."""
    state = read_checkpoint(exported.checkpoint)
    post_hoc = identity_post_hoc(exported.network.config.descriptor_size)
    recalibrated = save_checkpoint(
        {**state, "post_hoc": {**post_hoc, "temperature": 0.5}}, tmp_path / "recalibrated.pt"
    )
    out = tmp_path / "v2.onnx"
    common = ["--name", "test-net", "--version", "2", "--check-batches", "1"]
    older = ["--descriptor-space-of", str(exported.path)]
    assert export_onnx.main([str(recalibrated), "--out", str(out), *common, *older]) == 0
    contract = ModelContract.from_metadata(metadata_of(onnx.load(out)))
    assert (contract.version, contract.space) == ("2", "test-net 1")
    assert ModelContract.from_metadata(metadata_of(exported.model)).space == "test-net 1"

    torch.manual_seed(1)
    other = SphericalCNN(preset_config("small", n_classes=len(exported.class_names))).eval()
    config = TrainConfig(dataset="shrec11", architecture="small", bandwidth=BANDWIDTH)
    retrained = save_checkpoint(
        model_artifact(other, exported.class_names, config), tmp_path / "retrained.pt"
    )
    capsys.readouterr()
    assert export_onnx.main([str(retrained), "--out", str(tmp_path / "v3.onnx"), *common, *older])
    assert "not the same descriptors" in capsys.readouterr().err
    assert not (tmp_path / "v3.onnx").exists()
