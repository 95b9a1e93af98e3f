"""Bytes -> validated triangle mesh.

Formats: OBJ, OFF, STL (binary and ASCII), PLY, GLB and GLTF (embedded buffers only, since
an upload is a single file). A scene is merged into one mesh with its node transforms
applied; point clouds and paths in a scene are dropped. glTF is +Y up by specification, so
GLB/GLTF meshes are turned to +Z up, the polar axis of the grid.

The numbers of an OFF file (ModelNet's glued header ``OFF490 518 0`` included) and of an
ASCII PLY of triangles are read by simdjson as a JSON array, numpy's values bit for bit
(:mod:`raymap.text_numbers`); a binary PLY of triangles by ``np.frombuffer``
(:mod:`raymap.ply`), a binary STL and a GLB of one mesh (:mod:`raymap.glb`) too; an OBJ of
only ``v`` and ``f`` lines by simdjson in place
(:func:`~raymap.text_numbers.parse_lettered_rows`), or ``np.loadtxt`` when it has comments
or more columns, and any other OBJ by :func:`raymap.obj.read_obj` (its ``v`` and ``f``
statements only, in linear time). Anything else (polygons, colours, ASCII STL, scenes of
several meshes, GLTF) goes through trimesh's loaders.

What an upload can make the loader read is the upload itself: every loader gets the bytes
without a path or a resolver, so an OBJ's ``mtllib /etc/passwd`` or a glTF's ``file:`` URI
reaches nothing on the server's disk (a glTF that needs another file is refused outright).

Every failure is a :class:`~raymap.errors.MeshError` with a reason a user can act on.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import trimesh

from raymap.distinct import distinct_points
from raymap.errors import MeshError
from raymap.glb import read_glb
from raymap.obj import obj_text, read_obj
from raymap.ply import read_ply
from raymap.text_numbers import counted_triangles, parse_lettered_rows, parse_numbers

SUPPORTED_FORMATS: tuple[str, ...] = ("obj", "off", "stl", "ply", "glb", "gltf")
DEFAULT_MAX_FACES = 500_000

# glTF is +Y up; our grid's polar axis is +Z: (x, y, z) -> (x, -z, y).
_Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_OFF_HEADER = re.compile(rb"\A\s*(C?N?OFF)")
_OFF_COMMENT = re.compile(rb"#[^\r\n]*")
_COUNT = re.compile(rb"[0-9]+")
# OBJ lines the np.loadtxt reader understands; any other line (mtllib, usemtl, g, vn, ...)
# goes to the general reader, raymap.obj.
_OBJ_OTHER_LINE = re.compile(rb"^(?![vf][ \t]|#|[ \t\r]*$)", re.MULTILINE)
_OBJ_FACE_LINE = re.compile(rb"^f[ \t]", re.MULTILINE)
_OBJ_VERTEX_LINE = re.compile(rb"^v[ \t]", re.MULTILINE)
_OBJ_SLASHED = re.compile(rb"(?<=[0-9])/[^ \t\r\n]*")  # a/t/n -> a, after a digit only
_OBJ_LEADING_COMMENTS = re.compile(
    rb"(?:#[^\n]*\n)+"
)  # not int(): it also takes "4_0", "+4" and "٤"
# A JSON document nested deeper than this is no glTF; json.loads would recurse into it.
_MAX_JSON_DEPTH = 64


class Triangles(Protocol):
    """Anything with triangle arrays, such as a ``trimesh.Trimesh``."""

    @property
    def vertices(self) -> np.ndarray: ...

    @property
    def faces(self) -> np.ndarray: ...


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
    readers = {"obj": _read_obj, "ply": read_ply, "stl": _read_binary_stl, "glb": read_glb}
    reader = readers.get(fmt)
    simple = reader(data) if reader is not None else None  # None: not the layout it reads
    if fmt == "off":
        vertices, faces = _read_off(data, max_faces)
    elif simple is not None:
        vertices, faces = simple
    else:
        if fmt == "gltf":
            _check_gltf_is_self_contained(data)
        vertices, faces = _read_with_trimesh(data, fmt)
    if fmt == "stl":
        vertices, faces = _shared_corners(vertices, faces)
    if fmt in ("glb", "gltf") and len(vertices):
        vertices = vertices @ _Y_UP_TO_Z_UP.T
    # A Trimesh costs ~10 us here (process=False, validate=False: its caches are lazy).
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


def validate_mesh(mesh: Triangles, max_faces: int | None = DEFAULT_MAX_FACES) -> None:
    """Raise :class:`MeshError` unless ``mesh`` can be ray cast; cheap (one pass over it).

    ``max_faces=None`` means no cap.
    """
    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        width = vertices.shape[1] if vertices.ndim == 2 else 0
        raise MeshError(f"the vertices have {width} coordinates each; a 3D mesh needs 3")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise MeshError("the mesh has no faces (a point cloud or an empty file?)")
    if max_faces is not None and len(faces) > max_faces:
        raise MeshError(f"the mesh has {len(faces)} faces, more than the limit of {max_faces}")
    lowest, highest = int(faces.min()), int(faces.max())
    if lowest < 0 or highest >= len(vertices):
        raise MeshError(
            f"face indices out of range: they span [{lowest}, {highest}] "
            f"but there are {len(vertices)} vertices"
        )
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    if not used.all():  # only the vertices of faces count
        vertices = vertices[used]
    if not np.isfinite(vertices).all():
        n_bad = int((~np.isfinite(vertices)).any(axis=1).sum())
        raise MeshError(
            f"{n_bad} vertices have non-finite coordinates (NaN, infinity, or a number "
            "beyond the float64 range, about 1.8e308)"
        )
    coordinates = np.ascontiguousarray(vertices.T)  # (3, V): numpy reduces rows fast, (V, 3)
    extent = coordinates.max(axis=1) - coordinates.min(axis=1)  # columns 15x slower
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
    depth = _json_depth(data)
    if depth > _MAX_JSON_DEPTH:
        raise MeshError(
            f"cannot read the GLTF file: its JSON is nested {depth} deep (at most "
            f"{_MAX_JSON_DEPTH})"
        )
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MeshError(f"cannot read the GLTF file: it is not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise MeshError("cannot read the GLTF file: its JSON is not an object")
    buffers = document.get("buffers", [])
    if not isinstance(buffers, list) or not all(isinstance(b, dict) for b in buffers):
        raise MeshError("cannot read the GLTF file: 'buffers' must be a list of objects")
    external = [
        str(buffer.get("uri"))
        for buffer in buffers
        if not str(buffer.get("uri", "data:")).startswith("data:")
    ]
    if external:
        raise MeshError(
            f"the GLTF file refers to external files ({', '.join(external[:3])}); "
            "upload a .glb, or a .gltf with embedded buffers"
        )


def _json_depth(data: bytes) -> int:
    """How deep the brackets of a JSON text nest (brackets inside strings count too: an
    upper bound, which is all a limit needs); vectorized, so a 32 MiB file costs ~0.1 s."""
    chars = np.frombuffer(data, dtype=np.uint8)
    step = np.zeros(256, dtype=np.int8)
    step[[ord("["), ord("{")]] = 1
    step[[ord("]"), ord("}")]] = -1
    steps = step[chars]
    if not steps.any():
        return 0
    return int(np.add.accumulate(steps, dtype=np.int64).max())


def _read_off(data: bytes, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized OFF reader for the common case: triangles without colours."""
    data = data.removeprefix(codecs.BOM_UTF8)
    if b"#" in data:
        data = _OFF_COMMENT.sub(b"", data)
    match = _OFF_HEADER.match(data)
    if match is None:
        raise MeshError("cannot read the OFF file: it does not start with 'OFF'")
    body = data[match.end() :]
    tokens = body.split(maxsplit=3)
    if len(tokens) < 2:
        raise MeshError("cannot read the OFF file: no vertex and face counts after 'OFF'")
    if not (_COUNT.fullmatch(tokens[0]) and _COUNT.fullmatch(tokens[1])):
        shown = " ".join(t.decode("ascii", "replace") for t in tokens[:2])
        raise MeshError(
            f"cannot read the OFF file: the vertex and face counts must be whole numbers "
            f"written with the digits 0-9, got {shown!r}"
        )
    n_vertices, n_faces = int(tokens[0]), int(tokens[1])
    if n_faces > max_faces:
        raise MeshError(f"the mesh has {n_faces} faces, more than the limit of {max_faces}")
    if n_faces == 0:
        raise MeshError("the mesh has no faces (a point cloud or an empty file?)")
    if match.group(1) == b"OFF":
        rest = tokens[3] if len(tokens) > 3 else b""
        values = parse_numbers(rest)
        if values is None:  # a token that is no JSON number: numpy's readers decide
            blocks = _off_blocks_by_numpy(rest, n_vertices, n_faces)
        else:
            blocks = _off_blocks(values, n_vertices, n_faces)
        if blocks is not None:
            return blocks
    # Polygons, colours or comments: trimesh's reader (it also accepts the glued header).
    return _read_with_trimesh(data, "off")


