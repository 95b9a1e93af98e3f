"""Loading meshes: every format, scenes, ModelNet's glued OFF header, and every bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import trimesh

import raymap
import raymap.distinct
from raymap.mesh import _Y_UP_TO_Z_UP, file_type_of
from tests.raymap_testing import CHAIR, MODELNET_MINI

BANDWIDTH = 8


@pytest.fixture(scope="module")
def chair() -> trimesh.Trimesh:
    return raymap.load_mesh_file(CHAIR)


def sorted_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


def export(mesh: trimesh.Trimesh, file_type: str) -> bytes:
    if file_type == "gltf":  # one self-contained JSON file: buffers embedded as data URIs
        files = trimesh.Scene([mesh]).export(file_type="gltf", embed_buffers=True)
        return files["model.gltf"] if isinstance(files, dict) else files
    data = mesh.export(file_type=file_type)
    return data.encode() if isinstance(data, str) else data


@pytest.mark.parametrize("file_type", ["obj", "off", "stl", "stl_ascii", "ply", "glb", "gltf"])
def test_every_format_loads_the_same_mesh(chair: trimesh.Trimesh, file_type: str) -> None:
    data = export(chair, file_type)
    mesh = raymap.load_mesh(data, file_type.removesuffix("_ascii"))
    expected = np.asarray(chair.vertices)
    if file_type in ("glb", "gltf"):  # glTF is +Y up: loading turns it to +Z up
        expected = expected @ _Y_UP_TO_Z_UP.T
    assert len(mesh.faces) == len(chair.faces)
    corners = np.asarray(mesh.vertices)[mesh.faces].reshape(-1, 3)
    expected_corners = expected[chair.faces].reshape(-1, 3)
    atol = 1e-4 * np.abs(expected).max()  # STL and OBJ round to float32 or a few decimals
    np.testing.assert_allclose(sorted_rows(corners), sorted_rows(expected_corners), atol=atol)


@pytest.mark.parametrize("collide", [False, True], ids=["hashed", "all-one-hash"])
@pytest.mark.parametrize("path", [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))[:4]])
def test_binary_stl_gives_trimeshs_triangles_on_shared_vertices(
    path, collide: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """numpy's reading of a binary STL, its corners merged: trimesh's triangles exactly, and
    as many vertices as distinct corner positions, even if every position had one hash."""
    if collide:
        monkeypatch.setattr(raymap.distinct, "_HASH_MULTIPLIERS", np.zeros(3, dtype=np.uint64))
    exported = raymap.load_mesh_file(path)
    data = trimesh.Trimesh(exported.vertices, exported.faces, process=False).export(file_type="stl")
    mesh = raymap.load_mesh(data, "stl")
    theirs = trimesh.load(io.BytesIO(data), file_type="stl", process=False, force="mesh")
    np.testing.assert_array_equal(mesh.vertices[mesh.faces], theirs.triangles)
    distinct = np.unique(theirs.triangles.reshape(-1, 3).view(np.uint64), axis=0)  # by bits
    assert len(mesh.vertices) == len(distinct)


def test_format_from_a_file_name() -> None:
    assert file_type_of("chair_0001.OFF") == "off"
    assert file_type_of(".glb") == "glb"
    assert file_type_of("ply") == "ply"
    data = CHAIR.read_bytes()
    assert len(raymap.load_mesh(data, "some/dir/chair.off").faces) == 2996


def test_a_scene_is_merged_with_its_transforms() -> None:
    box = trimesh.creation.box()
    scene = trimesh.Scene()
    scene.add_geometry(box, transform=trimesh.transformations.translation_matrix([0, 0, 5]))
    scene.add_geometry(box)
    scene.add_geometry(trimesh.PointCloud(np.zeros((3, 3))))  # dropped: it has no faces
    mesh = raymap.load_mesh(scene.export(file_type="glb"), "glb")
    assert len(mesh.faces) == 24
    # +Z translation in the file's frame is +Z... after the glTF Y-up -> Z-up turn it is -Y.
    np.testing.assert_allclose(mesh.bounds, [[-0.5, -5.5, -0.5], [0.5, 0.5, 0.5]], atol=1e-6)


def test_glued_modelnet_header_is_accepted() -> None:
    data = CHAIR.read_bytes()
    assert data.startswith(b"OFF\n")
    glued = b"OFF" + data[4:]  # 'OFF1658 2996 0'
    assert glued.startswith(b"OFF1658 2996 0")
    np.testing.assert_array_equal(
        raymap.load_mesh(glued, "off").vertices, raymap.load_mesh(data, "off").vertices
    )


def test_off_with_polygons_comments_and_colours_uses_the_general_reader() -> None:
    text = (
        "OFF\n# a unit square pyramid\n5 5 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0.5 0.5 1\n"
        "4 0 1 2 3\n3 0 1 4 255 0 0\n3 1 2 4\n3 2 3 4\n3 3 0 4\n"
    )
    mesh = raymap.load_mesh(text.encode(), "off")
    assert len(mesh.faces) == 6  # the quad is split in two


def test_real_modelnet_files_load() -> None:
    paths = sorted(MODELNET_MINI.glob("*/*/*.off"))
    assert len(paths) == 12
    for path in paths:
        mesh = raymap.load_mesh_file(path)
        assert len(mesh.faces) > 0 and np.isfinite(mesh.vertices).all()


# ----------------------------------------------------------------------------- bad input

TRIANGLE_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\n"
# A tetrahedron whose faces carry colours (so trimesh's reader reads it, line by line)
COLOURED_TETRA_OFF = (
    b"OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n"
    b"3 0 1 2 255 0 0\n3 0 1 3 255 0 0\n3 0 2 3 255 0 0\n3 1 2 3\n"
)
BOX_STL = trimesh.creation.box().export(file_type="stl")
BAD_INPUTS = {
    "unknown format": (b"solid", "dae", "unknown mesh format"),
    "unknown format from name": (b"solid", "chair.3ds", "unknown mesh format"),
    "empty file": (b"", "obj", "empty"),
    "garbage ply": (b"\x00\x01garbage", "ply", "cannot read the PLY file"),
    "garbage glb": (b"glTF\x00\x01garbage", "glb", "cannot read the GLB file"),
    "gltf with external buffer": (
        json.dumps(
            {
                "asset": {"version": "2.0"},
                "buffers": [{"uri": "missing.bin", "byteLength": 36}],
            }
        ).encode(),
        "gltf",
        "external files (missing.bin)",
    ),
    "gltf not json": (b"\x00binary", "gltf", "not JSON"),
    "off without header": (b"3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "off", "'OFF'"),
    "off without counts": (b"OFF\n", "off", "counts"),
    "off no faces": (b"OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "off", "no faces"),
    "obj points only": (TRIANGLE_OBJ.encode(), "obj", "no faces"),
    "stl of garbage": (b"hello world, not an stl" * 5, "stl", "it is no ASCII STL"),
    "off nan": (b"OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n", "off", "non-finite"),
    "off inf": (b"OFF\n3 1 0\n0 0 0\n1 inf 0\n0 1 0\n3 0 1 2\n", "off", "non-finite"),
    "obj nan": ((TRIANGLE_OBJ + "v nan 0 0\nf 1 2 4\n").encode(), "obj", "non-finite"),
    "off index too big": (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", "off", "out of range"),
    "off negative index": (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n", "off", "out of range"),
    "obj index too big": ((TRIANGLE_OBJ + "f 1 2 9\n").encode(), "obj", "out of range"),
    "off zero extent": (b"OFF\n3 1 0\n1 1 1\n1 1 1\n1 1 1\n3 0 1 2\n", "off", "zero extent"),
    # Read on, these were smaller, wrong meshes (trimesh reads the lines it finds).
    "off cut short": (COLOURED_TETRA_OFF[:-8], "off", "cut short"),
    "off cut inside a face": (COLOURED_TETRA_OFF[:-3], "off", "face 4 of 4 lists 2 of its 3"),
    "off with more vertices declared": (
        COLOURED_TETRA_OFF.replace(b"4 4 0", b"6 4 0"),  # face lines would be read as vertices
        "off",
        "cut short",
    ),
    "off underscore in a number": (
        b"OFF\n3 1 0\n0 0 0\n1_0 0 0\n0 1 0\n3 0 1 2\n",
        "off",
        "'_' is no part of a number",
    ),
    "binary stl cut short": (BOX_STL[:-10], "stl", "as a binary STL it is cut short"),
    "obj zero extent": (
        b"v 2 2 2\nv 2 2 2\nv 2 2 2\nv 9 9 9\nf 1 2 3\n",
        "obj",
        "zero extent",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_mesh_error_with_a_reason(case: str) -> None:
    data, file_type, reason = BAD_INPUTS[case]
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(data, file_type)
    assert isinstance(info.value, ValueError)
    assert info.value.reason == str(info.value) and info.value.reason
    assert reason in info.value.reason, info.value.reason


def test_face_cap(chair: trimesh.Trimesh) -> None:
    for file_type in ("off", "obj", "ply", "stl"):
        data = export(chair, file_type)
        assert len(raymap.load_mesh(data, file_type, max_faces=2996).faces) == 2996
        with pytest.raises(raymap.MeshError, match="more than the limit of 2995"):
            raymap.load_mesh(data, file_type, max_faces=2995)


def test_missing_file_raises_mesh_error(tmp_path) -> None:
    with pytest.raises(raymap.MeshError, match="cannot read"):
        raymap.load_mesh_file(tmp_path / "nope.off")


@pytest.mark.parametrize("file_type", ["off", "obj", "ply", "stl", "glb"])
def test_corrupted_files_raise_only_mesh_error(file_type: str) -> None:
    """Nothing but MeshError escapes load + map, whatever the bytes (seeded fuzzing)."""
    rng = np.random.default_rng(0)
    box = trimesh.creation.box()
    clean = export(box, file_type)
    outcomes = {"ok": 0, "error": 0}
    for trial in range(60):
        data = bytearray(clean)
        if trial % 3 == 0:
            data = data[: rng.integers(0, len(data))]  # truncated
        else:
            for _ in range(rng.integers(1, 8)):  # flipped bytes
                data[rng.integers(0, len(data))] = int(rng.integers(0, 256))
        try:
            raymap.spherical_map(raymap.load_mesh(bytes(data), file_type), BANDWIDTH)
            outcomes["ok"] += 1
        except raymap.MeshError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0


# ----------------------------------------------------------------------------- issue 10's defects
# Each failed on the loader before the fix (a 500 from the service: not a MeshError).

TETRA_OFF = "OFF\n4 4 0\n0 0 0\n{x} 0 0\n0 {x} 0\n0 0 {x}\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"


@pytest.mark.parametrize("file_type", ["obj", "off", "ply"])
def test_vertices_with_two_coordinates_are_refused(file_type: str) -> None:
    """Defect 1: ``v 0 0`` lines in an OBJ reached np.cross on 2-vectors."""
    data = {
        "obj": b"v 0 0\nv 1 0\nv 0 1\nf 1 2 3\n",
        "off": b"OFF\n3 1 0\n0 0\n1 0\n0 1\n3 0 1 2\n",
        "ply": (
            b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
            b"element face 1\nproperty list uchar int vertex_indices\nend_header\n"
            b"0 0\n1 0\n0 1\n3 0 1 2\n"
        ),
    }[file_type]
    with pytest.raises(raymap.MeshError):
        raymap.spherical_map(raymap.load_mesh(data, file_type), BANDWIDTH)


def test_obj_two_coordinates_reason() -> None:
    with pytest.raises(raymap.MeshError, match="2 coordinates each; a 3D mesh needs 3"):
        raymap.load_mesh(b"v 0 0\nv 1 0\nv 0 1\nf 1 2 3\n", "obj")


@pytest.mark.parametrize(
    "document",
    [
        b'{"asset": {"version": "2.0"}, "buffers": 3}',
        b'{"asset": {"version": "2.0"}, "buffers": null}',
        b'{"asset": {"version": "2.0"}, "buffers": [3]}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ],
    ids=["buffers-number", "buffers-null", "buffer-number", "nested-arrays", "nested-objects"],
)
def test_malformed_gltf_json_is_a_mesh_error(document: bytes) -> None:
    """Defect 2: TypeError and RecursionError escaped the glTF check."""
    with pytest.raises(raymap.MeshError, match="GLTF"):
        raymap.load_mesh(document, "gltf")


@pytest.mark.parametrize("counts", ["4_0 1 0", "4 1_0 0", "+4 1 0", "٤ 1 0"])
def test_off_counts_must_be_plain_digits(counts: str) -> None:
    """Defect 6: Python's int() read '4_0' as 40 (and '+4', Arabic-Indic digits...)."""
    data = f"OFF\n{counts}\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n".encode()
    with pytest.raises(raymap.MeshError, match="whole numbers written with the digits 0-9"):
        raymap.load_mesh(data, "off")


