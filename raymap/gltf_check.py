"""A glTF upload (.gltf or .glb) checked on its JSON before trimesh reads it.

trimesh builds every instance of every mesh before anyone can count faces (1,000 nodes of one
20,480-face sphere: 6 s and 3.5 GB to learn that the scene has 20 million faces), gives zeros
for compressed geometry and ignores sparse accessors without a word, and reports a bad
reference as an ``AssertionError`` or "list index out of range". :func:`check_gltf` reads
only the JSON and the lengths of the buffers, and raises :class:`~raymap.errors.MeshError`
for:

- a buffer in another file (an upload is one file);
- Draco or meshopt compression and sparse accessors, which trimesh cannot read;
- an index past the end of its list (scene, node, mesh, material, accessor, bufferView,
  buffer), an unknown ``componentType`` or ``type``, an accessor or bufferView that reaches
  past its data, elements that overlap (a ``byteStride`` below their size), a POSITION that
  is not ``VEC3``, or an accessor without data larger than the file;
- a scene of more than ``max_faces`` triangles, or ``VERTICES_PER_FACE`` times as many
  vertices, once every instance is counted: each node's mesh's (from its accessors'
  ``count``), for every node the scene reaches; and nodes nested deeper than
  ``MAX_NODE_DEPTH`` (trimesh's cost grows with the square of the depth), or in a cycle
  (trimesh dropped some and followed others until "Iteration limit exceeded!");
- a node using GPU instancing (``EXT_mesh_gpu_instancing``), whose instances trimesh drops:
  it places the mesh once, where the node is.

The walk of the node graph visits each node once (a node with two parents is placed once, as
trimesh places it; it keeps its own stack), so it takes one step per node and per child
entry, both fewer than the file's bytes: 100,000 nodes cost ~0.1 s, JSON parsing included.
"""

from __future__ import annotations

import base64
import binascii
import json

import numpy as np

from raymap.errors import MeshError, too_many_faces
from raymap.glb import glb_chunks

# A JSON document nested deeper than this is no glTF; json.loads would recurse into it.
MAX_JSON_DEPTH = 64
_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
# Extensions whose geometry trimesh cannot read here (it reads zeros or raw bytes, or drops
# the instances), with what to do instead.
_WITHOUT_COMPRESSION = "export it without compression"
_UNSUPPORTED = {
    "KHR_draco_mesh_compression": ("Draco mesh compression", _WITHOUT_COMPRESSION),
    "EXT_meshopt_compression": ("meshopt compression", _WITHOUT_COMPRESSION),
    "KHR_meshopt_compression": ("meshopt compression", _WITHOUT_COMPRESSION),
    "EXT_mesh_gpu_instancing": (
        "GPU instancing",
        "export each instance as a node of its own (e.g. glTF-Transform's uninstance)",
    ),
}
_TRIANGLES, _STRIP, _FAN = 4, 5, 6
# A triangle soup has 3 vertices a face, and no mesh within the face limit needs more: past
# this, a file of few faces asks for gigabytes of vertices (a 20,000-vertex triangle placed
# 2,000 times: 40 million).
VERTICES_PER_FACE = 3
# Deeper node chains cost trimesh time in the square of the depth (100,000 nested nodes:
# 70 s); a real scene is a few dozen deep.
MAX_NODE_DEPTH = 256
_PLURALS = {"mesh": "meshes"}


def check_gltf(data: bytes, fmt: str, max_faces: int) -> tuple[dict, bytes | None]:
    """Raise :class:`MeshError` for a .gltf or .glb (``fmt``) that trimesh should not read
    (see the module); else its JSON object and (a GLB's) binary chunk."""
    name = fmt.upper()
    if fmt == "glb":
        document, binary = glb_chunks(data)
    else:
        document, binary = gltf_document(data), None
    primitives = _primitives(document, name)  # each mesh's, each list checked once
    _check_extensions(document, primitives, name)
    buffer_sizes = _buffer_sizes(document, binary, name)
    view_sizes = _view_sizes(document, buffer_sizes, name)
    accessors = _accessors(document, view_sizes, len(data), name)
    n_materials = len(_objects(document, "materials", name))
    sizes = [_mesh_size(mesh, each, accessors, n_materials) for mesh, each in enumerate(primitives)]
    faces, vertices = _scene_size(document, sizes, name)
    if faces > max_faces:
        raise too_many_faces(faces, max_faces)
    if vertices > VERTICES_PER_FACE * max_faces:
        raise MeshError(
            f"the scene has {vertices} vertices once every instance is placed, more than "
            f"{VERTICES_PER_FACE * max_faces} ({VERTICES_PER_FACE} a face at the face limit of "
            f"{max_faces})"
        )
    return document, binary


