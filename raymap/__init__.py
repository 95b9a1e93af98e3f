"""Mesh -> spherical map: the torch-free input stage shared by training and the service.

The names below are imported on first use (PEP 562), so that ``from raymap import grid`` (what
the network's layers need) does not load the mesh stack (trimesh, Embree, the C kernels): the
network and its training step import on a machine that has only numpy and torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raymap.errors import MeshError
    from raymap.features import FEATURE_NAMES, FEATURES_VERSION
    from raymap.grid import GridSpec, directions
    from raymap.mesh import DEFAULT_MAX_FACES, SUPPORTED_FORMATS, load_mesh, load_mesh_file
    from raymap.project import spherical_map, spherical_map_timed

# Each public name and the module that owns it.
_OWNERS = {
    "MeshError": "raymap.errors",
    "FEATURE_NAMES": "raymap.features",
    "FEATURES_VERSION": "raymap.features",
    "GridSpec": "raymap.grid",
    "directions": "raymap.grid",
    "DEFAULT_MAX_FACES": "raymap.mesh",
    "SUPPORTED_FORMATS": "raymap.mesh",
    "load_mesh": "raymap.mesh",
    "load_mesh_file": "raymap.mesh",
    "spherical_map": "raymap.project",
    "spherical_map_timed": "raymap.project",
}

__all__ = [
    "DEFAULT_MAX_FACES",
    "FEATURES_VERSION",
    "FEATURE_NAMES",
    "SUPPORTED_FORMATS",
    "GridSpec",
    "MeshError",
    "directions",
    "load_mesh",
    "load_mesh_file",
    "spherical_map",
    "spherical_map_timed",
]
assert sorted(__all__) == sorted(_OWNERS)


def __getattr__(name: str) -> object:
    owner = _OWNERS.get(name)
    if owner is None:
        raise AttributeError(f"module 'raymap' has no attribute {name!r}")
    value = getattr(importlib.import_module(owner), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
