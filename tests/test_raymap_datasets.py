"""Dataset builders: the ModelNet layout, rotation protocols, the cache, resuming, SHREC'11."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

import raymap
from raymap import datasets
from raymap.datasets import BuildSettings, FolderSplit, build_split, sample_rotation
from raymap.datasets import build as build_module
from raymap.datasets.stretch import sample_stretch
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
    monkeypatch.setattr(build_module, "run_job", _fail)
    np.testing.assert_array_equal(build(tmp_path).maps, first.maps)  # no recomputation
    root = str(MODELNET_MINI)
    keys = {
        BuildSettings("modelnet10", "train", 32, "so3", 1, 0).key(),
        BuildSettings("modelnet10", "test", 32, "so3", 1, 0).key(),
        BuildSettings("modelnet10", "train", 16, "so3", 1, 0).key(),
        BuildSettings("modelnet10", "train", 32, "z", 1, 0).key(),
        BuildSettings("modelnet10", "train", 32, "so3", 2, 0).key(),
        BuildSettings("modelnet10", "train", 32, "so3", 1, 1).key(),
        BuildSettings("modelnet10", "train", 32, "so3", 1, 0, limit_per_class=3).key(),
        BuildSettings("modelnet10", "train", 32, "so3", 1, 0, root=root).key(),
        BuildSettings("modelnet40", "train", 32, "so3", 1, 0, root=root).key(),
        BuildSettings("folder", "train", 32, "so3", 1, 0, root=root).key(),
        BuildSettings(
            "folder", "train", 32, "so3", 1, 0, root=root, folder_split=FolderSplit(seed=1)
        ).key(),
        BuildSettings("modelnet10", "train", 32, "so3", 1, 0, stretch=0.25).key(),
    }
    assert len(keys) == 12


def test_keys_of_the_named_layouts_are_those_of_existing_caches() -> None:
    """Caches built before the settings object keep their folder names: no rebuild."""
    version = raymap.FEATURES_VERSION
    settings = BuildSettings("modelnet10", "train", 32, "so3", 5, 0)
    assert settings.key() == f"modelnet10-train-b32-f{version}-so3-c5-s0"
    limited = BuildSettings("shrec11", "test", 16, "none", 1, 2, limit_per_class=4)
    assert limited.key() == f"shrec11-test-b16-f{version}-none-c1-s2-limit4"


def test_stretch_factors_are_seeded_bounded_and_balanced() -> None:
    np.testing.assert_array_equal(sample_stretch(0.0, 0, 3, 1), np.ones(3))
    factors = np.stack([sample_stretch(0.25, 0, i, c) for i in range(1000) for c in range(2)])
    assert factors.min() >= 1 / 1.25 and factors.max() <= 1.25
    assert abs(np.log(factors).mean()) < 0.01  # stretching as likely as squashing
    assert np.abs(factors[0] - factors[1]).max() > 0  # each copy its own
    np.testing.assert_array_equal(sample_stretch(0.25, 5, 7, 1), sample_stretch(0.25, 5, 7, 1))


def test_stretched_copies_keep_their_rotations_and_change_the_shape(tmp_path: Path) -> None:
    """A stretched copy is the mesh scaled by its factors, normalized again, then rotated as the
    unstretched copy of the same seed is: only the proportions differ."""
    plain = build(tmp_path / "a", rotation="so3", copies=2, seed=3)
    stretched_maps = build(tmp_path / "b", rotation="so3", copies=2, seed=3, stretch=0.25)
    assert stretched_maps.names == plain.names
    np.testing.assert_array_equal(stretched_maps.labels, plain.labels)
    assert np.abs(stretched_maps.maps - plain.maps).max() > 0.02
    path = sorted(MODELNET_MINI.glob("*/train/*.off"))[0]
    mesh = raymap.load_mesh_file(path)
    factors = sample_stretch(0.25, 3, 0, 1)
    scaled = trimesh.Trimesh(mesh.vertices * factors, mesh.faces, process=False)
    expected = raymap.spherical_map(scaled, BANDWIDTH, sample_rotation("so3", 3, 0, 1))
    np.testing.assert_array_equal(stretched_maps.maps[1], expected)


def _fail(job: object) -> int:
    raise AssertionError("the cache should have been used")


def test_interrupted_build_resumes(tmp_path, monkeypatch) -> None:
    reference = build(tmp_path / "reference", rotation="z", copies=2)
    monkeypatch.setattr(build_module, "CHUNK_SIZE", 2)
    real_run_job = build_module.run_job
    calls: list[int] = []

    def interrupted(job: build_module.Job) -> int:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(job.chunk)
        return real_run_job(job)

    monkeypatch.setattr(build_module, "run_job", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "run", rotation="z", copies=2)
    partial = next((tmp_path / "run" / "cache" / "maps").glob("*.partial"))
    assert sorted(p.name for p in partial.glob("chunk-*.npz")) == [
        "chunk-00000.npz",
        "chunk-00001.npz",
    ]

    resumed: list[int] = []

    def counting(job: build_module.Job) -> int:
        resumed.append(job.chunk)
        return real_run_job(job)

    monkeypatch.setattr(build_module, "run_job", counting)
    out = build(tmp_path / "run", rotation="z", copies=2)
    assert resumed == [2]  # only the chunk that was missing
    assert not partial.exists()
    np.testing.assert_array_equal(out.maps, reference.maps)
    assert out.names == reference.names


def test_parallel_build_equals_serial_build(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(build_module, "CHUNK_SIZE", 2)  # three chunks, so the pool is used
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
    for stretch in (-0.1, 1.5):
        with pytest.raises(ValueError, match="stretch must be in"):
            build(tmp_path, stretch=stretch)


def test_shrec11_from_the_shared_archive(tmp_path: Path) -> None:
    archive = datasets.default_data_dir() / "shrec11" / "shrec11.tar.xz"
    if not archive.is_file():
        pytest.skip(f"no SHREC'11 archive at {archive}")
    out = build(tmp_path, dataset="shrec11", split="test", root=None, limit_per_class=1)
    assert len(out.class_names) == 30 and out.maps.shape[0] == 30
    np.testing.assert_array_equal(out.labels, np.arange(30))
    assert (tmp_path / "cache" / "raw" / "shrec11" / "alien" / "train").is_dir()
    assert not list((tmp_path / "cache" / "raw").glob(".extract-*"))  # no temporary left


# ----------------------------------------------------------------------------- folder datasets


def mixed_format_folder(root: Path) -> Path:
    """MODELNET_MINI with one mesh per class re-written as OBJ, STL or PLY, and odd files."""
    import trimesh

    shutil.copytree(MODELNET_MINI, root)
    for class_dir, fmt in zip(sorted(root.iterdir()), ("obj", "stl", "ply"), strict=True):
        off = sorted((class_dir / "train").glob("*.off"))[0]
        mesh = raymap.load_mesh_file(off)
        trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(off.with_suffix(f".{fmt}"))
        off.unlink()
    (root / "chair" / "train" / "notes.txt").write_text("not a mesh")
    (root / "chair" / "train" / "broken.off").write_bytes(b"OFF\n3 1 0\n0 0 0\n0 0 0\n")
    (root / "chair" / "train" / ".DS_Store").write_bytes(b"\0")  # hidden: not listed
    (root / "chair" / "loose.off").write_bytes(
        (MODELNET_MINI / "chair/train/chair_0047.off").read_bytes()
    )
    return root


def test_a_folder_with_split_folders_in_mixed_formats(tmp_path: Path) -> None:
    root = mixed_format_folder(tmp_path / "mine")
    out = build(tmp_path, dataset="folder", root=root)
    assert out.class_names == ["chair", "monitor", "toilet"]
    np.testing.assert_array_equal(out.labels, [0, 0, 1, 1, 2, 2])
    assert sorted(out.skipped) == [
        "chair/loose.off",
        "chair/train/broken.off",
        "chair/train/notes.txt",
    ]
    assert "unknown mesh format" in out.skipped["chair/train/notes.txt"]
    assert "train/validation/test" in out.skipped["chair/loose.off"]
    assert len(list(root.glob("*/train/*.off"))) == 4  # the others are OBJ, STL and PLY now
    # Every row is the map of the ModelNet file it was written from, in whatever format.
    for row, name in enumerate(out.names):
        original = next(MODELNET_MINI.glob(f"*/train/{name}.off"))
        expected = raymap.spherical_map(raymap.load_mesh_file(original), BANDWIDTH)
        np.testing.assert_allclose(out.maps[row], expected, atol=1e-5)
    test = build(tmp_path, dataset="folder", root=root, split="test")
    assert test.class_names == out.class_names and len(test.names) == 6
    with pytest.raises(FileNotFoundError, match="no files"):
        build(tmp_path, dataset="folder", root=root, split="validation")


def flat_folder(root: Path, per_class: dict[str, int]) -> Path:
    """``root/<class>/*.off``: copies of one mini mesh per class (bytes differ by a comment)."""
    sources = {"chair": "chair/train/chair_0047.off", "toilet": "toilet/train/toilet_0066.off"}
    for class_name, count in per_class.items():
        (root / class_name).mkdir(parents=True)
        data = (MODELNET_MINI / sources[class_name]).read_bytes()
        for i in range(count):
            (root / class_name / f"{class_name}_{i:03d}.off").write_bytes(
                data + f"# {i}\n".encode()
            )
    return root


def test_a_flat_folder_is_split_stratified_seeded_and_recorded(tmp_path: Path) -> None:
    import json

    root = flat_folder(tmp_path / "flat", {"chair": 20, "toilet": 7})
    cache = tmp_path / "cache"
    splits = {
        split: build(tmp_path, dataset="folder", root=root, split=split)
        for split in ("train", "validation", "test")
    }
    counts = {split: np.bincount(out.labels, minlength=2) for split, out in splits.items()}
    # 15 % / 15 % of each class, rounded: chair 3 / 3 / 14, toilet 1 / 1 / 5.
    assert counts["test"].tolist() == [3, 1] and counts["validation"].tolist() == [3, 1]
    assert counts["train"].tolist() == [14, 5]
    all_names = [name for out in splits.values() for name in out.names]
    assert sorted(all_names) == sorted(p.stem for p in root.glob("*/*.off"))  # each once
    records = list((cache / "splits").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["settings"] == {"validation": 0.15, "test": 0.15, "seed": 0}
    test_files = sorted(f for f, split in record["files"].items() if split == "test")
    assert [Path(f).stem for f in test_files] == sorted(splits["test"].names)
    # Another seed draws another split, recorded apart; the same seed the same split.
    other = build(
        tmp_path, dataset="folder", root=root, split="test", folder_split=FolderSplit(seed=1)
    )
    assert sorted(other.names) != sorted(splits["test"].names)
    assert len(list((cache / "splits").glob("*.json"))) == 2
    again = build(tmp_path / "again", dataset="folder", root=root, split="test")
    assert again.names == splits["test"].names


def test_a_changed_folder_is_built_again(tmp_path: Path, monkeypatch) -> None:
    root = mixed_format_folder(tmp_path / "mine")
    first = build(tmp_path, dataset="folder", root=root, split="test")
    monkeypatch.setattr(build_module, "run_job", _fail)
    build(tmp_path, dataset="folder", root=root, split="test")  # unchanged: from the cache
    monkeypatch.undo()
    extra = root / "monitor" / "test" / "monitor_9999.off"
    extra.write_bytes((MODELNET_MINI / "monitor/test/monitor_0516.off").read_bytes())
    second = build(tmp_path, dataset="folder", root=root, split="test")
    assert len(second.names) == len(first.names) + 1 and "monitor_9999" in second.names


def test_the_command_line_builds_every_split_of_a_folder(tmp_path: Path, capsys) -> None:
    from raymap.datasets.__main__ import main

    root = flat_folder(tmp_path / "flat", {"chair": 4, "toilet": 4})
    (root / "toilet" / "bad.obj").write_text("v 0 0 0\n")
    argv = ["--data", str(root), "--bandwidth", "8", "--workers", "1"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert [line.split(":")[0].split("-")[2] for line in out.splitlines()] == [
        "train",
        "validation",
        "test",
    ]
    assert "skipped toilet/bad.obj" in err


def test_the_command_line_skips_a_split_the_folder_lacks(tmp_path: Path, capsys) -> None:
    from raymap.datasets.__main__ import main

    argv = ["--data", str(MODELNET_MINI), "--bandwidth", "8", "--workers", "1", "--no-progress"]
    assert main([*argv, "--cache-dir", str(tmp_path), "--limit-per-class", "none"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2 and "validation: no files" in err
    with pytest.raises(FileNotFoundError):  # asked for by name: an error
        main([*argv, "--cache-dir", str(tmp_path), "--split", "validation"])


def test_build_workers_start_with_one_blas_thread(monkeypatch) -> None:
    """The workers are the parallelism: each starts with one BLAS thread (a pool per worker
    oversubscribed the cores), unless the caller chose a number; the parent's setting is
    restored afterwards."""
    import multiprocessing
    import os

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    spawn = multiprocessing.get_context("spawn")
    with build_module._one_blas_thread_per_worker(), spawn.Pool(1) as pool:
        seen = [pool.apply(os.getenv, (name,)) for name in names]
    assert seen == ["1", "3"]
    assert "OPENBLAS_NUM_THREADS" not in os.environ and os.environ["OMP_NUM_THREADS"] == "3"
