"""PLY of triangles, read with numpy: ASCII (the Stanford scans' layout) or binary.

The layout of most PLY files: a ``vertex`` element of scalar properties with ``x y z`` among
them, then a ``face`` element of one index list, every face a triangle. ``read_ply(data)``
gives the vertices and faces trimesh's reader gives for such a file, bit for bit (a ``float``
property is a float32 there too), or ``None`` for any other file (other elements, faces with
more properties or more corners, a number the parser does not vouch for, a body
of another length than the header says); the caller then asks trimesh. Its ASCII tokenizer
took ~250 ms for a 643 KiB bunny, and its binary reader, through a scene, ~10 ms for 10k faces.
"""

from __future__ import annotations

import numpy as np

from raymap.errors import MeshError
from raymap.text_numbers import counted_triangles, parse_numbers

# PLY's scalar types (both spellings) -> numpy's, byte order aside
_SCALAR_TYPES: dict[str, str] = {
    name: code
    for names, code in (
        (("char", "int8"), "i1"),
        (("uchar", "uint8"), "u1"),
        (("short", "int16"), "i2"),
        (("ushort", "uint16"), "u2"),
        (("int", "int32"), "i4"),
        (("uint", "uint32"), "u4"),
        (("float", "float32"), "f4"),
        (("double", "float64"), "f8"),
    )
    for name in names
}
_BYTE_ORDERS = {"ascii": "=", "binary_little_endian": "<", "binary_big_endian": ">"}
_INDEX_LISTS = ("vertex_indices", "vertex_index")
_END_HEADER = b"end_header"


