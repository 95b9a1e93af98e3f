"""The fast input path against the general one: the zero-copy Embree scene against embreex's
own, and the OFF line reader against the token reader."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

import raymap
from raymap.cast import Hits, RayScene
from raymap.features import ORIGIN_RADIUS, START_OFFSET
from raymap.grid import directions
from raymap.hull import convex_hull
from raymap.mesh import _off_lines, _read_obj_by_loadtxt, _read_plain_obj
from raymap.normalize import normalize
from tests.raymap_testing import (
    CHAIR,
    MODELNET_MINI,
    assert_same_arrays,
    reference_ray_features,
)


def embreex_hits(vertices: np.ndarray, faces: np.ndarray, origins, dirs) -> dict:
    scene = rtcore_scene.EmbreeScene(robust=True)
    TriangleMesh(scene, vertices.astype(np.float32), faces.astype(np.int32))
    return scene.run(origins, dirs, output=1)


@pytest.mark.parametrize("path", [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))[:6]])
def test_scene_gives_embreexs_hits_bit_for_bit(path) -> None:
    mesh = raymap.load_mesh_file(path)
    normalized = normalize(mesh.vertices, mesh.faces)
    hull_vertices, hull_faces = convex_hull(normalized.vertices, normalized.faces)
    outward = directions(16).reshape(-1, 3)[:-3]  # not a multiple of the packet width
    origins = (ORIGIN_RADIUS * outward).astype(np.float32)
    inward = (-outward).astype(np.float32)
    for vertices, faces in ((normalized.vertices, normalized.faces), (hull_vertices, hull_faces)):
        ours = RayScene(vertices, faces, build_quality="medium").cast(origins, inward)
        theirs = embreex_hits(vertices, faces, origins, inward)
        hit = theirs["geomID"] != -1
        np.testing.assert_array_equal(ours.hit, hit)
        np.testing.assert_array_equal(ours.distance[hit], theirs["tfar"][hit])
        np.testing.assert_array_equal(ours.normal[hit], theirs["Ng"][hit])


@pytest.mark.parametrize("path", [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))[:6]])
def test_the_low_quality_bvh_gives_the_same_hits_up_to_ties(path) -> None:
    """The fast (Morton) build the service uses: the same hits and distances as Embree's
    default build, and the same normal directions but where a ray meets an edge (the other
    face's): the map stays within 1e-5."""
    mesh = raymap.load_mesh_file(path)
    normalized = normalize(mesh.vertices, mesh.faces)
    outward = directions(16).reshape(-1, 3)
    origins = (ORIGIN_RADIUS * outward).astype(np.float32)
    inward = (-outward).astype(np.float32)
    scenes = {q: RayScene(normalized.vertices, normalized.faces, q) for q in ("low", "medium")}
    low, medium = (scenes[q].cast(origins, inward) for q in ("low", "medium"))
    np.testing.assert_array_equal(low.hit, medium.hit)
    np.testing.assert_array_equal(low.distance, medium.distance)
    # Each build computes a face's normal from its own copy of the corners, in its own
    # winding: the same line up to rounding (the features take |cos|), except where the two
    # report different faces of an edge.
    low_unit, medium_unit = (
        h.normal / np.linalg.norm(h.normal, axis=1)[:, None] for h in (low, medium)
    )
    apart = np.minimum(abs(low_unit - medium_unit), abs(low_unit + medium_unit)).max(axis=1)
    assert (apart[low.hit] > 1e-5).mean() <= 0.02
    np.testing.assert_allclose(
        reference_ray_features(low, inward),
        reference_ray_features(medium, inward),
        rtol=0,
        atol=1e-5,
    )


def test_a_scene_keeps_its_arrays_after_the_caller_drops_them() -> None:
    mesh = raymap.load_mesh_file(CHAIR)
    normalized = normalize(mesh.vertices, mesh.faces)
    scene = RayScene(normalized.vertices.copy(), normalized.faces.copy())
    outward = directions(8).reshape(-1, 3)
    before = scene.cast((ORIGIN_RADIUS * outward).astype(np.float32), (-outward).astype(np.float32))
    _ = [np.ones(len(normalized.vertices) * 3) for _ in range(20)]  # reuse freed memory
    after = scene.cast((ORIGIN_RADIUS * outward).astype(np.float32), (-outward).astype(np.float32))
    np.testing.assert_array_equal(before.distance, after.distance)


def test_a_cast_keeps_its_hits_when_the_thread_casts_again() -> None:
    """Casts reuse one packet buffer per thread: the hits returned are the caller's, not views
    of the buffer that the next cast (of other rays, on another scene) overwrites."""
    mesh = raymap.load_mesh_file(CHAIR)
    normalized = normalize(mesh.vertices, mesh.faces)
    scene = RayScene(normalized.vertices, normalized.faces)
    outward = directions(8).reshape(-1, 3)
    origins, inward = (ORIGIN_RADIUS * outward).astype(np.float32), (-outward).astype(np.float32)
    first = scene.cast(origins, inward)
    kept = [first.hit.copy(), first.distance.copy(), first.normal_rows.copy()]
    box = trimesh.creation.box(extents=(0.5, 0.5, 0.5))
    other = RayScene(box.vertices, box.faces).cast(0.9 * origins, inward)  # the same size
    assert not np.array_equal(other.distance, first.distance)
    for now, before in zip([first.hit, first.distance, first.normal_rows], kept, strict=True):
        np.testing.assert_array_equal(now, before)


@pytest.mark.parametrize("path", [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))])
def test_off_line_reader_equals_the_token_reader(path) -> None:
    """ModelNet's layout goes through np.loadtxt; the same numbers as float() on each token."""
    data = path.read_bytes()
    header, counts, rest = data.split(b"\n", 1)[0], None, None
    tokens = data[len(header) :].split(maxsplit=3) if header.strip() == b"OFF" else None
    if tokens is None:  # ModelNet's glued header: OFF490 518 0
        tokens = data[3:].split(maxsplit=3)
    counts, rest = (int(tokens[0]), int(tokens[1])), tokens[3]
    got = _off_lines(rest, *counts)
    assert got is not None
    values = np.array([float(t) for t in rest.split()])
    n_vertex_values = 3 * counts[0]
    np.testing.assert_array_equal(got[0], values[:n_vertex_values].reshape(-1, 3))
    np.testing.assert_array_equal(got[1], values[n_vertex_values:].reshape(-1, 4)[:, 1:])