def _shared_corners(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One vertex per distinct position (:mod:`raymap.distinct`): STL stores every corner of
    every triangle, three times the vertices of the mesh, which the hull and the scene would
    otherwise carry."""
    if len(vertices) == 0:
        return vertices, faces
    rows = np.asarray(vertices, dtype=np.float64)
    first, inverse = distinct_points(rows)
    return rows[first], inverse[faces]


# Binary STL: an 80-byte header, a uint32 triangle count, then 50 bytes per triangle
_STL_TRIANGLE = np.dtype(
    [("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")]
)


def _read_binary_stl(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """The corners of a binary STL (what trimesh's reader gives), or ``None`` when the length
    is not that of one (an ASCII STL: trimesh reads it)."""
    if len(data) < 84:
        return None
    count = int(np.frombuffer(data, "<u4", count=1, offset=80)[0])
    if len(data) != 84 + count * _STL_TRIANGLE.itemsize:
        return None
    triangles = np.frombuffer(data, _STL_TRIANGLE, count=count, offset=84)
    vertices = triangles["corners"].reshape(-1, 3).astype(np.float64)
    return vertices, np.arange(3 * count, dtype=np.int64).reshape(count, 3)


def _read_obj(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``v x y z`` lines, then ``f a b c`` lines (``a/t/n`` too), by the number parser
    (:func:`_read_plain_obj`) or numpy's C parser (comments, more columns); any other OBJ
    (materials, groups, polygons, relative indices...) by :func:`raymap.obj.read_obj`."""
    data = obj_text(data)  # no byte order mark, UTF-8
    simple = _read_plain_obj(data)
    if simple is None:
        simple = _read_obj_by_loadtxt(data)
    return simple if simple is not None else read_obj(data)


def _read_obj_by_loadtxt(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """The simple layout of :func:`_read_obj` by ``np.loadtxt`` (comments, more columns)."""
    if _OBJ_OTHER_LINE.search(data) is not None:
        return None
    first_face = _OBJ_FACE_LINE.search(data)
    if first_face is None:
        return None
    vertex_lines = list(_OBJ_VERTEX_LINE.finditer(data, first_face.start()))
    if vertex_lines:  # a vertex after the first face: not the simple layout
        return None
    faces_text = data[first_face.start() :]
    if b"#" in faces_text:
        return None
    if b"/" in faces_text:
        faces_text = _OBJ_SLASHED.sub(b"", faces_text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vertices = np.loadtxt(
                io.BytesIO(data[: first_face.start()]), dtype=np.float64, usecols=(1, 2, 3),
                ndmin=2, comments="#",
            )  # fmt: skip
            faces = np.loadtxt(
                io.BytesIO(faces_text), dtype=np.int64, usecols=(1, 2, 3), ndmin=2, comments="#"
            )
    except ValueError:
        return None
    if faces.size == 0 or faces.min() < 1:  # 0 or relative indices
        return None
    if _count_tokens(faces_text) != 4 * len(faces):  # polygons: usecols ignored their rest
        return None
    return vertices, faces - 1


def _read_plain_obj(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """The plainest OBJ, as trimesh's and most exporters write it: leading ``#`` lines, then
    only ``v x y z`` lines, then only ``f a b c`` lines (``a/t/n`` too), one space between
    fields, blank lines at the end. Each block is read in place by
    :func:`~raymap.text_numbers.parse_lettered_rows` (numpy's values bit for bit), which
    also proves its layout. ``None`` for any other OBJ (the readers after this one decide)."""
    comments = _OBJ_LEADING_COMMENTS.match(data)
    body = data[comments.end() :] if comments else data
    body = body.rstrip(b" \t\n") + b"\n"  # trimesh ends its export with a blank line
    # No number has an "f": the first one starts the faces (one byte's search, at memchr's
    # speed; a search for "\nf " was 0.2 ms on a 10k-face file).
    first_face = body.find(b"f")
    if first_face < 1 or body[first_face - 1] != ord("\n"):
        return None
    vertices = parse_lettered_rows(body[:first_face], b"v")
    if vertices is None:
        return None
    face_block = body[first_face:]
    if b"/" in face_block:
        face_block = _OBJ_SLASHED.sub(b"", face_block)
    corners = parse_lettered_rows(face_block, b"f")
    if corners is None:
        return None
    faces = corners.astype(np.int64)
    if not (faces == corners).all() or faces.min() < 1:  # 0 or relative indices
        return None
    return vertices, faces - 1


def _count_tokens(text: bytes) -> int:
    chars = np.frombuffer(text, dtype=np.uint8)
    space = (chars == 32) | ((chars >= 9) & (chars <= 13))
    return int((~space[1:] & space[:-1]).sum()) + int(chars.size > 0 and not space[0])


def _off_lines(rest: bytes, n_vertices: int, n_faces: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertex lines then ``3 a b c`` lines, each block by numpy's C parser; ``None`` when
    the text is laid out otherwise (the caller then reads it token by token)."""
    newlines = np.flatnonzero(np.frombuffer(rest, dtype=np.uint8) == ord("\n"))
    if n_vertices == 0 or len(newlines) < n_vertices:
        return None
    cut = int(newlines[n_vertices - 1]) + 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loadtxt warns about an empty block
            vertices = np.loadtxt(io.BytesIO(rest[:cut]), dtype=np.float64, ndmin=2, comments=None)
            corners = np.loadtxt(io.BytesIO(rest[cut:]), dtype=np.int64, ndmin=2, comments=None)
    except ValueError:
        return None
    if vertices.shape != (n_vertices, 3) or corners.shape != (n_faces, 4):
        return None
    if not (corners[:, 0] == 3).all():
        return None
    return vertices, corners[:, 1:]


def _off_numbers(text: bytes) -> np.ndarray | None:
    """The numbers after the OFF header, token by token."""
    try:
        return np.array(text.split(), dtype=np.float64)
    except ValueError:
        return None


def _off_blocks_by_numpy(
    rest: bytes, n_vertices: int, n_faces: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The vertices and faces after the OFF counts by numpy's readers (the reference
    :func:`raymap.text_numbers.parse_numbers` must agree with); ``None``: not triangles."""
    blocks = _off_lines(rest, n_vertices, n_faces)
    if blocks is not None:
        return blocks
    values = _off_numbers(rest)
    return None if values is None else _off_blocks(values, n_vertices, n_faces)


def _off_blocks(
    values: np.ndarray, n_vertices: int, n_faces: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """``values``, the numbers after the counts, as vertices and ``3 a b c`` faces;
    ``None`` for another count of numbers or polygons."""
    n_vertex_values = 3 * n_vertices
    if values.size != n_vertex_values + 4 * n_faces:
        return None
    faces = counted_triangles(values[n_vertex_values:], "OFF")
    return None if faces is None else (values[:n_vertex_values].reshape(n_vertices, 3), faces)


def _short(exc: Exception, limit: int = 200) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
