"""Loading meshes: every format, scenes, ModelNet's glued OFF header, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

import raymap
from raymap.mesh import _Y_UP_TO_Z_UP, file_type_of
from tests.raymap_testing import CHAIR, MODELNET_MINI

BANDWIDTH = 8


@pytest.fixture(scope="module")
def chair() -> trimesh.Trimesh:
    return raymap.load_mesh_file(CHAIR)


def sorted_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


def export(mesh: trimesh.Trimesh, file_type: str) -> bytes:
    if file_type == "gltf":  # one self-contained JSON file: buffers embedded as data URIs
        files = trimesh.Scene([mesh]).export(file_type="gltf", embed_buffers=True)
        return files["model.gltf"] if isinstance(files, dict) else files
    data = mesh.export(file_type=file_type)
    return data.encode() if isinstance(data, str) else data


@pytest.mark.parametrize("file_type", ["obj", "off", "stl", "stl_ascii", "ply", "glb", "gltf"])
def test_every_format_loads_the_same_mesh(chair: trimesh.Trimesh, file_type: str) -> None:
    data = export(chair, file_type)
    mesh = raymap.load_mesh(data, file_type.removesuffix("_ascii"))
    expected = np.asarray(chair.vertices)
    if file_type in ("glb", "gltf"):  # glTF is +Y up: loading turns it to +Z up
        expected = expected @ _Y_UP_TO_Z_UP.T
    assert len(mesh.faces) == len(chair.faces)
    corners = np.asarray(mesh.vertices)[mesh.faces].reshape(-1, 3)
    expected_corners = expected[chair.faces].reshape(-1, 3)
    atol = 1e-4 * np.abs(expected).max()  # STL and OBJ round to float32 or a few decimals
    np.testing.assert_allclose(sorted_rows(corners), sorted_rows(expected_corners), atol=atol)


def test_format_from_a_file_name() -> None:
    assert file_type_of("chair_0001.OFF") == "off"
    assert file_type_of(".glb") == "glb"
    assert file_type_of("ply") == "ply"
    data = CHAIR.read_bytes()
    assert len(raymap.load_mesh(data, "some/dir/chair.off").faces) == 2996


def test_a_scene_is_merged_with_its_transforms() -> None:
    box = trimesh.creation.box()
    scene = trimesh.Scene()
    scene.add_geometry(box, transform=trimesh.transformations.translation_matrix([0, 0, 5]))
    scene.add_geometry(box)
    scene.add_geometry(trimesh.PointCloud(np.zeros((3, 3))))  # dropped: it has no faces
    mesh = raymap.load_mesh(scene.export(file_type="glb"), "glb")
    assert len(mesh.faces) == 24
    # +Z translation in the file's frame is +Z... after the glTF Y-up -> Z-up turn it is -Y.
    np.testing.assert_allclose(mesh.bounds, [[-0.5, -5.5, -0.5], [0.5, 0.5, 0.5]], atol=1e-6)


def test_glued_modelnet_header_is_accepted() -> None:
    data = CHAIR.read_bytes()
    assert data.startswith(b"OFF\n")
    glued = b"OFF" + data[4:]  # 'OFF1658 2996 0'
    assert glued.startswith(b"OFF1658 2996 0")
    np.testing.assert_array_equal(
        raymap.load_mesh(glued, "off").vertices, raymap.load_mesh(data, "off").vertices
    )


def test_off_with_polygons_comments_and_colours_uses_the_general_reader() -> None:
    text = (
        "OFF\n# a unit square pyramid\n5 5 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0.5 0.5 1\n"
        "4 0 1 2 3\n3 0 1 4 255 0 0\n3 1 2 4\n3 2 3 4\n3 3 0 4\n"
    )
    mesh = raymap.load_mesh(text.encode(), "off")
    assert len(mesh.faces) == 6  # the quad is split in two


def test_real_modelnet_files_load() -> None:
    paths = sorted(MODELNET_MINI.glob("*/*/*.off"))
    assert len(paths) == 12
    for path in paths:
        mesh = raymap.load_mesh_file(path)
        assert len(mesh.faces) > 0 and np.isfinite(mesh.vertices).all()


# ----------------------------------------------------------------------------- bad input

TRIANGLE_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\n"
BAD_INPUTS = {
    "unknown format": (b"solid", "dae", "unknown mesh format"),
    "unknown format from name": (b"solid", "chair.3ds", "unknown mesh format"),
    "empty file": (b"", "obj", "empty"),
    "garbage ply": (b"\x00\x01garbage", "ply", "cannot read the PLY file"),
    "garbage glb": (b"glTF\x00\x01garbage", "glb", "cannot read the GLB file"),
    "gltf with external buffer": (
        json.dumps(
            {
                "asset": {"version": "2.0"},
                "buffers": [{"uri": "missing.bin", "byteLength": 36}],
            }
        ).encode(),
        "gltf",
        "external files (missing.bin)",
    ),
    "gltf not json": (b"\x00binary", "gltf", "not JSON"),
    "off without header": (b"3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "off", "'OFF'"),
    "off without counts": (b"OFF\n", "off", "counts"),
    "off no faces": (b"OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "off", "no faces"),
    "obj points only": (TRIANGLE_OBJ.encode(), "obj", "no faces"),
    "stl of garbage": (b"hello world, not an stl" * 5, "stl", "no faces"),
    "off nan": (b"OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n", "off", "non-finite"),
    "off inf": (b"OFF\n3 1 0\n0 0 0\n1 inf 0\n0 1 0\n3 0 1 2\n", "off", "non-finite"),
    "obj nan": ((TRIANGLE_OBJ + "v nan 0 0\nf 1 2 4\n").encode(), "obj", "non-finite"),
    "off index too big": (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", "off", "out of range"),
    "off negative index": (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n", "off", "out of range"),
    "obj index too big": ((TRIANGLE_OBJ + "f 1 2 9\n").encode(), "obj", "out of range"),
    "off zero extent": (b"OFF\n3 1 0\n1 1 1\n1 1 1\n1 1 1\n3 0 1 2\n", "off", "zero extent"),
    "obj zero extent": (
        b"v 2 2 2\nv 2 2 2\nv 2 2 2\nv 9 9 9\nf 1 2 3\n",
        "obj",
        "zero extent",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_mesh_error_with_a_reason(case: str) -> None:
    data, file_type, reason = BAD_INPUTS[case]
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(data, file_type)
    assert isinstance(info.value, ValueError)
    assert info.value.reason == str(info.value) and info.value.reason
    assert reason in info.value.reason, info.value.reason


def test_face_cap(chair: trimesh.Trimesh) -> None:
    for file_type in ("off", "obj", "ply", "stl"):
        data = export(chair, file_type)
        assert len(raymap.load_mesh(data, file_type, max_faces=2996).faces) == 2996
        with pytest.raises(raymap.MeshError, match="more than the limit of 2995"):
            raymap.load_mesh(data, file_type, max_faces=2995)


def test_missing_file_raises_mesh_error(tmp_path) -> None:
    with pytest.raises(raymap.MeshError, match="cannot read"):
        raymap.load_mesh_file(tmp_path / "nope.off")


@pytest.mark.parametrize("file_type", ["off", "obj", "ply", "stl", "glb"])
def test_corrupted_files_raise_only_mesh_error(file_type: str) -> None:
    """Nothing but MeshError escapes load + map, whatever the bytes (seeded fuzzing)."""
    rng = np.random.default_rng(0)
    box = trimesh.creation.box()
    clean = export(box, file_type)
    outcomes = {"ok": 0, "error": 0}
    for trial in range(60):
        data = bytearray(clean)
        if trial % 3 == 0:
            data = data[: rng.integers(0, len(data))]  # truncated
        else:
            for _ in range(rng.integers(1, 8)):  # flipped bytes
                data[rng.integers(0, len(data))] = int(rng.integers(0, 256))
        try:
            raymap.spherical_map(raymap.load_mesh(bytes(data), file_type), BANDWIDTH)
            outcomes["ok"] += 1
        except raymap.MeshError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0
