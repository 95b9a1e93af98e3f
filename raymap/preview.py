"""A bounded preview of the mesh the network sees: normalized, decimated, in a compact binary.

The page draws this instead of parsing uploads itself, so every format the service reads is
drawn, and what is drawn is exactly the mesh that was classified: the output of
:func:`raymap.normalize.normalize` (area centroid at the origin, farthest vertex at radius 1),
decimated by vertex clustering to at most ``max_faces`` triangles.

Binary layout (little-endian), media type ``application/x-shapes-mesh``::

    bytes 0-3   b"SSPV"
    uint32      version (1)
    uint32      V, the number of vertices
    uint32      F, the number of triangles
    uint32      the source mesh's triangle count (before decimation)
    int16[V*3]  positions, x y z, each round(32767 * coordinate) (|coordinate| <= 1)
    0 or 2 bytes of zero padding, so that the indices start on a 4-byte boundary
    uint16[F*3] corner indices if V <= 65535, else uint32[F*3]

Vertex clustering costs a few passes over the faces (numpy; no extra dependency): the grid
gets coarser until the triangle count fits, so the cost is bounded by the upload's face limit.

    python -m raymap.preview mesh.off [--max-faces 10000]   # sizes and times of one preview
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raymap.normalize import NormalizedMesh

MAGIC = b"SSPV"
VERSION = 1
MEDIA_TYPE = "application/x-shapes-mesh"
DEFAULT_PREVIEW_FACES = 10_000
MAX_PREVIEW_FACES = 100_000
_HEADER = struct.Struct("<4sIIII")
_SCALE = 32767.0


@dataclass(frozen=True)
class MeshPreview:
    """A decimated normalized mesh: ``vertices`` inside the unit ball, int32 ``faces``."""

    vertices: np.ndarray  # (V, 3) float32, |v| <= 1
    faces: np.ndarray  # (F, 3) int32 into vertices
    source_faces: int  # triangles before decimation

    def encode(self) -> bytes:
        """The binary form described in the module docstring."""
        positions = np.round(np.clip(self.vertices, -1.0, 1.0) * _SCALE).astype("<i2")
        index_type = "<u2" if len(self.vertices) <= 0xFFFF else "<u4"
        header = _HEADER.pack(
            MAGIC, VERSION, len(self.vertices), len(self.faces), self.source_faces
        )
        pad = b"\0\0" if positions.nbytes % 4 else b""
        return header + positions.tobytes() + pad + self.faces.astype(index_type).tobytes()


def decode(data: bytes) -> MeshPreview:
    """Inverse of :meth:`MeshPreview.encode` (positions to 1/32767); ValueError if malformed."""
    if len(data) < _HEADER.size:
        raise ValueError("too short for a mesh preview")
    magic, version, n_vertices, n_faces, source_faces = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"not a version-{VERSION} mesh preview")
    index_type = "<u2" if n_vertices <= 0xFFFF else "<u4"
    offset = _HEADER.size + 6 * n_vertices + (2 if n_vertices % 2 else 0)
    if offset + 3 * n_faces * np.dtype(index_type).itemsize != len(data):
        raise ValueError("the mesh preview's length does not match its header")
    positions = np.frombuffer(data, "<i2", 3 * n_vertices, _HEADER.size)
    faces = np.frombuffer(data, index_type, 3 * n_faces, offset)
    return MeshPreview(
        vertices=(positions.reshape(-1, 3) / _SCALE).astype(np.float32),
        faces=faces.reshape(-1, 3).astype(np.int32),
        source_faces=int(source_faces),
    )


def mesh_preview(mesh: NormalizedMesh, max_faces: int = DEFAULT_PREVIEW_FACES) -> MeshPreview:
    """``mesh`` with at most ``max_faces`` triangles, vertices merged at 16-bit precision."""
    if not 1 <= max_faces <= MAX_PREVIEW_FACES:
        raise ValueError(f"max_faces must be in [1, {MAX_PREVIEW_FACES}], got {max_faces}")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(faces) > max_faces:
        merged, faces = _decimate(vertices, faces, max_faces)
    else:  # merge vertices that quantize alike (STL and glTF soups repeat every corner)
        merged, faces = _cluster(vertices, faces, 2.0 / _SCALE)
    used = np.zeros(len(merged.centres), dtype=bool)
    used[faces.ravel()] = True
    renumber = np.cumsum(used) - 1
    return MeshPreview(
        vertices=merged.centres[used].astype(np.float32),
        faces=renumber[faces].astype(np.int32),
        source_faces=len(mesh.faces),
    )


def _decimate(
    vertices: np.ndarray, faces: np.ndarray, max_faces: int
) -> tuple[_Clusters, np.ndarray]:
    """Vertex clustering on the coarsest-needed grid: the most triangles <= ``max_faces``.

    Clustering a surface of area A on cells of side c leaves about 2 A / c^2 triangles (two
    per occupied cell), which gives the first try; each further try corrects the cell by the
    square root of the miss. One or two tries for most meshes.
    """
    corners = vertices[faces]
    area = (
        0.5
        * np.linalg.norm(
            np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
        ).sum()
    )
    resolution = 2.0 / np.sqrt(2.0 * area / (0.85 * max_faces))  # cells across the diameter
    best: tuple[_Clusters, np.ndarray] | None = None
    for _ in range(6):
        clusters, kept = _cluster(vertices, faces, 2.0 / resolution)
        if len(kept) <= max_faces and (best is None or len(kept) > len(best[1])):
            best = clusters, kept
            if len(kept) >= 0.7 * max_faces:
                break
        resolution *= 0.95 * np.sqrt(max_faces / max(len(kept), 1))
    if best is None:  # still too many: keep evenly spaced triangles of the last try
        best = clusters, kept[:: int(np.ceil(len(kept) / max_faces))]
    return best


@dataclass(frozen=True)
class _Clusters:
    centres: np.ndarray  # (C, 3) mean of the source vertices in each cell
    members: np.ndarray  # (V,) cell of each source vertex


def _as_source(faces: np.ndarray, clusters: _Clusters) -> np.ndarray:
    """Faces over cluster indices -> faces over one source vertex of each cluster."""
    representative = np.empty(len(clusters.centres), dtype=np.int64)
    representative[clusters.members] = np.arange(len(clusters.members))
    return representative[faces]


def _cluster(vertices: np.ndarray, faces: np.ndarray, cell: float) -> tuple[_Clusters, np.ndarray]:
    """Snap ``vertices`` to cells of side ``cell``; drop collapsed and repeated triangles."""
    keys = np.floor((vertices + 1.0) / cell).astype(np.int64)  # (V, 3), 0 .. 2 / cell
    span = int(keys.max()) + 1
    flat = (keys[:, 0] * span + keys[:, 1]) * span + keys[:, 2]
    _, members, counts = np.unique(flat, return_inverse=True, return_counts=True)
    members = members.reshape(-1)
    centres = (
        np.stack(
            [np.bincount(members, vertices[:, axis], len(counts)) for axis in range(3)], axis=1
        )
        / counts[:, None]
    )
    corners = members[faces]  # (F, 3)
    keep = (
        (corners[:, 0] != corners[:, 1])
        & (corners[:, 1] != corners[:, 2])
        & (corners[:, 0] != corners[:, 2])
    )
    corners = corners[keep]
    if len(corners):
        # The same triangle twice (either winding) after snapping: keep one.
        ordered = np.sort(corners, axis=1)
        n = np.int64(len(centres))  # n**3 < 2**63 for up to 2 million clusters
        key = (ordered[:, 0] * n + ordered[:, 1]) * n + ordered[:, 2]
        _, first = np.unique(key, return_index=True)
        corners = corners[np.sort(first)]
    return _Clusters(centres, members), corners


def main(argv: Sequence[str] | None = None) -> int:
    from raymap.mesh import load_mesh_file
    from raymap.normalize import normalize
    from raymap.thumbnail import encode_thumbnail, render_thumbnail

    parser = argparse.ArgumentParser(
        prog="python -m raymap.preview", description="Time one mesh's preview and picture."
    )
    parser.add_argument("mesh", type=Path, help="OBJ, OFF, STL, PLY, GLB or GLTF file")
    parser.add_argument("--max-faces", type=int, default=DEFAULT_PREVIEW_FACES)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many")
    args = parser.parse_args(argv)
    mesh = load_mesh_file(args.mesh)
    best = {"normalize": float("inf"), "preview": float("inf"), "thumbnail": float("inf")}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        normalized = normalize(mesh.vertices, mesh.faces)
        t1 = time.perf_counter()
        preview = mesh_preview(normalized, args.max_faces)
        t2 = time.perf_counter()
        picture = encode_thumbnail(render_thumbnail(preview.vertices, preview.faces))
        t3 = time.perf_counter()
        for key, seconds in (("normalize", t1 - t0), ("preview", t2 - t1), ("thumbnail", t3 - t2)):
            best[key] = min(best[key], 1e3 * seconds)
    print(
        f"{args.mesh.name}: {len(mesh.faces)} triangles -> {len(preview.faces)} "
        f"({len(preview.encode())} bytes); picture {len(picture)} bytes; best of "
        f"{args.repeat}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in best.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
