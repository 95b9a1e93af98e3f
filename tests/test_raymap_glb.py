"""GLB of one mesh: numpy's reading gives trimesh's arrays bit for bit, and any other GLB still
goes to trimesh; what :mod:`raymap.gltf_check` refuses in a .gltf or .glb before trimesh reads
it (instancing bombs, compression, sparse accessors, bad references) and what it lets through."""

from __future__ import annotations

import base64
import copy
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh

import raymap
from raymap import gltf_check, gltf_normalized
from raymap.glb import glb_chunks, read_glb
from raymap.mesh import _Y_UP_TO_Z_UP, _read_with_trimesh
from tests.raymap_testing import CHAIR, MODELNET_MINI, assert_reads_as_trimesh

MESHES = [CHAIR, *sorted(MODELNET_MINI.glob("*/*/*.off"))[:4]]


def glb(document: dict, binary: bytes) -> bytes:
    """A GLB file of ``document`` (JSON) and ``binary`` (its one buffer)."""
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    body += struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def one_mesh(
    vertices: np.ndarray,
    indices: np.ndarray | None,
    node: dict | None = None,
    interleave: bool = False,
    document: dict | None = None,
) -> bytes:
    """One node, one mesh, one primitive; ``interleave`` stores each position beside a
    normal (a stride of 24 bytes)."""
    positions = np.asarray(vertices, dtype="<f4")
    if interleave:
        packed = np.zeros((len(positions), 6), dtype="<f4")
        packed[:, :3] = positions
        position_bytes, stride = packed.tobytes(), {"byteStride": 24}
    else:
        position_bytes, stride = positions.tobytes(), {}
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": len(position_bytes), **stride}]
    accessors = [{"bufferView": 0, "componentType": 5126, "type": "VEC3", "count": len(positions)}]
    primitive: dict = {"attributes": {"POSITION": 0}, "mode": 4}
    binary = position_bytes
    if indices is not None:
        kind = {np.dtype("<u1"): 5121, np.dtype("<u2"): 5123, np.dtype("<u4"): 5125}
        index_bytes = indices.tobytes()
        binary += b"\0" * (-len(binary) % 4)
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(index_bytes)})
        accessors.append(
            {"bufferView": 1, "componentType": kind[indices.dtype], "type": "SCALAR",
             "count": indices.size}
        )  # fmt: skip
        primitive["indices"] = 1
        binary += index_bytes
    return glb(
        {
            "asset": {"version": "2.0"},
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0, **(node or {})}],
            "meshes": [{"primitives": [primitive]}],
            "accessors": accessors,
            "bufferViews": views,
            "buffers": [{"byteLength": len(binary) + (-len(binary) % 4)}],
            **(document or {}),
        },
        binary,
    )


@pytest.mark.parametrize("path", MESHES, ids=lambda p: Path(p).stem)
def test_trimeshs_glb_export_reads_as_trimesh_reads_it(path: Path) -> None:
    mesh = raymap.load_mesh_file(path)
    plain = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert_reads_as_trimesh(read_glb, "glb", plain.export(file_type="glb"))


@pytest.mark.parametrize("index_type", ["<u1", "<u2", "<u4", None])
def test_every_index_width_and_none(index_type: str | None) -> None:
    box = trimesh.creation.box()
    if index_type is None:  # no indices: every three positions are a triangle
        vertices, indices = box.vertices[box.faces].reshape(-1, 3), None
    else:
        vertices, indices = box.vertices, box.faces.astype(index_type).ravel()
    assert_reads_as_trimesh(read_glb, "glb", one_mesh(vertices, indices))


def test_an_identity_matrix_is_no_transform() -> None:
    box = trimesh.creation.box()
    identity = np.eye(4).ravel(order="F").tolist()
    assert_reads_as_trimesh(
        read_glb,
        "glb",
        one_mesh(box.vertices, box.faces.astype("<u4").ravel(), {"matrix": identity}),
    )


BOX = trimesh.creation.box()
BOX_INDICES = BOX.faces.astype("<u4").ravel()


