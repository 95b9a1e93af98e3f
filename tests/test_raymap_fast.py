"""The fast input path against the general one: the decimal parser against ``float()``, the
zero-copy Embree scene against embreex's own, the map against the one embreex gives."""

from __future__ import annotations

import numpy as np
import pytest
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

import raymap
from raymap.cast import RayScene
from raymap.features import ORIGIN_RADIUS
from raymap.grid import directions
from raymap.normalize import normalize
from raymap.project import convex_hull_faces
from raymap.text import parse_decimals
from tests.raymap_testing import CHAIR, MODELNET_MINI


def test_decimals_are_bit_identical_to_float() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(20_000) * 10.0 ** rng.integers(-6, 5, 20_000)
    tokens = [f"{v:.{int(d)}f}" for v, d in zip(values, rng.integers(0, 9, 20_000), strict=True)]
    tokens += ["0", "-0", "+7", "007", ".5", "-.25", "3.", "123456789012345", "0.00000000000001"]
    text = "\n".join(" ".join(tokens[i : i + 3]) for i in range(0, len(tokens), 3)).encode()
    got = parse_decimals(text)
    expected = np.array([float(t) for t in tokens])
    assert got is not None
    assert got.tobytes() == expected.tobytes()  # bit for bit, signed zeros included


@pytest.mark.parametrize(
    "text",
    [b"1e5", b"1 2 nan", b"inf", b"1-2", b"1..2", b"- 1", b".", b"+", b"1234567890123456", b"1,2"],
)
def test_anything_but_plain_decimals_is_left_to_the_general_path(text: bytes) -> None:
    assert parse_decimals(text) is None


def test_empty_and_blank_text() -> None:
    assert parse_decimals(b"").size == 0
    assert parse_decimals(b" \n\t ").size == 0


def embreex_hits(vertices: np.ndarray, faces: np.ndarray, origins, dirs) -> dict:
    scene = rtcore_scene.EmbreeScene(robust=True)
    TriangleMesh(scene, vertices.astype(np.float32), faces.astype(np.int32))
    return scene.run(origins, dirs, output=1)


@pytest.mark.parametrize("path", [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))[:6]])
def test_scene_gives_embreexs_hits_bit_for_bit(path) -> None:
    mesh = raymap.load_mesh_file(path)
    normalized = normalize(mesh.vertices, mesh.faces)
    hull_vertices, hull_faces = convex_hull_faces(normalized.vertices, normalized.faces)
    outward = directions(16).reshape(-1, 3)[:-3]  # not a multiple of the packet width
    origins = (ORIGIN_RADIUS * outward).astype(np.float32)
    inward = (-outward).astype(np.float32)
    for vertices, faces in ((normalized.vertices, normalized.faces), (hull_vertices, hull_faces)):
        ours = RayScene(vertices, faces).cast(origins, inward)
        theirs = embreex_hits(vertices, faces, origins, inward)
        hit = theirs["geomID"] != -1
        np.testing.assert_array_equal(ours.hit, hit)
        np.testing.assert_array_equal(ours.distance[hit], theirs["tfar"][hit])
        np.testing.assert_array_equal(ours.normal[hit], theirs["Ng"][hit])


def test_a_scene_keeps_its_arrays_after_the_caller_drops_them() -> None:
    mesh = raymap.load_mesh_file(CHAIR)
    normalized = normalize(mesh.vertices, mesh.faces)
    scene = RayScene(normalized.vertices.copy(), normalized.faces.copy())
    outward = directions(8).reshape(-1, 3)
    before = scene.cast((ORIGIN_RADIUS * outward).astype(np.float32), (-outward).astype(np.float32))
    _ = [np.ones(len(normalized.vertices) * 3) for _ in range(20)]  # reuse freed memory
    after = scene.cast((ORIGIN_RADIUS * outward).astype(np.float32), (-outward).astype(np.float32))
    np.testing.assert_array_equal(before.distance, after.distance)
