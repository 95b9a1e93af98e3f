"""Convex hull of a normalized mesh, as triangles for its ray-casting scene.

Manifold's QuickHull (``manifold3d``, the geometry kernel of OpenSCAD) first: on ModelNet10
meshes it takes a quarter of qhull's time (a 10k-face sofa: 1.1 ms against 4.6 ms), because
their boxy shapes put many points on few facets, which qhull merges one by one. The polytope
is the same; its triangulation is not (QuickHull keeps points that lie on a facet as
vertices, qhull drops them), so a ray hitting a facet may get the normal of another sliver of
the same plane: on the 899 ModelNet10 test meshes, each turned by a random rotation, the
hull's cos and sin channels move by up to 9e-5 (the sine of a grazing hit is the most
sensitive), its distances by 2e-7, and the shipped model's answers not at all: the same top
class and ``known`` for every mesh, no probability moved by more than 2e-6 (``python
bench/maps.py --against e527a2e --rotate 0 --answers``, against the qhull revision).

qhull (scipy) takes the shapes QuickHull cannot give a solid hull: flat meshes (qhull's joggle,
``QJ``, gives a thin hull) and fewer than four points (the mesh is its own hull).
"""

from __future__ import annotations

import manifold3d
import numpy as np
from scipy.spatial import ConvexHull, QhullError

# Two qhull options skip bookkeeping whose results a hull of facets never reads:
# Q5, the final correction of the merged facets' outer planes, and Q8, tracking near-inside
# points (for coplanar-point output). scipy always adds Qt, triangulated output.
QHULL_OPTIONS = "Q5 Q8"
# A hull of a normalized mesh (inside the unit sphere) with less volume than this is flat:
# QuickHull returns a hull of zero (or rounding-error) volume for flat points.
MIN_SOLID_VOLUME = 1e-12


def convex_hull(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The convex hull of ``vertices`` (V, 3) float64, normalized: (hull vertices (H, 3)
    float64, triangles (T, 3) int32 into them)."""
    solid = manifold3d.Manifold.hull_points(vertices)
    if solid.num_vert() >= 4 and solid.volume() > MIN_SOLID_VOLUME:
        triangles = solid.to_mesh64()
        return (
            np.ascontiguousarray(triangles.vert_properties[:, :3], dtype=np.float64),
            np.ascontiguousarray(triangles.tri_verts, dtype=np.int32),
        )
    return qhull_hull(vertices, faces)


def qhull_hull(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hull by qhull. A flat mesh has no 3D hull; qhull's joggle (``QJ``) then gives a
    thin one. With fewer than four points even that fails, and the mesh (a lone triangle) is
    its own hull."""
    try:
        hull = ConvexHull(vertices, qhull_options=QHULL_OPTIONS)
    except QhullError:
        try:
            hull = ConvexHull(vertices, qhull_options="QJ")
        except QhullError:
            return vertices, faces.astype(np.int32)
    used = hull.vertices  # (H,) indices into ``vertices``
    new_index = np.empty(len(vertices), dtype=np.int32)
    new_index[used] = np.arange(len(used), dtype=np.int32)
    return vertices[used], new_index[hull.simplices]