@pytest.mark.parametrize(
    "data",
    [
        one_mesh(BOX.vertices, BOX_INDICES, {"translation": [0.0, 0.0, 5.0]}),
        one_mesh(BOX.vertices, BOX_INDICES, {"matrix": (2 * np.eye(4)).ravel().tolist()}),
        one_mesh(BOX.vertices, BOX_INDICES, interleave=True),
        one_mesh(BOX.vertices, BOX_INDICES, document={"extensionsUsed": ["KHR_mesh_quantization"]}),
        trimesh.Scene([BOX, trimesh.creation.box().apply_translation([3.0, 0.0, 0.0])]).export(
            file_type="glb"
        ),
    ],
    ids=["translated", "scaled", "interleaved", "quantized", "two-nodes"],
)
def test_any_other_glb_is_left_to_trimesh(data: bytes) -> None:
    assert read_glb(data) is None
    mesh = raymap.load_mesh(data, "glb")
    vertices, faces = _read_with_trimesh(data, "glb")  # what trimesh gives, turned +Z up
    np.testing.assert_array_equal(mesh.vertices, vertices @ _Y_UP_TO_Z_UP.T)
    np.testing.assert_array_equal(mesh.faces, faces)


def test_indices_that_are_not_triangles_are_left_to_trimesh() -> None:
    data = one_mesh(BOX.vertices, BOX_INDICES[:-1])
    assert read_glb(data) is None


# ----------------------------------------------------------------------------- the check


def box_scene(n_instances: int = 1) -> tuple[dict, bytes]:
    """A glTF document and its one buffer: a 12-face box, placed by ``n_instances`` nodes
    that are children of one root node."""
    positions = BOX.vertices.astype("<f4").tobytes()  # 8 * 12 bytes
    indices = BOX_INDICES.tobytes()  # 36 * 4 bytes
    nodes = [{"children": list(range(1, n_instances + 1))}]
    nodes += [{"mesh": 0, "translation": [2.0 * i, 0.0, 0.0]} for i in range(n_instances)]
    document = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": nodes,
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "type": "VEC3", "count": 8},
            {"bufferView": 1, "componentType": 5125, "type": "SCALAR", "count": 36},
        ],
        "bufferViews": [
            {"buffer": 0, "byteLength": len(positions)},
            {"buffer": 0, "byteOffset": len(positions), "byteLength": len(indices)},
        ],
        "buffers": [{"byteLength": len(positions) + len(indices)}],
    }
    return document, positions + indices


def as_file(document: dict, binary: bytes, fmt: str) -> bytes:
    """``document`` with ``binary`` as its one buffer: a GLB, or a .gltf with a data URI."""
    if fmt == "glb":
        return glb(document, binary)
    document = copy.deepcopy(document)
    encoded = base64.b64encode(binary).decode()
    document["buffers"][0]["uri"] = "data:application/octet-stream;base64," + encoded
    return json.dumps(document).encode()


@pytest.fixture
def trimesh_never_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("trimesh read a file the check should have refused")

    monkeypatch.setattr(trimesh, "load_scene", refuse)


@pytest.mark.parametrize("fmt", ["gltf", "glb"])
def test_an_instancing_bomb_is_refused_before_trimesh_builds_it(
    fmt: str, trimesh_never_reads: None
) -> None:
    """1,000 nodes of one 20,480-face sphere took 6 s and 3.5 GB in trimesh before the face
    limit refused them; the check counts the instances' faces from the JSON."""
    data = as_file(*box_scene(20_000), fmt)  # 240,000 faces in a ~1 MB file
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(data, fmt, max_faces=239_999)
    assert info.value.reason == "the mesh has 240000 faces, more than the limit of 239999"


@pytest.mark.parametrize("fmt", ["gltf", "glb"])
def test_a_scene_at_the_face_limit_loads_every_instance(fmt: str) -> None:
    data = as_file(*box_scene(10), fmt)
    mesh = raymap.load_mesh(data, fmt, max_faces=120)
    assert len(mesh.faces) == 120
    np.testing.assert_allclose(mesh.extents, [19.0, 1.0, 1.0])  # 10 boxes along x, 2 apart
    with pytest.raises(raymap.MeshError, match="the mesh has 120 faces, more than the limit"):
        raymap.load_mesh(data, fmt, max_faces=119)


