"""Translation and scale normalization, as in the paper: centre the shape, fit the unit sphere.

The centre is the area-weighted centroid of the surface and the scale is the largest distance
from it to a vertex, so both commute with rotations: normalizing a rotated mesh gives the
rotated normalized mesh (an axis-aligned bounding-box centre would not). Only vertices used
by a face count, so stray unreferenced vertices neither move nor shrink the shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raymap import _kernels
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
    :class:`MeshError` if every face has zero area. The loops are C
    (:mod:`raymap._kernels`): the vertices no face uses are dropped and the faces renumbered,
    the coordinates scaled by a power of two near 1 (exact: every rounding below is the
    same, scaled, and areas cannot overflow up to the float64 range), and each face's
    twice-area and corner sum computed; the centroid is their weighted sum (numpy's sums, as
    before the kernels: the same bits), and the scale the largest distance from it to a
    vertex.
    """
    vertices = np.ascontiguousarray(vertices, dtype=np.float64)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    out_vertices = np.empty_like(vertices)
    out_faces = np.empty(faces.shape, dtype=np.int32)
    twice_areas = np.empty(len(faces))
    corner_sums = np.empty((len(faces), 3))
    unit = np.empty(1)
    used = _kernels.normalize_faces(
        vertices, faces, out_vertices, out_faces, twice_areas, corner_sums, unit
    )
    if used < 0:
        raise MeshError(_FAILURES.get(used, f"normalization failed ({used})"))
    total = twice_areas.sum()
    if not total > 0:
        raise MeshError("every face of the mesh has zero area")
    center = (twice_areas @ corner_sums) / (3.0 * total)  # (3,)
    normalized = out_vertices[:used]
    scale = _kernels.center_and_scale(normalized, center)
    if not scale > 0:
        raise MeshError("the mesh has zero extent")
    return NormalizedMesh(
        vertices=normalized, faces=out_faces, center=center / unit[0], scale=scale / unit[0]
    )


# raymap._kernels.normalize_faces's negative answers
_FAILURES = {
    _kernels.ZERO_EXTENT: "the mesh has zero extent",
    _kernels.NOT_FINITE: "non-finite coordinates",
    _kernels.NO_MEMORY: "out of memory while normalizing the mesh",
    _kernels.OUT_OF_RANGE: "face indices out of range",
}
