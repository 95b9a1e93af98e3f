"""GLB of one triangle mesh, read with numpy: what most single-object exports are.

``read_glb(data)`` reads a binary glTF 2.0 file whose scene is one node, untransformed, with
a mesh of one primitive of triangles (``POSITION`` as float32 ``VEC3``, indices of 8, 16 or
32 bits or none) stored in the file's own binary chunk, and gives the vertices and faces
trimesh's loader gives for it, bit for bit, still +Y up (the caller turns it). ``None`` for
any other file (several nodes or primitives, transforms, compression or quantization
extensions, sparse or interleaved accessors, external buffers): trimesh then reads it,
through a scene (10k faces: ~4 ms of its loading against ~0.2 ms here), after
:mod:`raymap.gltf_check` has read the JSON that :func:`glb_chunks` gives it.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from raymap.errors import MeshError

_MAGIC = b"glTF"
_JSON_CHUNK = 0x4E4F534A
_BIN_CHUNK = 0x004E4942
_TRIANGLES = 4
_FLOAT = 5126
_INDEX_TYPES = {5121: np.dtype("<u1"), 5123: np.dtype("<u2"), 5125: np.dtype("<u4")}
# Extensions that change how geometry is stored: their files go to trimesh.
_GEOMETRY_EXTENSIONS = {
    "KHR_draco_mesh_compression",
    "EXT_meshopt_compression",
    "KHR_mesh_quantization",
    "EXT_mesh_gpu_instancing",
}
_IDENTITY = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def read_glb(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(vertices (V, 3) float64, +Y up; faces (F, 3) int64), or ``None``: see the module."""
    try:
        document, binary = glb_chunks(data)
    except MeshError:
        return None  # the check before trimesh's reader says why
    try:
        primitive = _single_primitive(document)
        if primitive is None:
            return None
        accessors = document["accessors"]
        position = accessors[_natural(primitive["attributes"]["POSITION"])]
        vertices = _accessor(document, binary, position)
        if vertices is None or vertices.dtype != np.float32 or vertices.ndim != 2:
            return None
        if "indices" in primitive:
            indices = _accessor(document, binary, accessors[_natural(primitive["indices"])])
            if indices is None or indices.dtype.kind != "u" or indices.ndim != 1:
                return None
        else:
            indices = np.arange(len(vertices), dtype=np.int64)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None  # a malformed document: raymap.gltf_check says what is wrong
    if len(indices) % 3:
        return None
    return vertices.astype(np.float64), indices.astype(np.int64).reshape(-1, 3)


def glb_chunks(data: bytes) -> tuple[dict, bytes]:
    """The JSON document and the binary chunk (``b""`` when there is none) of a GLB; a
    :class:`MeshError` saying what is wrong with its container otherwise."""
    if len(data) < 20 or data[:4] != _MAGIC:
        raise MeshError("cannot read the GLB file: it does not start with a GLB header")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise MeshError(f"cannot read the GLB file: it is glTF version {version}, not 2")
    if length != len(data):
        raise MeshError(
            f"cannot read the GLB file: its header gives a length of {length} bytes but the "
            f"file has {len(data)} (cut short or damaged?)"
        )
    json_length, json_type = struct.unpack_from("<II", data, 12)
    if json_type != _JSON_CHUNK or 20 + json_length > len(data):
        raise MeshError("cannot read the GLB file: its first chunk is not a whole JSON chunk")
    binary = b""
    at = 20 + json_length
    if at + 8 <= len(data):
        bin_length, bin_type = struct.unpack_from("<II", data, at)
        if bin_type == _BIN_CHUNK and at + 8 + bin_length > len(data):
            raise MeshError(
                f"cannot read the GLB file: its binary chunk of {bin_length} bytes runs past "
                "the end of the file"
            )
        if bin_type == _BIN_CHUNK:  # a chunk of another type is skipped, as glTF says
            binary = data[at + 8 : at + 8 + bin_length]
    try:
        document = json.loads(data[20 : 20 + json_length])
    except (UnicodeDecodeError, ValueError) as exc:
        raise MeshError(f"cannot read the GLB file: its JSON chunk is not JSON ({exc})") from exc
    except RecursionError as exc:
        raise MeshError("cannot read the GLB file: its JSON is nested too deep") from exc
    if not isinstance(document, dict):
        raise MeshError("cannot read the GLB file: its JSON is not an object")
    return document, binary


def _single_primitive(document: dict) -> dict | None:
    """The one primitive of the one untransformed node of the scene, if that is the file."""
    if "extensionsRequired" in document:
        return None
    if _GEOMETRY_EXTENSIONS & set(document.get("extensionsUsed", [])):
        return None
    if len(document.get("buffers", [])) != 1 or "uri" in document["buffers"][0]:
        return None
    scene = document["scenes"][_natural(document.get("scene", 0))]
    nodes = document["nodes"]
    if len(nodes) != 1 or scene.get("nodes") != [0]:
        return None
    node = nodes[0]
    moved = any(key in node for key in ("translation", "rotation", "scale"))
    if moved or node.get("matrix", _IDENTITY) != _IDENTITY or "children" in node:
        return None
    if "mesh" not in node or "extensions" in node:
        return None
    primitives = document["meshes"][_natural(node["mesh"])]["primitives"]
    if len(primitives) != 1:
        return None
    primitive = primitives[0]
    if primitive.get("mode", _TRIANGLES) != _TRIANGLES or "extensions" in primitive:
        return None
    return primitive


def _accessor(document: dict, binary: bytes, accessor: dict) -> np.ndarray | None:
    """A tightly packed accessor's array from the binary chunk, or ``None``."""
    if "sparse" in accessor or accessor.get("normalized", False) or "bufferView" not in accessor:
        return None
    view = document["bufferViews"][_natural(accessor["bufferView"])]
    if view.get("buffer", 0) != 0:
        return None
    kind, width = accessor["componentType"], {"SCALAR": 1, "VEC3": 3}.get(accessor["type"])
    dtype = np.dtype("<f4") if kind == _FLOAT else _INDEX_TYPES.get(kind)
    if dtype is None or width is None:
        return None
    if view.get("byteStride", dtype.itemsize * width) != dtype.itemsize * width:
        return None  # interleaved
    count = _natural(accessor["count"])
    view_start = _natural(view.get("byteOffset", 0))
    start = view_start + _natural(accessor.get("byteOffset", 0))
    end = start + count * width * dtype.itemsize
    if end > view_start + _natural(view["byteLength"]) or end > len(binary):
        return None
    values = np.frombuffer(binary, dtype=dtype, count=count * width, offset=start)
    return values.reshape(count, width) if width > 1 else values


def _natural(value: object) -> int:
    """A glTF index, count or offset: a whole number >= 0 (JSON may hold ``-1``, which Python
    would read from a list's end, ``"3"`` or ``1e999``); ``TypeError`` otherwise, which sends
    the file off the fast path to :mod:`raymap.gltf_check`."""
    if type(value) is not int or value < 0:
        raise TypeError(f"not a whole number >= 0: {value!r:.40}")
    return value