def test_instances_are_counted_once_per_node_as_trimesh_builds_them() -> None:
    """A node reached twice (a child of two parents) is one instance."""
    document, binary = box_scene(2)
    document["nodes"][1]["children"] = [2]  # node 2: a child of nodes 0 and 1
    data = as_file(document, binary, "gltf")
    assert len(_read_with_trimesh(data, "gltf")[1]) == 24
    assert len(raymap.load_mesh(data, "gltf", max_faces=24).faces) == 24


@pytest.mark.parametrize("fmt", ["gltf", "glb"])
@pytest.mark.parametrize(
    ("children", "reason"),
    [
        # trimesh: "cannot read the GLTF file: Iteration limit exceeded!"
        ({1: [2], 2: [1]}, "node 2 has node 1 as a child, but node 1 is its ancestor"),
        # trimesh dropped the loop and read the box
        ({1: [1]}, "node 1 is its own child"),
    ],
    ids=["two-node-cycle", "own-child"],
)
def test_a_cycle_of_nodes_is_refused_by_name(
    fmt: str, children: dict[int, list[int]], reason: str
) -> None:
    document, binary = box_scene(2)  # node 0 the root, nodes 1 and 2 its children
    for node, its_children in children.items():
        document["nodes"][node]["children"] = its_children
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(as_file(document, binary, fmt), fmt)
    assert info.value.reason == (
        f"the {fmt.upper()} file's nodes form a cycle: {reason} (glTF nodes form trees)"
    )


