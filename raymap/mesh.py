"""Bytes -> validated triangle mesh.

Formats: OBJ, OFF, STL (binary and ASCII), PLY, GLB and GLTF (embedded buffers only, since
an upload is a single file). A scene is merged into one mesh with its node transforms
applied; point clouds and paths in a scene are dropped. glTF is +Y up by specification, so
GLB/GLTF meshes are turned to +Z up, the polar axis of the grid.

OFF is parsed by a vectorized reader (ModelNet40's glued header ``OFF490 518 0`` included)
with trimesh's reader as the fallback for polygons and colours.

Every failure is a :class:`~raymap.errors.MeshError` with a reason a user can act on.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import trimesh

from raymap.errors import MeshError

SUPPORTED_FORMATS: tuple[str, ...] = ("obj", "off", "stl", "ply", "glb", "gltf")
DEFAULT_MAX_FACES = 500_000

# glTF is +Y up; our grid's polar axis is +Z: (x, y, z) -> (x, -z, y).
_Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_OFF_HEADER = re.compile(rb"\A\s*(C?N?OFF)")
_OFF_COMMENT = re.compile(rb"#[^\r\n]*")


def file_type_of(name: str) -> str:
    """The format of a file name or a bare format name: 'chair.OFF' -> 'off', '.glb' -> 'glb'."""
    return name.rsplit(".", 1)[-1].lower()


def load_mesh(data: bytes, file_type: str, max_faces: int = DEFAULT_MAX_FACES) -> trimesh.Trimesh:
    """Parse ``data`` as ``file_type`` (a format or a file name) into a validated mesh.

    The mesh is unprocessed (no vertex merging), float64 vertices and int64 faces.
    Raises :class:`MeshError` for an unknown format, unreadable bytes, no faces, non-finite
    coordinates, face indices out of range, zero extent or more than ``max_faces`` faces.
    """
    fmt = file_type_of(file_type)
    if fmt not in SUPPORTED_FORMATS:
        raise MeshError(
            f"unknown mesh format {file_type!r}; supported: {', '.join(SUPPORTED_FORMATS)}"
        )
    if not data:
        raise MeshError(f"the {fmt.upper()} file is empty")
    if fmt == "off":
        vertices, faces = _read_off(data, max_faces)
    else:
        if fmt == "gltf":
            _check_gltf_is_self_contained(data)
        vertices, faces = _read_with_trimesh(data, fmt)
    if fmt in ("glb", "gltf") and len(vertices):
        vertices = vertices @ _Y_UP_TO_Z_UP.T
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)
    validate_mesh(mesh, max_faces)
    return mesh


def load_mesh_file(path: str | Path, max_faces: int = DEFAULT_MAX_FACES) -> trimesh.Trimesh:
    """:func:`load_mesh` on a file; the format comes from the suffix."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MeshError(f"cannot read {path.name}: {exc.strerror}") from exc
    return load_mesh(data, path.suffix or path.name, max_faces=max_faces)


def validate_mesh(mesh: trimesh.Trimesh, max_faces: int | None = DEFAULT_MAX_FACES) -> None:
    """Raise :class:`MeshError` unless ``mesh`` can be ray cast; cheap (one pass over it).

    ``max_faces=None`` means no cap.
    """
    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise MeshError("the mesh has no faces (a point cloud or an empty file?)")
    if max_faces is not None and len(faces) > max_faces:
        raise MeshError(f"the mesh has {len(faces)} faces, more than the limit of {max_faces}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(
            f"face indices out of range: they span [{faces.min()}, {faces.max()}] "
            f"but there are {len(vertices)} vertices"
        )
    used = vertices[faces.ravel()]
    if not np.isfinite(used).all():
        n_bad = int((~np.isfinite(vertices)).any(axis=1).sum())
        raise MeshError(f"{n_bad} vertices have non-finite coordinates (NaN or infinity)")
    extent = used.max(axis=0) - used.min(axis=0)
    if not extent.max() > 0:
        raise MeshError("the mesh has zero extent: all its faces collapse to one point")


def _read_with_trimesh(data: bytes, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        scene = trimesh.load_scene(io.BytesIO(data), file_type=fmt, process=False)
        merged = scene.to_mesh()
    except IndexError as exc:
        raise MeshError(
            f"face indices out of range in the {fmt.upper()} file: {_short(exc)}"
        ) from exc
    except Exception as exc:  # trimesh raises anything from a bad file
        raise MeshError(f"cannot read the {fmt.upper()} file: {_short(exc)}") from exc
    vertices = np.asarray(merged.vertices, dtype=np.float64)
    faces = np.asarray(merged.faces, dtype=np.int64)
    return vertices, faces.reshape(-1, 3) if faces.size else np.zeros((0, 3), np.int64)


def _check_gltf_is_self_contained(data: bytes) -> None:
    """An uploaded .gltf cannot reach its .bin or texture files: say so plainly."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MeshError(f"cannot read the GLTF file: it is not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise MeshError("cannot read the GLTF file: its JSON is not an object")
    external = [
        str(buffer.get("uri"))
        for buffer in document.get("buffers", [])
        if isinstance(buffer, dict) and not str(buffer.get("uri", "data:")).startswith("data:")
    ]
    if external:
        raise MeshError(
            f"the GLTF file refers to external files ({', '.join(external[:3])}); "
            "upload a .glb, or a .gltf with embedded buffers"
        )


def _read_off(data: bytes, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized OFF reader for the common case: triangles without colours."""
    if b"#" in data:
        data = _OFF_COMMENT.sub(b"", data)
    match = _OFF_HEADER.match(data)
    if match is None:
        raise MeshError("cannot read the OFF file: it does not start with 'OFF'")
    body = data[match.end() :]
    tokens = body.split(maxsplit=3)
    try:
        n_vertices, n_faces = int(tokens[0]), int(tokens[1])
    except (IndexError, ValueError) as exc:
        raise MeshError("cannot read the OFF file: no vertex and face counts after 'OFF'") from exc
    if n_vertices < 0 or n_faces < 0:
        raise MeshError(f"cannot read the OFF file: negative counts {n_vertices}, {n_faces}")
    if n_faces > max_faces:
        raise MeshError(f"the mesh has {n_faces} faces, more than the limit of {max_faces}")
    if n_faces == 0:
        raise MeshError("the mesh has no faces (a point cloud or an empty file?)")
    if match.group(1) == b"OFF":
        try:
            values = np.array(tokens[3].split() if len(tokens) > 3 else [], dtype=np.float64)
        except ValueError:
            values = None
        n_vertex_values = 3 * n_vertices
        if values is not None and values.size == n_vertex_values + 4 * n_faces:
            corners = values[n_vertex_values:].reshape(n_faces, 4)
            if (corners[:, 0] == 3).all():
                vertices = values[:n_vertex_values].reshape(n_vertices, 3)
                return vertices, corners[:, 1:].astype(np.int64)
    # Polygons, colours or comments: trimesh's reader (it also accepts the glued header).
    return _read_with_trimesh(data, "off")


def _short(exc: Exception, limit: int = 200) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
