"""Shared helpers for the raymap tests: fixture paths, a map comparison that reports, and the
readers' comparison with trimesh."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from raymap.cast import Hits
from raymap.features import MISS_COS, MISS_DISTANCE, MISS_SIN, ORIGIN_RADIUS

FIXTURES = Path(__file__).parent / "fixtures"
MODELNET_MINI = FIXTURES / "modelnet10_mini"
CHAIR = FIXTURES / "meshes" / "chair_0890.off"


def assert_maps_close(
    actual: np.ndarray, expected: np.ndarray, atol: float, max_bad_fraction: float = 0.0
) -> None:
    """All but ``max_bad_fraction`` of the entries within ``atol``; reports the largest error.

    Ray casting is exact only up to float32 rounding: a ray through a triangle edge or a
    silhouette may land on the other side of it after a rotation, so equivariance tests allow
    a small fraction of such entries.
    """
    assert actual.shape == expected.shape, f"shapes {actual.shape} != {expected.shape}"
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    worst = np.unravel_index(np.argmax(error), error.shape)
    bad_fraction = float((error > atol).mean())
    assert bad_fraction <= max_bad_fraction, (
        f"{bad_fraction:.4%} of entries differ by more than {atol} "
        f"(allowed {max_bad_fraction:.4%}); largest error {error[worst]:.3e} at {worst}: "
        f"{actual[worst]} vs {expected[worst]}"
    )


def rotation_about_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def assert_same_arrays(ours: tuple, theirs: tuple) -> None:
    """Each of ``ours`` equal to its counterpart in ``theirs`` bit for bit, of the same dtype."""
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine.dtype == np.asarray(expected).dtype
        np.testing.assert_array_equal(mine, expected)


def assert_reads_as_trimesh(
    read: Callable[[bytes], tuple | None], file_type: str, data: bytes
) -> None:
    """``read`` (one of raymap's numpy readers) takes ``data`` and gives trimesh's arrays."""
    from raymap.mesh import _read_with_trimesh

    ours = read(data)
    assert ours is not None, f"{read.__name__} left this file to trimesh"
    assert_same_arrays(ours, _read_with_trimesh(data, file_type))


# --------------------------------------------------------------------------------------------
# The numpy that raymap/_kernels.c replaced, as the reference its loops are held to: the same
# operations in the same order and types, so the kernels give these arrays bit for bit where
# no sum is reordered (the centroid's and the planes' sums, pairwise or by BLAS here).


def reference_normalize(
    vertices: np.ndarray, faces: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(vertices, faces, centre, scale) as ``raymap.normalize.normalize`` gave them in numpy."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    if not used.all():
        renumber = np.cumsum(used) - 1
        vertices, faces = vertices[used], renumber[faces]
    largest = float(np.abs(vertices).max())
    unit = np.ldexp(1.0, -int(np.frexp(largest)[1]))
    vertices = vertices * unit
    c0, c1, c2 = (vertices[faces[:, k]].T for k in range(3))  # (3, F): each face's corner k
    (ax, ay, az), (bx, by, bz) = c1 - c0, c2 - c0
    normal = (ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx)
    twice_area = np.sqrt(normal[0] * normal[0] + normal[1] * normal[1] + normal[2] * normal[2])
    center = (twice_area @ np.ascontiguousarray(((c0 + c1) + c2).T)) / (3.0 * twice_area.sum())
    centered = vertices - center
    scale = float(np.sqrt((centered * centered).sum(axis=1).max()))
    return centered / scale, faces.astype(np.int32), center / unit, scale / unit


def reference_hull_features(
    hull_vertices: np.ndarray, hull_faces: np.ndarray, outward: np.ndarray
) -> np.ndarray:
    """(3, R) float32: the features of rays toward the centre entering the hull, by its planes
    in numpy (what ``raymap.hull.HullPlanes`` computed before the kernels)."""
    a, b, c = (hull_vertices[hull_faces[:, k]] for k in range(3))
    (ux, uy, uz), (vx, vy, vz) = (b - a).T, (c - a).T
    normals = np.stack([uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx])  # (3, T)
    normals /= np.sqrt((normals * normals).sum(axis=0))
    offsets = (normals * a.T).sum(axis=0)
    reach = outward @ (normals / offsets)  # (R, T)
    plane = reach.argmax(axis=1)
    nearest = reach[np.arange(len(reach)), plane]
    out = np.empty((3, len(outward)), dtype=np.float32)
    distance, cos, sin = out
    np.clip((1.0 - 1.0 / nearest) * 0.5, 0.0, 1.0, out=distance)
    np.clip(nearest * offsets[plane], 0.0, 1.0, out=cos)
    np.sqrt(1.0 - cos * cos, out=sin)
    return out


def reference_ray_features(hits: Hits, ray_directions: np.ndarray) -> np.ndarray:
    """(3, R) float32: distance, |cos|, sin of first ``hits`` (``RayScene.cast``) along unit
    ``ray_directions`` (R, 3) float32, in numpy (what ``raymap.features`` computed before)."""
    out = np.empty((3, len(ray_directions)), dtype=np.float32)
    distance, cos, sin = out
    travelled = hits.distance - np.float32(ORIGIN_RADIUS - 1.0)
    np.clip(travelled * np.float32(0.5), 0.0, 1.0, out=distance)
    (nx, ny, nz), (dx, dy, dz) = hits.normal_rows, ray_directions.T
    normal_length = np.sqrt(nx * nx + ny * ny + nz * nz)
    dot = np.abs(nx * dx + ny * dy + nz * dz)
    np.divide(dot, normal_length, out=cos, where=normal_length > 0)
    cos[normal_length <= 0] = 1.0
    np.clip(cos, 0.0, 1.0, out=cos)
    np.sqrt(np.maximum(np.float32(0.0), 1.0 - cos * cos), out=sin)
    miss = np.array([MISS_DISTANCE, MISS_COS, MISS_SIN], dtype=np.float32)[:, None]
    out[:, ~hits.hit] = miss
    return out
