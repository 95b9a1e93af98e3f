"""The onnxruntime runtime: no torch, metadata checks, providers, threads, mesh in -> result out.

Uses the model exported once per session by ``tests/test_export.py``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import raymap
from export.onnx import ProbabilityModel
from raymap.contract import REQUIRED_KEYS
from service import runtime
from service.runtime import ModelError, Runtime
from tests.test_export import BANDWIDTH, Exported, export_once, one_torch_thread

REPO = Path(__file__).resolve().parent.parent
CHAIR = Path(__file__).parent / "fixtures" / "meshes" / "chair_0890.off"


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return export_once(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(exported: Exported) -> Runtime:
    return Runtime(exported.path, device="cpu", intra_op_threads=1)


def test_importing_the_runtime_never_imports_torch() -> None:
    code = (
        "import sys, service.runtime; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'model')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_info_comes_from_the_metadata(loaded: Runtime, exported: Exported) -> None:
    info = loaded.info
    assert info.name == "test-net" and info.version == "1"
    assert info.class_names == tuple(exported.class_names)
    assert info.bandwidth == BANDWIDTH
    assert info.grid == raymap.grid.GRID_NAME
    assert info.feature_names == raymap.FEATURE_NAMES
    assert info.features_version == raymap.FEATURES_VERSION
    assert info.descriptor_size == exported.network.config.descriptor_size
    assert info.input_name == "maps"
    assert info.input_shape == (6, 2 * BANDWIDTH, 2 * BANDWIDTH)
    assert json.loads(loaded.metadata["bandwidth"]) == BANDWIDTH


def test_run_matches_pytorch(loaded: Runtime, exported: Exported) -> None:
    maps = exported.maps[:5]
    probabilities, descriptor, _ = loaded.run(maps.astype(np.float64))  # cast to float32 inside
    with torch.no_grad(), one_torch_thread():
        expected = ProbabilityModel(exported.network)(torch.from_numpy(maps))
    assert probabilities.dtype == descriptor.dtype == np.float32
    assert probabilities.shape == (5, len(exported.class_names))
    np.testing.assert_allclose(probabilities, expected[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(descriptor, expected[1].numpy(), atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(descriptor, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "shape", [(6, 32, 32), (0, 6, 32, 32), (2, 5, 32, 32), (2, 6, 64, 64), (2, 6, 32, 31)]
)
def test_run_refuses_wrong_shapes(loaded: Runtime, shape: tuple[int, ...]) -> None:
    with pytest.raises(
        ValueError, match=r"N >= 1, 6, 32, 32\), got \(" + ", ".join(map(str, shape))
    ):
        loaded.run(np.zeros(shape, dtype=np.float32))


def _rewrite_metadata(source: Path, target: Path, **changes: str | None) -> Path:
    model = onnx.load(source)
    metadata = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, target)
    return target


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_refuses_a_model_without_a_metadata_key(
    exported: Exported,
    tmp_path: Path,
    key: str,
) -> None:
    path = _rewrite_metadata(exported.path, tmp_path / "m.onnx", **{key: None})
    with pytest.raises(ModelError, match=f"lacks \\['{key}'\\]"):
        Runtime(path, warmup=False)


def test_refuses_other_input_features(exported: Exported, tmp_path: Path) -> None:
    path = _rewrite_metadata(exported.path, tmp_path / "m.onnx", features_version='"0"')
    with pytest.raises(ModelError, match=r"features version '0'.*version '1'"):
        Runtime(path, warmup=False)
    names = json.dumps(["mesh_distance", *raymap.FEATURE_NAMES[1:][::-1]])
    path = _rewrite_metadata(exported.path, tmp_path / "n.onnx", feature_names=names)
    with pytest.raises(ModelError, match="expects features"):
        Runtime(path, warmup=False)


def test_refuses_metadata_that_disagrees_with_the_graph(
    exported: Exported,
    tmp_path: Path,
) -> None:
    path = _rewrite_metadata(exported.path, tmp_path / "m.onnx", class_names='["a", "b"]')
    with pytest.raises(ModelError, match="'probabilities' of size 2"):
        Runtime(path, warmup=False)
    grid = json.dumps({"bandwidth": BANDWIDTH, "name": "healpix"})
    path = _rewrite_metadata(exported.path, tmp_path / "g.onnx", grid=grid)
    with pytest.raises(ModelError, match="healpix"):
        Runtime(path, warmup=False)


def test_provider_really_in_use_is_logged(
    exported: Exported,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="service.runtime"):
        loaded = Runtime(exported.path, device="auto", intra_op_threads=1)
    expected = (
        "CUDAExecutionProvider"
        if "CUDAExecutionProvider" in ort.get_available_providers()
        else "CPUExecutionProvider"
    )
    assert loaded.provider == loaded.session.get_providers()[0]
    if expected == "CPUExecutionProvider":
        assert loaded.provider == expected
    assert f"on {loaded.provider}" in caplog.text
    assert loaded.warmup_ms is not None and loaded.warmup_ms > 0
    assert Runtime(exported.path, device="cpu", warmup=False).provider == "CPUExecutionProvider"


def test_cuda_on_a_cpu_build_is_an_error(exported: Exported) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        Runtime(exported.path, device="cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        Runtime(exported.path, device="gpu")


def test_cuda_libraries_beside_onnxruntime_gpu_are_loaded_before_a_cuda_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pip's onnxruntime-gpu[cuda,cudnn] puts CUDA in nvidia/* wheels, off the loader's path:
    without preload_dlls the CUDA provider cannot load them and the service runs on the CPU.
    (bench/gpu.py checks the real thing on a GPU; here, that the service asks for it.)"""
    loads: list[str] = []
    monkeypatch.setattr(ort, "preload_dlls", lambda: loads.append("cuda"), raising=False)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    assert runtime.choose_providers("cpu") == [runtime.CPU]
    assert loads == []
    assert runtime.choose_providers("auto") == [runtime.CUDA, runtime.CPU]
    assert runtime.choose_providers("cuda") == [runtime.CUDA, runtime.CPU]
    assert loads == ["cuda", "cuda"]
    # ... and asks for full float32 products, as the CPU computes them (TF32 moved p by 3.5e-3).
    assert runtime.with_options([runtime.CUDA, runtime.CPU]) == [
        (runtime.CUDA, {"use_tf32": "0"}),
        runtime.CPU,
    ]