@pytest.mark.parametrize(
    "body",
    [
        b"0 0 0\n\n1 0 0\n0 1 0\n3 0 1 2\n",  # a blank line
        b"0 0 0 1 0 0\n0 1 0\n3 0 1 2\n",  # two vertices on a line
        b"0 0 0\n1 0 0\n0 1 0\n4 0 1 2 2\n",  # a quad
        b"0 0 0\n1 0 0\n0 1 0\n3 0 1 2 255 0 0\n",  # a colour
    ],
)
def test_other_off_layouts_still_load(body: bytes) -> None:
    mesh = raymap.load_mesh(b"OFF\n3 1 0\n" + body, "off")
    assert len(mesh.faces) >= 1
    np.testing.assert_array_equal(mesh.vertices[:3], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


OBJ_CASES = {
    "plain": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n",
    "slashes": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nvt 0 0\n"
    b"f 1/1/1 2/1/1 3/1/1\nf 1//1 2//1 4//1\n",
    "slashes-fast": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1/1 2/1 3/1\nf 1/2 2/2 4/2\n",
    "comments": b"# made by hand\nv 0 0 0\nv 1 0 0\n# x\nv 0 1 0\nv 0 0 1\n\nf 1 2 3\nf 1 2 4\n",
    "quad": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3 4\n",
    "relative": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf -4 -3 -2\nf -4 -3 -1\n",
    "groups": b"o a\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\ng x\nf 1 2 3\ng y\nf 1 2 4\n",
    "interleaved": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nv 0 0 1\nf 1 2 4\n",
    "colours": b"v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 1\nv 0 0 1 1 1 1\nf 1 2 3\nf 1 2 4\n",
    "crlf": b"# made on windows\r\nv 0 0 0\r\nv 1 0 0\r\nv 0 1 0\r\nv 0 0 1\r\nf 1 2 3\r\n",
    "blank-last": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n\n",
    "slashed": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1/1/1 2//2 3/3\nf 1/1/1 2/2/2 4/4/4\n",
    "slashed-trailing-space": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1/1 2/2 3/3 \nf 1 2 4\n",
    "slash-after-letter": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf/ 1 2 4\n",
}


@pytest.mark.parametrize("case", sorted(OBJ_CASES))
def test_obj_fast_reader_gives_trimeshs_mesh(case: str) -> None:
    """Whatever path an OBJ takes, the triangles are those of trimesh's own reader."""
    data = OBJ_CASES[case]
    ours = raymap.load_mesh(data, "obj")
    reference = trimesh.load(io.BytesIO(data), file_type="obj", force="mesh", process=False)
    corners = np.sort(ours.vertices[ours.faces].reshape(-1, 9), axis=0)
    expected = np.sort(np.asarray(reference.vertices)[reference.faces].reshape(-1, 9), axis=0)
    np.testing.assert_array_equal(corners, expected)


@pytest.mark.parametrize("path", [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))[:5]])
def test_trimeshs_obj_export_takes_the_plain_path_and_matches(path) -> None:
    """An OBJ as trimesh writes it (a comment, v lines, f lines): the plain path, and
    the arrays of the ``np.loadtxt`` reader it stands in for, bit for bit."""
    chair = raymap.load_mesh_file(path)
    data = chair.export(file_type="obj").encode()
    assert data.startswith(b"#")
    simple = _read_plain_obj(data)
    assert simple is not None
    assert_same_arrays(simple, _read_obj_by_loadtxt(data))


