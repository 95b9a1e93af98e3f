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

from dataclasses import dataclass

import manifold3d
import numpy as np
from scipy.spatial import ConvexHull, QhullError

from raymap import _kernels

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


# A hull of more triangles than this is cast by Embree (raymap.cast) instead of its planes:
# the planes' matrix product grows with rays x triangles, a BVH with the log of the triangles
# (1,024 rays, planes and features against Embree's scene, cast and features, in a one-off
# comparison: 0.19 against 0.51 ms for 52 triangles, 0.31 against 0.60 for 152, 0.68 against
# 0.55 for 414).
MAX_PLANES = 256
# A triangle with less than this twice-area (the hull of a normalized mesh, in the unit ball)
# has too short a normal to trust its direction.
MIN_TWICE_AREA = 1e-9
# How far a hull vertex may lie outside a triangle's plane, and how far inside every plane the
# centre must lie, for the planes to stand for the hull.
PLANE_TOLERANCE = 1e-9
MIN_CENTRE_DEPTH = 1e-6


@dataclass(frozen=True)
class HullPlanes:
    """A convex hull as its triangles' planes ``n . x = h`` (unit ``n`` outward, the centre
    inside: ``h > 0``). A ray from outside toward the centre, along ``-u``, enters the hull
    through the plane it crosses last, the one of largest ``n . u / h``: the hull's radius
    along ``u`` is ``1 / max(n . u / h)``. No ray-casting scene to build; a loop over rays
    and planes in C (:func:`raymap._kernels.hull_features`), in float64."""

    # (4, T): rows n_x / h, n_y / h, n_z / h (u . row i is 1 / (the distance to plane i
    # along u)) and h
    planes: np.ndarray

    def features(self, outward: np.ndarray, out: np.ndarray) -> None:
        """Into ``out`` (3, R) float32: the features (:mod:`raymap.features`) of rays toward
        the centre along ``-u`` for unit directions ``outward`` (R, 3) float64, each entering
        the hull at the radius above through a plane whose normal makes the angle
        ``arccos(cos)`` with it."""
        _kernels.hull_features(self.planes, np.ascontiguousarray(outward, np.float64), out)


def hull_planes(vertices: np.ndarray, faces: np.ndarray) -> HullPlanes | None:
    """The planes of the hull (``vertices`` (H, 3), ``faces`` (T, 3) wound outward) of a mesh
    normalized around the origin, or ``None`` when they should not stand for it: more than
    :data:`MAX_PLANES` triangles, a sliver (its normal is rounding noise), a hull vertex
    outside a plane (no convex hull's triangle: qhull's are not wound consistently), or the
    origin on the surface (a flat mesh's thin hull)."""
    if len(faces) > MAX_PLANES or len(faces) == 0:
        return None
    planes = np.empty((4, len(faces)))
    found = _kernels.hull_planes(
        np.ascontiguousarray(vertices, np.float64),
        np.ascontiguousarray(faces, np.int32),
        MIN_TWICE_AREA,
        MIN_CENTRE_DEPTH,
        PLANE_TOLERANCE,
        planes,
    )
    return HullPlanes(planes) if found else None