def test_instances_are_placed_as_trimesh_places_them_without_a_copy_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three meshes placed 60 times (turned, scaled, mirrored, some not moved at all): the
    same arrays as ``Scene.to_mesh()``, bit for bit; and no ``Trimesh`` copied per instance
    (``to_mesh`` does that: 40,000 nodes of one box took 12 s)."""
    rng = np.random.default_rng(0)
    scene = trimesh.Scene()
    shapes = [BOX, trimesh.creation.icosphere(2), trimesh.creation.cylinder(0.3, 1.0)]
    for i in range(60):
        matrix = trimesh.transformations.random_rotation_matrix(rng.random(3))
        matrix[:3, :3] *= rng.uniform(0.1, 3.0)
        matrix[:3, 3] = 10 * rng.normal(size=3)
        if i % 3 == 0:
            matrix[:3, 0] *= -1  # a mirror: the winding flips
        if i % 5 == 0:
            matrix = np.eye(4)
        scene.add_geometry(shapes[i % 3], geom_name=f"shape{i % 3}", transform=matrix)
    data = scene.export(file_type="glb")
    stream = trimesh.util.wrap_as_stream(data)
    expected = trimesh.load_scene(stream, file_type="glb", process=False).to_mesh()

    def no_copies(*args, **kwargs):
        raise AssertionError("a Trimesh copied for an instance")

    monkeypatch.setattr(trimesh.Trimesh, "copy", no_copies)
    vertices, faces = _read_with_trimesh(data, "glb")
    assert np.array_equal(vertices, expected.vertices)
    assert np.array_equal(faces, expected.faces)


def quantized_pair(component_type: int, normalized: bool) -> tuple[dict, bytes]:
    """Two boxes: node 0 draws the first from ``component_type`` positions (normalized
    integers when ``normalized``: the box's corners at 1/2 of the type's largest value), with
    node 1, its child, drawing the second (float positions) moved by 3 along x."""
    largest = gltf_normalized.NORMALIZED_MAX.get(component_type, 1)
    dtype = {5120: "<i1", 5121: "<u1", 5122: "<i2", 5123: "<u2", 5126: "<f4"}[component_type]
    code = (BOX.vertices + 0.5) * (largest // 2) if normalized else BOX.vertices + 0.5
    first = code.astype(dtype).tobytes()
    first += b"\0" * (-len(first) % 4)
    second = BOX.vertices.astype("<f4").tobytes()
    indices = BOX_INDICES.tobytes()
    views = [(0, len(first)), (len(first), len(second)), (len(first) + len(second), len(indices))]
    quantized = {"bufferView": 0, "componentType": component_type, "type": "VEC3", "count": 8}
    if normalized:
        quantized["normalized"] = True
    document = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "children": [1]}, {"mesh": 1, "translation": [3.0, 0.0, 0.0]}],
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": 0}, "indices": 2}]},
            {"primitives": [{"attributes": {"POSITION": 1}, "indices": 2}]},
        ],
        "accessors": [
            quantized,
            {"bufferView": 1, "componentType": 5126, "type": "VEC3", "count": 8},
            {"bufferView": 2, "componentType": 5125, "type": "SCALAR", "count": 36},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": start, "byteLength": length} for start, length in views
        ],
        "buffers": [{"byteLength": len(first) + len(second) + len(indices)}],
        "extensionsUsed": ["KHR_mesh_quantization"],
        "extensionsRequired": ["KHR_mesh_quantization"],
    }
    return document, first + second + indices


@pytest.mark.parametrize("fmt", ["gltf", "glb"])
@pytest.mark.parametrize("component_type", [5120, 5121, 5122, 5123])
def test_normalized_integer_positions_are_divided_out(fmt: str, component_type: int) -> None:
    """trimesh read the integers themselves: the first box came out 63 to 32767 times too large
    beside the second. Each is now where the float file puts it, the child node too."""
    largest = gltf_normalized.NORMALIZED_MAX[component_type]
    unit = (largest // 2) / largest  # the box's side as the normalized integers store it
    expected = raymap.load_mesh(as_file(*quantized_pair(5126, False), fmt), fmt)
    mesh = raymap.load_mesh(as_file(*quantized_pair(component_type, True), fmt), fmt)
    assert len(mesh.faces) == len(expected.faces) == 24
    first, second = mesh.vertices[:8], mesh.vertices[8:]
    np.testing.assert_allclose(first, expected.vertices[:8] * unit, atol=1e-12)
    np.testing.assert_allclose(second, expected.vertices[8:], atol=1e-12)


@pytest.mark.parametrize("fmt", ["gltf", "glb"])
def test_unnormalized_integer_positions_are_read_as_they_are(fmt: str) -> None:
    expected = raymap.load_mesh(as_file(*quantized_pair(5126, False), fmt), fmt)
    mesh = raymap.load_mesh(as_file(*quantized_pair(5122, False), fmt), fmt)
    np.testing.assert_array_equal(mesh.vertices, expected.vertices)
    np.testing.assert_array_equal(mesh.faces, expected.faces)


def test_a_mesh_mixing_quantizations_is_refused() -> None:
    document, binary = quantized_pair(5122, True)
    document["meshes"][0]["primitives"].append({"attributes": {"POSITION": 1}, "indices": 2})
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(as_file(document, binary, "glb"), "glb")
    assert info.value.reason.startswith(
        "the GLB file's mesh 0 mixes positions of different quantizations"
    )


def _draco(document: dict) -> None:
    primitive = document["meshes"][0]["primitives"][0]
    primitive["extensions"] = {
        "KHR_draco_mesh_compression": {"bufferView": 0, "attributes": {"POSITION": 0}}
    }
    document["extensionsUsed"] = ["KHR_draco_mesh_compression"]
    document["extensionsRequired"] = ["KHR_draco_mesh_compression"]


def _meshopt(name: str):
    def compress(document: dict) -> None:
        view = document["bufferViews"][0]
        view["extensions"] = {name: {"buffer": 0, "byteLength": 96, "byteStride": 12,
                                     "count": 8, "mode": "ATTRIBUTES"}}  # fmt: skip
        document["extensionsUsed"] = [name]

    return compress


def _gpu_instances(document: dict) -> None:
    """Node 1 draws its box at three places: trimesh drew it once, at the node."""
    document["nodes"][1]["extensions"] = {
        "EXT_mesh_gpu_instancing": {"attributes": {"TRANSLATION": 0}}
    }
    document["extensionsUsed"] = ["EXT_mesh_gpu_instancing"]


def _sparse(document: dict) -> None:
    """Vertex 3 moved by a sparse override: trimesh ignored it and gave the plain box."""
    document["accessors"][0]["sparse"] = {
        "count": 1,
        "indices": {"bufferView": 1, "componentType": 5125},
        "values": {"bufferView": 0},
    }


@pytest.mark.parametrize("fmt", ["gltf", "glb"])
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            _draco,
            "uses Draco mesh compression (KHR_draco_mesh_compression), which this service "
            "cannot read; export it without compression",
        ),
        (_meshopt("EXT_meshopt_compression"), "uses meshopt compression (EXT_meshopt_compr"),
        (_meshopt("KHR_meshopt_compression"), "uses meshopt compression (KHR_meshopt_compr"),
        (
            _gpu_instances,
            "uses GPU instancing (EXT_mesh_gpu_instancing), which this service cannot read; "
            "export each instance as a node of its own",
        ),
        (_sparse, "uses a sparse accessor (accessor 0), which this service cannot read"),
    ],
    ids=["draco", "ext-meshopt", "khr-meshopt", "gpu-instancing", "sparse"],
)
def test_geometry_trimesh_cannot_read_is_refused_by_name(fmt: str, change, reason: str) -> None:
    """These gave a wrong answer (sparse, meshopt, GPU instancing) or 'zero extent' (Draco)
    before."""
    document, binary = box_scene()
    change(document)
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(as_file(document, binary, fmt), fmt)
    assert info.value.reason.startswith(f"the {fmt.upper()} file {reason}"), info.value.reason


def _set(path: str, value: object):
    """A change to ``document``: the item at ``path`` (keys and list positions, dotted) set."""

    def change(document: dict) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        holder = document
        for key in parents:
            holder = holder[key]
        holder[last] = value

    return change


@pytest.mark.parametrize("fmt", ["gltf", "glb"])
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_set("scene", 5), "the file's 'scene' field refers to scene 5, but the file has 1 scene"),
        (_set("scenes.0.nodes", [7]), "scene 0 refers to node 7, but the file has 3 nodes"),
        (_set("nodes.0.children", [1, 9]), "node 0 refers to node 9, but the file has 3 nodes"),
        (_set("nodes.1.mesh", 4), "node 1 refers to mesh 4, but the file has 1 mesh"),
        (
            _set("meshes.0.primitives.0.indices", 2),
            "mesh 0, primitive 0 refers to accessor 2, but the file has 2 accessors",
        ),
        (
            _set("accessors.1.componentType", 9999),
            "accessor 1 has componentType 9999; glTF knows 5120, 5121, 5122, 5123, 5125, 5126",
        ),
        (_set("accessors.0.type", "VEC7"), "accessor 0 has type 'VEC7'; glTF knows SCALAR,"),
        (
            _set("accessors.0.count", 9),
            "accessor 0 needs bytes 0 to 108 of bufferView 0, which has 96 bytes",
        ),
        (
            _set("bufferViews.1.byteOffset", 150),
            "bufferView 1 spans bytes 150 to 294 of buffer 0, but ",
        ),
        (  # trimesh gave (N, 2) positions, and the turn to +Z up a bare ValueError (a 500)
            _set("accessors.0.type", "VEC2"),
            "mesh 0, primitive 0's POSITION (accessor 0) is VEC2, not VEC3",
        ),
        (  # overlapping elements: a vertex per byte, 30 million from 300 KB
            _set("bufferViews.0.byteStride", 4),
            "accessor 0 reads VEC3 elements of 12 bytes from bufferView 0, whose byteStride is "
            "only 4",
        ),
    ],
    ids=["scene", "root", "child", "mesh", "accessor", "component", "type", "count", "view",
         "position-vec2", "stride"],
)  # fmt: skip
def test_bad_references_say_which_and_where(fmt: str, change, reason: str) -> None:
    """These were 'list index out of range' called face indices, '9999' or AssertionError."""
    document, binary = box_scene(2)
    change(document)
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(as_file(document, binary, fmt), fmt)
    assert info.value.reason.startswith(reason), info.value.reason


def test_a_malformed_glb_never_escapes_as_another_error() -> None:
    """The one-mesh fast path read these as Python would (an AttributeError or OverflowError:
    a 500; a negative reference from a list's end, a count given as text); now each is off
    the fast path, and the check says what is wrong."""
    box = trimesh.creation.box()
    vertices, indices = box.vertices, box.faces.astype("<u4").ravel()
    changes = [
        {"scenes": [0]},
        {"nodes": ["x"]},
        {"meshes": [{"primitives": [None]}]},
        {"scene": -1},
    ]
    for change in changes:
        with pytest.raises(raymap.MeshError):
            raymap.load_mesh(one_mesh(vertices, indices, document=change), "glb")
    for key, value in (("count", float("inf")), ("count", "8"), ("byteOffset", -12)):
        document, _ = glb_chunks(one_mesh(vertices, indices))
        document["accessors"][0][key] = value
        data = one_mesh(vertices, indices, document={"accessors": document["accessors"]})
        with pytest.raises(raymap.MeshError, match="accessor 0's"):
            raymap.load_mesh(data, "glb")


def test_a_mesh_of_a_scene_cannot_use_another_meshs_vertices() -> None:
    """A second mesh of 3 vertices whose faces reach corner 7: trimesh kept the indices, and
    merged into one mesh they took the first mesh's vertices (a wrong mesh, no error)."""
    document, binary = box_scene(2)
    document["accessors"].append(
        {"bufferView": 0, "componentType": 5126, "type": "VEC3", "count": 3}
    )
    document["meshes"].append({"primitives": [{"attributes": {"POSITION": 2}, "indices": 1}]})
    document["nodes"][2]["mesh"] = 1
    with pytest.raises(raymap.MeshError, match="face indices out of range in the scene's mesh"):
        raymap.load_mesh(as_file(document, binary, "glb"), "glb")


@pytest.mark.parametrize("fmt", ["gltf", "glb"])
def test_scenes_are_bounded_in_vertices_and_depth(fmt: str) -> None:
    """Faces alone did not bound a scene: one triangle of a many-vertex mesh placed many times
    (2,000 times a 20,000-vertex triangle: 2.3 GB), or nodes nested a chain deep (trimesh's
    cost grows with the square of the depth: 100,000 levels, 70 s)."""
    document, binary = box_scene(10)
    document["accessors"][1]["count"] = 3  # one triangle of the box's 8 vertices, 10 times
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(as_file(document, binary, fmt), fmt, max_faces=10)
    assert info.value.reason == (
        "the scene has 80 vertices once every instance is placed, more than 30 (3 a face at "
        "the face limit of 10)"
    )
    assert len(raymap.load_mesh(as_file(document, binary, fmt), fmt, max_faces=27).faces) == 10
    document, binary = box_scene(1)
    depth = gltf_check.MAX_NODE_DEPTH + 1
    document["nodes"] = [{"children": [i + 1]} for i in range(depth - 1)] + [{"mesh": 0}]
    with pytest.raises(raymap.MeshError, match=f"nodes nest more than {depth - 1} deep"):
        raymap.load_mesh(as_file(document, binary, fmt), fmt)
    document["nodes"] = [{"children": [i + 1]} for i in range(depth - 2)] + [{"mesh": 0}]
    assert len(raymap.load_mesh(as_file(document, binary, fmt), fmt).faces) == 12


def test_damaged_base64_says_so() -> None:
    document = json.loads(as_file(*box_scene(), "gltf"))
    document["buffers"][0]["uri"] = "data:application/octet-stream;base64,!!!!"
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(json.dumps(document).encode(), "gltf")
    assert info.value.reason == (
        "bufferView 0 spans bytes 0 to 96 of buffer 0, but its base64 data decodes to 0 bytes "
        "(a damaged or cut-short file?)"
    )


def test_a_glb_cut_short_says_so() -> None:
    data = as_file(*box_scene(2), "glb")
    with pytest.raises(raymap.MeshError) as info:
        raymap.load_mesh(data[:-40], "glb")
    assert info.value.reason == (
        f"cannot read the GLB file: its header gives a length of {len(data)} bytes but the "
        f"file has {len(data) - 40} (cut short or damaged?)"
    )


@pytest.mark.parametrize(
    "change",
    [
        _set("meshes.0.primitives.0.mode", 5),  # a strip: 34 triangles
        _set("meshes.0.primitives.0.indices", None),  # no indices: becomes [0..8), 2 faces...
    ],
    ids=["strip", "no-indices"],
)
def test_other_layouts_still_read_as_trimesh_reads_them(change) -> None:
    document, binary = box_scene(2)
    change(document)
    primitive = document["meshes"][0]["primitives"][0]
    if primitive.get("indices", 0) is None:
        del primitive["indices"]
        document["accessors"][0]["count"] = 6  # two triangles of the box's first corners
    data = as_file(document, binary, "gltf")
    mesh = raymap.load_mesh(data, "gltf")
    vertices, faces = _read_with_trimesh(data, "gltf")
    np.testing.assert_array_equal(mesh.vertices, vertices @ _Y_UP_TO_Z_UP.T)
    np.testing.assert_array_equal(mesh.faces, faces)