def test_default_threads_share_the_cores_between_workers() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert runtime.default_threads({}) == cores
    assert runtime.default_threads({"WEB_CONCURRENCY": "2"}) == max(1, cores // 2)
    assert runtime.default_threads({"WEB_CONCURRENCY": "1000"}) == 1
    with pytest.raises(ValueError, match="got '0'"):
        runtime.default_threads({"WEB_CONCURRENCY": "0"})


def test_mesh_in_prediction_out(loaded: Runtime) -> None:
    data = CHAIR.read_bytes()
    spherical_map, timings = loaded.mesh_to_map(data, "off", max_faces=100_000)
    expected = raymap.spherical_map(raymap.load_mesh(data, "off"), BANDWIDTH)
    np.testing.assert_array_equal(spherical_map, expected)
    assert {"parse", "normalize", "hull", "cast"} <= set(timings)

    upper, _ = loaded.mesh_to_map(data, "chair.OFF", max_faces=100_000)  # the suffix, any case
    np.testing.assert_array_equal(upper, expected)
    probabilities, descriptor, _ = loaded.run(np.stack([expected, expected]))  # (2, K), (2, D)
    assert probabilities.shape == (2, len(loaded.info.class_names))
    assert descriptor.shape == (2, loaded.info.descriptor_size)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(descriptor, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probabilities[0], probabilities[1], atol=1e-6)
    assert all(timings[stage] >= 0 for stage in timings)


def test_bad_meshes_raise_mesh_error(loaded: Runtime) -> None:
    with pytest.raises(raymap.MeshError, match="empty"):
        loaded.mesh_to_map(b"", "obj", max_faces=100)
    with pytest.raises(raymap.MeshError):
        loaded.mesh_to_map(CHAIR.read_bytes(), "off", max_faces=100)
