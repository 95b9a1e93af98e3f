"""The six per-ray features of Esteves et al. (ECCV 2018), Sec. 5.1.

For a ray cast from the enclosing sphere toward the centre, along unit direction ``r``:

* ``distance``: distance from the unit sphere to the first hit, divided by the diameter 2, so
  it lies in [0, 1]: 0 on the sphere, 0.5 at the centre, 1 at the far side.
* ``cos``, ``sin``: |cos| and sin of the angle between the ray and the surface normal. The
  absolute value makes them independent of the face winding, which is unreliable in ModelNet.

A ray that misses (the mesh is not convex and the ray passes through a hole) gets
``distance = 1`` (nothing along the whole chord), ``cos = sin = 0``: a value no hit can take,
since a hit has cos^2 + sin^2 = 1. Rays always hit the convex hull, which contains the centre.

They are computed in C with the rays (:meth:`raymap.cast.RayScene.features`,
:meth:`raymap.hull.HullPlanes.features`), in float32 as numpy did; the numpy they replaced is
the tests' reference (``tests/raymap_testing.py``).
"""

from __future__ import annotations

import numpy as np

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
# A hit's distance along its ray less this is its distance from the unit sphere (float32).
START_OFFSET = float(np.float32(ORIGIN_RADIUS - 1.0))
# What a ray that misses gets (raymap/_kernels.c writes these).
MISS_DISTANCE = 1.0
MISS_COS = 0.0
MISS_SIN = 0.0
