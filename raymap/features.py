"""The six per-ray features of Esteves et al. (ECCV 2018), Sec. 5.1, as pure numpy.

For a ray cast from the enclosing sphere toward the centre, along unit direction ``r``:

* ``distance``: distance from the unit sphere to the first hit, divided by the diameter 2, so
  it lies in [0, 1]: 0 on the sphere, 0.5 at the centre, 1 at the far side.
* ``cos``, ``sin``: |cos| and sin of the angle between the ray and the surface normal. The
  absolute value makes them independent of the face winding, which is unreliable in ModelNet.

A ray that misses (the mesh is not convex and the ray passes through a hole) gets
``distance = 1`` (nothing along the whole chord), ``cos = sin = 0``: a value no hit can take,
since a hit has cos^2 + sin^2 = 1. Rays always hit the convex hull, which contains the centre.
"""

from __future__ import annotations

import numpy as np

from raymap.cast import Hits

FEATURES_VERSION = "1"
FEATURE_NAMES: tuple[str, ...] = (
    "mesh_distance",
    "mesh_cos",
    "mesh_sin",
    "hull_distance",
    "hull_cos",
    "hull_sin",
)

# Rays start a little outside the unit sphere so that the farthest vertex, at radius 1 up to
# float32 rounding, is still in front of them; distances are measured from radius 1.
ORIGIN_RADIUS = 1.0 + 1e-3
MISS_DISTANCE = 1.0
MISS_COS = 0.0
MISS_SIN = 0.0


def ray_features(hits: Hits, ray_directions: np.ndarray) -> np.ndarray:
    """(3, R) float32: distance, |cos|, sin for rays of unit ``ray_directions`` (R, 3)."""
    out = np.empty((3, len(ray_directions)), dtype=np.float32)
    distance, cos, sin = out
    travelled = hits.distance - np.float32(ORIGIN_RADIUS - 1.0)  # (R,) from the unit sphere
    np.clip(travelled * np.float32(0.5), 0.0, 1.0, out=distance)
    (nx, ny, nz), (dx, dy, dz) = hits.normal_rows, ray_directions.T
    normal_length = np.sqrt(nx * nx + ny * ny + nz * nz)  # (R,)
    dot = np.abs(nx * dx + ny * dy + nz * dz)  # (R,)
    np.divide(dot, normal_length, out=cos, where=normal_length > 0)
    cos[normal_length <= 0] = 1.0  # a degenerate face: no angle to measure
    np.clip(cos, 0.0, 1.0, out=cos)
    np.sqrt(np.maximum(np.float32(0.0), 1.0 - cos * cos), out=sin)
    out[:, ~hits.hit] = np.array([MISS_DISTANCE, MISS_COS, MISS_SIN], dtype=np.float32)[:, None]
    return out


def entry_features(radius: np.ndarray, cos: np.ndarray) -> np.ndarray:
    """(3, R) float32: :func:`ray_features` of rays toward the centre that all hit, entering
    a convex surface at ``radius`` (R,) through a plane whose normal makes the angle
    ``arccos(cos)`` (R,) with the ray (:meth:`raymap.hull.HullPlanes.entry`)."""
    out = np.empty((3, len(radius)), dtype=np.float32)
    distance, cos_out, sin = out
    np.clip((1.0 - radius) * 0.5, 0.0, 1.0, out=distance)  # travelled from the unit sphere
    np.clip(cos, 0.0, 1.0, out=cos_out)
    np.sqrt(1.0 - cos_out * cos_out, out=sin)
    return out