@pytest.mark.parametrize("x", ["1e170", "1e200", "1e300", "1.7e308"])
def test_huge_coordinates_are_not_zero_extent(x: str) -> None:
    """Defect 6: areas of a mesh with coordinates near 1e300 overflowed to inf, then NaN, and
    the mesh was called 'zero extent'. Normalization is scale-free: the map is the one of the
    same shape at scale 1."""
    huge = raymap.spherical_map(raymap.load_mesh(TETRA_OFF.format(x=x).encode(), "off"), 8)
    unit = raymap.spherical_map(raymap.load_mesh(TETRA_OFF.format(x="1").encode(), "off"), 8)
    np.testing.assert_allclose(huge, unit, atol=1e-5)


def test_coordinates_beyond_float64_say_so() -> None:
    with pytest.raises(raymap.MeshError, match="beyond the float64 range"):
        raymap.load_mesh(TETRA_OFF.format(x="1e400").encode(), "off")


def test_non_integral_off_face_index_is_refused() -> None:
    with pytest.raises(raymap.MeshError, match="not a whole number"):
        raymap.load_mesh(TETRA_OFF.format(x=1).replace("3 0 1 2", "3 0 1.5 2").encode(), "off")


class _OpenedFiles:
    """Every file the interpreter opens while active (``open`` audit events, C code included)."""

    hook_installed = False
    active: list[str] | None = None

    def __enter__(self) -> list[str]:
        if not _OpenedFiles.hook_installed:
            import sys

            sys.addaudithook(_OpenedFiles._hook)
            _OpenedFiles.hook_installed = True
        _OpenedFiles.active = []
        return _OpenedFiles.active

    def __exit__(self, *exc: object) -> None:
        _OpenedFiles.active = None

    @staticmethod
    def _hook(event: str, args: tuple) -> None:
        if event == "open" and _OpenedFiles.active is not None:
            _OpenedFiles.active.append(str(args[0]))


