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
    corners = vertices[faces]  # (F, 3 corners, 3 xyz)
    twice_area = np.linalg.norm(
        np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
    )  # (F,)
    total = twice_area.sum()
    if not total > 0:
        raise MeshError("every face of the mesh has zero area")
    center = (twice_area @ corners.sum(axis=1)) / (3.0 * total)  # (3,)
    centered = vertices - center
    scale = float(np.sqrt((centered * centered).sum(axis=1).max()))
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
