"""Benchmark meshes made at bench time (never committed): a ModelNet10 mesh subdivided to a
given face count, written in each upload format.

Subdividing a face splits it into four (midpoints), so the shape is unchanged and only the
face count grows: ``F + 3k`` faces after splitting ``k`` of them. Used by ``bench/serve.py``
(uploads of ~1k to ~500k faces) and ``bench/input.py`` (the input stage per format).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import trimesh

# Upload formats; "ply_ascii" is a PLY file too, written as text (the Stanford scans' layout)
FORMATS: tuple[str, ...] = ("off", "obj", "stl", "ply", "ply_ascii", "glb")
SIZES: tuple[int, ...] = (1_000, 10_000, 100_000, 499_999)
_OFF_COUNTS = re.compile(rb"\A\s*OFF\s*(\d+)\s+(\d+)")


def upload_type(file_type: str) -> str:
    """The format an upload of ``file_type`` declares: ``ply_ascii`` is a ``ply``."""
    return file_type.removesuffix("_ascii")


def off_faces(path: Path) -> int:
    with open(path, "rb") as f:
        match = _OFF_COUNTS.match(f.read(256))
    return int(match.group(2)) if match else -1


def closest(root: Path, faces: int, split: str = "test") -> Path:
    """The ModelNet10 mesh of ``split`` whose face count is closest to ``faces``."""
    paths = sorted(root.glob(f"*/{split}/*.off"))
    if not paths:
        raise SystemExit(f"no ModelNet10 meshes under {root}")
    return min(paths, key=lambda p: (abs(off_faces(p) - faces), p.name))


def subdivided(vertices: np.ndarray, faces: np.ndarray, target: int) -> trimesh.Trimesh:
    """The mesh with some faces split in four until it has ``target`` faces, or up to two
    fewer (each split adds three)."""
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    while (split := min(len(faces), (target - len(faces)) // 3)) > 0:
        vertices, faces = trimesh.remesh.subdivide(vertices, faces, face_index=np.arange(split))
    return trimesh.Trimesh(vertices, faces, process=False)


def mesh_of_size(root: Path, target: int) -> tuple[str, trimesh.Trimesh]:
    """A real mesh of about ``target`` faces: the ModelNet10 test mesh closest to it up to
    12k faces, as it is; above, the one closest to 10k (sofa_0694) subdivided."""
    from raymap.mesh import load_mesh_file

    if target <= 12_000:
        path = closest(root, target)
        mesh = load_mesh_file(path, max_faces=10**7)
        return path.stem, trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    path = closest(root, 10_000)
    mesh = load_mesh_file(path, max_faces=10**7)
    out = subdivided(mesh.vertices, mesh.faces, target)
    return f"{path.stem}@{len(out.faces)}", out


def encode(mesh: trimesh.Trimesh, file_type: str) -> bytes:
    """``mesh`` as the bytes of an upload in ``file_type`` (one of ``FORMATS``: STL and PLY
    binary, OBJ, OFF and ``ply_ascii`` text)."""
    if file_type == "off":
        return off_bytes(mesh.vertices, mesh.faces)
    if file_type == "ply_ascii":
        return trimesh.exchange.ply.export_ply(mesh, encoding="ascii")
    data = mesh.export(file_type=file_type)
    return data.encode() if isinstance(data, str) else data


def off_bytes(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """ModelNet's OFF layout: six decimals per coordinate, ``3 a b c`` per face."""
    v = "\n".join(" ".join(f"{x:.6f}" for x in row) for row in np.asarray(vertices))
    f = "\n".join(f"3 {a} {b} {c}" for a, b, c in np.asarray(faces))
    return f"OFF\n{len(vertices)} {len(faces)} 0\n{v}\n{f}\n".encode()