def _secret(tmp_path) -> str:
    secret = tmp_path / "secret.mtl"
    secret.write_text("newmtl root\nKd 1 0 0\nmap_Kd /etc/passwd\n")
    return str(secret)


def test_obj_mtllib_reads_no_server_file(tmp_path) -> None:
    """Defect 7: an OBJ names any file as its material library: the loader opens nothing."""
    secret = _secret(tmp_path)
    obj = f"mtllib {secret}\nmtllib /etc/passwd\nusemtl root\n{TRIANGLE_OBJ}"
    obj += "v 0 0 1\nf 1 2 3\nf 1 2 4\n"
    with _OpenedFiles() as opened:
        mesh = raymap.load_mesh(obj.encode(), "obj")
    assert len(mesh.faces) == 2
    assert not [p for p in opened if p in (secret, "/etc/passwd")], opened


@pytest.mark.parametrize(
    "uri", ["/etc/passwd", "file:///etc/passwd", "../../../../etc/passwd", "SECRET", "file:SECRET"]
)
@pytest.mark.parametrize("where", ["buffers", "images"])
def test_gltf_uris_read_no_server_file(tmp_path, uri: str, where: str) -> None:
    """Defect 7: a glTF's buffer or image URI naming a server file is refused or ignored,
    never opened."""
    secret = _secret(tmp_path)
    uri = uri.replace("SECRET", secret)
    box = trimesh.creation.box()
    document = json.loads(export(box, "gltf"))
    if where == "buffers":
        document["buffers"].append({"uri": uri, "byteLength": 12})
    else:
        document["images"] = [{"uri": uri}]
        document["textures"] = [{"source": 0}]
        document["materials"] = [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
        document["meshes"][0]["primitives"][0]["material"] = 0
    with _OpenedFiles() as opened:
        try:
            raymap.load_mesh(json.dumps(document).encode(), "gltf")
        except raymap.MeshError as exc:
            assert where == "buffers" and "external files" in exc.reason
    assert not [p for p in opened if "passwd" in p or p == secret], opened


def test_stl_is_told_apart_by_content_not_its_first_word() -> None:
    """A binary STL whose header starts with "solid" loads as binary; an ASCII STL behind a
    UTF-8 byte order mark loads as ASCII (neither is taken for a binary file cut short)."""
    box = trimesh.creation.box()
    binary = b"solid made by a CAD tool".ljust(80, b" ") + BOX_STL[80:]
    text = b"\xef\xbb\xbf" + box.export(file_type="stl_ascii").encode()
    for data in (binary, text):
        assert len(raymap.load_mesh(data, "stl").faces) == 12