class _EmbreexScene:
    """The old engine: embreex's copying constructor and its per-ray query."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self._scene = rtcore_scene.EmbreeScene(robust=True)
        TriangleMesh(self._scene, vertices.astype(np.float32), faces.astype(np.int32))

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> Hits:
        out = self._scene.run(origins, directions, output=1)
        hit = out["geomID"] != -1
        return Hits(hit=hit, distance=np.where(hit, out["tfar"], np.inf), normal_rows=out["Ng"].T)

    def features(
        self, origins: np.ndarray, directions: np.ndarray, start_offset: float, out: np.ndarray
    ) -> None:
        assert start_offset == START_OFFSET
        out[:] = reference_ray_features(self.cast(origins, directions), directions)


@pytest.mark.parametrize("path", [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))])
def test_maps_equal_the_old_engines(path, monkeypatch) -> None:
    """Same maps (<= 1e-5) at the shipped bandwidth, 32, as with embreex's scene; the whole
    test split is checked by ``bench/maps.py --against``."""
    import raymap.project

    mesh = raymap.load_mesh_file(path)
    ours = raymap.spherical_map(mesh, 32)
    monkeypatch.setattr(raymap.project, "RayScene", _EmbreexScene)
    old = raymap.spherical_map(mesh, 32)
    np.testing.assert_allclose(ours, old, rtol=0, atol=1e-5)


def test_stl_corners_are_shared_and_the_triangles_kept() -> None:
    """STL repeats each vertex once per triangle; the loader keeps one per position."""
    chair = raymap.load_mesh_file(CHAIR)
    data = chair.export(file_type="stl")
    mesh = raymap.load_mesh(data, "stl")
    assert len(mesh.vertices) < 3 * len(mesh.faces)
    assert len(np.unique(mesh.vertices, axis=0)) == len(mesh.vertices)
    raw = trimesh.load(io.BytesIO(data), file_type="stl", process=False)
    corners = np.sort(mesh.vertices[mesh.faces].reshape(-1, 9), axis=0)
    np.testing.assert_array_equal(corners, np.sort(raw.triangles.reshape(-1, 9), axis=0))
