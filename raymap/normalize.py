"""Translation and scale normalization, as in the paper: centre the shape, fit the unit sphere.

The centre is the area-weighted centroid of the surface and the scale is the largest distance
from it to a vertex, so both commute with rotations: normalizing a rotated mesh gives the
rotated normalized mesh (an axis-aligned bounding-box centre would not). Only vertices used
by a face count, so stray unreferenced vertices neither move nor shrink the shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raymap.errors import MeshError


@dataclass(frozen=True)
class NormalizedMesh:
    """A mesh inside the unit sphere: ``max |vertex| == 1``, area centroid at the origin."""

    vertices: np.ndarray  # (V, 3) float64, only vertices used by faces
    faces: np.ndarray  # (F, 3) int32 into ``vertices``
    center: np.ndarray  # (3,) the area centroid in input coordinates
    scale: float  # input length of one normalized unit


def normalize(vertices: np.ndarray, faces: np.ndarray) -> NormalizedMesh:
    """Centre on the surface centroid and scale the farthest vertex to radius 1.

    Expects a validated mesh (see :func:`raymap.mesh.validate_mesh`); raises
    :class:`MeshError` if every face has zero area.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    vertices, faces = _used_vertices(vertices, faces)
    # Work at a power-of-two scale near 1: exact (every rounding below is the same, scaled),
    # and areas cannot overflow for coordinates up to the float64 range.
    largest = float(np.abs(vertices).max())
    if not 0 < largest < np.inf:
        raise MeshError("the mesh has zero extent" if largest == 0 else "non-finite coordinates")
    unit = np.ldexp(1.0, -int(np.frexp(largest)[1]))
    vertices = vertices * unit
    corners = _Corners(vertices.T, faces)
    twice_area = corners.twice_areas()  # (F,)
    total = twice_area.sum()
    if not total > 0:
        raise MeshError("every face of the mesh has zero area")
    center = (twice_area @ corners.sums()) / (3.0 * total)  # (3,)
    centered = vertices - center
    x, y, z = np.ascontiguousarray(centered.T)  # (V,) each: faster than a sum over axis 1
    scale = float(np.sqrt((x * x + y * y + z * z).max()))
    if not scale > 0:
        raise MeshError("the mesh has zero extent")
    return NormalizedMesh(
        vertices=centered / scale,
        faces=faces.astype(np.int32),
        center=center / unit,
        scale=scale / unit,
    )


def _used_vertices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses and renumber the faces."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    if used.all():
        return vertices, faces
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces]


class _Corners:
    """The corners of every face, one coordinate at a time: (F,) arrays, so that the cross
    products are nine contiguous multiplications rather than ``np.cross`` on (F, 3) rows
    (the same operations in the same order: the results are bit for bit those of
    ``np.cross``, ``np.linalg.norm`` and ``vertices[faces].sum(axis=1)``)."""

    def __init__(self, coordinates: np.ndarray, faces: np.ndarray) -> None:
        # One contiguous (3, F) copy of the indices: ``np.take`` copies a strided index
        # column (``faces[:, k]``) before each of its nine gathers otherwise.
        corner_indices = np.ascontiguousarray(faces.T)
        # corner[k][axis]: (F,) coordinate ``axis`` of corner ``k`` of every face
        self.corner = [
            [np.take(axis_values, corner_indices[k]) for axis_values in coordinates]
            for k in range(3)
        ]

    def twice_areas(self) -> np.ndarray:
        """(F,) |(c1 - c0) x (c2 - c0)|, twice each face's area."""
        (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = self.corner
        ax, ay, az = x1 - x0, y1 - y0, z1 - z0
        bx, by, bz = x2 - x0, y2 - y0, z2 - z0
        normal_x = ay * bz - az * by
        normal_y = az * bx - ax * bz
        normal_z = ax * by - ay * bx
        return np.sqrt(normal_x * normal_x + normal_y * normal_y + normal_z * normal_z)

    def sums(self) -> np.ndarray:
        """(F, 3) c0 + c1 + c2 per face, C-ordered like ``vertices[faces].sum(axis=1)`` (so
        that the centroid's matrix product is the same BLAS call)."""
        out = np.empty((len(self.corner[0][0]), 3))
        for axis in range(3):
            np.add(self.corner[0][axis], self.corner[1][axis], out=out[:, axis])
            out[:, axis] += self.corner[2][axis]
        return out
