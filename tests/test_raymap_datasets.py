"""Dataset builders: the ModelNet layout, rotation protocols, the cache, resuming, SHREC'11."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import raymap
from raymap import datasets
from raymap.datasets import build_split, cache_key, sample_rotation
from tests.raymap_testing import MODELNET_MINI

BANDWIDTH = 8


def build(tmp_path: Path, **overrides: object) -> datasets.SplitArrays:
    settings: dict[str, object] = {
        "dataset": "modelnet10",
        "split": "train",
        "bandwidth": BANDWIDTH,
        "rotation": "none",
        "copies": 1,
        "seed": 0,
        "root": MODELNET_MINI,
        "cache_dir": tmp_path / "cache",
        "workers": 1,
        "progress": False,
    }
    settings.update(overrides)
    return build_split(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("split", ["train", "test"])
def test_modelnet_layout_gives_labels_names_and_maps(tmp_path: Path, split: str) -> None:
    out = build(tmp_path, split=split)
    assert out.class_names == ["chair", "monitor", "toilet"]
    np.testing.assert_array_equal(out.labels, [0, 0, 1, 1, 2, 2])
    assert out.labels.dtype == np.int64
    assert out.maps.shape == (6, 6, 2 * BANDWIDTH, 2 * BANDWIDTH)
    assert out.maps.dtype == np.float32
    expected_files = sorted(MODELNET_MINI.glob(f"*/{split}/*.off"))
    assert out.names == [p.stem for p in expected_files]
    assert out.skipped == {}
    for row, path in enumerate(expected_files):
        expected = raymap.spherical_map(raymap.load_mesh_file(path), BANDWIDTH)
        np.testing.assert_array_equal(out.maps[row], expected)


def test_rotated_copies_are_deterministic_and_distinct(tmp_path: Path) -> None:
    out = build(tmp_path / "a", rotation="so3", copies=2, seed=3)
    assert out.maps.shape[0] == 12
    assert out.names[:4] == ["chair_0047", "chair_0047", "chair_0667", "chair_0667"]
    np.testing.assert_array_equal(out.labels, np.repeat([0, 0, 1, 1, 2, 2], 2))
    assert np.abs(out.maps[0] - out.maps[1]).max() > 0.05  # two different rotations
    again = build(tmp_path / "b", rotation="so3", copies=2, seed=3)
    np.testing.assert_array_equal(out.maps, again.maps)
    other_seed = build(tmp_path / "c", rotation="so3", copies=2, seed=4)
    assert np.abs(out.maps - other_seed.maps).max() > 0.05


def test_rotation_protocols() -> None:
    assert sample_rotation("none", 0, 0, 0) is None
    z_rotations = np.stack([sample_rotation("z", 0, i, 0) for i in range(200)])  # (200, 3, 3)
    np.testing.assert_allclose(z_rotations[:, :, 2], [[0, 0, 1]] * 200, atol=1e-12)
    so3 = np.stack([sample_rotation("so3", 0, i, c) for i in range(2000) for c in range(2)])
    np.testing.assert_allclose(so3 @ so3.transpose(0, 2, 1), np.broadcast_to(np.eye(3), so3.shape),
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(np.linalg.det(so3), 1.0, atol=1e-12)
    # Uniform (Haar) on SO(3): E[R] = 0 and E[R_ij^2] = 1/3.
    assert np.abs(so3.mean(axis=0)).max() < 0.04
    np.testing.assert_allclose((so3**2).mean(axis=0), 1 / 3, atol=0.03)
    np.testing.assert_array_equal(sample_rotation("so3", 5, 7, 1), sample_rotation("so3", 5, 7, 1))
    with pytest.raises(ValueError, match="rotation must be one of"):
        sample_rotation("x", 0, 0, 0)


def test_cache_is_reused_and_keyed_by_every_setting(tmp_path, monkeypatch) -> None:
    first = build(tmp_path)
    monkeypatch.setattr(datasets, "_run_job", _fail)
    np.testing.assert_array_equal(build(tmp_path).maps, first.maps)  # no recomputation
    keys = {
        cache_key("modelnet10", "train", 32, "so3", 1, 0),
        cache_key("modelnet10", "test", 32, "so3", 1, 0),
        cache_key("modelnet10", "train", 16, "so3", 1, 0),
        cache_key("modelnet10", "train", 32, "z", 1, 0),
        cache_key("modelnet10", "train", 32, "so3", 2, 0),
        cache_key("modelnet10", "train", 32, "so3", 1, 1),
        cache_key("modelnet40", "train", 32, "so3", 1, 0),
    }
    assert len(keys) == 7
    assert f"-f{raymap.FEATURES_VERSION}-" in cache_key("modelnet10", "train", 32, "so3", 1, 0)


def _fail(job: object) -> int:
    raise AssertionError("the cache should have been used")


def test_interrupted_build_resumes(tmp_path, monkeypatch) -> None:
    reference = build(tmp_path / "reference", rotation="z", copies=2)
    monkeypatch.setattr(datasets, "CHUNK_SIZE", 2)
    real_run_job = datasets._run_job
    calls: list[int] = []

    def interrupted(job: datasets._Job) -> int:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(job.chunk)
        return real_run_job(job)

    monkeypatch.setattr(datasets, "_run_job", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "run", rotation="z", copies=2)
    partial = next((tmp_path / "run" / "cache" / "maps").glob("*.partial"))
    assert sorted(p.name for p in partial.glob("chunk-*.npz")) == [
        "chunk-00000.npz",
        "chunk-00001.npz",
    ]

    resumed: list[int] = []

    def counting(job: datasets._Job) -> int:
        resumed.append(job.chunk)
        return real_run_job(job)

    monkeypatch.setattr(datasets, "_run_job", counting)
    out = build(tmp_path / "run", rotation="z", copies=2)
    assert resumed == [2]  # only the chunk that was missing
    assert not partial.exists()
    np.testing.assert_array_equal(out.maps, reference.maps)
    assert out.names == reference.names


def test_parallel_build_equals_serial_build(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(datasets, "CHUNK_SIZE", 2)  # three chunks, so the pool is used
    serial = build(tmp_path / "serial", rotation="so3")
    parallel = build(tmp_path / "parallel", rotation="so3", workers=2)
    np.testing.assert_array_equal(parallel.maps, serial.maps)
    np.testing.assert_array_equal(parallel.labels, serial.labels)


def test_a_broken_mesh_is_skipped_with_its_reason(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(MODELNET_MINI, root)
    (root / "chair" / "train" / "chair_9999.off").write_bytes(b"OFF\n3 1 0\n0 0 0\n0 0 0\n")
    out = build(tmp_path, root=root)
    assert out.maps.shape[0] == 6
    assert list(out.skipped) == ["chair/train/chair_9999.off"]
    assert "chair_9999" not in out.names


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rotation must be one of"):
        build(tmp_path, rotation="y")
    with pytest.raises(ValueError, match="dataset must be one of"):
        build(tmp_path, dataset="modelnet20")
    with pytest.raises(ValueError, match="copies"):
        build(tmp_path, rotation="none", copies=2)
    with pytest.raises(ValueError, match="root"):
        build(tmp_path, dataset="modelnet40", root=None)


def test_shrec11_from_the_shared_archive(tmp_path: Path) -> None:
    archive = datasets.default_data_dir() / "shrec11" / "shrec11.tar.xz"
    if not archive.is_file():
        pytest.skip(f"no SHREC'11 archive at {archive}")
    out = build(tmp_path, dataset="shrec11", split="test", root=None, limit_per_class=1)
    assert len(out.class_names) == 30 and out.maps.shape[0] == 30
    np.testing.assert_array_equal(out.labels, np.arange(30))
    assert (tmp_path / "cache" / "raw" / "shrec11" / "alien" / "train").is_dir()
    assert not list((tmp_path / "cache" / "raw").glob(".extract-*"))  # no temporary left
