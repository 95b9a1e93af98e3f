"""glTF positions stored as normalized integers (``KHR_mesh_quantization``), placed at scale.

A ``normalized`` accessor of integers stands for the integer divided by the type's largest
value (a signed byte 127, an unsigned byte 255, a short 32767, an unsigned short 65535; the
specification clamps the most negative code to -1, a step no encoder writes). trimesh reads
the integers and never divides: a lone mesh only came out larger (the map is the same: the
mesh is centred and scaled anyway), but a scene of such a mesh beside others, or beside its
own moved copies, came out as a different shape (a box of half-width 0.5 with one of 32767).

:func:`scale_normalized_positions` rewrites only the JSON: each node's mesh of normalized
positions moves to a new child node that scales it by 1 / that value, so trimesh's own
transform does the division (the node's other children keep their transforms).
"""

from __future__ import annotations

import copy
import json
import struct

from raymap.errors import MeshError

# componentType -> the largest value of a normalized integer of that type
NORMALIZED_MAX = {5120: 127, 5121: 255, 5122: 32767, 5123: 65535}
_FLOAT = 5126
_JSON_CHUNK = 0x4E4F534A
_BIN_CHUNK = 0x004E4942


def scale_normalized_positions(document: dict, binary: bytes | None, fmt: str) -> bytes | None:
    """The file again (a .gltf, or a GLB with ``binary`` as its binary chunk) with each mesh
    of normalized integer positions scaled by a node of its own, or ``None`` when it has none.
    ``document`` has passed :func:`raymap.gltf_check.check_gltf` (its references hold)."""
    divisors = _mesh_divisors(document, fmt.upper())
    if not divisors:
        return None
    document = copy.deepcopy(document)
    nodes = document["nodes"]
    for node in list(nodes):  # nodes added below hold the meshes: not visited again
        mesh = node.get("mesh")
        if mesh not in divisors:
            continue
        scale = 1.0 / divisors[mesh]
        nodes.append({"mesh": node.pop("mesh"), "scale": [scale, scale, scale]})
        node["children"] = [*node.get("children", []), len(nodes) - 1]
    text = json.dumps(document).encode()
    if fmt == "gltf":
        return text
    assert binary is not None
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), _JSON_CHUNK) + text
    if binary:
        binary += b"\0" * (-len(binary) % 4)
        body += struct.pack("<II", len(binary), _BIN_CHUNK) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def _mesh_divisors(document: dict, name: str) -> dict[int, int]:
    """mesh -> the largest value of its positions' normalized integer type, for each mesh
    whose positions are normalized; a mesh that mixes them with others is refused."""
    accessors = document.get("accessors", [])
    divisors = {}
    for mesh, entry in enumerate(document.get("meshes", [])):
        found = set()
        for primitive in entry["primitives"]:
            accessor = accessors[primitive["attributes"]["POSITION"]]
            kind = accessor["componentType"]
            if accessor.get("normalized") is not True or kind == _FLOAT:  # floats: as they are
                found.add(1)
                continue
            if kind not in NORMALIZED_MAX:
                raise MeshError(
                    f"mesh {mesh}'s positions are normalized, but of componentType {kind}; "
                    "glTF normalizes only 8- and 16-bit integers"
                )
            found.add(NORMALIZED_MAX[kind])
        if len(found) > 1:
            raise MeshError(
                f"the {name} file's mesh {mesh} mixes positions of different quantizations "
                "(normalized integers of several types, or with unnormalized ones), which this "
                "service cannot read; export its positions as floats"
            )
        if found and found != {1}:
            divisors[mesh] = found.pop()
    return divisors
