"""Mesh -> six-channel spherical map on the Driscoll-Healy grid.

``prepare`` does the per-mesh work once (validate, normalize, convex hull, two embree
scenes); ``project`` casts one ray per grid point for a given rotation. Rotating the mesh by
``R`` is done by casting the rays ``R^T d`` instead of moving the mesh, so the rotated copies
of a dataset share one BVH. The map of ``R``-rotated mesh at grid direction ``d`` is the map of
the mesh at ``R^T d``, which is what a rotation does to a function on the sphere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from raymap.cast import RayScene
from raymap.features import FEATURE_NAMES, ORIGIN_RADIUS, ray_features
from raymap.grid import check_bandwidth, directions
from raymap.mesh import Triangles, validate_mesh
from raymap.normalize import NormalizedMesh, normalize

# Two qhull options skip bookkeeping whose results a hull of facets never reads:
# Q5, the final correction of the merged facets' outer planes, and Q8, tracking near-inside
# points (for coplanar-point output). The same facets on all 899 ModelNet10 test meshes,
# 14 % less time (scipy always adds Qt, triangulated output).
HULL_OPTIONS = "Q5 Q8"
# From this many faces on, qhull runs in a helper thread while Embree builds the surface
# scene: both release the GIL, so a large upload's wall time drops by the shorter of the two
# (500k faces: ~50 ms). Below, the hand-off costs more CPU than it saves time (10k faces:
# +0.7 ms of CPU for -0.9 ms), and a server under load has no idle core to give anyway.
OVERLAP_MIN_FACES = 50_000


@dataclass(frozen=True)
class PreparedMesh:
    """A normalized mesh and its convex hull, each with its embree scene built."""

    normalized: NormalizedMesh
    surface: RayScene
    hull: RayScene


def convex_hull_faces(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convex hull by qhull: (hull vertices (H, 3), faces (F, 3) int32 into them).

    A flat mesh has no 3D hull; qhull's joggle (``QJ``) then gives a thin one. With fewer
    than four points even that fails, and the mesh (a lone triangle) is its own hull.
    """
    try:
        hull = ConvexHull(vertices, qhull_options=HULL_OPTIONS)
    except QhullError:
        try:
            hull = ConvexHull(vertices, qhull_options="QJ")
        except QhullError:
            return vertices, faces.astype(np.int32)
    used = hull.vertices  # (H,) indices into ``vertices``
    new_index = np.empty(len(vertices), dtype=np.int32)
    new_index[used] = np.arange(len(used), dtype=np.int32)
    return vertices[used], new_index[hull.simplices]


Clock = Callable[[], float]


def prepare(
    mesh: Triangles,
    timings: dict[str, float] | None = None,
    clock: Clock = time.perf_counter,
    validated: bool = False,
) -> PreparedMesh:
    """Validate, normalize, build the hull and both scenes; stage times (ms) into ``timings``.

    ``mesh`` is anything with ``vertices`` and ``faces`` arrays (a ``trimesh.Trimesh``);
    ``validated=True`` skips the validation for a mesh :func:`raymap.load_mesh` just returned
    (it validates what it reads; a 500k-face mesh takes ~15 ms to check twice). From
    ``OVERLAP_MIN_FACES`` faces on, qhull runs in a helper thread while the surface scene
    builds; ``timings["hull"]`` (qhull's own time) then overlaps ``cast_build``.
    """
    start = clock()
    if not validated:
        validate_mesh(mesh, max_faces=None)
    normalized = normalize(mesh.vertices, mesh.faces)
    after_normalize = clock()
    if len(normalized.faces) >= OVERLAP_MIN_FACES:
        hull_job = _hull_threads(os.getpid()).submit(_timed_hull, normalized, clock)
        surface, surface_ms = _timed_scene(normalized.vertices, normalized.faces, clock)
        (hull_vertices, hull_faces), hull_ms = hull_job.result()
    else:
        (hull_vertices, hull_faces), hull_ms = _timed_hull(normalized, clock)
        surface, surface_ms = _timed_scene(normalized.vertices, normalized.faces, clock)
    hull, hull_scene_ms = _timed_scene(hull_vertices, hull_faces, clock)
    if timings is not None:
        timings["normalize"] = 1e3 * (after_normalize - start)
        timings["hull"] = hull_ms
        timings["cast_build"] = surface_ms + hull_scene_ms
    return PreparedMesh(normalized=normalized, surface=surface, hull=hull)


