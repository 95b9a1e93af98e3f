"""The convex hull: QuickHull (manifold3d) gives qhull's polytope, and the maps stay those of
qhull's hull; flat meshes and lone triangles still go through qhull. A small hull is cast by
its planes, which give Embree's hull channels."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial import ConvexHull

import raymap
from raymap import hull as hull_module
from raymap.cast import RayScene
from raymap.features import ORIGIN_RADIUS, START_OFFSET
from raymap.grid import directions
from raymap.hull import (
    MAX_PLANES,
    MIN_SOLID_VOLUME,
    HullPlanes,
    convex_hull,
    hull_planes,
    qhull_hull,
)
from raymap.normalize import normalize
from raymap.project import prepare
from tests.raymap_testing import CHAIR, MODELNET_MINI

MESHES = [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))]


def planes(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals (T, 3) and offsets (T,) of the triangles' planes (non-degenerate only)."""
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normals, axis=1)
    keep = length > 1e-9
    normals = normals[keep] / length[keep, None]
    return normals, np.einsum("ij,ij->i", normals, corners[keep, 0])


def outside_by(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> float:
    """How far the farthest of ``points`` lies outside the hull (``vertices``, ``faces``)."""
    normals, offsets = planes(vertices, faces)
    centre = vertices.mean(axis=0)
    outward = np.sign(normals @ centre - offsets) * -1.0  # flip planes to face away from it
    signed = (points @ normals.T - offsets) * outward
    return float(signed.max(axis=1).max())


@pytest.mark.parametrize("path", MESHES, ids=lambda p: p.stem)
def test_quickhull_gives_qhulls_polytope(path) -> None:
    mesh = raymap.load_mesh_file(path)
    normalized = normalize(mesh.vertices, mesh.faces)
    ours = convex_hull(normalized.vertices, normalized.faces)
    theirs = qhull_hull(normalized.vertices, normalized.faces)
    # Each hull holds every point of the mesh and every corner of the other: the same set, up
    # to the kernels' tolerances and the planes of sliver triangles (3e-8 on one fixture),
    # far below the 1e-5 a map is compared to.
    assert outside_by(normalized.vertices, *ours) < 1e-7
    assert outside_by(ours[0], *theirs) < 1e-7
    assert outside_by(theirs[0], *ours) < 1e-7
    # ... and encloses qhull's volume with consistently wound triangles (qhull's are not).
    volume = trimesh.Trimesh(*ours, process=False).volume
    assert volume == pytest.approx(ConvexHull(normalized.vertices).volume, rel=1e-6)
    assert ours[0].dtype == np.float64 and ours[1].dtype == np.int32


@pytest.mark.parametrize("path", MESHES[:4], ids=lambda p: p.stem)
def test_maps_with_quickhull_are_qhulls_maps(path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hull's distances agree to float32 rounding; its cos and sin channels up to which
    sliver of a flat facet a ray meets (within 1e-4 on all 899 ModelNet10 test meshes)."""
    mesh = raymap.load_mesh_file(path)
    rotation = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    rotation *= np.linalg.det(rotation)  # a proper rotation
    ours = raymap.spherical_map(mesh, 16, rotation)
    monkeypatch.setattr("raymap.project.convex_hull", qhull_hull)
    theirs = raymap.spherical_map(mesh, 16, rotation)
    np.testing.assert_array_equal(ours[:3], theirs[:3])  # the mesh's own channels
    np.testing.assert_allclose(ours[3], theirs[3], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours[4:], theirs[4:], rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "points",
    [
        np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]),  # flat: qhull's joggle
        np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]),  # a lone triangle: its own hull
    ],
    ids=["square", "triangle"],
)
def test_flat_points_go_to_qhull(points: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    faces = np.array([[0, 1, 2]])
    calls = []
    monkeypatch.setattr(hull_module, "qhull_hull", lambda v, f: calls.append(1) or qhull_hull(v, f))
    vertices, triangles = convex_hull(points, faces)
    assert calls == [1]
    expected = qhull_hull(points, faces)
    np.testing.assert_array_equal(vertices, expected[0])
    np.testing.assert_array_equal(triangles, expected[1])


def test_a_thin_solid_keeps_quickhull() -> None:
    """A slab a thousandth thick is a solid (far above the flatness floor), not flat."""
    box = trimesh.creation.box(extents=(1.0, 1.0, 1e-3))
    vertices, triangles = convex_hull(box.vertices, box.faces)
    volume = trimesh.Trimesh(vertices, triangles, process=False).volume
    assert volume == pytest.approx(1e-3, rel=1e-9) and volume > MIN_SOLID_VOLUME
    assert len(vertices) == 8


def embree_entry(vertices: np.ndarray, faces: np.ndarray, outward: np.ndarray) -> np.ndarray:
    """The hull's three channels as the Embree scene of its triangles gives them."""
    inward = (-outward).astype(np.float32)
    origins = (ORIGIN_RADIUS * outward).astype(np.float32)
    assert RayScene(vertices, faces).cast(origins, inward).hit.all()
    out = np.empty((3, len(outward)), dtype=np.float32)
    RayScene(vertices, faces).features(origins, inward, START_OFFSET, out)
    return out


@pytest.mark.parametrize("path", MESHES, ids=lambda p: p.stem)
def test_hull_planes_give_embrees_hull_channels(path) -> None:
    """Where every ray enters the hull, by its planes, is where Embree's ray meets its
    triangles: distances to float32 rounding; cos to 1e-5; sin to 1e-3, which is float32's
    normal (Embree's) at a ray square to the face: sin = sqrt(1 - cos^2) magnifies it."""
    mesh = raymap.load_mesh_file(path)
    normalized = normalize(mesh.vertices, mesh.faces)
    vertices, faces = convex_hull(normalized.vertices, normalized.faces)
    planes = hull_planes(vertices, faces)
    assert planes is not None
    rotation = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))[0]
    outward = directions(16).reshape(-1, 3) @ rotation
    ours = np.empty((3, len(outward)), dtype=np.float32)
    planes.features(outward, ours)
    theirs = embree_entry(vertices, faces, outward)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=0, atol=1e-3)


def test_a_large_hull_and_a_thin_one_keep_embree() -> None:
    """Past MAX_PLANES triangles the BVH is faster; a flat mesh's thin hull has the centre on
    its surface; qhull's triangles are wound either way: no planes for any of them."""
    sphere = trimesh.creation.icosphere(subdivisions=4)  # 5,120 faces, all on the hull
    vertices, faces = convex_hull(sphere.vertices, sphere.faces)
    assert len(faces) > MAX_PLANES and hull_planes(vertices, faces) is None
    square = np.array([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]])
    assert hull_planes(*qhull_hull(square, np.array([[0, 1, 2], [0, 2, 3]]))) is None
    cube = trimesh.creation.box()
    inward = convex_hull(cube.vertices, cube.faces)
    assert hull_planes(inward[0], inward[1][:, ::-1]) is None


def test_the_service_path_casts_small_hulls_by_their_planes() -> None:
    """``prepare`` takes the planes for a hull of a few dozen triangles, Embree past that;
    the two maps agree as above."""
    chair = raymap.load_mesh_file(CHAIR)
    assert isinstance(prepare(chair).hull, HullPlanes)
    sphere = trimesh.creation.icosphere(subdivisions=4)
    assert isinstance(prepare(sphere).hull, RayScene)
