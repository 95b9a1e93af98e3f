"""Mesh -> spherical map: exact references, invariances and equivariances."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import trimesh

import raymap
from raymap.datasets import sample_rotation
from raymap.features import MISS_COS, MISS_DISTANCE, MISS_SIN
from raymap.grid import GridSpec, directions
from tests.raymap_testing import CHAIR, assert_maps_close, rotation_about_z

BANDWIDTH = 16


@pytest.fixture(scope="module")
def chair() -> trimesh.Trimesh:
    return raymap.load_mesh_file(CHAIR)


def moved(mesh: trimesh.Trimesh, rotation=None, scale=1.0, shift=(0.0, 0.0, 0.0)):
    """A copy of ``mesh`` rotated about the origin, scaled, then shifted."""
    vertices = np.asarray(mesh.vertices)
    if rotation is not None:
        vertices = vertices @ np.asarray(rotation).T
    vertices = vertices * scale + np.asarray(shift)
    return trimesh.Trimesh(vertices, mesh.faces, process=False)


def test_public_constants() -> None:
    assert len(raymap.FEATURE_NAMES) == 6
    assert raymap.FEATURE_NAMES[:3] == ("mesh_distance", "mesh_cos", "mesh_sin")
    assert raymap.FEATURE_NAMES[3:] == ("hull_distance", "hull_cos", "hull_sin")
    assert isinstance(raymap.FEATURES_VERSION, str) and raymap.FEATURES_VERSION


def test_map_shape_dtype_and_timings(chair: trimesh.Trimesh) -> None:
    out, timings = raymap.spherical_map_timed(chair, BANDWIDTH)
    assert out.shape == (6, 2 * BANDWIDTH, 2 * BANDWIDTH) and out.dtype == np.float32
    assert {"normalize", "hull", "cast", "total"} <= set(timings)
    assert all(t >= 0 for t in timings.values())
    np.testing.assert_array_equal(out, raymap.spherical_map(chair, BANDWIDTH))


@pytest.mark.parametrize(
    ("radius", "center"), [(1.0, (0.0, 0.0, 0.0)), (0.01, (3.0, -2.0, 5.0)), (250.0, (1e3, 0, 0))]
)
def test_sphere_gives_a_constant_map(radius: float, center: tuple[float, float, float]) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    sphere.apply_translation(center)
    out = raymap.spherical_map(sphere, BANDWIDTH)
    # The facets lie between radius 1 (vertices) and the smallest face-plane distance.
    unit = (sphere.vertices - center) / radius
    normals = np.cross(unit[sphere.faces[:, 1]] - unit[sphere.faces[:, 0]],
                       unit[sphere.faces[:, 2]] - unit[sphere.faces[:, 0]])  # fmt: skip
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    inner = np.abs(np.einsum("fk,fk->f", normals, unit[sphere.faces[:, 0]])).min()
    max_distance = (1.0 - inner) / 2.0  # distance feature = (1 - hit radius) / 2
    for offset in (0, 3):  # mesh channels, then convex-hull channels: a sphere is its own hull
        distance, cos, sin = out[offset : offset + 3]
        assert distance.min() >= 0.0 and distance.max() <= max_distance + 1e-6, distance.max()
        # Angle ~ 0: a radial ray meets a facet at cos = plane distance / hit radius >= inner.
        assert cos.min() >= inner - 1e-6 and cos.max() <= 1.0, cos.min()
        assert sin.max() <= np.sqrt(1.0 - inner**2) + 1e-5, sin.max()


def test_cube_matches_the_analytic_map() -> None:
    """Cube of half side a = 1/sqrt(3) after normalization: hit radius a / max|d_i|."""
    cube = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    cube.apply_translation((10.0, -4.0, 2.5))
    out = raymap.spherical_map(cube, BANDWIDTH)
    d = directions(BANDWIDTH)  # (2b, 2b, 3)
    top = np.sort(np.abs(d), axis=-1)  # ascending per grid point
    half_side = 1.0 / np.sqrt(3.0)
    expected_distance = (1.0 - half_side / top[..., 2]) / 2.0
    expected_cos = top[..., 2]  # the face normal is the axis of the largest component
    clear = top[..., 2] - top[..., 1] > 1e-4  # away from the cube's edges
    for offset in (0, 3):
        np.testing.assert_allclose(out[offset][clear], expected_distance[clear], atol=2e-6)
        np.testing.assert_allclose(out[offset + 1][clear], expected_cos[clear], atol=2e-6)
        np.testing.assert_allclose(
            out[offset + 2][clear], np.sqrt(1 - expected_cos[clear] ** 2), atol=2e-5
        )


@pytest.mark.parametrize("steps", [1, 5, 16])
def test_rotation_about_z_by_grid_steps_shifts_columns(chair: trimesh.Trimesh, steps: int) -> None:
    angle = steps * GridSpec(BANDWIDTH).step_radians
    rotated = moved(chair, rotation_about_z(angle), shift=(0.3, -7.0, 2.0))
    expected = np.roll(raymap.spherical_map(chair, BANDWIDTH), steps, axis=-1)
    assert_maps_close(raymap.spherical_map(rotated, BANDWIDTH), expected, atol=1e-3,
                      max_bad_fraction=0.002)  # fmt: skip


def test_column_shift_goes_the_right_way(chair: trimesh.Trimesh) -> None:
    """A test that would pass with the wrong sign is no test: the opposite roll must fail."""
    angle = 3 * GridSpec(BANDWIDTH).step_radians
    rotated = raymap.spherical_map(moved(chair, rotation_about_z(angle)), BANDWIDTH)
    wrong = np.roll(raymap.spherical_map(chair, BANDWIDTH), -3, axis=-1)
    assert np.abs(rotated - wrong).max() > 0.1


@pytest.mark.parametrize(("scale", "shift"), [(1.0, (5.0, -3.0, 100.0)), (0.001, (0, 0, 0)),
                                              (37.5, (-1e3, 2e3, 1.0))])  # fmt: skip
def test_translation_and_scale_leave_the_map_unchanged(
    chair: trimesh.Trimesh, scale: float, shift: tuple[float, float, float]
) -> None:
    expected = raymap.spherical_map(chair, BANDWIDTH)
    actual = raymap.spherical_map(moved(chair, scale=scale, shift=shift), BANDWIDTH)
    assert_maps_close(actual, expected, atol=1e-4, max_bad_fraction=0.001)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_rotation_argument_equals_rotating_the_mesh(chair: trimesh.Trimesh, index: int) -> None:
    """Also checks that normalization commutes with rotations (the centre is equivariant)."""
    rotation = sample_rotation("so3", 7, index, 0)
    assert rotation is not None
    by_rays = raymap.spherical_map(chair, BANDWIDTH, rotation=rotation)
    by_mesh = raymap.spherical_map(moved(chair, rotation, scale=2.0, shift=(1, 2, 3)), BANDWIDTH)
    assert_maps_close(by_rays, by_mesh, atol=1e-3, max_bad_fraction=0.002)


def test_so3_rotation_changes_the_map(chair: trimesh.Trimesh) -> None:
    rotation = sample_rotation("so3", 0, 0, 0)
    assert (
        np.abs(
            raymap.spherical_map(chair, BANDWIDTH, rotation)
            - raymap.spherical_map(chair, BANDWIDTH)
        ).max()
        > 0.1
    )


def test_rays_through_a_hole_get_the_miss_value() -> None:
    torus = trimesh.creation.torus(major_radius=1.0, minor_radius=0.3)  # axis +z, hole at 0
    out = raymap.spherical_map(torus, BANDWIDTH)
    d = directions(BANDWIDTH)
    polar = np.abs(d[..., 2]) > 0.95  # these rays run down the axis, through the hole
    assert polar.any()
    np.testing.assert_array_equal(out[0][polar], MISS_DISTANCE)
    np.testing.assert_array_equal(out[1][polar], MISS_COS)
    np.testing.assert_array_equal(out[2][polar], MISS_SIN)
    hit = out[1] ** 2 + out[2] ** 2  # 1 for a hit, 0 for a miss
    assert ((np.abs(hit - 1) < 1e-5) | (hit == 0)).all()
    # The hull is a filled disc: every ray hits it.
    np.testing.assert_allclose(out[4] ** 2 + out[5] ** 2, 1.0, atol=1e-5)


def test_bad_rotation_is_rejected(chair: trimesh.Trimesh) -> None:
    with pytest.raises(ValueError, match="orthogonal"):
        raymap.spherical_map(chair, BANDWIDTH, rotation=np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="bandwidth"):
        raymap.spherical_map(chair, 1)


def test_collinear_faces_raise_mesh_error() -> None:
    flat = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], process=False)
    with pytest.raises(raymap.MeshError, match="zero area") as info:
        raymap.spherical_map(flat, BANDWIDTH)
    assert "zero area" in info.value.reason


@pytest.mark.parametrize("n_faces", [1, 2])
def test_flat_meshes_still_map(n_faces: int) -> None:
    """A square (qhull needs its joggle) and a lone triangle (qhull fails: its own hull)."""
    square = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3]])
    flat = trimesh.Trimesh(square.vertices[: n_faces + 2], square.faces[:n_faces], process=False)
    out = raymap.spherical_map(flat, BANDWIDTH)
    assert np.isfinite(out).all()
    d = directions(BANDWIDTH)
    seen_edge_on = np.abs(d[..., 2]) < 1e-3  # rays in the plane: none on this grid
    assert not seen_edge_on.any()
    # Rays from above or below hit the flat shape head-on when they hit it at all.
    hit = out[1] > 0
    assert hit.any() and (np.abs(out[1][hit] - np.abs(d[..., 2])[hit]) < 1e-5).all()


def test_importing_raymap_does_not_import_torch() -> None:
    code = (
        "import sys, raymap, raymap.datasets, raymap.render; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