def gltf_document(data: bytes) -> dict:
    """The JSON object of a .gltf, refused when it needs another file."""
    depth = _json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise MeshError(
            f"cannot read the GLTF file: its JSON is nested {depth} deep (at most {MAX_JSON_DEPTH})"
        )
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MeshError(f"cannot read the GLTF file: it is not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise MeshError("cannot read the GLTF file: its JSON is not an object")
    buffers = _objects(document, "buffers", "GLTF")
    external = [
        str(buffer.get("uri"))
        for buffer in buffers
        if not str(buffer.get("uri", "data:")).startswith("data:")
    ]
    if external:
        raise MeshError(
            f"the GLTF file refers to external files ({', '.join(external[:3])}); "
            "upload a .glb, or a .gltf with embedded buffers"
        )
    return document


def _json_depth(data: bytes) -> int:
    """How deep the brackets of a JSON text nest (brackets inside strings count too: an
    upper bound, which is all a limit needs); vectorized, so a 32 MiB file costs ~0.1 s."""
    chars = np.frombuffer(data, dtype=np.uint8)
    step = np.zeros(256, dtype=np.int8)
    step[[ord("["), ord("{")]] = 1
    step[[ord("]"), ord("}")]] = -1
    steps = step[chars]
    if not steps.any():
        return 0
    return int(np.add.accumulate(steps, dtype=np.int64).max())


def _check_extensions(document: dict, primitives: list[list[dict]], name: str) -> None:
    """Refuse compressed geometry and GPU instances, whether the file declares them or only
    uses them."""
    used = set(_strings(document.get("extensionsRequired")))
    used |= set(_strings(document.get("extensionsUsed")))
    every_primitive = [primitive for each in primitives for primitive in each]
    holders = [*_objects(document, "bufferViews", name), *_objects(document, "nodes", name)]
    for holder in [*holders, *every_primitive]:
        extensions = holder.get("extensions")
        if isinstance(extensions, dict):
            used |= set(extensions)
    for extension in sorted(used & set(_UNSUPPORTED)):
        what, instead = _UNSUPPORTED[extension]
        raise MeshError(
            f"the {name} file uses {what} ({extension}), which this service cannot read; {instead}"
        )


def _buffer_sizes(document: dict, binary: bytes | None, name: str) -> list[int]:
    """The bytes each buffer holds, as trimesh's reader finds them: a data URI decoded, or
    (in a GLB) the binary chunk for the first buffer without a URI."""
    sizes = []
    for index, buffer in enumerate(_objects(document, "buffers", name)):
        uri = buffer.get("uri")
        if uri is None and binary is not None:
            sizes.append(len(binary))
            binary = b""  # a second buffer without a URI has no chunk of its own
            continue
        at = uri.find("base64,") if isinstance(uri, str) and uri.startswith("data:") else -1
        if at < 0:
            raise MeshError(
                f"buffer {index} of the {name} file is not embedded (a base64 data URI"
                f"{' or the binary chunk' if binary is not None else ''}); export the file "
                "with its buffers embedded"
            )
        try:
            sizes.append(len(base64.b64decode(uri[at + 7 :])))
        except (binascii.Error, ValueError) as exc:
            raise MeshError(
                f"buffer {index} of the {name} file is not valid base64 ({exc})"
            ) from exc
    return sizes


def _view_sizes(document: dict, buffer_sizes: list[int], name: str) -> list[int]:
    """Each bufferView's byteLength, once it is known to lie inside its buffer."""
    buffers = _objects(document, "buffers", name)
    sizes = []
    for index, view in enumerate(_objects(document, "bufferViews", name)):
        where = f"bufferView {index}"
        buffer = _index(view.get("buffer"), len(buffer_sizes), where, "buffer")
        start = _whole(view.get("byteOffset", 0), f"{where}'s byteOffset")
        length = _whole(view.get("byteLength"), f"{where}'s byteLength")
        if start + length > buffer_sizes[buffer]:
            held = "its base64 data decodes to" if "uri" in buffers[buffer] else "it holds"
            raise MeshError(
                f"{where} spans bytes {start} to {start + length} of buffer {buffer}, but "
                f"{held} {buffer_sizes[buffer]} bytes (a damaged or cut-short file?)"
            )
        if "byteStride" in view and _whole(view["byteStride"], f"{where}'s byteStride") < 1:
            raise MeshError(f"{where}'s byteStride must be positive, got 0")
        sizes.append(length)
    return sizes


def _accessors(
    document: dict, view_sizes: list[int], file_size: int, name: str
) -> list[tuple[int, str]]:
    """Each accessor's (count, type), once it is known to be readable: a known componentType
    and type, inside its bufferView, not sparse."""
    views = _objects(document, "bufferViews", name)
    found = []
    for index, accessor in enumerate(_objects(document, "accessors", name)):
        where = f"accessor {index}"
        if "sparse" in accessor:
            raise MeshError(
                f"the {name} file uses a sparse accessor ({where}), which this service cannot "
                "read; export it with plain (dense) accessors"
            )
        kind = accessor.get("componentType")
        if type(kind) is not int or kind not in _COMPONENT_BYTES:
            known = ", ".join(str(k) for k in _COMPONENT_BYTES)
            raise MeshError(f"{where} has componentType {kind!r}; glTF knows {known}")
        shape = accessor.get("type")
        if not isinstance(shape, str) or shape not in _TYPE_WIDTHS:
            raise MeshError(f"{where} has type {shape!r}; glTF knows {', '.join(_TYPE_WIDTHS)}")
        count = _whole(accessor.get("count"), f"{where}'s count")
        element = _TYPE_WIDTHS[shape] * _COMPONENT_BYTES[kind]
        if "bufferView" in accessor:
            view = _index(accessor["bufferView"], len(view_sizes), where, "bufferView")
            start = _whole(accessor.get("byteOffset", 0), f"{where}'s byteOffset")
            stride = views[view].get("byteStride", element)
            if stride < element:  # elements would overlap: a way to many vertices per byte
                raise MeshError(
                    f"{where} reads {shape} elements of {element} bytes from bufferView {view}, "
                    f"whose byteStride is only {stride}"
                )
            end = start + (count - 1) * stride + element if count else start
            if end > view_sizes[view]:
                raise MeshError(
                    f"{where} needs bytes {start} to {end} of bufferView {view}, which has "
                    f"{view_sizes[view]} bytes"
                )
        elif count * element > file_size:  # no data: zeros, which trimesh would allocate
            raise MeshError(
                f"{where} has no data (no bufferView) yet declares {count} {shape} values, "
                f"{count * element} bytes of zeros: more than the file's {file_size} bytes"
            )
        found.append((count, shape))
    return found


def _mesh_size(
    mesh: int, primitives: list[dict], accessors: list[tuple[int, str]], n_materials: int
) -> tuple[int, int]:
    """The triangles and vertices one instance of mesh ``mesh`` (its ``primitives``) has, its
    references checked on the way."""
    faces = vertices = 0
    for index, primitive in enumerate(primitives):
        where = f"mesh {mesh}, primitive {index}"
        attributes = primitive.get("attributes")
        if not isinstance(attributes, dict) or "POSITION" not in attributes:
            raise MeshError(f"{where} has no POSITION attribute")
        for attribute, accessor in attributes.items():
            _index(accessor, len(accessors), f"{where}'s {attribute}", "accessor")
        n_positions, shape = accessors[attributes["POSITION"]]
        if shape != "VEC3":
            raise MeshError(
                f"{where}'s POSITION (accessor {attributes['POSITION']}) is {shape}, not VEC3"
            )
        vertices += n_positions
        if "material" in primitive:
            _index(primitive["material"], n_materials, where, "material")
        mode = primitive.get("mode", _TRIANGLES)
        if "indices" in primitive:
            accessor = _index(primitive["indices"], len(accessors), where, "accessor")
            corners, shape = accessors[accessor]
            if shape != "SCALAR":
                raise MeshError(f"{where}'s indices (accessor {accessor}) are {shape}, not SCALAR")
            what = "indices"
        else:
            corners, what = accessors[attributes["POSITION"]][0], "positions without indices"
        if mode == _TRIANGLES:
            if corners % 3:
                raise MeshError(f"{where} has {corners} {what}, not a multiple of 3")
            faces += corners // 3
        elif mode in (_STRIP, _FAN):
            faces += max(corners - 2, 0)
    return faces, vertices


def _scene_size(document: dict, mesh_sizes: list[tuple[int, int]], name: str) -> tuple[int, int]:
    """The triangles and vertices of the scene trimesh would build: every node the default
    scene reaches, each once, times its mesh's; a node chain deeper than ``MAX_NODE_DEPTH``
    is refused."""
    scenes = _objects(document, "scenes", name)
    if not scenes:
        return 0, 0  # trimesh builds no instance
    nodes = _objects(document, "nodes", name)
    scene = _index(document.get("scene", 0), len(scenes), "the file's 'scene' field", "scene")
    where = f"scene {scene}"
    roots = _node_list(scenes[scene], "nodes", len(nodes), where)
    # Depth first, each node once: a node reached again is a second parent's child (trimesh
    # places it once), unless it is still on the path from the root: a cycle, which trimesh
    # either drops or follows until "Iteration limit exceeded!". Entries (node, depth,
    # parent) enter a node; (~node, ...) leave it.
    stack = [(node, 1, -1) for node in reversed(roots)]
    state = bytearray(len(nodes))  # 0 not reached, 1 on the path, 2 left
    faces = vertices = 0
    while stack:
        node, depth, parent = stack.pop()
        if node < 0:
            state[~node] = 2
            continue
        if state[node] == 1:
            loop = (
                f"node {node} is its own child"
                if parent == node
                else f"node {parent} has node {node} as a child, but node {node} is its ancestor"
            )
            raise MeshError(f"the {name} file's nodes form a cycle: {loop} (glTF nodes form trees)")
        if state[node] == 2:
            continue
        state[node] = 1
        if depth > MAX_NODE_DEPTH:
            raise MeshError(
                f"the {name} file's nodes nest more than {MAX_NODE_DEPTH} deep (node {node})"
            )
        entry = nodes[node]
        mesh = entry.get("mesh")
        if mesh is not None:
            if type(mesh) is not int or not 0 <= mesh < len(mesh_sizes):
                _index(mesh, len(mesh_sizes), f"node {node}", "mesh")
            faces += mesh_sizes[mesh][0]
            vertices += mesh_sizes[mesh][1]
        stack.append((~node, depth, parent))
        if "children" in entry:
            children = _node_list(entry, "children", len(nodes), f"node {node}")
            stack += [(child, depth + 1, node) for child in reversed(children)]
    return faces, vertices


def _primitives(document: dict, name: str) -> list[list[dict]]:
    """Each mesh's primitives (a list of objects each, or a :class:`MeshError`)."""
    primitives = []
    for index, mesh in enumerate(_objects(document, "meshes", name)):
        found = mesh.get("primitives")
        if not isinstance(found, list) or not all(isinstance(p, dict) for p in found):
            raise MeshError(f"mesh {index}'s 'primitives' must be a list of objects")
        primitives.append(found)
    return primitives


def _objects(document: dict, key: str, name: str) -> list[dict]:
    """``document[key]``, a list of objects (``[]`` when absent)."""
    found = document.get(key, [])
    if not isinstance(found, list) or not all(isinstance(each, dict) for each in found):
        raise MeshError(f"cannot read the {name} file: '{key}' must be a list of objects")
    return found


def _node_list(holder: dict, key: str, n_nodes: int, where: str) -> list[int]:
    """``holder[key]``, a list of node numbers, each checked."""
    found = holder.get(key, [])
    if not isinstance(found, list):
        raise MeshError(f"{where}'s '{key}' must be a list of node numbers, got {found!r:.40}")
    for node in found:
        if type(node) is not int or not 0 <= node < n_nodes:
            _index(node, n_nodes, where, "node")
    return found


def _strings(found: object) -> list[str]:
    return [each for each in found if isinstance(each, str)] if isinstance(found, list) else []


def _whole(value: object, what: str) -> int:
    """``value`` as a whole number >= 0, or a :class:`MeshError` naming ``what``."""
    if type(value) is not int or value < 0:
        raise MeshError(f"{what} must be a whole number >= 0, got {value!r:.40}")
    return value


def _index(value: object, length: int, where: str, what: str) -> int:
    """``value`` as an index into a list of ``length`` ``what``s, or a :class:`MeshError`
    saying that ``where`` refers to one that does not exist."""
    index = _whole(value, f"{where}'s {what} number")
    if index >= length:
        has = f"{length} {what if length == 1 else _PLURALS.get(what, what + 's')}"
        raise MeshError(f"{where} refers to {what} {index}, but the file has {has}")
    return index
