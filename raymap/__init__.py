"""Mesh -> spherical map: the torch-free input stage shared by training and the service."""

from raymap.errors import MeshError
from raymap.features import FEATURE_NAMES, FEATURES_VERSION
from raymap.grid import GridSpec, directions
from raymap.mesh import DEFAULT_MAX_FACES, SUPPORTED_FORMATS, load_mesh, load_mesh_file
from raymap.project import spherical_map, spherical_map_timed

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
