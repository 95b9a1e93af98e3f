"""PLY of triangles, ASCII and binary: numpy's reading gives trimesh's arrays bit for bit, and
any other PLY still goes to trimesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

import raymap
from raymap.mesh import _read_with_trimesh
from raymap.ply import read_ply
from tests.raymap_testing import CHAIR, MODELNET_MINI, assert_reads_as_trimesh

MESHES = [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))[:4]]
TETRA_VERTICES = ["0 0 0", "1 0 0", "0 1 0", "0 0 1"]
TETRA_FACES = ["3 0 1 2", "3 0 1 3", "3 0 2 3", "3 1 2 3"]


def ply_text(
    vertex_properties: list[str],
    vertices: list[str],
    faces: list[str],
    index_list: str = "property list uchar int vertex_indices",
    extra_header: str = "",
    newline: str = "\n",
) -> bytes:
    lines = [
        "ply",
        "format ascii 1.0",
        "comment made by a test",
        *([extra_header] if extra_header else []),
        f"element vertex {len(vertices)}",
        *(f"property {p}" for p in vertex_properties),
        f"element face {len(faces)}",
        index_list,
        "end_header",
        *vertices,
        *faces,
    ]
    return (newline.join(lines) + newline).encode()


def binary_ply(
    order: str, vertex_fields: list[tuple[str, str]], vertices: np.ndarray, faces: np.ndarray
) -> bytes:
    """A binary PLY in byte order ``order`` ("<" or ">"), its vertex properties as given."""
    names = {"<": "binary_little_endian", ">": "binary_big_endian"}
    ply_type = {"f4": "float", "f8": "double", "u1": "uchar", "i4": "int"}
    header = [
        "ply",
        f"format {names[order]} 1.0",
        f"element vertex {len(vertices)}",
        *(f"property {ply_type[code]} {name}" for name, code in vertex_fields),
        f"element face {len(faces)}",
        "property list uchar uint vertex_indices",
        "end_header\n",
    ]
    rows = np.zeros(len(vertices), [(name, order + code) for name, code in vertex_fields])
    for axis, name in enumerate("xyz"):
        rows[name] = vertices[:, axis]
    corners = np.zeros(len(faces), [("n", "u1"), ("i", order + "u4", (faces.shape[1],))])
    corners["n"], corners["i"] = faces.shape[1], faces
    return "\n".join(header).encode() + rows.tobytes() + corners.tobytes()


@pytest.mark.parametrize("encoding", ["ascii", "binary"])
@pytest.mark.parametrize("path", MESHES, ids=lambda p: Path(p).stem)
def test_exported_meshes_read_as_trimesh_reads_them(path: Path, encoding: str) -> None:
    mesh = raymap.load_mesh_file(path)
    plain = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert_reads_as_trimesh(
        read_ply, "ply", trimesh.exchange.ply.export_ply(plain, encoding=encoding)
    )


@pytest.mark.parametrize("order", ["<", ">"])
def test_binary_of_either_byte_order_and_any_vertex_properties(order: str) -> None:
    mesh = raymap.load_mesh_file(CHAIR)
    fields = [("red", "u1"), ("z", "f8"), ("x", "f4"), ("confidence", "f4"), ("y", "f8")]
    assert_reads_as_trimesh(read_ply, "ply", binary_ply(order, fields, mesh.vertices, mesh.faces))


@pytest.mark.parametrize(
    ("properties", "rows", "index_list", "newline"),
    [
        # the Stanford scans' layout: two more float properties, CRLF line ends, obj_info
        (
            ["float x", "float y", "float z", "float confidence", "float intensity"],
            [f"{v} 1 0.5" for v in TETRA_VERTICES],
            "property list uchar int vertex_indices",
            "\r\n",
        ),
        # z before x, doubles, colours, the other name of the index list
        (
            ["double z", "uchar red", "double x", "uint8 green", "double y"],
            ["0.1 255 0.30000000000000004 7 -2.5e-3", "1 0 2 0 3", "4 1 5 1 6", "-7 2 8 2 9"],
            "property list uint8 uint32 vertex_index",
            "\n",
        ),
    ],
    ids=["stanford", "reordered"],
)
def test_other_vertex_properties_and_orders(
    properties: list[str], rows: list[str], index_list: str, newline: str
) -> None:
    assert_reads_as_trimesh(
        read_ply,
        "ply",
        ply_text(properties, rows, TETRA_FACES, index_list, "obj_info scanner", newline),
    )


@pytest.mark.parametrize(
    "data",
    [
        ply_text(["float x", "float y", "float z"], TETRA_VERTICES, ["4 0 1 2 3", *TETRA_FACES]),
        ply_text(
            ["float x", "float y", "float z"],
            TETRA_VERTICES,
            [f"{f} 9" for f in TETRA_FACES],
            "property list uchar int vertex_indices\nproperty uchar red",
        ),
        ply_text(
            ["float x", "float y", "float z"],
            TETRA_VERTICES,
            TETRA_FACES,
            "property list uchar int vertex_indices\nelement edge 0\nproperty int vertex1",
        ),
        binary_ply(
            "<", [("x", "f4"), ("y", "f4"), ("z", "f4")], np.eye(4, 3), np.array([[0, 1, 2, 3]])
        ),
    ],
    ids=["a-quad", "face-colours", "another-element", "a-binary-quad"],
)
def test_any_other_ply_is_left_to_trimesh(data: bytes) -> None:
    assert read_ply(data) is None
    mesh = raymap.load_mesh(data, "ply")
    vertices, faces = _read_with_trimesh(data, "ply")
    np.testing.assert_array_equal(mesh.vertices, vertices)
    np.testing.assert_array_equal(mesh.faces, faces)


def test_a_fractional_face_index_is_refused() -> None:
    data = ply_text(["float x", "float y", "float z"], TETRA_VERTICES, ["3 0 1 2.5"])
    with pytest.raises(raymap.MeshError, match="a face index is not a whole number"):
        raymap.load_mesh(data, "ply")


def test_a_face_index_out_of_range_is_refused() -> None:
    data = ply_text(["float x", "float y", "float z"], TETRA_VERTICES, ["3 0 1 7"])
    with pytest.raises(raymap.MeshError, match="face indices out of range"):
        raymap.load_mesh(data, "ply")


def test_a_body_shorter_than_its_header_says_is_refused() -> None:
    """Cut short, or declaring more than it holds: trimesh reads such a file as a smaller,
    wrong mesh (a tetrahedron missing a face was classified as if whole)."""
    text = ply_text(["float x", "float y", "float z"], TETRA_VERTICES, TETRA_FACES)
    more = ply_text(["float x", "float y", "float z"], TETRA_VERTICES, TETRA_FACES)
    more = more.replace(b"element face 4", b"element face 5")
    binary = binary_ply(
        "<", [("x", "f4"), ("y", "f4"), ("z", "f4")], np.eye(4, 3), np.array([[0, 1, 2]] * 4)
    )
    for data in (text[: -len("3 1 2 3\n")], more, binary[:-7]):
        with pytest.raises(raymap.MeshError, match="the PLY file is cut short"):
            raymap.load_mesh(data, "ply")


def test_a_header_without_its_end_says_so() -> None:
    data = ply_text(["float x", "float y", "float z"], TETRA_VERTICES, TETRA_FACES)
    with pytest.raises(raymap.MeshError, match="no 'end_header' line"):
        raymap.load_mesh(data.replace(b"end_header", b"end_heade"), "ply")


def test_a_ply_without_a_face_element_names_its_elements() -> None:
    """Triangle strips (an element ``tristrips``) and point clouds read as "no faces (a point
    cloud or an empty file?)", which did not say what the file held."""
    points = "".join(f"{v}\n" for v in TETRA_VERTICES).encode()
    header = b"ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
    header += b"property float z\n"
    strips = header + b"element tristrips 1\nproperty list int int vertex_indices\nend_header\n"
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(strips + points + b"4 0 1 2 3\n", "ply")
    assert info.value.reason == (
        "the PLY file has no 'face' element (its elements: vertex (4), tristrips (1)); "
        "triangle strips are not read: export it with faces"
    )
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(header + b"end_header\n" + points, "ply")
    assert info.value.reason == (
        "the PLY file has no 'face' element (its elements: vertex (4)); a point cloud has no "
        "surface to cast rays at"
    )