def read_ply(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(vertices (V, 3) float64, faces (F, 3) int64), or ``None``: see the module docstring."""
    if not data.startswith(b"ply"):
        return None
    end = data.find(_END_HEADER)
    if end < 0:
        raise MeshError("cannot read the PLY file: its header has no 'end_header' line")
    body_start = data.find(b"\n", end) + 1
    if body_start == 0:
        return None
    layout = _TriangleLayout.of_header(data[:end].decode("ascii", "replace"))
    if layout is None:
        return None
    if layout.byte_order == "=":
        return _read_text(data[body_start:], layout)
    return _read_binary(memoryview(data)[body_start:], layout)


def check_has_faces(data: bytes) -> None:
    """Raise :class:`MeshError` naming the elements of a PLY file without a ``face`` element
    of any length (triangle strips, ``tristrips``, are not read), where the message was only
    "no faces"."""
    end = data.find(_END_HEADER)
    header = data[: end if end >= 0 else 4096].decode("ascii", "replace")
    elements = [
        f"{words[1]} ({words[2]})"
        for words in (line.split() for line in header.splitlines())
        if len(words) == 3 and words[0] == "element"
    ]
    names = [element.split(" ")[0] for element in elements]
    if names and "face" not in names:  # (no elements: no PLY header, trimesh says so)
        hint = (
            "; triangle strips are not read: export it with faces"
            if "tristrips" in names
            else "; a point cloud has no surface to cast rays at"
            if names == ["vertex"]
            else ""
        )
        listed = ", ".join(elements) or "none"
        raise MeshError(f"the PLY file has no 'face' element (its elements: {listed}){hint}")


class _TriangleLayout:
    """What the header says, if it is the one layout :func:`read_ply` reads."""

    def __init__(
        self,
        byte_order: str,
        n_vertices: int,
        vertex_types: list[tuple[str, str]],
        index_types: tuple[str, str],
        n_faces: int,
    ) -> None:
        self.byte_order = byte_order  # "=" for text, "<" or ">" for binary
        self.n_vertices = n_vertices
        self.vertex_types = vertex_types  # (name, numpy code) of each vertex property
        self.index_types = index_types  # numpy codes of a face's count and of its indices
        self.n_faces = n_faces

    @property
    def xyz(self) -> list[int]:
        names = [name for name, _ in self.vertex_types]
        return [names.index(axis) for axis in "xyz"]

    def vertex_dtype(self) -> np.dtype:
        return np.dtype(
            [(f"p{i}", self.byte_order + code) for i, (_, code) in enumerate(self.vertex_types)]
        )

    def face_dtype(self) -> np.dtype:
        count, index = (self.byte_order + code for code in self.index_types)
        return np.dtype([("count", count), ("index", index, (3,))])

    @classmethod
    def of_header(cls, header: str) -> _TriangleLayout | None:
        lines = [line.split() for line in header.splitlines()]
        lines = [words for words in lines[1:] if words and words[0] not in ("comment", "obj_info")]
        if not lines or len(lines[0]) != 3 or lines[0][0] != "format" or lines[0][2] != "1.0":
            return None
        byte_order = _BYTE_ORDERS.get(lines[0][1])
        if byte_order is None:
            return None
        elements: list[tuple[str, int, list[list[str]]]] = []
        for words in lines[1:]:
            if words[0] == "element" and len(words) == 3 and words[2].isdigit():
                elements.append((words[1], int(words[2]), []))
            elif words[0] == "property" and elements:
                elements[-1][2].append(words[1:])
            else:
                return None
        if [name for name, _, _ in elements] != ["vertex", "face"]:
            return None
        (_, n_vertices, vertex_properties), (_, n_faces, face_properties) = elements
        if not all(len(p) == 2 and p[0] in _SCALAR_TYPES for p in vertex_properties):
            return None
        names = [name for _, name in vertex_properties]
        if not {"x", "y", "z"} <= set(names) or len(set(names)) != len(names):
            return None
        if len(face_properties) != 1:
            return None
        index_list = face_properties[0]
        if not (len(index_list) == 4 and index_list[0] == "list" and index_list[3] in _INDEX_LISTS):
            return None
        count, index = (_SCALAR_TYPES.get(t, "f") for t in index_list[1:3])
        if count[0] not in "iu" or index[0] not in "iu":
            return None
        vertex_types = [(name, _SCALAR_TYPES[t]) for t, name in vertex_properties]
        return cls(byte_order, n_vertices, vertex_types, (count, index), n_faces)


def _read_text(body: bytes, layout: _TriangleLayout) -> tuple[np.ndarray, np.ndarray] | None:
    values = parse_numbers(body)
    n_properties = len(layout.vertex_types)
    n_vertex_values = layout.n_vertices * n_properties
    least = n_vertex_values + 4 * layout.n_faces
    if values is not None and values.size < least:
        raise _cut_short(layout, values.size, least, "numbers")
    if values is None or values.size != least:
        return None  # polygons, or numbers trimesh reads its own way
    faces = counted_triangles(values[n_vertex_values:], "PLY")
    if faces is None:
        return None
    rows = values[:n_vertex_values].reshape(layout.n_vertices, n_properties)
    columns = [  # each property in its own type first, as trimesh reads it
        rows[:, i].astype(layout.vertex_types[i][1]).astype(np.float64) for i in layout.xyz
    ]
    return np.column_stack(columns), faces


def _read_binary(body: memoryview, layout: _TriangleLayout) -> tuple[np.ndarray, np.ndarray] | None:
    vertex_dtype, face_dtype = layout.vertex_dtype(), layout.face_dtype()
    vertex_bytes = layout.n_vertices * vertex_dtype.itemsize
    size = vertex_bytes + layout.n_faces * face_dtype.itemsize
    if len(body) < size:
        raise _cut_short(layout, len(body), size, "bytes")
    if len(body) != size:
        return None  # polygons, or a body trimesh reads its own way
    vertices = np.frombuffer(body, vertex_dtype, count=layout.n_vertices)
    faces = np.frombuffer(body, face_dtype, count=layout.n_faces, offset=vertex_bytes)
    if not (faces["count"] == 3).all():
        return None
    columns = [vertices[f"p{i}"].astype(np.float64) for i in layout.xyz]
    return np.column_stack(columns), faces["index"].astype(np.int64)


def _cut_short(layout: _TriangleLayout, found: int, least: int, unit: str) -> MeshError:
    """A body smaller than its header's vertices and triangles (polygons only make it
    larger): cut short, or the counts are wrong. Read on, it is a smaller, wrong mesh."""
    return MeshError(
        f"the PLY file is cut short or its counts are wrong: its header declares "
        f"{layout.n_vertices} vertices and {layout.n_faces} faces, at least {least} "
        f"{unit}, but {found} {unit} follow it"
    )
