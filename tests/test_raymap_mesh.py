"""Loading meshes: every format, scenes, ModelNet's glued OFF header, and every bad input."""

from __future__ import annotations

import codecs
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


# ----------------------------------------------------------------------------- OBJ statements
# The sweep's OBJ defects: each test failed before raymap.obj read every OBJ that is not plain.

TETRA_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n"


def corners(data: bytes, file_type: str = "obj") -> np.ndarray:
    """(F, 3, 3): each face's corner positions, in the file's order."""
    mesh = raymap.load_mesh(data, file_type)
    return np.asarray(mesh.vertices)[mesh.faces]


@pytest.fixture
def no_trimesh(monkeypatch: pytest.MonkeyPatch) -> None:
    """trimesh's OBJ reader was the slow path: it must not be reached."""

    def refuse(data: bytes, fmt: str) -> None:
        raise AssertionError(f"the {fmt} file went to trimesh's reader")

    monkeypatch.setattr(raymap.mesh, "_read_with_trimesh", refuse)


@pytest.mark.parametrize(
    "statement",
    ["usemtl m{i}", "g group{i}", "o object{i}", "s {i}", "mtllib m{i}.mtl", "vt 0.{i} 0",
     "vn 0 0 {i}", "vp 0.{i}"],
)  # fmt: skip
def test_obj_statements_between_faces_are_skipped(statement: str, no_trimesh) -> None:
    """Item 1: 20k ``usemtl`` groups (429 KB) took 78 s in trimesh's reader, quadratic in the
    groups (it named each material's mesh by trying name_1, name_2... in turn). Lines that
    only group or style are skipped: the mesh is that of the file without them."""
    n = 20_000
    head = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n"
    faces = [f"f 1 2 {3 + i % 2}\n" for i in range(n)]
    grouped = head + "".join(statement.format(i=i) + "\n" + face for i, face in enumerate(faces))
    mesh = raymap.load_mesh(grouped.encode(), "obj")  # ~10 ms (not trimesh's: no_trimesh)
    plain = raymap.load_mesh((head + "".join(faces)).encode(), "obj")
    assert len(mesh.faces) == n
    np.testing.assert_array_equal(mesh.vertices[mesh.faces], plain.vertices[plain.faces])


def test_obj_relative_indices_count_back_from_their_own_line(no_trimesh) -> None:
    """Item 2: ``f -3 -2 -1`` after each block of three vertices is that block's triangle
    (the OBJ specification), not the file's last three vertices (trimesh's reading)."""
    blocks = [f"v {k} 0 0\nv {k + 1} 0 0\nv {k} 1 {k}\n" for k in range(4)]
    relative = "".join(block + "f -3 -2 -1\n" for block in blocks)
    absolute = "".join(
        block + f"f {3 * k + 1} {3 * k + 2} {3 * k + 3}\n" for k, block in enumerate(blocks)
    )
    slashed = "vt 0 0\n" + "".join(block + "f -3/-1 -2/-1 -1/-1\n" for block in blocks)
    mesh = raymap.load_mesh(relative.encode(), "obj")
    np.testing.assert_array_equal(mesh.faces, np.arange(12).reshape(4, 3))
    np.testing.assert_array_equal(corners(relative.encode()), corners(absolute.encode()))
    np.testing.assert_array_equal(corners(slashed.encode()), corners(absolute.encode()))


def test_obj_relative_index_before_the_first_vertex_says_so() -> None:
    data = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf -1 -2 -3\nv 0 0 1\nf -1 -2 -5\n"
    with pytest.raises(raymap.MeshError, match="line 6 of the OBJ file has -5, but only 4"):
        raymap.load_mesh(data, "obj")


@pytest.mark.parametrize(
    ("file_type", "text"),
    [("obj", TETRA_OBJ), ("obj", "# exported\n" + TETRA_OBJ), ("obj", "g a\n" + TETRA_OBJ),
     ("off", TETRA_OFF.format(x=1))],
)  # fmt: skip
def test_a_utf8_byte_order_mark_is_skipped(file_type: str, text: str) -> None:
    """Item 3: the mark glued to the first line lost the first vertex (then 'face indices out
    of range'), and an OFF file 'did not start with OFF'."""
    with_mark = codecs.BOM_UTF8 + text.encode()
    np.testing.assert_array_equal(corners(with_mark, file_type), corners(text.encode(), file_type))


def test_obj_trailing_comments_on_face_lines_are_ignored(no_trimesh) -> None:
    """Item 4: ``f 1 2 3 # c`` was 'could not be read to its end due to unmatched data'."""
    commented = TETRA_OBJ.replace("\n", " # c\n").replace("f 2 3 4 # c", "f 2 3 4#c")
    assert "f 1 2 3 # c\n" in commented
    np.testing.assert_array_equal(corners(commented.encode()), corners(TETRA_OBJ.encode()))


@pytest.mark.parametrize("face", ["f 0 1 2", "f 1 0 2", "f 1/1 2/1 0/1", "f -0 1 2"])
def test_obj_face_index_zero_is_refused(face: str) -> None:
    """Item 5: OBJ indices start at 1; index 0 loaded as if it were the first vertex."""
    data = TETRA_OBJ.replace("f 1 2 4", face).encode()
    with pytest.raises(raymap.MeshError, match="OBJ face indices start at 1; line 6 has 0"):
        raymap.load_mesh(data, "obj")


