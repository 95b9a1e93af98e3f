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
A glTF or GLB that goes to trimesh is first checked on its JSON (:mod:`raymap.gltf_check`):
its instances' faces and vertices counted against ``max_faces``, compression and sparse
accessors refused by name, and every reference and byte range checked, before trimesh builds
anything.

Every failure is a :class:`~raymap.errors.MeshError` with a reason a user can act on.
"""

from __future__ import annotations

import codecs
import io
import re
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import trimesh

from raymap.distinct import distinct_points
from raymap.errors import MeshError, too_many_faces
from raymap.glb import read_glb
from raymap.gltf_check import check_gltf
from raymap.gltf_normalized import scale_normalized_positions
from raymap.obj import obj_text, read_obj
from raymap.ply import check_has_faces, read_ply
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
        if fmt in ("glb", "gltf"):  # what trimesh would build, and whether it can read it
            document, binary = check_gltf(data, fmt, max_faces)
            data = scale_normalized_positions(document, binary, fmt) or data
        elif fmt == "ply":
            check_has_faces(data)
        vertices, faces = _read_with_trimesh(data, fmt)
    if fmt == "stl":
        vertices, faces = _shared_corners(vertices, faces)
    if fmt in ("glb", "gltf") and vertices.ndim == 2 and vertices.shape[1:] == (3,):
        vertices = vertices @ _Y_UP_TO_Z_UP.T  # (other widths: validate_mesh names them)
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
        raise too_many_faces(len(faces), max_faces)
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
        vertices, faces = _baked(scene)
    except IndexError as exc:
        raise MeshError(
            f"face indices out of range in the {fmt.upper()} file: {_short(exc)}"
        ) from exc
    except Exception as exc:  # trimesh raises anything from a bad file
        raise MeshError(f"cannot read the {fmt.upper()} file: {_short(exc)}") from exc
    return vertices, faces


def _baked(scene: trimesh.Scene) -> tuple[np.ndarray, np.ndarray]:
    """Every instance of every triangle mesh in ``scene`` moved to its place, as one mesh:
    ``scene.to_mesh()``'s arrays bit for bit (its tests of a transform, the same products,
    the same winding flips, in its order), without the ``Trimesh`` it copies for each
    instance (40,000 nodes placing one box: 12 s there). The instances of one mesh are moved
    in one batch of matrix products."""
    placed = [scene.graph[node] for node in scene.graph.nodes_geometry]  # (transform, name)
    placed = [(t, n) for t, n in placed if isinstance(scene.geometry[n], trimesh.Trimesh)]
    if not placed:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    transforms: dict[str, list[np.ndarray]] = {}
    for transform, name in placed:
        transforms.setdefault(name, []).append(transform)
    corners = {name: _own_corners(scene.geometry[name], name) for name in transforms}
    moved = {  # name -> (k, V, 3) points, (k,) flips
        name: _instances(scene.geometry[name], np.stack(each)) for name, each in transforms.items()
    }
    vertices, faces, offset = [], [], 0
    seen: dict[str, int] = dict.fromkeys(moved, 0)
    for _, name in placed:
        points, flips = moved[name]
        k = seen[name]
        seen[name] = k + 1
        vertices.append(points[k])
        faces.append((corners[name][:, ::-1] if flips[k] else corners[name]) + offset)
        offset += len(points[k])
    return np.concatenate(vertices), np.concatenate(faces)


def _own_corners(mesh: trimesh.Trimesh, name: str) -> np.ndarray:
    """(F, 3) int64 faces of the scene's mesh ``name``; :class:`MeshError` for a corner that
    is not one of its own vertices (trimesh does not check; merged, it would be another
    mesh's)."""
    corners = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if corners.size and (corners.min() < 0 or corners.max() >= len(mesh.vertices)):
        raise MeshError(
            f"face indices out of range in the scene's mesh {name!r}: they span "
            f"[{int(corners.min())}, {int(corners.max())}] but it has {len(mesh.vertices)} "
            "vertices"
        )
    return corners


def _instances(mesh: trimesh.Trimesh, transforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, V, 3) the mesh's vertices under each of (k, 4, 4) ``transforms``, and (k,) whether
    each flips its triangles' winding, decided as ``Trimesh.apply_transform`` decides: no
    change within 1e-8 (trimesh's ``util.allclose``, a peak-to-peak test, or
    ``transform_points``' own), a turn beyond 1e-6 with a negative determinant flips."""
    points = np.asarray(mesh.vertices, dtype=np.float64)
    transforms = np.asarray(transforms, dtype=np.float64)
    offsets = transforms - np.eye(4)
    still = (np.ptp(offsets, axis=(1, 2)) < 1e-8) | (np.abs(offsets).max(axis=(1, 2)) < 1e-8)
    homogeneous = np.column_stack((points, np.ones(len(points))))
    out = np.repeat(points[None], len(transforms), axis=0)
    if len(points) and not still.all():
        moving = np.flatnonzero(~still)
        out[moving] = (transforms[moving] @ homogeneous.T).transpose(0, 2, 1)[:, :, :3]
    turned = np.ptp(transforms[:, :3, :3] - np.eye(3), axis=(1, 2)) >= 1e-6
    flips = ~still & turned & (np.linalg.det(transforms[:, :3, :3]) < 0.0)
    return out, flips


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
        raise too_many_faces(n_faces, max_faces)
    if n_faces == 0:
        raise MeshError("the mesh has no faces (a point cloud or an empty file?)")
    if match.group(1) == b"OFF":
        rest = tokens[3] if len(tokens) > 3 else b""
        values = parse_numbers(rest)
        if values is None:  # a token that is no JSON number: numpy's readers decide
            _check_no_underscores(rest)
            blocks = _off_blocks_by_numpy(rest, n_vertices, n_faces)
        else:
            blocks = _off_blocks(values, n_vertices, n_faces)
        if blocks is not None:
            return blocks
    # Polygons, colours or another header: trimesh's reader (it also accepts the glued
    # header), once the lines it will read are there.
    _check_no_underscores(body)
    _check_off_lines(body, n_vertices, n_faces)
    return _read_with_trimesh(data, "off")


def _check_no_underscores(text: bytes) -> None:
    """Python's ``float`` (numpy's and trimesh's text readers) reads "1_0" as 10."""
    if b"_" in text:
        raise MeshError("cannot read the OFF file: '_' is no part of a number")


def _check_off_lines(body: bytes, n_vertices: int, n_faces: int) -> None:
    """:class:`MeshError` unless ``body`` (an OFF after its keyword, comments removed) has
    the lines its counts declare, read as trimesh reads them: the counts' line, one line per
    vertex, then one per face that lists as many corners as its first number says. Without
    this, a file cut short, or one that declares more vertices than it holds (face lines are
    then read as vertices), is read as a smaller, wrong mesh."""
    lines = [words for line in body.splitlines() if (words := line.split())][1:]
    if len(lines) < n_vertices + n_faces:
        raise MeshError(
            f"the OFF file is cut short or its counts are wrong: its header declares "
            f"{n_vertices} vertices and {n_faces} faces, one line each, but "
            f"{len(lines)} lines follow it"
        )
    for number, words in enumerate(lines[n_vertices : n_vertices + n_faces], start=1):
        corners = int(words[0]) if words[0].isdigit() else None
        if corners is None or len(words) <= corners:
            listed = "no number of corners" if corners is None else (
                f"{len(words) - 1} of its {corners} corners"
            )  # fmt: skip
            raise MeshError(
                f"the OFF file is cut short or its counts are wrong: face {number} of "
                f"{n_faces} lists {listed}"
            )


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
    size = 84 + count * _STL_TRIANGLE.itemsize
    if len(data) < size and not _looks_like_ascii_stl(data):
        raise MeshError(
            f"cannot read the STL file: it is no ASCII STL (no 'solid' and 'facet' lines), and "
            f"as a binary STL it is cut short: its header counts {count} triangles, {size} "
            f"bytes, but it has {len(data)}"
        )
    if len(data) != size:
        return None
    triangles = np.frombuffer(data, _STL_TRIANGLE, count=count, offset=84)
    vertices = triangles["corners"].reshape(-1, 3).astype(np.float64)
    return vertices, np.arange(3 * count, dtype=np.int64).reshape(count, 3)


def _looks_like_ascii_stl(data: bytes) -> bool:
    """An ASCII STL starts with ``solid`` and has ``facet`` lines (a binary STL's 80-byte
    header may start with ``solid`` too); a UTF-8 byte order mark may come first."""
    text = data[:65536].removeprefix(codecs.BOM_UTF8).lstrip().lower()
    return text.startswith(b"solid") and b"facet" in text


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
