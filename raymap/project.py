"""Mesh -> six-channel spherical map on the Driscoll-Healy grid.

``prepare`` does the per-mesh work once (validate, normalize, convex hull, two embree
scenes); ``project`` casts one ray per grid point for a given rotation. Rotating the mesh by
``R`` is done by casting the rays ``R^T d`` instead of moving the mesh, so the rotated copies
of a dataset share one BVH. The map of ``R``-rotated mesh at grid direction ``d`` is the map of
the mesh at ``R^T d``, which is what a rotation does to a function on the sphere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from raymap.cast import RayScene
from raymap.features import FEATURE_NAMES, ORIGIN_RADIUS, START_OFFSET
from raymap.grid import check_bandwidth, directions
from raymap.hull import HullPlanes, convex_hull, hull_planes
from raymap.mesh import Triangles, validate_mesh
from raymap.normalize import NormalizedMesh, normalize


@dataclass(frozen=True)
class PreparedMesh:
    """A normalized mesh with its embree scene built, and its convex hull: as its planes, or
    as an embree scene where they should not stand for it (:func:`raymap.hull.hull_planes`)."""

    normalized: NormalizedMesh
    surface: RayScene
    hull: HullPlanes | RayScene


Clock = Callable[[], float]


def prepare(
    mesh: Triangles,
    timings: dict[str, float] | None = None,
    clock: Clock = time.perf_counter,
    validated: bool = False,
) -> PreparedMesh:
    """Validate, normalize, build the hull and the scenes; stage times (ms) into ``timings``.

    ``mesh`` is anything with ``vertices`` and ``faces`` arrays (a ``trimesh.Trimesh``);
    ``validated=True`` skips the validation for a mesh :func:`raymap.load_mesh` just returned
    (it validates what it reads; a 500k-face mesh takes ~15 ms to check twice).
    """
    start = clock()
    if not validated:
        validate_mesh(mesh, max_faces=None)
    normalized = normalize(mesh.vertices, mesh.faces)
    after_normalize = clock()
    hull_vertices, hull_faces = convex_hull(normalized.vertices, normalized.faces)
    planes = hull_planes(hull_vertices, hull_faces)
    after_hull = clock()
    surface, surface_ms = _timed_scene(normalized.vertices, normalized.faces, clock)
    hull: HullPlanes | RayScene
    if planes is None:
        hull, hull_scene_ms = _timed_scene(hull_vertices, hull_faces, clock)
    else:
        hull, hull_scene_ms = planes, 0.0
    if timings is not None:
        timings["normalize"] = 1e3 * (after_normalize - start)
        timings["hull"] = 1e3 * (after_hull - after_normalize)
        timings["cast_build"] = surface_ms + hull_scene_ms
    return PreparedMesh(normalized=normalized, surface=surface, hull=hull)


def _timed_scene(vertices: np.ndarray, faces: np.ndarray, clock: Clock) -> tuple[RayScene, float]:
    start = clock()
    scene = RayScene(vertices, faces)
    return scene, 1e3 * (clock() - start)


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
    channels = np.empty((len(FEATURE_NAMES), len(outward)), dtype=np.float32)  # (6, R)
    start = clock()
    prepared.surface.features(origins, inward, START_OFFSET, channels[:3])
    if isinstance(prepared.hull, HullPlanes):
        prepared.hull.features(outward, channels[3:])
    else:
        prepared.hull.features(origins, inward, START_OFFSET, channels[3:])
    if timings is not None:
        timings["cast_rays"] = 1e3 * (clock() - start)  # the features come with the rays
    return channels.reshape(len(FEATURE_NAMES), 2 * b, 2 * b)  # (6, n_lat, n_lon)


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

    Keys: ``normalize`` (validation included), ``hull`` (:mod:`raymap.hull`), ``cast`` (both
    BVH builds and both ray bundles with their features; split into ``cast_build`` and
    ``cast_rays``), ``total``.
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