@pytest.mark.parametrize(
    ("token", "line"), [("1_0", 2), ("0x1", 2), ("1.5", 6), ("\x001", 6), ("1e999", 6)]
)
def test_obj_tokens_that_are_no_index_or_number_say_where(token: str, line: int) -> None:
    data = TETRA_OBJ.replace("v 1 0 0", f"v {token} 0 0" if line == 2 else "v 1 0 0")
    data = data.replace("f 1 2 4", f"f 1 2 {token}" if line == 6 else "f 1 2 4")
    with pytest.raises(raymap.MeshError, match=f"line {line}"):
        raymap.load_mesh(data.encode(), "obj")


CUBE_VERTICES = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nv 1 0 1\nv 1 1 1\nv 0 1 1\n"
CUBE_QUADS = [(1, 4, 3, 2), (5, 6, 7, 8), (1, 2, 6, 5), (2, 3, 7, 6), (3, 4, 8, 7), (4, 1, 5, 8)]


def cube(corner: str = "{}", vertices: str = CUBE_VERTICES) -> str:
    """The unit cube of quads, each corner spelled ``corner.format(index)``."""
    return vertices + "".join(
        "f " + " ".join(corner.format(k) for k in quad) + "\n" for quad in CUBE_QUADS
    )


QUAD_CUBE = cube()
# The same cube as triangles, split as trimesh splits quads (abc, cda)
TRIANGLE_CUBE = CUBE_VERTICES + "".join(
    f"f {a} {b} {c}\nf {c} {d} {a}\n" for a, b, c, d in CUBE_QUADS
)
OBJ_SPELLINGS = {
    "quads": QUAD_CUBE,
    "a/t/n": "vt 0 0\nvn 0 0 1\n" + cube("{}/1/1"),
    "a//n and a/t": cube("{}//1").replace("f 1//1", "f 1/1", 1) + "vt 0 0\nvn 0 0 1\n",
    "groups and materials": "mtllib /etc/passwd\no cube\ng bottom\nusemtl red\ns off\n"
    + QUAD_CUBE.replace("f 5", "g top\nusemtl blue\ns 1\nf 5"),
    "crlf and tabs": QUAD_CUBE.replace("\n", "\r\n").replace(" ", "\t"),
    "leading and doubled spaces": QUAD_CUBE.replace("\n", "\n  ").replace(" ", "  "),
    "scientific": QUAD_CUBE.replace("v 1 ", "v 1.0e0 ").replace(" 1\n", " 10E-1\n"),
    "comments": "# a cube\n" + QUAD_CUBE.replace("\n", " # end\n# between\n"),
    "continuation": QUAD_CUBE.replace("f 1 4 3 2\n", "f 1 4 \\\n3 2\n"),
    "w and colours": QUAD_CUBE.replace("v 0 0 0\n", "v 0 0 0 1\n").replace(
        "v 1 1 1\n", "v 1 1 1 0.5 0.5 0.5\n"
    ),
    "no last line end": QUAD_CUBE.rstrip("\n"),
}


@pytest.mark.parametrize("spelling", sorted(OBJ_SPELLINGS))
def test_obj_spellings_of_one_cube_load_as_its_triangles(spelling: str, no_trimesh) -> None:
    """Item 6: what worked through trimesh's reader still works, the same triangles."""
    text = OBJ_SPELLINGS[spelling]
    np.testing.assert_array_equal(corners(text.encode()), corners(TRIANGLE_CUBE.encode()))


def test_obj_polygons_are_fans_from_their_first_corner(no_trimesh) -> None:
    """A pentagon and a hexagon: triangles ``abc acd ade...``, as trimesh splits them."""
    ring = [(np.cos(a), np.sin(a), 0.1 * k) for k, a in enumerate(np.linspace(0, 6, 6))]
    vertices = "".join(f"v {x:.17g} {y:.17g} {z:.17g}\n" for x, y, z in ring)
    polygons = vertices + "f 1 2 3 4 5\nf 6 5 4 3 2 1\n"
    fans = vertices + "f 1 2 3\nf 1 3 4\nf 1 4 5\n" + "f 6 5 4\nf 6 4 3\nf 6 3 2\nf 6 2 1\n"
    np.testing.assert_array_equal(corners(polygons.encode()), corners(fans.encode()))


def test_obj_in_utf16_loads(no_trimesh) -> None:
    """UTF-16 with its mark (as some Windows tools write) reads as the same text."""
    for codec in ("utf-16", "utf-16-be"):
        data = (codecs.BOM_UTF16_BE if codec.endswith("be") else b"") + QUAD_CUBE.encode(codec)
        np.testing.assert_array_equal(corners(data), corners(TRIANGLE_CUBE.encode()))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("v\nv\nv\nf 1 2 3\n", "0 coordinates each"),
        ("g\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf /1 2 3\n", "line 5 has '/1', which is not a number"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0\nf 1 2 3\n", "line 4 of the OBJ file has a vertex of 2"),
        ("\ufeff", "no faces"),
    ],
)
def test_obj_statements_without_their_numbers_are_mesh_errors(text: str, reason: str) -> None:
    """From fuzzing the statement reader: a bare ``v`` reached a reshape, ``/1`` a mask."""
    with pytest.raises(raymap.MeshError, match=reason):
        raymap.load_mesh(text.encode(), "obj")
