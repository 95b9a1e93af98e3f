"""raymap's C kernels (raymap/_kernels.c) against the numpy they replaced
(tests/raymap_testing.py): the features bit for bit; normalization and the hull's entry to the
last bit where numpy's sums are pairwise or BLAS's. And bad calls are errors, not crashes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

import raymap
from raymap import _kernels
from raymap.cast import RayScene
from raymap.features import MISS_COS, MISS_DISTANCE, MISS_SIN, ORIGIN_RADIUS, START_OFFSET
from raymap.grid import directions
from raymap.hull import convex_hull, hull_planes
from raymap.normalize import normalize
from tests.raymap_testing import (
    CHAIR,
    MODELNET_MINI,
    reference_hull_features,
    reference_normalize,
    reference_ray_features,
)

MESHES = [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))]


def rays(seed: int, n_drop: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The b = 16 grid turned at random, less ``n_drop`` rays (not a whole number of packets):
    outward (R, 3) float64, origins and inward (R, 3) float32."""
    rotation = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))[0]
    outward = (directions(16).reshape(-1, 3) @ rotation)[
        : len(directions(16).reshape(-1, 3)) - n_drop
    ]
    return outward, (ORIGIN_RADIUS * outward).astype(np.float32), (-outward).astype(np.float32)


@pytest.mark.parametrize("path", MESHES, ids=lambda p: p.stem)
def test_ray_features_are_numpys_bit_for_bit(path) -> None:
    mesh = raymap.load_mesh_file(path)
    normalized = normalize(mesh.vertices, mesh.faces)
    hull = convex_hull(normalized.vertices, normalized.faces)
    for seed, (vertices, faces) in enumerate([(normalized.vertices, normalized.faces), hull]):
        outward, origins, inward = rays(seed)
        scene = RayScene(vertices, faces)
        ours = np.empty((3, len(outward)), dtype=np.float32)
        scene.features(origins, inward, START_OFFSET, ours)
        expected = reference_ray_features(scene.cast(origins, inward), inward)
        np.testing.assert_array_equal(ours, expected)


def test_a_ray_that_misses_gets_the_miss_values() -> None:
    box = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    origins = np.array([[0.0, 0.0, 2.0], [5.0, 5.0, 2.0]], dtype=np.float32)  # hits, misses
    inward = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]], dtype=np.float32)
    out = np.empty((3, 2), dtype=np.float32)
    RayScene(box.vertices, box.faces).features(origins, inward, START_OFFSET, out)
    np.testing.assert_array_equal(out[:, 1], [MISS_DISTANCE, MISS_COS, MISS_SIN])
    assert out[1, 0] == 1.0 and out[2, 0] == 0.0  # square to the top face


@pytest.mark.parametrize("path", MESHES, ids=lambda p: p.stem)
def test_hull_features_are_numpys(path) -> None:
    """One argmax and the features of its plane, per ray: numpy's but for the matrix product's
    rounding (BLAS may fuse its multiply-adds), which can move a channel by a few float32
    steps."""
    mesh = raymap.load_mesh_file(path)
    normalized = normalize(mesh.vertices, mesh.faces)
    vertices, faces = convex_hull(normalized.vertices, normalized.faces)
    planes = hull_planes(vertices, faces)
    assert planes is not None
    outward, _, _ = rays(7)
    ours = np.empty((3, len(outward)), dtype=np.float32)
    planes.features(outward, ours)
    np.testing.assert_allclose(ours, reference_hull_features(vertices, faces, outward), atol=1e-6)


@pytest.mark.parametrize("path", MESHES, ids=lambda p: p.stem)
def test_normalization_is_numpys_bit_for_bit(path) -> None:
    """An ulp of the centre moved a hull's triangulation (QuickHull, on near-coplanar points)
    and with it a map's hull channels: the sums over the mesh stay numpy's."""
    mesh = raymap.load_mesh_file(path)
    vertices = np.vstack([mesh.vertices, [[1e9, 1e9, 1e9]]])  # unused: dropped, no effect
    ours = normalize(vertices, mesh.faces)
    expected_vertices, expected_faces, center, scale = reference_normalize(vertices, mesh.faces)
    np.testing.assert_array_equal(ours.faces, expected_faces)
    np.testing.assert_array_equal(ours.vertices, expected_vertices)
    np.testing.assert_array_equal(ours.center, center)
    assert ours.scale == scale


@pytest.mark.parametrize(
    ("vertices", "faces", "reason"),
    [
        (np.zeros((3, 3)), [[0, 1, 2]], "zero extent"),
        ([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], "every face of the mesh has zero area"),
        ([[0, 0, 0], [1, 0, 0], [np.inf, 0, 0]], [[0, 1, 2]], "non-finite coordinates"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 3]], "face indices out of range"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, -1]], "face indices out of range"),
    ],
    ids=["zero-extent", "zero-area", "infinite", "past-the-end", "negative"],
)
def test_normalization_refuses_what_it_cannot_normalize(vertices, faces, reason: str) -> None:
    with pytest.raises(raymap.MeshError, match=reason):
        normalize(np.asarray(vertices, dtype=np.float64), np.asarray(faces))


def test_wrong_sizes_are_value_errors() -> None:
    """A wrong buffer is refused before a loop reads or writes past its end."""
    vertices, faces = np.zeros((4, 3)), np.zeros((2, 3), dtype=np.int64)
    out_vertices, out_faces = np.empty((4, 3)), np.empty((2, 3), np.int32)
    areas, sums, unit = np.empty(2), np.empty((2, 3)), np.empty(1)
    with pytest.raises(ValueError, match="out_vertices"):
        _kernels.normalize_faces(vertices, faces, out_vertices[:3], out_faces, areas, sums, unit)
    with pytest.raises(ValueError, match="out_faces"):
        _kernels.normalize_faces(
            vertices, faces, out_vertices, out_faces.astype(np.int64), areas, sums, unit
        )
    with pytest.raises(ValueError, match="center"):
        _kernels.center_and_scale(out_vertices, np.zeros(2))
    bits, hashes, first = np.zeros((5, 3), np.uint64), np.zeros(5, np.uint64), np.empty(5, np.int64)
    with pytest.raises(ValueError, match="index_bits"):
        _kernels.distinct_points(bits, hashes, 2, first, first.copy())  # 4 indices for 5 points
    with pytest.raises(ValueError, match="inverse"):
        _kernels.distinct_points(bits, hashes, 3, first, first[:4].copy())
    planes = np.empty((4, 2))
    with pytest.raises(ValueError, match="an index out of range"):
        _kernels.hull_planes(vertices, np.array([[0, 1, 9], [0, 1, 2]], np.int32), 0, 0, 0, planes)
    with pytest.raises(ValueError, match="out"):
        _kernels.hull_features(planes, np.zeros((5, 3)), np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="addresses"):
        _kernels.ray_features(0, 0, np.zeros((8, 3), np.float32), np.zeros((8, 3), np.float32),
                              0.0, np.empty((3, 8), np.float32))  # fmt: skip