def _timed_hull(
    normalized: NormalizedMesh, clock: Clock
) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    start = clock()
    hull = convex_hull_faces(normalized.vertices, normalized.faces)
    return hull, 1e3 * (clock() - start)


def _timed_scene(vertices: np.ndarray, faces: np.ndarray, clock: Clock) -> tuple[RayScene, float]:
    start = clock()
    scene = RayScene(vertices, faces)
    return scene, 1e3 * (clock() - start)


@cache
def _hull_threads(pid: int) -> ThreadPoolExecutor:
    """This process's helper threads: a forked child (a dataset build's worker) gets its own,
    never the parent's pool, whose threads it does not have."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="raymap-hull")


def project(
    prepared: PreparedMesh,
    bandwidth: int,
    rotation: np.ndarray | None = None,
    timings: dict[str, float] | None = None,
    clock: Clock = time.perf_counter,
) -> np.ndarray:
    """The (6, 2b, 2b) float32 map of the prepared mesh rotated by ``rotation`` (3x3)."""
    b = check_bandwidth(bandwidth)
    outward = directions(b).reshape(-1, 3)  # (R, 3) grid directions d
    if rotation is not None:
        outward = outward @ _check_rotation(rotation)  # rows R^T d
    origins = (ORIGIN_RADIUS * outward).astype(np.float32)  # (R, 3)
    inward = (-outward).astype(np.float32)  # (R, 3) toward the centre
    start = clock()
    surface_hits = prepared.surface.cast(origins, inward)
    hull_hits = prepared.hull.cast(origins, inward)
    after_cast = clock()
    channels = np.concatenate(
        [ray_features(surface_hits, inward), ray_features(hull_hits, inward)]
    )  # (6, R)
    out = channels.reshape(len(FEATURE_NAMES), 2 * b, 2 * b)  # (6, n_lat, n_lon)
    if timings is not None:
        timings["cast_rays"] = 1e3 * (after_cast - start)
        timings["features"] = 1e3 * (clock() - after_cast)
    return out


def spherical_map(
    mesh: Triangles, bandwidth: int, rotation: np.ndarray | None = None
) -> np.ndarray:
    """The (6, 2b, 2b) float32 spherical map of ``mesh``; channels in ``FEATURE_NAMES`` order.

    ``rotation`` (3x3, applied about the centroid) rotates the mesh before casting. Raises
    :class:`MeshError` for a mesh that cannot be cast.
    """
    check_bandwidth(bandwidth)
    return project(prepare(mesh), bandwidth, rotation)


def spherical_map_timed(
    mesh: Triangles,
    bandwidth: int,
    rotation: np.ndarray | None = None,
    clock: Clock = time.perf_counter,
) -> tuple[np.ndarray, dict[str, float]]:
    """:func:`spherical_map` and its stage times in ms (wall clock unless ``clock`` is given).

    Keys: ``normalize`` (validation included), ``hull`` (qhull), ``cast`` (both BVH builds
    and both ray bundles; split into ``cast_build`` and ``cast_rays``), ``features``, ``total``.
    """
    check_bandwidth(bandwidth)
    timings: dict[str, float] = {}
    start = clock()
    out = project(prepare(mesh, timings, clock), bandwidth, rotation, timings, clock)
    timings["cast"] = timings["cast_build"] + timings["cast_rays"]
    timings["total"] = 1e3 * (clock() - start)
    return out, timings


def _check_rotation(rotation: np.ndarray) -> np.ndarray:
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape != (3, 3) or not np.isfinite(rotation).all():
        raise ValueError(f"rotation must be a finite 3x3 matrix, got shape {rotation.shape}")
    error = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if error > 1e-6 or np.linalg.det(rotation) < 0:
        raise ValueError(
            f"rotation must be orthogonal with det +1; |R^T R - I| = {error:.2e}, "
            f"det = {np.linalg.det(rotation):.6f}"
        )
    return rotation
