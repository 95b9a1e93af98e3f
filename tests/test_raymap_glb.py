"""GLB of one mesh: numpy's reading gives trimesh's arrays bit for bit, and any other GLB still
goes to trimesh."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh

import raymap
from raymap.glb import read_glb
from raymap.mesh import _Y_UP_TO_Z_UP, _read_with_trimesh
from tests.raymap_testing import CHAIR, MODELNET_MINI, assert_reads_as_trimesh

MESHES = [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))[:4]]


def glb(document: dict, binary: bytes) -> bytes:
    """A GLB file of ``document`` (JSON) and ``binary`` (its one buffer)."""
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    body += struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def one_mesh(
    vertices: np.ndarray,
    indices: np.ndarray | None,
    node: dict | None = None,
    interleave: bool = False,
    document: dict | None = None,
) -> bytes:
    """One node, one mesh, one primitive; ``interleave`` stores each position beside a
    normal (a stride of 24 bytes)."""
    positions = np.asarray(vertices, dtype="<f4")
    if interleave:
        packed = np.zeros((len(positions), 6), dtype="<f4")
        packed[:, :3] = positions
        position_bytes, stride = packed.tobytes(), {"byteStride": 24}
    else:
        position_bytes, stride = positions.tobytes(), {}
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": len(position_bytes), **stride}]
    accessors = [{"bufferView": 0, "componentType": 5126, "type": "VEC3", "count": len(positions)}]
    primitive: dict = {"attributes": {"POSITION": 0}, "mode": 4}
    binary = position_bytes
    if indices is not None:
        kind = {np.dtype("<u1"): 5121, np.dtype("<u2"): 5123, np.dtype("<u4"): 5125}
        index_bytes = indices.tobytes()
        binary += b"\0" * (-len(binary) % 4)
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(index_bytes)})
        accessors.append(
            {"bufferView": 1, "componentType": kind[indices.dtype], "type": "SCALAR",
             "count": indices.size}
        )  # fmt: skip
        primitive["indices"] = 1
        binary += index_bytes
    return glb(
        {
            "asset": {"version": "2.0"},
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0, **(node or {})}],
            "meshes": [{"primitives": [primitive]}],
            "accessors": accessors,
            "bufferViews": views,
            "buffers": [{"byteLength": len(binary) + (-len(binary) % 4)}],
            **(document or {}),
        },
        binary,
    )


@pytest.mark.parametrize("path", MESHES, ids=lambda p: Path(p).stem)
def test_trimeshs_glb_export_reads_as_trimesh_reads_it(path: Path) -> None:
    mesh = raymap.load_mesh_file(path)
    plain = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert_reads_as_trimesh(read_glb, "glb", plain.export(file_type="glb"))


@pytest.mark.parametrize("index_type", ["<u1", "<u2", "<u4", None])
def test_every_index_width_and_none(index_type: str | None) -> None:
    box = trimesh.creation.box()
    if index_type is None:  # no indices: every three positions are a triangle
        vertices, indices = box.vertices[box.faces].reshape(-1, 3), None
    else:
        vertices, indices = box.vertices, box.faces.astype(index_type).ravel()
    assert_reads_as_trimesh(read_glb, "glb", one_mesh(vertices, indices))


def test_an_identity_matrix_is_no_transform() -> None:
    box = trimesh.creation.box()
    identity = np.eye(4).ravel(order="F").tolist()
    assert_reads_as_trimesh(
        read_glb,
        "glb",
        one_mesh(box.vertices, box.faces.astype("<u4").ravel(), {"matrix": identity}),
    )


BOX = trimesh.creation.box()
BOX_INDICES = BOX.faces.astype("<u4").ravel()


@pytest.mark.parametrize(
    "data",
    [
        one_mesh(BOX.vertices, BOX_INDICES, {"translation": [0.0, 0.0, 5.0]}),
        one_mesh(BOX.vertices, BOX_INDICES, {"matrix": (2 * np.eye(4)).ravel().tolist()}),
        one_mesh(BOX.vertices, BOX_INDICES, interleave=True),
        one_mesh(BOX.vertices, BOX_INDICES, document={"extensionsUsed": ["KHR_mesh_quantization"]}),
        trimesh.Scene([BOX, trimesh.creation.box().apply_translation([3.0, 0.0, 0.0])]).export(
            file_type="glb"
        ),
    ],
    ids=["translated", "scaled", "interleaved", "quantized", "two-nodes"],
)
def test_any_other_glb_is_left_to_trimesh(data: bytes) -> None:
    assert read_glb(data) is None
    mesh = raymap.load_mesh(data, "glb")
    vertices, faces = _read_with_trimesh(data, "glb")  # what trimesh gives, turned +Z up
    np.testing.assert_array_equal(mesh.vertices, vertices @ _Y_UP_TO_Z_UP.T)
    np.testing.assert_array_equal(mesh.faces, faces)


def test_indices_that_are_not_triangles_are_left_to_trimesh() -> None:
    data = one_mesh(BOX.vertices, BOX_INDICES[:-1])
    assert read_glb(data) is None
